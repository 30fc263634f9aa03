package redlock

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// The fan-out: a round sends one script to every instance (or a subset)
// through the instances' call workers, collect waits until the quorum is
// decided, and the stragglers finish in the background, each after the
// previous call about the same lock on its instance (predecessor).

// vote is how one instance answered one call.
type vote int8

const (
	voteNone    vote = iota // no answer (yet)
	voteYes                 // agreed
	voteRefused             // answered no: the key holds another token, or is missing
	voteFailed              // did not answer usably: network error, timeout, error reply
)

// classifier turns a reply into a vote; for refusals and failures it also
// returns the cause.
type classifier func(v any, err error) (vote, error)

// reply is what one instance answered.
type reply struct {
	idx int
	val any
	err error
}

// smallN is the instance count up to which a round and its outcome keep
// their per-instance state inline (no extra allocations).
const smallN = 5

// round is one fan-out of a script to every instance (or a subset).
type round struct {
	ch      chan reply   // buffered to the number of calls: senders never block
	pending atomic.Int32 // calls that have not returned yet
	rctx    roundCtx     // the calls' context: ends when all returned or at the deadline
	sent    []bool       // which instances the round was sent to
	sentArr [smallN]bool
	out     outcome // the tally, filled by collect

	after  predecessor   // calls to instance i follow after's call to i (see run)
	ret    []atomic.Bool // ret[i]: the call to instance i returned (and after's did)
	retArr [smallN]atomic.Bool
	mu     sync.Mutex      // guards waitCh
	waitCh []chan struct{} // made by a later call waiting for call i; closed when it returns
	chArr  [smallN]chan struct{}

	args    []string // the script's arguments (a copy, in argsArr when short)
	argsArr [3]string
	each    [][]string // when not nil, instance i's own arguments (see fanoutEach)
	jobs    []job
	jobsArr [smallN]job

	rtt []time.Duration // when not nil, run records each call's duration here (see fanoutTimed)
}

// predecessor is an earlier call to the instances about the same lock
// (its acquisition, an extension, a watchdog batch, a fence round). Every
// later call about the lock to instance i is sent only once the
// predecessor's call to i has returned, so that on a live connection the
// calls about one lock reach each instance in the order they were made: an
// extension does not overtake the acquisition it extends, a release
// follows everything. This is for liveness, not safety: a call that
// returned at its deadline may still be delivered late (a pooled client, a
// replaced connection), which is why no script ever shortens a lease (see
// docs/design.md).
type predecessor interface {
	// pendingCh returns nil when the call to instance i has returned or
	// was never made, else a channel closed once it has returned.
	pendingCh(i int) <-chan struct{}
}

// pendingCh implements predecessor.
func (r *round) pendingCh(i int) <-chan struct{} {
	if !r.sent[i] || r.ret[i].Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ret[i].Load() {
		return nil
	}
	if r.waitCh[i] == nil {
		r.waitCh[i] = make(chan struct{})
	}
	return r.waitCh[i]
}

// markReturned records that the call to instance i returned and wakes the
// calls waiting for it.
func (r *round) markReturned(i int) {
	r.mu.Lock()
	r.ret[i].Store(true)
	if ch := r.waitCh[i]; ch != nil {
		close(ch)
	}
	r.mu.Unlock()
}

// errOutOfOrder is the cause recorded for a call that was not sent because
// the call before it to the same instance, about the same lock, had not
// returned by the deadline: sending it would risk overtaking that call.
var errOutOfOrder = errors.New("earlier call about the lock still pending: not sent")

// outcome is the tally of a round.
type outcome struct {
	yes, refused, failed int
	cut                  int // of failed: had not answered when the caller's ctx ended
	votes                []vote
	vals                 []any
	errs                 []error
	got                  []bool // got[i]: instance i's reply was read (by collect)
	ctxErr               error  // the caller's ctx ended before the round was decided

	votesArr [smallN]vote
	valsArr  [smallN]any
	errsArr  [smallN]error
	gotArr   [smallN]bool
}

// init sizes o for n instances.
func (o *outcome) init(n int) *outcome {
	if n <= smallN {
		o.votes, o.vals, o.errs, o.got = o.votesArr[:n], o.valsArr[:n], o.errsArr[:n], o.gotArr[:n]
	} else {
		o.votes, o.vals, o.errs, o.got = make([]vote, n), make([]any, n), make([]error, n), make([]bool, n)
	}
	return o
}

