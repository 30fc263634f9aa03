package redlock

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"time"
)

// The Redlock algorithm, top to bottom: the entry points (Lock, TryLock,
// LockWait, LockMany) -> acquireReq (Observer, LockWait's queue) ->
// acquireLoop (retries with backoff) -> attempt (one round to every
// instance; validity = TTL - elapsed - drift) -> fence (the fenced lock's
// second round) -> cleanup (a failed attempt releases what it may have
// set). The wire (scripts, replies) is in wire.go, the fan-out in
// quorum.go, the held lock in lock.go and its watchdog in watchdog.go.

// Lock acquires resource, making up to Config.RetryCount attempts with a
// random delay in [RetryDelayMin, RetryDelayMax] between them. It returns a
// held lock, or an error that satisfies errors.Is with ErrNotAcquired (held
// by another token), ErrUnavailable (too few instances answered), ErrInvalid
// or ErrClosed; if ctx ended first, also with ctx.Err(). ctx bounds the
// whole call; nothing is sent once ctx has ended. A failed attempt releases
// whatever it may have set; the call returns by ctx's deadline, finishing
// the releases to instances that have not answered in the background (see
// the package documentation; with the Token option, or for the
// instances that set the key, it may wait up to Config.NodeTimeout more).
//
// Without the TTL option the lock gets Config.DefaultTTL and is extended
// automatically until Unlock, Close, or loss (see Lock.Lost).
func (m *Manager) Lock(ctx context.Context, resource string, opts ...LockOption) (*Lock, error) {
	return m.acquire(ctx, "Lock", resource, opts, m.cfg.RetryCount)
}

// TryLock is Lock with a single attempt.
func (m *Manager) TryLock(ctx context.Context, resource string, opts ...LockOption) (*Lock, error) {
	return m.acquire(ctx, "TryLock", resource, opts, 1)
}

// LockWait acquires resource like Lock, but retries until it succeeds or
// ctx ends (like sync.Mutex.Lock, bounded by ctx). Errors other than
// contention and unavailability (ErrInvalid, ErrClosed) return at once.
func (m *Manager) LockWait(ctx context.Context, resource string, opts ...LockOption) (*Lock, error) {
	return m.acquire(ctx, "LockWait", resource, opts, -1)
}

// MaxResources is the most resources one LockMany call may lock.
const MaxResources = 1024

// LockMany acquires every resource in resources at once, or none: on each
// instance one script takes all the keys when none is held by another
// token, and the lock is held when a quorum of instances took them all. It
// retries like Lock. The returned Lock covers the whole set: Extend,
// Unlock, auto-extension, Lost and fencing (one token, larger than every
// earlier token of each resource) apply to all of them together.
//
// Two callers asking for overlapping sets in different orders cannot
// deadlock: no instance ever holds part of a set, and a failed attempt
// releases what it took before retrying. On a Redis Cluster instance every
// key must be in one slot: resources in different slots give ErrInvalid
// unless they share a hash tag ("{order:42}:items", "{order:42}:payment").
// Resources must be distinct and valid, at most MaxResources of them.
func (m *Manager) LockMany(ctx context.Context, resources []string, opts ...LockOption) (*Lock, error) {
	if len(resources) == 0 {
		return nil, invalidf("no resources")
	}
	if len(resources) > MaxResources {
		return nil, invalidf("%d resources, over %d", len(resources), MaxResources)
	}
	seen := make(map[string]struct{}, len(resources))
	for _, r := range resources {
		if err := m.checkResource(r); err != nil {
			return nil, err
		}
		if _, dup := seen[r]; dup {
			return nil, invalidf("resource %s appears twice", quoteResource(r))
		}
		seen[r] = struct{}{}
	}
	req, err := m.newRequestMany(append([]string(nil), resources...), opts)
	if err != nil {
		return nil, err
	}
	if err := m.checkSlots(&req.ks); err != nil {
		return nil, err
	}
	return m.acquireReq(ctx, "LockMany", req, m.cfg.RetryCount)
}

// acquire makes up to attempts attempts (forever when attempts < 0).
// method names the public call, for the Observer.
func (m *Manager) acquire(ctx context.Context, method, resource string, opts []LockOption, attempts int) (*Lock, error) {
	req, err := m.newRequest(resource, opts)
	if err != nil {
		return nil, err
	}
	return m.acquireReq(ctx, method, req, attempts)
}

