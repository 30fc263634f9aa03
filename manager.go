package redlock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Manager takes, extends and releases locks on a set of independent Redis
// instances with the Redlock algorithm: a lock is held when a quorum
// (N/2+1) of the instances hold its key under its token.
//
// A Manager is safe for concurrent use. It owns the clients that New dialed
// (Close closes them), not those passed to NewFromClients. It owns the
// background work of its locks (auto-extension, expiry timers); Close stops
// it and waits for it.
type Manager struct {
	cfg     Config
	inst    []*instance
	quorum  int
	closers []io.Closer // clients that New dialed
	log     *slog.Logger
	obs     Observer         // Config.Observer; nil: no events
	now     func() time.Time // the clock; tests may replace it
	hooks   hookSet          // empty except in builds with the redlock_controls tag

	ops     sync.WaitGroup // in-flight calls and background work
	workers sync.WaitGroup // the instances' call workers (see dispatch)

	ext     extender    // batched auto-extension of single-key locks
	waits   waitSet     // local callers waiting for a lock, per key
	subOnce sync.Once   // starts the release subscriptions
	subs    []io.Closer // release subscriptions, closed by Close

	closing chan struct{} // closed when Close starts: waiting callers give up

	// acquiredAfter counts the acquisitions after a wait by what ended the
	// wait (tests read it: a waiter behind a foreign holder must be woken
	// by a key watch or the expiry-timed retry, not by polling).
	acquiredAfter [numWakeReasons]atomic.Int64
	// handoffTries counts the attempts that followed a release handed over
	// by an Unlock (handOff); acquiredAfter[wakeHandoff] those that
	// acquired (tests read both).
	handoffTries atomic.Int64
	// refusedSince is the release count (waitSet.releases) read before
	// the last failed acquisition call started: AwaitRelease returns at
	// once when a release came since.
	refusedSince atomic.Uint64

	mu      sync.Mutex
	closed  bool
	locks   map[*Lock]struct{} // held locks, for Locks and Close
	pruneAt int                // len(locks) at which pruneLocked next looks
}

// New returns a Manager over the instances named by endpoints, dialing a
// client for each. See ParseEndpoint for the accepted forms. Every instance
// must appear once, however spelled: two endpoints that address the same
// server (a port with leading zeros, another form of an IP address, a
// relative and an absolute socket path, two databases of one server) give
// an error wrapping ErrInvalid that names both as given, passwords hidden.
// The Manager owns the clients and closes them in Close.
// New does not contact the instances: an instance that is down makes calls
// fail later, not New.
func New(endpoints []string, cfg Config) (*Manager, error) {
	if len(endpoints) == 0 {
		return nil, invalidf("no endpoints")
	}
	eps := make([]Endpoint, len(endpoints))
	for i, s := range endpoints {
		ep, err := ParseEndpoint(s)
		if err != nil {
			return nil, err
		}
		eps[i] = ep
	}
	return newFromEndpoints(eps, endpoints, cfg)
}

// NewFromEndpoints is New for endpoints given as structs.
func NewFromEndpoints(endpoints []Endpoint, cfg Config) (*Manager, error) {
	return newFromEndpoints(endpoints, nil, cfg)
}

// newFromEndpoints is NewFromEndpoints; raw, when not nil, holds the
// strings the endpoints were parsed from, which errors name them by.
func newFromEndpoints(endpoints []Endpoint, raw []string, cfg Config) (*Manager, error) {
	if len(endpoints) == 0 {
		return nil, invalidf("no endpoints")
	}
	if err := checkEndpoints(endpoints, raw); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	inst := make([]*instance, len(endpoints))
	closers := make([]io.Closer, 0, len(endpoints))
	for i, ep := range endpoints {
		c, closer, err := dialRueidis(ep, cfg)
		if err != nil {
			for _, c := range closers {
				_ = c.Close()
			}
			return nil, err
		}
		closers = append(closers, closer)
		inst[i] = &instance{client: c, name: ep.String()}
	}
	return newManager(inst, closers, cfg), nil
}

