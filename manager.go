package redlock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redlock-go/redlock/internal/testhooks"
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
	hooks   *testhooks.Hooks // nil except in this module's own fault tests

	ops     sync.WaitGroup // in-flight calls and background work
	workers sync.WaitGroup // the instances' call workers (see dispatch)

	ext     extender    // batched auto-extension of single-key locks
	waits   waitSet     // local callers waiting for a lock, per key
	subOnce sync.Once   // starts the release subscriptions
	subs    []io.Closer // release subscriptions, closed by Close

	closing chan struct{} // closed when Close starts: waiting callers give up

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

// LockOption is a per-call choice for Lock, TryLock, LockWait and Do.
type LockOption func(*lockOptions)

type lockOptions struct {
	ttl      time.Duration
	ttlSet   bool
	token    string
	tokenSet bool
	fenced   bool
	metadata string
	metaSet  bool
}

// TTL gives the lock a fixed lease of d, with no auto-extension
// (aioredlock's lock_timeout). d is truncated to whole milliseconds and must
// be within [MinTTL, MaxTTL] and larger than twice the drift allowance.
// Without TTL a lock gets Config.DefaultTTL and is extended automatically
// until it is unlocked.
func TTL(d time.Duration) LockOption {
	return func(o *lockOptions) { o.ttl, o.ttlSet = d, true }
}

// Token makes the lock use token instead of a random one (aioredlock's
// lock_identifier). Locking again with the token of a lock that is held
// refreshes its lease, never shortening it (the held handle's deadline
// stays true). An attempt that fails with a token you chose releases
// nothing: the keys it set expire with their TTL (a release cannot tell
// them from the keys of your next attempt under the same token, and one
// that arrived late would delete those), so others may find the resource
// taken until then; you can take it again with the same token at once. Handles that share a token share the lock: an Unlock or a shorter
// Extend through one of them applies to the others too, and two
// acquisitions with one token must not run at once. The token must be
// non-empty and at most MaxTokenLen bytes; whoever knows it can extend and
// release the lock.
func Token(token string) LockOption {
	return func(o *lockOptions) { o.token, o.tokenSet = token, true }
}

// Fenced makes the lock carry a fencing token (see Lock.Fence): a number
// that is unique per resource and strictly increasing from one holder to the
// next while the lock's safety assumptions hold. It costs one more round
// trip per acquisition. Config.Fencing turns it on for every lock.
func Fenced() LockOption {
	return func(o *lockOptions) { o.fenced = true }
}

// MaxMetadataLen is the largest metadata a lock may carry (see Metadata).
const MaxMetadataLen = 4096

// Metadata stores s beside the lock: who holds it, for Manager.Inspect
// (InstanceState.Metadata), Manager.Attach and Lock.Metadata, e.g. the
// holder's host, process and start time (the redlock command stores such a
// JSON object). It lives on the lock's instances in a key of its own, next
// to the lock key in its Redis Cluster slot ("{KEY}:redlock-meta" for the
// key KEY = KeyPrefix + resource, or KEY + ":redlock-meta" when KEY has a
// hash tag), with the lock
// key's TTL: extended with the lock (never shortened), restored with it by
// a top-up, deleted by Unlock, by a failed attempt's clean-up and by
// ForceRelease. The lock key itself still holds only the token, so other
// Redlock clients (aioredlock, redsync, node-redlock) still exclude and
// are excluded by the lock. A re-lock with the same token (the Token
// option) replaces the metadata where it refreshes the key; one without
// Metadata leaves the metadata alone (it then expires on its own).
//
// s may hold any bytes, at most MaxMetadataLen of them (else the call
// fails with ErrInvalid); "" means no metadata, which costs nothing: no
// extra key and no extra work per call. With metadata an acquisition,
// extension and release each do a little more on each instance, and an
// auto-extended lock is extended by a timer of its own rather than in the
// Manager's batches. LockMany stores s beside each of its keys. The key's
// name (see above) must be in the lock key's slot: a key with a '}' but no
// hash tag, such as "a}b", cannot carry metadata (ErrInvalid). Anyone who
// can read the instances can read it: keep secrets out.
func Metadata(s string) LockOption {
	return func(o *lockOptions) { o.metadata, o.metaSet = s, true }
}

// request is a validated lock request.
type request struct {
	resource string // the first resource (the only one, but for LockMany)
	ks       keyset
	token    string
	own      bool // token generated here: no one else can use it
	ttl      time.Duration
	auto     bool
	fenced   bool
}