// fanout sends s to every instance i with only == nil || only[i], all calls
// bounded by one deadline, timeout from now. It returns at once; collect
// reads the replies. The calls are counted in m.ops, so Close waits for
// stragglers.
//
// A round of one call (N=1, or only one instance chosen) may run that call
// on the caller's goroutine instead of a worker: see direct.
func (m *Manager) fanout(ctx context.Context, timeout time.Duration, only []bool, s *script, keys, args []string) *round {
	return m.fanoutArgs(ctx, timeout, only, nil, s, keys, args, nil, nil, true)
}

// fanoutTimed is fanout to every instance that records in rtt[i] how long
// the call to instance i took, before its reply is sent on the round's
// channel: read rtt[i] only after receiving that reply (collect's
// outcome.got[i]).
func (m *Manager) fanoutTimed(ctx context.Context, timeout time.Duration, s *script, keys []string, rtt []time.Duration) *round {
	return m.fanoutWith(ctx, timeout, nil, nil, s, keys, nil, rtt)
}

// fanoutTo is fanout where every call to an instance follows after's call
// to it (see predecessor and run); after may be nil.
func (m *Manager) fanoutTo(ctx context.Context, timeout time.Duration, only []bool, after predecessor, s *script, keys, args []string) *round {
	return m.fanoutWith(ctx, timeout, only, after, s, keys, args, nil)
}

// fanoutWith is fanoutTo that records the calls' durations in rtt when it
// is not nil (see fanoutTimed).
func (m *Manager) fanoutWith(ctx context.Context, timeout time.Duration, only []bool, after predecessor, s *script, keys, args []string, rtt []time.Duration) *round {
	return m.fanoutArgs(ctx, timeout, only, after, s, keys, args, nil, rtt, false)
}

// fanoutEach is fanout with each instance's own arguments: instance i gets
// each[i], and no call when each[i] is nil (ForceRelease: the tokens differ).
func (m *Manager) fanoutEach(ctx context.Context, timeout time.Duration, s *script, keys []string, each [][]string) *round {
	only := make([]bool, len(m.inst))
	for i, a := range each {
		only[i] = a != nil
	}
	return m.fanoutArgs(ctx, timeout, only, nil, s, keys, nil, each, nil, false)
}

// fanoutArgs is the fan-out behind fanout, fanoutWith and fanoutEach.
// direct says that the caller collects the round at once and holds no
// lock: a single call may then run on its goroutine (see direct).
func (m *Manager) fanoutArgs(ctx context.Context, timeout time.Duration, only []bool, after predecessor, s *script, keys, args []string, each [][]string, rtt []time.Duration, direct bool) *round {
	n := len(m.inst)
	r := &round{ch: make(chan reply, n), after: after, rtt: rtt, each: each}
	if n <= smallN {
		r.sent, r.jobs, r.ret, r.waitCh = r.sentArr[:n], r.jobsArr[:n], r.retArr[:n], r.chArr[:n]
	} else {
		r.sent, r.jobs, r.ret, r.waitCh = make([]bool, n), make([]job, n), make([]atomic.Bool, n), make([]chan struct{}, n)
	}
	// A copy, so that the caller's slice does not escape (no allocation
	// for a literal).
	if len(args) <= len(r.argsArr) {
		r.args = r.argsArr[:len(args)]
	} else {
		r.args = make([]string, len(args))
	}
	copy(r.args, args)
	calls := 0
	for i := range m.inst {
		if only == nil || only[i] {
			r.sent[i] = true
			calls++
		}
	}
	// The calls are not cancelled with ctx, only bounded by timeout: collect
	// returns as soon as the outcome is decided or ctx ends, and the caller
	// then typically cancels ctx, but the stragglers must still reach their
	// instances. Otherwise an extension or a release that returned at quorum
	// would never reach the rest: their keys would expire early (another
	// client could take them) or outlive the unlock.
	r.rctx.start(ctx, timeout)
	if calls == 0 {
		r.rctx.end(endReturned)
		return r
	}
	r.pending.Store(int32(calls))
	m.ops.Add(calls)
	for i, in := range m.inst {
		if !r.sent[i] {
			continue
		}
		if direct && calls == 1 && in.direct(after, i) && !endsFirst(ctx, r.rctx.deadline) {
			r.rctx.direct = true
			r.run(m, i, s, keys)
			continue
		}
		j := &r.jobs[i]
		j.r, j.i, j.s, j.keys = r, i, s, keys
		m.dispatch(in, j)
	}
	return r
}

// endsFirst reports whether ctx has a deadline before deadline.
func endsFirst(ctx context.Context, deadline time.Time) bool {
	dl, ok := ctx.Deadline()
	return ok && dl.Before(deadline)
}