// NewFromClients returns a Manager over clients the caller already has, one
// per independent instance. The Manager does not close them. Each client
// must be non-nil and appear once.
func NewFromClients(clients []Client, cfg Config) (*Manager, error) {
	if len(clients) == 0 {
		return nil, invalidf("no clients")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	inst := make([]*instance, len(clients))
	seen := make(map[Client]int, len(clients))
	for i, c := range clients {
		if c == nil || isNilPointer(c) {
			return nil, invalidf("client[%d] is nil", i)
		}
		if j, dup := comparableSeen(seen, c, i); dup {
			return nil, invalidf("client[%d] is client[%d] again: one instance would vote twice", i, j)
		}
		name := fmt.Sprintf("client[%d]", i)
		if s, ok := c.(fmt.Stringer); ok {
			name = fmt.Sprintf("client[%d] %s", i, s.String())
		}
		inst[i] = &instance{client: c, name: name}
	}
	return newManager(inst, nil, cfg), nil
}

func newManager(inst []*instance, closers []io.Closer, cfg Config) *Manager {
	if cfg.Observer != nil {
		cfg.Observer = safeObserver{o: cfg.Observer, log: cfg.Logger}
	}
	m := &Manager{
		cfg:     cfg,
		inst:    inst,
		quorum:  len(inst)/2 + 1,
		closers: closers,
		log:     cfg.Logger,
		obs:     cfg.Observer,
		now:     time.Now,
		locks:   make(map[*Lock]struct{}),
		closing: make(chan struct{}),
	}
	for _, in := range inst {
		in.pool.idle = workerIdle
		in.log = cfg.Logger
		in.obs = cfg.Observer
	}
	m.ext.m = m
	return m
}

// Config returns the configuration in force, with defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// Quorum returns the number of instances that must agree: N/2+1.
func (m *Manager) Quorum() int { return m.quorum }

// Endpoints returns the names of the instances (passwords redacted).
func (m *Manager) Endpoints() []string {
	out := make([]string, len(m.inst))
	for i, in := range m.inst {
		out[i] = in.name
	}
	return out
}

// enter registers an operation; false after Close.
func (m *Manager) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.ops.Add(1)
	return true
}

func (m *Manager) leave() { m.ops.Done() }

// begin registers a call about resource: it checks the resource and that
// neither m is closed nor ctx has ended. On success the caller must leave.
func (m *Manager) begin(ctx context.Context, resource string) error {
	if err := m.checkResource(resource); err != nil {
		return err
	}
	if !m.enter() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		m.leave()
		return err
	}
	return nil
}

// IsLocked reports whether resource is locked by anyone: a quorum of the
// instances hold its key, under any token. It returns ErrUnavailable when
// too few instances answer to tell.
func (m *Manager) IsLocked(ctx context.Context, resource string) (bool, error) {
	if err := m.begin(ctx, resource); err != nil {
		return false, err
	}
	defer m.leave()
	key := m.cfg.KeyPrefix + resource
	r := m.fanout(ctx, m.cfg.NodeTimeout, nil, scriptInspect, []string{key}, nil)
	o := m.collect(ctx, r, m.quorum, false, classifyInspect)
	switch {
	case o.yes >= m.quorum:
		return true, nil
	case o.refused > len(m.inst)-m.quorum:
		return false, nil
	}
	e := m.quorumError("is-locked", resource, o, 1, false)
	if e.Err != ErrRejected {
		e.Err = ErrUnavailable
	}
	return false, e
}