func (m *Manager) newRequest(resource string, opts []LockOption) (request, error) {
	if err := m.checkResource(resource); err != nil {
		return request{}, err
	}
	return m.newRequestMany([]string{resource}, opts)
}

// newRequestMany validates a request for resources, which the caller has
// checked one by one.
func (m *Manager) newRequestMany(resources []string, opts []LockOption) (request, error) {
	var o lockOptions
	for _, opt := range opts {
		if opt == nil {
			return request{}, invalidf("nil LockOption")
		}
		opt(&o)
	}
	fenced := o.fenced || m.cfg.Fencing
	r := request{resource: resources[0], ks: m.newKeyset(resources, fenced), ttl: m.cfg.DefaultTTL, auto: true, fenced: fenced}
	if o.ttlSet {
		if err := m.cfg.checkTTL(o.ttl); err != nil {
			return request{}, err
		}
		r.ttl, r.auto = o.ttl.Truncate(time.Millisecond), false
		if err := m.cfg.checkTTL(r.ttl); err != nil {
			return request{}, err
		}
	}
	if o.tokenSet {
		if o.token == "" {
			return request{}, invalidf("empty token")
		}
		if len(o.token) > MaxTokenLen {
			return request{}, invalidf("token is %d bytes, over %d", len(o.token), MaxTokenLen)
		}
		r.token = o.token
	} else {
		r.token, r.own = newToken(), true
	}
	if o.metaSet {
		if len(o.metadata) > MaxMetadataLen {
			return request{}, invalidf("metadata is %d bytes, over %d", len(o.metadata), MaxMetadataLen)
		}
		if err := r.ks.setMetadata(o.metadata); err != nil {
			return request{}, err
		}
	}
	return r, nil
}

// checkResource checks a resource name: not empty, not too long, and not
// one whose key (KeyPrefix + resource) has the shape of a fencing counter
// (see counterKey) or of a metadata key (see metaKey), which a lock must
// never be able to address.
func (m *Manager) checkResource(resource string) error {
	if resource == "" {
		return invalidf("empty resource")
	}
	if len(resource) > MaxResourceLen {
		return invalidf("resource is %d bytes, over %d", len(resource), MaxResourceLen)
	}
	if isCounterKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q are reserved for fencing counters", quoteResource(resource), counterSuffix)
	}
	if isMetaKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q are reserved for lock metadata", quoteResource(resource), metaSuffix)
	}
	if isRWKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q, %q or %q are reserved for read-write locks", quoteResource(resource), readersSuffix, wwaitSuffix, rmetaSuffix)
	}
	return nil
}

// newToken returns 128 random bits from crypto/rand as UUIDv4 text.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

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
	for i := 0; attempts < 0 || i < attempts; i++ {
		if i > 0 {
			if w == nil {
				m.subscribe()
				w = m.waits.join(req.ks.keys, since)
				if m.obs != nil {
					m.obs.Waiting(1)
				}
			}
			delay := m.backoff(unavailable)
			if expiry > 0 && expiry < delay {
				delay = expiry
			}
			if err := m.waitTurn(ctx, w, delay); err != nil {
				if err == ErrClosed {
					return nil, ErrClosed
				}
				break
			}
			if req.own {
				// A fresh token per attempt: a release of the last attempt
				// still on its way to a slow instance cannot delete the key
				// this one sets there.
				req.token = newToken()
			}
		}
		if ctx.Err() != nil {
			break
		}
		l, o, ok := m.attempt(ctx, req, w != nil)
		if ok {
			acquired = true
			return l, nil
		}
		if o.ctxErr != nil && last != nil {
			// Cut short by ctx: the previous, complete attempt says more
			// about why the lock was not acquired.
			last.Attempts, last.Ctx = i+1, o.ctxErr
			break
		}
		last = m.quorumError("lock", req.resource, o, i+1, false)
		if o.ctxErr != nil || last.Err == ErrRejected {
			break
		}
		// For want of instances: the attempt says so, or too many
		// instances are known to be down (an attempt decided early by a
		// refusal and one quick connection error says "not acquired",
		// which must not reset the backoff while a majority is down).
		if last.Err == ErrUnavailable || m.down() > len(m.inst)-m.quorum {
			unavailable++
		} else {
			unavailable = 0
		}
		expiry = m.expiryWait(o)
	}
	if last == nil {
		last = &QuorumError{Op: "lock", Resource: req.resource, Quorum: m.quorum, N: len(m.inst), Err: ErrNotAcquired}
	}
	if err := ctx.Err(); err != nil && last.Ctx == nil {
		last.Ctx = err
	}
	return nil, last
}