// direct reports whether the single call of a round to the instance may
// run on the caller's goroutine: the instance answered its last call and
// no earlier call about the lock is still pending there. A worker costs
// one caller two goroutine hand-offs per call; on the default wire a
// direct call alone on its connection also writes and reads the socket
// itself (see directClient in wire_rueidis.go). The price: the call is
// bounded by the round's deadline (at most Config.NodeTimeout), not by the
// caller's ctx. So a caller whose ctx has an earlier deadline goes through
// a worker (fanoutArgs), and so does a call to a known-down instance; a
// ctx cancelled during a direct call returns when the instance answers.
func (in *instance) direct(after predecessor, i int) bool {
	return !in.down.Load() && (after == nil || after.pendingCh(i) == nil)
}

// run is one call of a round, on a worker (see dispatch). With a
// predecessor it waits for the predecessor's call to the instance first;
// if that has not returned by this round's deadline, the call is not sent
// (errOutOfOrder) and the instance counts as returned only once the
// predecessor's call has: a chain of calls about one lock keeps its order
// even when a middle one gives up.
func (r *round) run(m *Manager, i int, s *script, keys []string) {
	var wait <-chan struct{}
	if a := r.after; a != nil {
		if wait = a.pendingCh(i); wait != nil {
			select {
			case <-wait:
				wait = nil
			case <-r.rctx.done:
			}
		}
	}
	var v any
	var err error
	args := r.args
	if r.each != nil {
		args = r.each[i]
	}
	if wait == nil && r.rtt != nil {
		start := time.Now()
		v, err = call(&r.rctx, m.inst[i], s, keys, args)
		r.rtt[i] = time.Since(start)
	} else if wait == nil {
		v, err = call(&r.rctx, m.inst[i], s, keys, args)
	} else {
		err = errOutOfOrder
	}
	r.ch <- reply{idx: i, val: v, err: err}
	if wait != nil {
		<-wait // returns by the predecessor's deadline
	}
	r.markReturned(i)
	if r.pending.Add(-1) == 0 {
		r.after = nil // every call has passed it: let a long chain be collected
		r.rctx.end(endReturned)
	}
	m.ops.Done()
}

// collect reads the replies of r until the outcome is decided: yes votes
// reach need (success), or refusals and failures make that impossible. With
// all set it reads every reply instead. Instances that have not answered
// when the round's deadline passes (or ctx ends) count as failed.
func (m *Manager) collect(ctx context.Context, r *round, need int, all bool, classify classifier) *outcome {
	o := r.out.init(len(m.inst))
	pending := 0
	for _, s := range r.sent {
		if s {
			pending++
		}
	}
	add := func(rep reply) {
		pending--
		o.got[rep.idx] = true
		v, cause := classify(rep.val, rep.err)
		switch v {
		case voteYes:
			o.yes++
			o.vals[rep.idx] = rep.val
		case voteRefused:
			o.refused++
			o.errs[rep.idx] = cause
			o.vals[rep.idx] = rep.val
		default:
			v = voteFailed
			o.failed++
			o.errs[rep.idx] = cause
		}
		o.votes[rep.idx] = v
	}
	for pending > 0 {
		if !all && (o.yes >= need || o.yes+pending < need) {
			return o
		}
		select {
		case rep := <-r.ch:
			add(rep)
			continue
		case <-r.rctx.done:
		case <-ctx.Done():
		}
		// Every call returned, the round's deadline passed, or the caller's
		// ctx ended: take the replies that made it; whoever has not
		// answered failed.
	drain:
		for pending > 0 {
			select {
			case rep := <-r.ch:
				add(rep)
			default:
				break drain
			}
		}
		if pending == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			o.ctxErr = err
		}
		for i, s := range r.sent {
			if s && o.votes[i] == voteNone {
				o.votes[i] = voteFailed
				o.failed++
				if o.ctxErr != nil {
					o.errs[i] = o.ctxErr
					o.cut++
				} else {
					o.errs[i] = context.DeadlineExceeded
				}
			}
		}
		break
	}
	return o
}

// instanceErrors lists the causes recorded in o, in instance order.
func (m *Manager) instanceErrors(o *outcome) []*InstanceError {
	var out []*InstanceError
	for i, err := range o.errs {
		if err != nil {
			out = append(out, &InstanceError{Endpoint: m.inst[i].name, Err: err})
		}
	}
	return out
}