// Attach returns a handle for the lock held on resource under token, for
// example one taken by another process that passed the token on
// (aioredlock's get_lock). It fails with ErrNotHeld unless a quorum of the
// instances hold the key under token. The handle's validity is the smallest
// remaining TTL among that quorum, less the drift allowance; it is not
// extended automatically, and Extend(ctx, 0) extends it by
// Config.DefaultTTL. The Manager then owns the handle: Close releases it.
//
// Attach reads the lock's metadata too (see Metadata): the handle's
// Metadata is the one stored under token on the most instances of that
// quorum, and its Extend and Unlock then keep and delete it as the
// original handle's do.
func (m *Manager) Attach(ctx context.Context, resource, token string) (*Lock, error) {
	req, err := m.newRequest(resource, []LockOption{Token(token)})
	if err != nil {
		return nil, err
	}
	if !m.enter() {
		return nil, ErrClosed
	}
	defer m.leave()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req.auto = false
	start := m.now()
	keys := req.ks.keys
	if k := keys[0]; metaSameSlot(k) {
		keys = []string{k, metaKey(k)} // pttl.lua reads the metadata too
	}
	// Not a direct call: at N=1 it could overtake a release of the token
	// still on its way over the other connection, and hand out a lock
	// whose key that release then deletes (see Lock.private;
	// TestAttack4TokenRelockOvertakesStalledRelease).
	ttl, o, err := m.remainingKeys(ctx, "attach", req.resource, &req.ks, keys, req.token, false)
	if err != nil {
		return nil, err
	}
	if md := metadataOf(o); md != "" {
		_ = req.ks.setMetadata(md) // the key's slot was checked above
	}
	if m.cfg.validity(ttl, m.now().Sub(start)) <= 0 {
		return nil, &QuorumError{Op: "attach", Resource: resource, Votes: 0, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
	}
	return m.newLock(req, start.Add(ttl-m.cfg.drift(ttl)), nil), nil
}

// remaining asks every instance for the PTTL of key under token and returns
// the smallest among the quorum that holds it.
func (m *Manager) remaining(ctx context.Context, op, resource string, ks *keyset, token string) (time.Duration, *outcome, error) {
	return m.remainingKeys(ctx, op, resource, ks, ks.lockKeys(), token, true)
}

// remainingKeys is remaining with the script's keys given: ks.keys, or a
// single lock key and its metadata key (pttl.lua then replies {code,
// metadata}, which the outcome's vals keep). direct: its call may run on
// the caller's goroutine (see instance.direct).
func (m *Manager) remainingKeys(ctx context.Context, op, resource string, ks *keyset, keys []string, token string, direct bool) (time.Duration, *outcome, error) {
	r := m.fanoutArgs(ctx, m.cfg.NodeTimeout, nil, nil, ks.pttlScript(), keys, []string{token}, nil, nil, direct)
	o := m.collect(ctx, r, m.quorum, false, classifyPTTL)
	if o.yes < m.quorum {
		return 0, o, m.quorumError(op, resource, o, 1, true)
	}
	var least int64 = -1
	for i, v := range o.vals {
		if o.votes[i] != voteYes {
			continue
		}
		if n, _ := pttlCode(v); least < 0 || n < least {
			least = n
		}
	}
	return time.Duration(least) * time.Millisecond, o, nil
}

// Locks returns the locks this Manager holds that are still valid
// (aioredlock's get_active_locks), in no particular order. It does not
// contact the instances.
func (m *Manager) Locks() []*Lock {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Lock, 0, len(m.locks))
	for l := range m.locks {
		if l.Valid() {
			out = append(out, l)
		}
	}
	return out
}

// Do runs fn while holding resource (aioredlock's `async with`): it locks
// as Lock does, runs fn with a context that is cancelled with cause ErrLost
// if the lock is lost (see context.Cause), keeps the lock extended
// meanwhile (unless the TTL option fixes its lease), and unlocks afterwards,
// even if fn panics (the panic then continues). It returns the lock error,
// or fn's error joined with the unlock error; when the lock was lost while
// fn ran, the error also satisfies errors.Is(err, ErrLost) (and then not
// ErrNotHeld: the unlock of a lost lock says nothing more).
func (m *Manager) Do(ctx context.Context, resource string, fn func(ctx context.Context) error, opts ...LockOption) (err error) {
	if fn == nil {
		return invalidf("nil function")
	}
	l, err := m.acquire(ctx, "Do", resource, opts, m.cfg.RetryCount)
	if err != nil {
		return err
	}
	return m.runHeld(ctx, l, resource, fn)
}

