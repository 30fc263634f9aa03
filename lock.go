package redlock

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Lock is the handle of a held lock, returned by Manager.Lock and friends.
// It is safe for concurrent use: the auto-extension may run while the owner
// calls Extend or Unlock. Once unlocked or lost a handle stays invalid; lock
// again for a new one.
type Lock struct {
	m        *Manager
	resource string
	ks       keyset
	token    string
	fence    uint64
	auto     bool        // extended automatically
	own      bool        // the token was drawn here (see request.own)
	shared   atomic.Bool // Token was called: the caller knows the token
	since    time.Time   // when it was taken (for the Observer)

	mu       sync.Mutex
	tail     predecessor // the last call about the lock: the next one follows it per instance
	ttl      time.Duration
	until    time.Time
	released bool          // Unlock was called
	gone     bool          // the lock is lost (lost, if made, is closed)
	noTopUp  bool          // another handle of the token released its keys (see releaseSiblings)
	topUp    *round        // the last top-up sent (see releaseSiblings)
	lost     chan struct{} // made on first use (Lost, onLoss); closed once lost
	expiry   *time.Timer   // loses the lock at until; nil until watched (auto-extended locks: at once)
	due      time.Time     // next auto-extension (guarded by m.ext.mu)
	onLost   []func()
}

func (m *Manager) newLock(req request, until time.Time, tail predecessor) *Lock {
	l := &Lock{
		m: m, resource: req.resource, ks: req.ks, token: req.token, auto: req.auto, own: req.own,
		tail: tail, ttl: req.ttl, until: until,
	}
	if l.auto {
		// The expiry timer of a lock nobody watches is made lazily (see
		// watchLocked); an auto-extended lock needs it at once, since it
		// ends the lock when extensions fail until the deadline.
		l.mu.Lock()
		l.watchLocked()
		l.mu.Unlock()
	}
	if m.obs != nil {
		l.since = m.now()
		// Observed: every lock is watched, so that the expiry of a lock
		// left to its TTL is reported (Lost, Held −1) when it happens.
		l.mu.Lock()
		l.watchLocked()
		l.mu.Unlock()
		m.obs.Held(1)
	}
	m.mu.Lock()
	m.locks[l] = struct{}{}
	expired := m.pruneLocked()
	m.mu.Unlock()
	for _, x := range expired {
		x.lose(reasonExpired)
	}
	if l.auto {
		l.mu.Lock()
		next := l.nextExtension()
		l.mu.Unlock()
		m.ext.schedule(l, next)
	}
	return l
}

// Resource returns the name of the locked resource (the first one, for a
// lock taken with LockMany).
func (l *Lock) Resource() string { return l.resource }

// Resources returns the names of every resource the lock covers: one, but
// for a lock taken with LockMany. The caller may modify the slice.
func (l *Lock) Resources() []string { return append([]string(nil), l.ks.resources...) }

// Fence returns the lock's fencing token, or 0 when the lock was taken
// without fencing (see Fenced and Config.Fencing) or by Attach.
//
// The token is unique per resource, always, and strictly larger than every
// earlier holder's while the lock's own safety assumptions hold (bounded
// clock drift, instances that keep their data). Pass it to the protected
// resource with every write, and have the resource reject a write whose
// token is lower than the largest it has seen: then even a holder that
// paused past its validity (GC, SIGSTOP, swap) cannot overwrite the work of
// the next holder. Tokens stay unique but may stop increasing when an
// instance loses its counters: a restart without persistence, failover to
// a lagging replica, FLUSHALL, or eviction (use noeviction). Run the
// instances with appendonly yes and appendfsync always. Counters are exact
// below 2^53.
func (l *Lock) Fence() uint64 { return l.fence }

// Metadata returns the metadata stored beside the lock (see the Metadata
// option; for a handle from Manager.Attach, what it read), "" when none.
func (l *Lock) Metadata() string { return l.ks.metadata() }

// Token returns the random value that proves ownership of the lock. Another
// process can use it with Manager.Attach.
func (l *Lock) Token() string {
	if !l.shared.Load() {
		l.shared.Store(true) // see private
	}
	return l.token
}