func (m *Manager) acquireReq(ctx context.Context, method string, req request, attempts int) (*Lock, error) {
	if !m.enter() {
		return nil, ErrClosed
	}
	defer m.leave()
	if m.obs != nil {
		var ev *AcquireEvent
		ctx, ev = m.startAcquire(ctx, method, req)
		l, err := m.acquireLoop(ctx, req, attempts)
		m.endAcquire(ctx, ev, l, err)
		return l, err
	}
	return m.acquireLoop(ctx, req, attempts)
}

func (m *Manager) acquireLoop(ctx context.Context, req request, attempts int) (*Lock, error) {
	return m.retryLoop(ctx, "lock", req.resource, req.ks.keys, attempts, func(ctx context.Context, t turn, n int) (*Lock, *QuorumError, time.Duration, error) {
		if n > 1 && req.own {
			// A fresh token per attempt: a release of the last attempt
			// still on its way to a slow instance cannot delete the key
			// this one sets there.
			req.token = newToken()
		}
		l, o, ok := m.attempt(ctx, req, t)
		if ok {
			return l, nil, 0, nil
		}
		e := m.quorumError("lock", req.resource, o, n, false)
		if o.ctxErr == nil && e.Err != ErrRejected && !(req.ks.rw == nil && req.ks.single() && m.waits.heldHere(req.ks.keys[0])) {
			// Also after a last attempt: a caller looping over TryLock
			// may wait with AwaitRelease. Not when a lock of this Manager
			// holds the key (see heldHere): its Unlock wakes the waiters.
			m.watchRefused(req.ks.keys, o, req.ks.rw)
		}
		return nil, e, m.expiryWait(o), nil
	})
}

// turn is what a caller brings to an attempt: whether it heads its key's
// local queue, and the release it follows (see handoff).
type turn struct {
	queued bool        // the caller heads its key's local queue
	after  predecessor // a release of this Manager handed to the caller (*handoff), or nil
}