// quorumError builds the error of an operation that did not reach a quorum.
// With notHeld set (extend, unlock, ttl), refusals classify as ErrNotHeld,
// otherwise as ErrNotAcquired; too few answers classify as ErrUnavailable,
// and error replies that no retry fixes (isRejection), when they alone rule
// out a quorum, as ErrRejected.
//
// Too few answers means that the failures alone rule out a quorum. Counting
// "yes + refused >= quorum" instead would depend on the order of arrival:
// collect stops as soon as a quorum is out of reach, so with a minority
// down, a quick connection error among the first replies would turn plain
// contention into ErrUnavailable. Instances that had not answered when the
// caller's ctx ended did not fail: they are not counted.
func (m *Manager) quorumError(op, resource string, o *outcome, attempts int, notHeld bool) *QuorumError {
	e := &QuorumError{
		Op: op, Resource: resource, Votes: o.yes, Quorum: m.quorum, N: len(m.inst),
		Attempts: attempts, Ctx: o.ctxErr, Instances: m.instanceErrors(o),
	}
	rejected := 0
	for i, v := range o.votes {
		if v == voteFailed && isRejection(o.errs[i]) {
			rejected++
		}
	}
	switch {
	case rejected > 0 && len(m.inst)-rejected < m.quorum:
		e.Err = ErrRejected
	case o.refused > 0 && o.failed-o.cut <= len(m.inst)-m.quorum:
		e.Err = ErrNotAcquired
		if notHeld {
			e.Err = ErrNotHeld
		}
	default:
		e.Err = ErrUnavailable
	}
	return e
}

// roundCtx is the context of a round's calls, built for few allocations
// (a channel, a timer and its function, against five for
// context.WithTimeout(context.WithoutCancel(ctx), timeout)). It carries the
// caller's values but not its cancellation, and ends when every call has
// returned (Err: context.Canceled) or when the deadline passes (Err:
// context.DeadlineExceeded), whichever comes first.
type roundCtx struct {
	parent   context.Context // for Value only
	direct   bool            // the round's call runs on its caller's goroutine (see instance.direct)
	deadline time.Time
	done     chan struct{}
	state    atomic.Int32 // endLive, endReturned or endExpired
	timer    *time.Timer

	mu     sync.Mutex
	afters map[*int]func() // AfterFunc callbacks not yet run
}

const (
	endLive int32 = iota
	endReturned
	endExpired
)

func (c *roundCtx) start(parent context.Context, timeout time.Duration) {
	c.parent = parent
	c.deadline = time.Now().Add(timeout)
	c.done = make(chan struct{})
	c.timer = time.AfterFunc(timeout, c.expire)
}

func (c *roundCtx) expire() { c.end(endExpired) }

// end ends the context once; later calls do nothing.
func (c *roundCtx) end(state int32) {
	if !c.state.CompareAndSwap(endLive, state) {
		return
	}
	if state != endExpired {
		c.timer.Stop()
	}
	close(c.done)
	c.mu.Lock()
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, f := range afters {
		go f()
	}
}