// private reports whether no one but this handle knows its token: drawn
// here, never read with Token. Only then may its release be a direct call
// (see instance.direct): at N=1 that goes over a connection of its own, and
// one that times out there may still arrive after a later call over the
// other connection. A late release of a token someone knows would delete
// the key of a lock taken again meanwhile under it (Lock with Token,
// Attach): two holders (TestAttack4TokenLateReleaseAfterRelock, seen
// failing with it direct).
func (l *Lock) private() bool { return l.own && !l.shared.Load() }

// Valid reports whether the lock is still held as far as this process can
// tell: not unlocked, not lost, and its validity deadline (Until) has not
// passed. Unlike aioredlock's lock.valid it turns false when the time runs
// out.
func (l *Lock) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.released && !l.gone && l.m.now().Before(l.until)
}

// Until returns the validity deadline: the time until which the lock is
// safe to assume held (acquisition start + TTL − drift allowance). Each
// extension moves it to its own start + TTL − drift (see Extend for the
// rule under concurrent extensions).
func (l *Lock) Until() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until
}

// Lost returns a channel that is closed once the lock is no longer held:
// it was unlocked, an extension found it held by another token or gone on
// too many instances, or its validity deadline passed. The first call
// starts the timer that closes it at the deadline (a lock nobody watches
// costs no timer).
func (l *Lock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		if l.gone {
			return closedChan
		}
		l.lost = make(chan struct{})
	}
	l.watchLocked()
	return l.lost
}

// unlocked reports whether Unlock was called.
func (l *Lock) unlocked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.released
}

// closedChan is a closed channel: Lost of a lock lost before anyone asked.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// watchLocked starts the expiry timer, which loses the lock at its
// deadline, unless it runs or the lock is gone. Until someone watches the
// lock (Lost, onLoss, auto-extension) the deadline is only read by Valid,
// and Manager.pruneLocked drops an expired lock from the held set: a lock
// costs no timer. Callers hold l.mu.
func (l *Lock) watchLocked() {
	if l.expiry == nil && !l.gone {
		l.expiry = time.AfterFunc(l.until.Sub(l.m.now()), l.expire)
	}
}

// onLoss registers f to run (once, on its own) when the lock is lost; at
// once if it already is.
func (l *Lock) onLoss(f func()) {
	l.mu.Lock()
	if l.gone {
		l.mu.Unlock()
		f()
		return
	}
	l.onLost = append(l.onLost, f)
	l.watchLocked()
	l.mu.Unlock()
}

// markLost closes lost and stops the timers. Callers hold l.mu.
func (l *Lock) markLostLocked() []func() {
	if l.gone {
		return nil
	}
	l.gone = true
	if l.lost != nil {
		close(l.lost)
	}
	if l.expiry != nil {
		l.expiry.Stop()
	}
	fs := l.onLost
	l.onLost = nil
	return fs
}

func (l *Lock) lose(reason string) {
	l.mu.Lock()
	already := l.gone
	fs := l.markLostLocked()
	l.mu.Unlock()
	if already {
		return
	}
	l.m.forget(l)
	if obs := l.m.obs; obs != nil {
		why := LostExtendFailed
		if reason == reasonExpired {
			why = LostExpired
		} else if reason == reasonClosed {
			why = LostClosed
		}
		obs.Lost(LostEvent{Resources: l.Resources(), Reason: why, Held: l.m.now().Sub(l.since)})
	}
	if reason != "" {
		// A fixed-TTL lock left to expire is normal use: not a warning.
		level := slog.LevelWarn
		if !l.auto && reason == reasonExpired {
			level = slog.LevelDebug
		}
		l.m.log.Log(context.Background(), level, "redlock: lock lost", "resource", quoteResource(l.resource), "reason", reason)
	}
	for _, f := range fs {
		f()
	}
	// Waiters behind a lock held here heard no watch or message about its
	// keys while it was valid (see heldHere): the lock may be free now.
	for _, k := range l.ks.keys {
		l.m.waits.nudge(k)
	}
}