// retryLoop makes up to attempts attempts (forever when attempts < 0) with
// try, the n-th of which tries once (t: see turn) and returns the lock, or
// why not (e), when the holder's keys will have expired (expiry, 0 when
// unknown) and an error no retry fixes (fatal). Between attempts the caller waits in the local queue of
// keys (keys[0], and the releases of the others wake it) for a release,
// the expiry or its retry delay, which grows while instances are
// unavailable. Manager.Lock and its kind, and Semaphore, share it.
func (m *Manager) retryLoop(ctx context.Context, op, resource string, keys []string, attempts int,
	try func(ctx context.Context, t turn, n int) (l *Lock, e *QuorumError, expiry time.Duration, fatal error)) (*Lock, error) {
	var last *QuorumError
	var w *waiter // our place in the local queue, once we had to wait
	acquired := false
	defer func() {
		if w != nil {
			m.waits.leave(w, acquired)
			if m.obs != nil {
				m.obs.Waiting(-1)
			}
		}
	}()
	since := m.waits.releases.Load()
	unavailable := 0         // attempts in a row that failed for want of instances
	var expiry time.Duration // when a quorum of the holder's keys will have expired (0: unknown)
	var why wakeReason       // why the last wait ended
	for i := 0; attempts < 0 || i < attempts; i++ {
		if i > 0 {
			if w == nil {
				m.subscribe()
				w = m.waits.join(keys, since)
				if m.obs != nil {
					m.obs.Waiting(1)
				}
			}
			delay := m.backoff(unavailable)
			timed := expiry > 0 && expiry < delay
			if timed {
				delay = expiry
			}
			var err error
			if why, err = m.waitTurnWhy(ctx, w, delay, timed); err != nil {
				if err == ErrClosed {
					return nil, ErrClosed
				}
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		t := turn{queued: w != nil}
		if w != nil {
			// A release handed over by this Manager's Unlock (handOff):
			// this attempt follows it on each instance.
			if w.used = w.gate.Swap(nil); w.used != nil {
				t.after, why = w.used, wakeHandoff
				m.handoffTries.Add(1)
			}
		}
		l, e, exp, fatal := try(ctx, t, i+1)
		if l != nil {
			acquired = true
			if w != nil {
				w.got = l
			}
			if i > 0 {
				m.acquiredAfter[why].Add(1)
			}
			return l, nil
		}
		if fatal != nil {
			return nil, fatal
		}
		if e.Ctx != nil && last != nil {
			// Cut short by ctx: the previous, complete attempt says more
			// about why the lock was not acquired.
			last.Attempts, last.Ctx = i+1, e.Ctx
			break
		}
		last = e
		if e.Ctx != nil || e.Err == ErrRejected {
			break
		}
		// For want of instances: the attempt says so, or too many
		// instances are known to be down (an attempt decided early by a
		// refusal and one quick connection error says "not acquired",
		// which must not reset the backoff while a majority is down).
		if e.Err == ErrUnavailable || m.down() > len(m.inst)-m.quorum {
			unavailable++
		} else {
			unavailable = 0
		}
		expiry = exp
		// AwaitRelease counts the releases since this call began.
		m.refusedSince.Store(since)
	}
	if last == nil {
		last = &QuorumError{Op: op, Resource: resource, Quorum: m.quorum, N: len(m.inst), Err: ErrNotAcquired}
	}
	if err := ctx.Err(); err != nil && last.Ctx == nil {
		last.Ctx = err
	}
	return nil, last
}

// backoff returns the wait before the next attempt after failed ones, of
// which the last unavailable ones in a row failed for want of instances:
// uniform in [RetryDelayMin, RetryDelayMax] at first, and while instances
// stay unavailable the upper bound doubles with each such attempt, up to
// maxBackoff (or the TTL... see backoffCap), so that waiting callers do not
// flood the instances that are still up (full jitter above the minimum).
func (m *Manager) backoff(unavailable int) time.Duration {
	lo, hi := m.cfg.RetryDelayMin, m.cfg.RetryDelayMax
	if unavailable > 1 {
		limit := max(hi, m.backoffCap())
		for k := 1; k < unavailable && hi < limit; k++ {
			hi *= 2
		}
		hi = min(hi, limit)
	}
	if hi <= lo {
		return lo
	}
	return lo + mrand.N(hi-lo+1)
}

// down returns how many instances the last call to each found not
// answering (see instance.observe).
func (m *Manager) down() int {
	n := 0
	for _, in := range m.inst {
		if in.down.Load() {
			n++
		}
	}
	return n
}

// maxBackoff caps the growth of the retry delay while instances are
// unavailable.
const maxBackoff = 2 * time.Second

// backoffCap is the largest retry delay while instances are unavailable:
// maxBackoff, or DefaultTTL when that is shorter (never below
// RetryDelayMax).
func (m *Manager) backoffCap() time.Duration {
	return min(maxBackoff, m.cfg.DefaultTTL)
}

func (m *Manager) retryDelay() time.Duration { return m.backoff(0) }

// attempt is one round of the Redlock algorithm (two for a fenced lock).
// t.queued says that the caller is the head of its key's local queue; each
// call follows t.after's call to the same instance (see handoff).
func (m *Manager) attempt(ctx context.Context, req request, t turn) (l *Lock, o *outcome, ok bool) {
	start := m.now()
	if m.obs != nil {
		defer func() { m.recordAttempt(ctx, start, o) }()
	}
	timeout := min(m.cfg.NodeTimeout, req.ttl)
	ttlArg := fmtMillis(req.ttl)
	var r *round
	var last predecessor // the last round sent: later calls about the lock follow it
	// Only with a token drawn here may the round's call run direct (see
	// instance.direct and Lock.unlock): an acquisition under a token the
	// caller chose, sent direct over its own connection at N=1, could
	// overtake that token's release still on its way over the other one,
	// which would then delete the key just refreshed
	// (TestAttack4TokenRelockOvertakesStalledRelease). Nor does an attempt
	// handed a release (t.after): it must follow the release on the one
	// pipelined connection, where the release went (see Lock.unlock).
	direct := req.own && t.after == nil
	switch {
	case req.ks.rw != nil: // a read-write lock's writer or reader (rwmutex.go)
		r = m.fanoutArgs(ctx, timeout, nil, t.after, req.ks.rw.acquire, req.ks.rw.keys, req.ks.rw.acquireArgs(&req.ks, req.token, ttlArg), nil, nil, direct)
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case req.ks.single() && !req.ks.hasMeta():
		r = m.fanoutArgs(ctx, timeout, nil, t.after, scriptAcquire, req.ks.keys, []string{req.token, ttlArg}, nil, nil, direct)
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case req.ks.single():
		r = m.fanoutArgs(ctx, timeout, nil, t.after, scriptAcquire, req.ks.km(), []string{req.token, ttlArg, req.ks.metadata()}, nil, nil, direct)
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case !req.ks.hasMeta():
		r = m.fanoutArgs(ctx, timeout, nil, t.after, scriptAcquireMany, req.ks.withCounters(), []string{req.token, ttlArg, req.ks.nArg}, nil, nil, direct)
		o = m.collect(ctx, r, m.quorum, false, classifyAcquireMany)
	default:
		r = m.fanoutArgs(ctx, timeout, nil, t.after, scriptAcquireMany, req.ks.acquireKeys(), []string{req.token, ttlArg, req.ks.nArg, req.ks.metadata()}, nil, nil, direct)
		o = m.collect(ctx, r, m.quorum, false, classifyAcquireMany)
	}
	last = r
	if o.yes >= m.quorum && o.ctxErr == nil {
		m.hooks.afterReplies(req.resource)
		var fence uint64
		ok = true
		if req.fenced {
			var fr *round
			fence, fr, ok = m.fence(ctx, req, start, o, r)
			if fr != nil {
				last = fr
			}
		}
		if m.hooks.ignoreElapsed() {
			start = m.now()
		}
		elapsed := m.now().Sub(start)
		if ok && m.cfg.validity(req.ttl, elapsed) > 0 {
			until := start.Add(req.ttl - m.cfg.drift(req.ttl))
			l := m.newLock(req, until, last)
			l.fence = fence
			return l, o, true
		}
		o.errs = append(o.errs[:0:0], make([]error, len(m.inst))...)
		for i := range o.errs {
			if o.votes[i] == voteYes {
				o.errs[i] = errValidityPassed
				if !ok {
					o.errs[i] = errFenceRefused
				}
			}
		}
		o.yes, o.failed = 0, o.failed+o.yes
	}
	m.cleanup(ctx, r, last, o, &req.ks, req.token, req.own, t.queued)
	return nil, o, false
}

var (
	errValidityPassed = errors.New("acquisition took longer than the TTL allows")
	errFenceRefused   = errors.New("no quorum accepted a fencing token before the validity deadline")
)

// maxFenceRounds bounds the second round of a fenced acquisition: each
// refusal reports a larger counter, and the next proposal exceeds it.
const maxFenceRounds = 5

// fence is round 2 of a fenced acquisition: propose T = max(counters read in
// round 1)+1 and raise the counters to T on every instance where the lock
// still holds the token and the counter is below T. T counts only if a
// quorum accepts it before the validity deadline. Each round follows the
// one before it on every instance (the first follows the acquisition, acq),
// and returns at quorum like the others; it returns the last round sent.
func (m *Manager) fence(ctx context.Context, req request, start time.Time, o *outcome, acq *round) (uint64, *round, bool) {
	var best uint64
	for i, v := range o.vals {
		if o.votes[i] == voteYes {
			best = max(best, parseCounter(v))
		}
	}
	keys := req.ks.withCounters()
	var last *round
	for n := 0; n < maxFenceRounds; n++ {
		left := m.cfg.validity(req.ttl, m.now().Sub(start))
		if left <= 0 || ctx.Err() != nil {
			return 0, last, false
		}
		t := best + 1
		timeout := min(m.cfg.NodeTimeout, left)
		var after predecessor = acq
		if last != nil {
			after = last
		}
		r := m.fanoutTo(ctx, timeout, nil, after, scriptFence, keys, []string{req.token, strconv.FormatUint(t, 10), req.ks.nArg})
		last = r
		fo := m.collect(ctx, r, m.quorum, false, classifyFence)
		if fo.yes >= m.quorum {
			return t, last, true
		}
		raised := false
		for i, v := range fo.vals {
			if fo.votes[i] == voteRefused {
				if c := parseCounter(v); c > best {
					best, raised = c, true
				}
			}
		}
		if !raised {
			return 0, last, false // lost the lock on too many instances, or they did not answer
		}
	}
	return 0, last, false
}

// cleanup releases, after a failed attempt, the key on every instance that
// may have set it (voted yes, failed, or had not answered), each release
// following the attempt's last call to its instance (after). It uses a
// fresh bounded context, so it runs even when the caller's ctx ended.
// queued: see attempt.
//
// With a token the caller chose (the Token option) there is no clean-up:
// the key may have been ours before the attempt (a held lock whose lease
// the attempt only refreshed), and a release that arrives late could
// delete the keys of a later attempt under the same token.
func (m *Manager) cleanup(ctx context.Context, r *round, after predecessor, o *outcome, ks *keyset, token string, own, queued bool) {
	var onlyArr [smallN]bool
	var only []bool
	if len(m.inst) <= smallN {
		only = onlyArr[:len(m.inst)]
	} else {
		only = make([]bool, len(m.inst))
	}
	if !own {
		// A token the caller chose: no clean-up. A release cannot tell this
		// attempt's key from the next one's under the same token (a later
		// attempt of this call, or the caller's next call), and one that
		// reaches its instance late (a stalled connection, a pooled client)
		// would delete the keys of a lock granted meanwhile. The keys this
		// attempt set expire with their TTL; the caller can take them
		// again with the same token at once.
		return
	}
	calls := 0
	for i, v := range o.votes {
		if r.sent[i] && v != voteRefused {
			only[i] = true
			calls++
		}
	}
	if calls == 0 {
		return
	}
	// Each release follows the attempt's call to its instance (after = r:
	// an instance that has not answered yet gets its release once it has,
	// the others at once), with a fresh bounded context: it runs even when
	// the caller's ctx ended.
	s, cl := ks.releaseScript()
	// No release message: a clean-up is no release, and waking the
	// waiters of other Managers with it would have them retry at once
	// after their own failed attempts, whose clean-ups would wake others in
	// turn (with instances down, a storm at round-trip speed).
	var rr *round
	if ks.hasMeta() && len(ks.keys) > 1 {
		rr = m.fanoutTo(context.Background(), m.cfg.NodeTimeout, only, after, s, ks.km(), []string{token, "", ks.nArg})
	} else {
		rr = m.fanoutTo(context.Background(), m.cfg.NodeTimeout, only, after, s, ks.km(), []string{token})
	}
	// A first attempt (not queued) may have stood in the way of this
	// Manager's waiters on the keys: when its releases deleted a key, wake
	// them (as Unlock does), since the release message may not reach them
	// (the subscription starts with the first wait and may not be up yet).
	// The head of a queue does not: no other local waiter tried meanwhile,
	// and waking itself would retry at once, without the retry delay.
	var wake func()
	if !queued {
		keys := ks.keys // not ks: the closure would move every attempt's request to the heap
		wake = func() {
			for _, k := range keys {
				m.waits.nudge(k)
			}
		}
	}
	deleted := false
	// The call waits for every release, except with a token of its own
	// once ctx has ended: no later attempt uses that token and no one else
	// knows it, so the releases to instances that did not set the key
	// (failed, or not answered yet) may finish in the background, counted
	// in m.ops (Close waits for them). The releases to the instances that
	// set it are still waited for (one round trip): a later call of this
	// process then finds those keys gone.
	cut := ctx.Done()
	if !own {
		cut = nil
	}
	var want uint64 // instances that set the key (i < 64)
	for i, v := range o.votes {
		if v == voteYes && i < 64 {
			want |= 1 << uint(i)
		}
	}
	// Replies that came after the outcome was decided: those instances
	// may have set the key too.
late:
	for {
		select {
		case rep := <-r.ch:
			if rep.err == nil && rep.idx < 64 {
				want |= 1 << uint(rep.idx)
			}
		default:
			break late
		}
	}
	failed := 0
	add := func(rep reply) {
		calls--
		if rep.idx < 64 {
			want &^= 1 << uint(rep.idx)
		}
		switch v, _ := cl(rep.val, rep.err); v {
		case voteFailed:
			failed++
		case voteYes:
			deleted = true
		}
	}
wait:
	for calls > 0 {
		if cut == nil && ctx.Err() != nil && own && want == 0 {
			if wake != nil {
				rr.rctx.AfterFunc(wake) // the rest may delete keys too
			}
			return
		}
		select {
		case rep := <-rr.ch:
			add(rep)
		case <-cut:
			cut = nil // checked at the top from now on
		case <-rr.rctx.done:
			for calls > 0 {
				select {
				case rep := <-rr.ch:
					add(rep)
				default:
					failed += calls // not answered by the deadline
					break wait
				}
			}
		}
	}
	if deleted && wake != nil {
		wake()
	}
	if failed > 0 {
		m.log.Warn("redlock: clean-up after a failed attempt did not reach every instance",
			"key", quoteResource(ks.keys[0]), "failed", failed)
	}
}