// Deadline implements context.Context.
func (c *roundCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context.
func (c *roundCtx) Done() <-chan struct{} { return c.done }

// Err implements context.Context.
func (c *roundCtx) Err() error {
	switch c.state.Load() {
	case endReturned:
		return context.Canceled
	case endExpired:
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context with the caller's values.
func (c *roundCtx) Value(key any) any { return c.parent.Value(key) }

// AfterFunc lets contexts derived from this one (context.WithTimeout and
// friends) follow its end without a goroutine each: the standard library
// uses it when the parent has it, as context.AfterFunc documents.
func (c *roundCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.state.Load() != endLive {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if c.afters == nil {
		c.afters = make(map[*int]func())
	}
	id := new(int)
	c.afters[id] = f
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afters[id]
		delete(c.afters, id)
		return ok
	}
}

// instance is one independent Redis instance.
type instance struct {
	client Client
	name   string // redacted endpoint, for errors and logs
	pool   pool   // the workers that run its calls
	// scripts says whether every script is loaded on the instance
	// (scriptsUnloaded, ...; see ensureScripts in wire.go).
	scripts atomic.Int32
	// loadAfter (Unix nanoseconds) holds back the next load after one
	// failed: see scriptLoadRetry.
	loadAfter atomic.Int64
	// down says that the instance's last call found it not answering
	// (see observe); log gets one record per change.
	down atomic.Bool
	log  *slog.Logger
	obs  Observer // Config.Observer; nil: no events
	// watch is the Manager's key watch on the instance (watch.go).
	watch keyWatch
}

// observe records the outcome of a call to the instance and logs when
// that changes whether it answers: one WARN, with the cause, when it stops
// (a network error, a timeout, a refused password), one INFO when it
// answers again; nothing per call. An error reply is an answer.
func (in *instance) observe(err error) {
	down := isOutage(err)
	if err != nil && !down && errors.Is(err, context.Canceled) {
		return // says nothing about the instance
	}
	if in.down.Load() == down || !in.down.CompareAndSwap(!down, down) {
		return
	}
	if in.obs != nil {
		ev := InstanceStateEvent{Endpoint: in.name, Up: !down}
		if down {
			ev.Err = err
		}
		in.obs.InstanceState(ev)
	}
	if in.log == nil {
		return
	}
	if down {
		in.log.Warn("redlock: instance not answering", "instance", in.name, "err", err)
	} else {
		in.log.Info("redlock: instance answering again", "instance", in.name)
	}
}

// job is one call of a round to one instance, run by a worker.
type job struct {
	r    *round
	i    int
	s    *script
	keys []string
}

// workerIdle is how long a worker waits for a call before it exits.
const workerIdle = 10 * time.Second

// pool holds an instance's parked call workers. Workers are long-lived
// goroutines owned by the Manager: a call costs no goroutine start and no
// allocation, and a parked worker waits on its own channel alone (no select,
// no timer per call: under load the select of a shared work channel, a quit
// channel and an idle timer cost a tenth of the CPU). Parked workers form a
// stack, the most recently parked on top, so that the busy ones stay warm
// and the bottom ones are the idle ones: those idle for workerIdle exit, as
// found when a worker parks or by one timer per pool. There is one worker
// per call in flight at the peak.
type pool struct {
	mu     sync.Mutex
	parked []*worker // parked[len-1] parked last
	timer  *time.Timer
	armed  bool // timer will run reap
	closed bool
	idle   time.Duration // workerIdle (tests shorten it)
	starts int           // workers started so far (for tests)
	live   int           // workers started and not told to exit (for tests)
}

// worker is one call worker; it receives its next job (nil: exit) on jobs.
type worker struct {
	jobs  chan *job // buffered 1: a worker gets at most one job per parking
	since time.Time // when it parked; guarded by pool.mu
}

// dispatch hands j to a parked worker of in, or starts a worker for it.
// The caller holds an operation (m.ops), so the Manager is not closed yet.
func (m *Manager) dispatch(in *instance, j *job) {
	p := &in.pool
	p.mu.Lock()
	if n := len(p.parked); n > 0 {
		w := p.parked[n-1]
		p.parked[n-1] = nil
		p.parked = p.parked[:n-1]
		p.mu.Unlock()
		w.jobs <- j
		return
	}
	p.starts++
	p.live++
	p.mu.Unlock()
	m.workers.Add(1)
	go m.work(p, &worker{jobs: make(chan *job, 1)}, j)
}

// work runs jobs until it is told to exit (idle too long, or Close).
func (m *Manager) work(p *pool, w *worker, j *job) {
	defer m.workers.Done()
	for j != nil {
		j.r.run(m, j.i, j.s, j.keys)
		if !p.park(w) {
			return
		}
		j = <-w.jobs
	}
}

// park puts w on top of the stack; it returns false if the pool is closed
// (w exits). Parking also retires the workers idle for workerIdle.
func (p *pool) park(w *worker) bool {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.live--
		return false
	}
	w.since = now
	p.parked = append(p.parked, w)
	p.reapLocked(now)
	return true
}

// reapLocked tells the workers idle for workerIdle to exit, and makes sure
// the timer will look again when the oldest remaining one is due.
func (p *pool) reapLocked(now time.Time) {
	n := 0
	for n < len(p.parked) && now.Sub(p.parked[n].since) >= p.idle {
		p.parked[n].jobs <- nil
		n++
	}
	p.live -= n
	if n > 0 {
		k := copy(p.parked, p.parked[n:])
		clear(p.parked[k:])
		p.parked = p.parked[:k]
	}
	if len(p.parked) == 0 || p.armed {
		return
	}
	d := p.idle - now.Sub(p.parked[0].since)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.reap)
	} else {
		p.timer.Reset(d)
	}
	p.armed = true
}

// reap is the timer's callback.
func (p *pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if !p.closed {
		p.reapLocked(time.Now())
	}
}

// close tells every parked worker to exit; busy ones exit when they park.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.parked {
		w.jobs <- nil
	}
	p.live -= len(p.parked)
	p.parked = nil
	if p.timer != nil {
		p.timer.Stop()
	}
}