// expire runs at the validity deadline.
func (l *Lock) expire() {
	l.mu.Lock()
	if l.gone || l.m.now().Before(l.until) {
		// Extended meanwhile: the timer was reset, or will be.
		if !l.gone && l.expiry != nil {
			l.expiry.Reset(l.until.Sub(l.m.now()))
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.lose(reasonExpired)
}

// Loss reasons (for the log; the Observer gets LostExpired,
// LostExtendFailed or "closed").
const (
	reasonExpired = "validity deadline passed"
	reasonClosed  = "manager closed before it could release the lock"
)

// releaseSiblings tells the other handles of l's token in this Manager
// whose keys l's release deletes (from Attach, or a Lock under the same
// Token), before the release is sent, that they must not top their keys
// up any more (see topUpLocked). Without it, an extension of such a handle
// that reached an instance after the release found the key missing there
// and, having succeeded on a quorum before the release, set it again: the
// key outlived the release for that extension's lease
// (TestTopUpAfterReleaseThroughAttach; TestConnCluster's "keys left" under
// load). The handles stay as they were otherwise (their Unlock still
// succeeds, as aioredlock's does for a key already gone; their next
// extension finds the keys gone and loses the lock). A private token (see
// private) has no other handle: nothing to look for.
//
// A top-up such a handle sent before it was told may still be on its way:
// the release must follow it on its instances, or it reaches an instance
// after the release and sets the key again
// (TestAttack8TopUpQueuedBeforeSiblingRelease). releaseSiblings returns
// after combined with those top-ups, the predecessor of the release.
func (l *Lock) releaseSiblings(after predecessor) predecessor {
	if l.private() {
		return after
	}
	m := l.m
	var sibs []*Lock
	m.mu.Lock()
	for o := range m.locks {
		if o != l && o.token == l.token && o.ks.sharesKey(&l.ks) {
			sibs = append(sibs, o)
		}
	}
	m.mu.Unlock()
	var preds predecessors
	for _, o := range sibs {
		o.mu.Lock()
		o.noTopUp = true
		if o.topUp != nil {
			preds = append(preds, o.topUp)
		}
		o.mu.Unlock()
	}
	if len(preds) == 0 {
		return after
	}
	if after != nil {
		preds = append(preds, after)
	}
	return preds
}

// predecessors is a predecessor made of several: a call to instance i
// follows every one's call to i.
type predecessors []predecessor

// pendingCh implements predecessor.
func (ps predecessors) pendingCh(i int) <-chan struct{} {
	var chs []<-chan struct{}
	for _, p := range ps {
		if ch := p.pendingCh(i); ch != nil {
			chs = append(chs, ch)
		}
	}
	switch len(chs) {
	case 0:
		return nil
	case 1:
		return chs[0]
	}
	all := make(chan struct{})
	go func() { // each returns by its round's deadline
		for _, ch := range chs {
			<-ch
		}
		close(all)
	}()
	return all
}

// forget removes l from the held set, and tells the Observer if it was
// there.
func (m *Manager) forget(l *Lock) {
	m.mu.Lock()
	_, held := m.locks[l]
	delete(m.locks, l)
	m.mu.Unlock()
	if held && m.obs != nil {
		m.obs.Held(-1)
	}
}

// Extend makes the lock's lease at least ttl (0 means the lock's own TTL)
// on every instance where it still holds the token. It succeeds when a
// quorum extends in time; the validity deadline then moves to the start of
// the call + ttl − drift, unless it is already later. After a success, the instances that answered that the
// key was missing (a restart without persistence, FLUSHALL) get it back
// (SET NX with the token and what is left of the lease), so that
// redundancy returns; a lock that a quorum no longer holds is never
// re-created, and a key held by another token is never touched. The
// automatic extensions do the same.
//
// The lease is never shortened: an Extend with a ttl shorter than what is
// left changes nothing on the instances, and Until keeps the later of the
// two deadlines (unlock and lock again for a shorter lease). So extensions
// may run concurrently with each other and with the automatic ones, and
// reach the instances in any order: Until is always the latest deadline a
// successful extension proved. Errors:
// ErrNotHeld when the lock is no longer held (the lock is then lost),
// ErrUnavailable when too few instances answered (the lock stays valid until
// its current deadline), ErrInvalid for a bad ttl. ctx bounds the call.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	if ttl == 0 {
		l.mu.Lock()
		ttl = l.ttl
		l.mu.Unlock()
	} else {
		if err := l.m.cfg.checkTTL(ttl); err != nil {
			return err
		}
		ttl = ttl.Truncate(time.Millisecond)
		if err := l.m.cfg.checkTTL(ttl); err != nil {
			return err
		}
	}
	if !l.m.enter() {
		return ErrClosed
	}
	defer l.m.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.extend(ctx, ttl, false)
}