// runHeld is Do once l is held: fn runs with a context cancelled with
// cause ErrLost on loss, and l is unlocked afterwards, even if fn panics
// (RWMutex.Do and RDo, Semaphore.Do share it); resource names the lock in
// the error.
func (m *Manager) runHeld(ctx context.Context, l *Lock, resource string, fn func(ctx context.Context) error) (err error) {
	fctx, cancel := context.WithCancelCause(ctx)
	var lost atomic.Bool
	l.onLoss(func() {
		if !l.unlocked() {
			lost.Store(true)
		}
		cancel(ErrLost)
	})
	defer func() {
		p := recover()
		// Lost while fn ran: onLoss ran before the Unlock below marks
		// the lock released (which runs the callbacks too).
		wasLost := lost.Load() || !l.Valid()
		cancel(nil)
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.NodeTimeout+time.Second)
		uerr := l.Unlock(uctx)
		ucancel()
		if p != nil {
			panic(p)
		}
		if wasLost {
			err = errors.Join(err, fmt.Errorf("%w while the function ran: lock %s", ErrLost, quoteResource(resource)))
		} else {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(fctx)
}

// Close releases every lock the Manager holds, in parallel (what it could
// not release is logged and returned, and expires with its TTL), stops
// their auto-extension, ends the calls that wait for a lock (LockWait and
// the retries of Lock return ErrClosed), waits for background work and
// in-flight calls, and closes the clients that New dialed. Close returns by
// ctx's deadline: once ctx ends it stops waiting for releases and closes
// the dialed clients at once, which ends their calls in flight (closing
// the connection to an instance that does not answer takes the rueidis
// client up to one second more). Calls through clients given to
// NewFromClients are not cut short: Close waits for them,
// Config.NodeTimeout at most. Every method called afterwards
// returns ErrClosed; a second Close returns ErrClosed too.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.closed = true
	close(m.closing)
	m.mu.Unlock()

	// A call that was in flight when Close started may still take a lock:
	// release what is held, wait for the in-flight calls, and repeat while
	// they left locks behind. Once they are done nothing adds locks.
	var errs []error
	cut := false // ctx ended: the clients were closed early
	for {
		errs = append(errs, m.releaseHeld(ctx)...)
		done := make(chan struct{})
		go func() {
			m.ops.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			if !cut {
				cut = true
				errs = append(errs, m.closeClients()...)
			}
			<-done
		}
		held := m.heldLocks()
		if len(held) == 0 {
			break
		}
		if cut {
			for _, l := range held {
				l.lose(reasonClosed)
				errs = append(errs, &QuorumError{Op: "unlock", Resource: l.resource, Quorum: m.quorum, N: len(m.inst), Err: ErrUnavailable, Ctx: ctx.Err()})
			}
			break
		}
	}
	m.ext.close()
	for _, in := range m.inst {
		in.pool.close()
	}
	m.workers.Wait()
	if !cut {
		errs = append(errs, m.closeClients()...)
	}
	return errors.Join(errs...)
}

// releaseHeld releases every lock registered with m, in parallel, and
// returns the errors (ErrNotHeld aside). Each release returns by ctx; its
// calls go on in the background, bounded by Config.NodeTimeout.
func (m *Manager) releaseHeld(ctx context.Context) []error {
	held := m.heldLocks()
	errs := make([]error, len(held))
	var wg sync.WaitGroup
	for i, l := range held {
		if !l.Valid() {
			// Expired (a lock left to its TTL, not yet pruned): its keys
			// are expiring; nothing to release.
			l.lose(reasonExpired)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.unlock(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
				m.log.Warn("redlock: release on close failed; the key expires with its TTL", "resource", quoteResource(l.resource), "err", err)
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	out := errs[:0]
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// closeClients closes the release subscriptions and the clients that New
// dialed, once, all in parallel: closing a rueidis client whose instance
// does not answer takes up to a second (its graceful close), and one such
// instance must not cost that many seconds.
func (m *Manager) closeClients() []error {
	m.mu.Lock()
	cs := append(m.subs, m.closers...)
	m.subs, m.closers = nil, nil
	m.mu.Unlock()
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Close()
		}()
	}
	wg.Wait()
	return errs
}

// pruneLocked returns the locks whose deadline passed without anyone
// watching them (no expiry timer), for the caller to lose once it released
// m.mu: it keeps the held set from growing with locks that were left to
// expire. It looks only when the set has doubled since it last did, so
// that its cost stays constant per lock. Callers hold m.mu.
func (m *Manager) pruneLocked() []*Lock {
	if len(m.locks) < m.pruneAt {
		return nil
	}
	var expired []*Lock
	now := m.now()
	for l := range m.locks {
		l.mu.Lock()
		if l.expiry == nil && !l.gone && !now.Before(l.until) {
			expired = append(expired, l)
		}
		l.mu.Unlock()
	}
	m.pruneAt = 2*(len(m.locks)-len(expired)) + 64
	return expired
}

// heldLocks returns the locks registered with m.
func (m *Manager) heldLocks() []*Lock {
	m.mu.Lock()
	defer m.mu.Unlock()
	held := make([]*Lock, 0, len(m.locks))
	for l := range m.locks {
		held = append(held, l)
	}
	return held
}

// isNilPointer reports whether v is an interface holding a nil pointer (or
// map, chan, func, slice), which would panic on first use.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// comparableSeen records c at index i in seen and reports an earlier index
// holding the same client. Clients of non-comparable types are never
// reported as duplicates.
func comparableSeen(seen map[Client]int, c Client, i int) (int, bool) {
	if !reflect.TypeOf(c).Comparable() {
		return 0, false
	}
	if j, ok := seen[c]; ok {
		return j, true
	}
	seen[c] = i
	return 0, false
}