// attempt is one round of the Redlock algorithm (two for a fenced lock).
// queued says that the caller is the head of its key's local queue.
func (m *Manager) attempt(ctx context.Context, req request, queued bool) (l *Lock, o *outcome, ok bool) {
	start := m.now()
	if m.obs != nil {
		defer func() { m.recordAttempt(ctx, start, o) }()
	}
	timeout := min(m.cfg.NodeTimeout, req.ttl)
	ttlArg := fmtMillis(req.ttl)
	var r *round
	var last predecessor // the last round sent: later calls about the lock follow it
	switch {
	case req.ks.rw != nil: // a read-write lock's writer or reader (rwmutex.go)
		r = m.fanout(ctx, timeout, nil, req.ks.rw.acquire, req.ks.rw.keys, req.ks.rw.acquireArgs(&req.ks, req.token, ttlArg))
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case req.ks.single() && !req.ks.hasMeta():
		r = m.fanout(ctx, timeout, nil, scriptAcquire, req.ks.keys, []string{req.token, ttlArg})
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case req.ks.single():
		r = m.fanout(ctx, timeout, nil, scriptAcquire, req.ks.km(), []string{req.token, ttlArg, req.ks.metadata()})
		o = m.collect(ctx, r, m.quorum, false, classifyAcquire)
	case !req.ks.hasMeta():
		r = m.fanout(ctx, timeout, nil, scriptAcquireMany, req.ks.withCounters(), []string{req.token, ttlArg, req.ks.nArg})
		o = m.collect(ctx, r, m.quorum, false, classifyAcquireMany)
	default:
		r = m.fanout(ctx, timeout, nil, scriptAcquireMany, req.ks.acquireKeys(), []string{req.token, ttlArg, req.ks.nArg, req.ks.metadata()})
		o = m.collect(ctx, r, m.quorum, false, classifyAcquireMany)
	}
	last = r
	if o.yes >= m.quorum && o.ctxErr == nil {
		if m.hooks != nil && m.hooks.AfterReplies != nil {
			m.hooks.AfterReplies(req.resource)
		}
		var fence uint64
		ok = true
		if req.fenced {
			var fr *round
			fence, fr, ok = m.fence(ctx, req, start, o, r)
			if fr != nil {
				last = fr
			}
		}
		if m.hooks != nil && m.hooks.IgnoreElapsed {
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
	m.cleanup(ctx, r, last, o, &req.ks, req.token, req.own, queued)
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

// parseCounter reads a counter from a fence or acquire_many reply pair.
func parseCounter(v any) uint64 {
	var s any = v
	if a, ok := v.([]any); ok && len(a) == 2 {
		s = a[1]
	}
	switch x := s.(type) {
	case string:
		n, _ := strconv.ParseUint(x, 10, 64)
		return n
	case int64:
		if x > 0 {
			return uint64(x)
		}
	}
	return 0
}

// pairCode reads the status code of a {code, value} reply.
func pairCode(v any) (int64, bool) {
	a, ok := v.([]any)
	if !ok || len(a) < 2 || len(a) > 3 {
		return 0, false
	}
	return toInt(a[0])
}

// expiryWait returns how long after attempt o a quorum of instances will be
// free if the holder does not extend: the instances that voted yes, plus
// the refusing ones whose holder's key has expired by then (Redis expires a
// key when it is accessed, so an acquisition right after its PTTL
// succeeds). 0 when the replies do not tell. A margin covers the rounding
// of PTTL to milliseconds and the drift between clocks.
func (m *Manager) expiryWait(o *outcome) time.Duration {
	yes := 0
	var leftArr [smallN]time.Duration
	left := leftArr[:0]
	for i, v := range o.votes {
		switch v {
		case voteYes:
			yes++
		case voteRefused:
			if d, ok := holderLeft(o.vals[i]); ok {
				left = append(left, d)
			}
		}
	}
	need := m.quorum - yes
	if need <= 0 || need > len(left) {
		return 0
	}
	slices.Sort(left)
	w := left[need-1]
	return w + w/100 + 2*time.Millisecond
}

// holderLeft returns what is left of the holder's lease in a refusal of
// the acquire scripts (-2 - PTTL, or {0, i, PTTL}), and false when the
// reply does not say (no TTL, or not a refusal).
func holderLeft(v any) (time.Duration, bool) {
	var ms int64
	switch x := v.(type) {
	case int64:
		if x > -2 {
			return 0, false
		}
		ms = -2 - x
	case []any:
		if len(x) != 3 {
			return 0, false
		}
		n, ok := toInt(x[2])
		if !ok || n < 0 {
			return 0, false
		}
		ms = n
	default:
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

func classifyFence(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pairCode(v)
	if !ok {
		return voteFailed, errBadReply
	}
	switch n {
	case 1:
		return voteYes, nil
	case 0:
		return voteRefused, errCounterAhead
	case -1:
		return voteFailed, errKeyMissing
	}
	return voteFailed, errBadReply
}

var errCounterAhead = errors.New("fencing counter ahead of the proposed token")

func classifyAcquireMany(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pairCode(v)
	if !ok {
		return voteFailed, errBadReply
	}
	switch n {
	case 1, 2: // set a free key, or refreshed ours
		return voteYes, nil
	case 0:
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
}

func classifyAcquire(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	switch n, _ := toInt(v); {
	case n == 1, n == 2: // set a free key, or refreshed ours
		return voteYes, nil
	case n <= -1: // -2 - the holder's PTTL
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
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

// sleep waits d or until ctx ends.
func (m *Manager) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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

var errNotLocked = errors.New("not locked")

func classifyInspect(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	a, ok := v.([]any)
	if !ok || len(a) < 2 {
		return voteFailed, errBadReply
	}
	if tok, _ := a[0].(string); tok != "" {
		return voteYes, nil
	}
	return voteRefused, errNotLocked
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
	ttl, o, err := m.remainingKeys(ctx, "attach", req.resource, &req.ks, keys, req.token)
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

// metadataOf returns the metadata that the most yes votes of o (pttl.lua
// replies with the metadata key) carry, ties going to the first in
// endpoint order; "" when none carries any.
func metadataOf(o *outcome) string {
	best, bestN := "", 0
	for i, v := range o.vals {
		if o.votes[i] != voteYes {
			continue
		}
		md := pairString(v)
		if md == "" {
			continue
		}
		n := 0
		for j, w := range o.vals {
			if o.votes[j] == voteYes && pairString(w) == md {
				n++
			}
		}
		if n > bestN {
			best, bestN = md, n
		}
	}
	return best
}

// pairString reads the second element of a {code, string} reply, "" when
// there is none.
func pairString(v any) string {
	if a, ok := v.([]any); ok && len(a) == 2 {
		s, _ := a[1].(string)
		return s
	}
	return ""
}

// remaining asks every instance for the PTTL of key under token and returns
// the smallest among the quorum that holds it.
func (m *Manager) remaining(ctx context.Context, op, resource string, ks *keyset, token string) (time.Duration, *outcome, error) {
	return m.remainingKeys(ctx, op, resource, ks, ks.lockKeys(), token)
}

// remainingKeys is remaining with the script's keys given: ks.keys, or a
// single lock key and its metadata key (pttl.lua then replies {code,
// metadata}, which the outcome's vals keep).
func (m *Manager) remainingKeys(ctx context.Context, op, resource string, ks *keyset, keys []string, token string) (time.Duration, *outcome, error) {
	r := m.fanout(ctx, m.cfg.NodeTimeout, nil, ks.pttlScript(), keys, []string{token})
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

// pttlCode reads a pttl.lua reply: the code alone, or {code, metadata}.
func pttlCode(v any) (int64, bool) {
	if n, ok := toInt(v); ok {
		return n, true
	}
	return pairCode(v)
}

var errNoTTL = errors.New("lock key has no TTL")

func classifyPTTL(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pttlCode(v)
	switch {
	case !ok:
		return voteFailed, errBadReply
	case n >= 0:
		return voteYes, nil
	case n == -1:
		return voteRefused, errNoTTL
	case n == -2:
		return voteRefused, errKeyMissing
	}
	return voteRefused, ErrHeldByOther
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
	return m.runHeld(ctx, l, fn)
}

// runHeld is Do once l is held: fn runs with a context cancelled with
// cause ErrLost on loss, and l is unlocked afterwards (RWMutex.Do and RDo
// share it).
func (m *Manager) runHeld(ctx context.Context, l *Lock, fn func(ctx context.Context) error) (err error) {
	resource := l.resource
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

// fmtMillis renders d in whole milliseconds, as PX and PEXPIRE take it.
func fmtMillis(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Millisecond), 10)
}