// The deadline rule. No script ever shortens a lease (extensions and
// re-locks make it at least their TTL), so the keys of a lock only ever
// live longer, whatever order its extensions reach an instance in (a
// pooled client or a reconnect can reorder calls that timed out). Each
// successful extension proves that its quorum holds the keys until its
// start + ttl at least, so it moves until to max(until, start + ttl −
// drift), whenever its reply arrives.

// applyExtendLocked applies the success of an extension sent at start with
// ttl. auto: sent by the watchdog (the lock's TTL stays). Callers hold
// l.mu.
func (l *Lock) applyExtendLocked(start time.Time, ttl time.Duration, auto bool) {
	until := start.Add(ttl - l.m.cfg.drift(ttl))
	if l.m.hooks.latestReplyWins() {
		// Negative control: the rule of the old, shortening scripts, where
		// a manual extension's reply always set the deadline and the
		// watchdog's moved it forward.
		if !auto || until.After(l.until) {
			l.setUntilLocked(until)
		}
	} else if until.After(l.until) {
		l.setUntilLocked(until)
	}
	if !auto {
		if l.auto {
			// The watchdog's lease only grows: a shorter manual Extend
			// changes nothing, here either.
			l.ttl = max(l.ttl, ttl)
		} else {
			l.ttl = ttl
		}
	}
}

// setUntilLocked moves the validity deadline to u and the expiry timer
// with it. Callers hold l.mu.
func (l *Lock) setUntilLocked(u time.Time) {
	l.until = u
	if l.expiry != nil {
		l.expiry.Reset(u.Sub(l.m.now()))
	}
}

func (l *Lock) extend(ctx context.Context, ttl time.Duration, auto bool) (err error) {
	m := l.m
	yes := 0 // the votes, for the Observer
	if m.obs != nil {
		start := m.now()
		defer func() { l.observeExtend(ctx, start, ttl, auto, yes, err) }()
	}
	l.mu.Lock()
	if l.released || l.gone || !m.now().Before(l.until) {
		l.mu.Unlock()
		return &QuorumError{Op: "extend", Resource: l.resource, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
	}
	start := m.now()
	script := l.ks.extendScript()
	if !l.ks.rwRead() {
		script = m.hooks.extendScript(script, auto, len(l.ks.keys))
	}
	timeout := min(m.cfg.NodeTimeout, ttl)
	var r *round
	switch {
	case !l.ks.hasMeta():
		r = m.fanoutTo(ctx, timeout, nil, l.tail, script, l.ks.lockKeys(), []string{l.token, fmtMillis(ttl)})
	case len(l.ks.keys) == 1:
		r = m.fanoutTo(ctx, timeout, nil, l.tail, script, l.ks.km(), []string{l.token, fmtMillis(ttl)})
	default:
		r = m.fanoutTo(ctx, timeout, nil, l.tail, script, l.ks.km(), []string{l.token, fmtMillis(ttl), l.ks.nArg})
	}
	l.tail = r
	l.mu.Unlock()
	o := m.collect(ctx, r, m.quorum, false, classifyExtend)
	yes = o.yes
	if o.yes >= m.quorum && o.ctxErr == nil && m.cfg.validity(ttl, m.now().Sub(start)) > 0 {
		l.mu.Lock()
		if !l.released && !l.gone && !m.now().Before(l.until) {
			// The deadline passed while the extension was on its way: the
			// lock was lost then (the expiry timer, if any, fires about
			// now), and an extension must not bring it back.
			l.mu.Unlock()
			l.lose(reasonExpired)
			l.mu.Lock()
		}
		defer l.mu.Unlock()
		if l.released || l.gone {
			return &QuorumError{Op: "extend", Resource: l.resource, Votes: o.yes, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
		}
		l.applyExtendLocked(start, ttl, auto)
		missing := missingOnes(o)
		if o.yes+o.refused+o.failed < len(m.inst) {
			// Instances that had not answered may report the key missing:
			// look at their replies once the round is over.
			r.rctx.AfterFunc(func() { l.topUpLate(r, missing, start, ttl) })
		} else if missing != nil {
			l.topUpLocked(missing, start, ttl)
		}
		return nil
	}
	e := m.quorumError("extend", l.resource, o, 1, true)
	if e.Err == ErrNotHeld && len(m.inst)-o.refused < m.quorum {
		// Too many instances lost the key or gave it to another token: the
		// lock cannot be held any more.
		l.lose("extension refused by a quorum")
	}
	return e
}

// observeExtend reports an extension to the Observer.
func (l *Lock) observeExtend(ctx context.Context, start time.Time, ttl time.Duration, auto bool, yes int, err error) {
	m := l.m
	word := OutcomeOK
	if err != nil {
		word = OutcomeFailed
	}
	m.obs.Extended(ctx, ExtendEvent{Resources: l.Resources(), Auto: auto, Outcome: word, Err: err, TTL: ttl,
		Start: start, Duration: m.now().Sub(start), Yes: yes, Quorum: m.quorum})
}

// missingOnes returns which instances answered an extension that the key
// was missing, or nil when none did.
func missingOnes(o *outcome) []bool {
	var out []bool
	for i, v := range o.votes {
		if v == voteRefused && o.errs[i] == errKeyMissing {
			if out == nil {
				out = make([]bool, len(o.votes))
			}
			out[i] = true
		}
	}
	return out
}

// topUpLocked restores the lock's keys on the instances in missing after
// an extension, sent at start with ttl, succeeded on a quorum: a SET NX of
// the token with what is left of that lease, following the lock's calls on
// each instance (no reply is awaited). While the lock is valid no one else
// can hold it on a quorum, so the key is ours to restore where it is free,
// and redundancy returns: one more instance failure no longer loses the
// lock early. Never where another token holds a key, never once the lock
// is invalid. Callers hold l.mu and an operation (m.enter).
func (l *Lock) topUpLocked(missing []bool, start time.Time, ttl time.Duration) {
	m := l.m
	now := m.now()
	left := (ttl - now.Sub(start)).Truncate(time.Millisecond)
	if missing == nil || l.released || l.gone || l.noTopUp || !now.Before(l.until) || left < time.Millisecond || l.ks.rwRead() {
		return // a reader's share is not topped up (docs/primitives.md)
	}
	var r *round
	if l.ks.hasMeta() {
		r = m.fanoutTo(context.Background(), min(m.cfg.NodeTimeout, left), missing, l.tail, scriptTopUp, l.ks.km(), []string{l.token, fmtMillis(left), l.ks.metadata()})
	} else {
		r = m.fanoutTo(context.Background(), min(m.cfg.NodeTimeout, left), missing, l.tail, scriptTopUp, l.ks.keys, []string{l.token, fmtMillis(left)})
	}
	l.tail, l.topUp = r, r
}

// topUpLate is topUpLocked for extension round r once it is over: the
// replies that came after the quorum (still in r.ch) add to missing.
func (l *Lock) topUpLate(r *round, missing []bool, start time.Time, ttl time.Duration) {
	if !l.m.enter() {
		return
	}
	defer l.m.leave()
	for {
		select {
		case rep := <-r.ch:
			if v, cause := classifyExtend(rep.val, rep.err); v == voteRefused && cause == errKeyMissing {
				if missing == nil {
					missing = make([]bool, len(l.m.inst))
				}
				missing[rep.idx] = true
			}
			continue
		default:
		}
		break
	}
	l.mu.Lock()
	l.topUpLocked(missing, start, ttl)
	l.mu.Unlock()
}

// Unlock releases the lock on every instance where it holds the token. The
// handle is invalid afterwards whatever the outcome. It returns nil when a
// quorum confirmed (the key was deleted or already gone) and the lock was
// still valid; ErrNotHeld when the lock had already been released, lost or
// expired, or another token holds it; ErrUnavailable when too few instances
// answered (the keys then expire with their TTL). ctx bounds the call.
func (l *Lock) Unlock(ctx context.Context) error {
	if !l.m.enter() {
		return ErrClosed
	}
	defer l.m.leave()
	if ctx.Err() != nil {
		// Still release: a caller whose ctx ended wants the lock gone.
		ctx = context.WithoutCancel(ctx)
	}
	return l.unlock(ctx)
}

func (l *Lock) unlock(ctx context.Context) error {
	m := l.m
	start := m.now()
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return &QuorumError{Op: "unlock", Resource: l.resource, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
	}
	wasValid := !l.gone && m.now().Before(l.until)
	l.released = true
	after := l.tail
	fs := l.markLostLocked()
	l.mu.Unlock()
	m.forget(l)
	for _, f := range fs {
		f()
	}
	after = l.releaseSiblings(after)
	release, classify := l.ks.releaseScript()
	if !l.ks.rwRead() {
		release = m.hooks.releaseScript(release)
	}
	// The head of a local queue gets the release now (handOff): its next
	// attempt follows the release on each instance, instead of starting
	// once the release has returned. Only a private token's release (see
	// private): the attempt may reach an instance ahead of the release (it
	// may still wait there for an earlier call about the lock), and is
	// refused there only under another token. A head waiting under this
	// lock's token (Token) would refresh the key, return a valid lock, and
	// have its keys deleted by the release that follows
	// (TestAttack5TokenHandoffOvertakesRelease): such releases wake the
	// waiters once they returned (released).
	var h *handoff
	if l.private() {
		h = m.waits.handOff(l.ks.keys, len(m.inst), after)
	}
	if h != nil {
		after = (*handoffRelease)(h)
	}
	// An instance that answered the acquisition (or the last extension)
	// after the quorum was reached may still be setting the key: its
	// release follows that call (the others go at once), so that it
	// reaches the key.
	// Only a private token's release may be a direct call (see private),
	// and only when no waiter is handed it: the head's attempt follows it
	// on the pipelined connection (see handoff).
	direct := l.private() && h == nil
	var r *round
	if l.ks.hasMeta() && len(l.ks.keys) > 1 && release == scriptReleaseMany {
		r = m.fanoutArgs(ctx, m.cfg.NodeTimeout, nil, after, release, l.ks.km(), []string{l.token, ReleaseChannel, l.ks.nArg}, nil, nil, direct)
	} else {
		r = m.fanoutArgs(ctx, m.cfg.NodeTimeout, nil, after, release, l.ks.km(), []string{l.token, ReleaseChannel}, nil, nil, direct)
	}
	o := m.collect(ctx, r, m.quorum, false, classify)
	for _, k := range l.ks.keys {
		m.waits.released(k, h) // local waiters need no message; see released
	}
	var err error
	if o.yes >= m.quorum {
		if !wasValid {
			err = &QuorumError{Op: "unlock", Resource: l.resource, Votes: o.yes, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
		}
	} else {
		err = m.quorumError("unlock", l.resource, o, 1, true)
	}
	if m.obs != nil {
		word := OutcomeOK
		switch {
		case errors.Is(err, ErrNotHeld):
			word = OutcomeNotHeld
		case err != nil:
			word = OutcomeUnavailable
		}
		m.obs.Unlocked(ctx, UnlockEvent{Resources: l.Resources(), Outcome: word, Err: err, Start: start, Duration: m.now().Sub(start), Quorum: m.quorum})
	}
	return err
}

// IsLocked reports whether a quorum of the instances hold the lock's key
// under its token (aioredlock's lock.is_locked asks whether anyone holds
// the resource; Manager.IsLocked does that). ErrUnavailable when too few
// instances answered to tell.
func (l *Lock) IsLocked(ctx context.Context) (bool, error) {
	if !l.m.enter() {
		return false, ErrClosed
	}
	defer l.m.leave()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, o, err := l.m.remaining(ctx, "is-locked", l.resource, &l.ks, l.token)
	if err == nil {
		return true, nil
	}
	if o.refused > len(l.m.inst)-l.m.quorum {
		return false, nil
	}
	return false, err
}

// TTL returns the remaining time to live of the lock's key as Redis reports
// it (millisecond precision): the smallest among a quorum of instances that
// hold the key under the token. ErrNotHeld when no quorum holds it.
func (l *Lock) TTL(ctx context.Context) (time.Duration, error) {
	if !l.m.enter() {
		return 0, ErrClosed
	}
	defer l.m.leave()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d, _, err := l.m.remaining(ctx, "ttl", l.resource, &l.ks, l.token)
	return d, err
}

// String describes the lock without its token.
func (l *Lock) String() string {
	return "redlock.Lock(" + quoteResource(l.resource) + ")"
}
