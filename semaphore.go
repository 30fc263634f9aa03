package redlock

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"time"
)

// MaxPermits is the largest number of permits a Semaphore may have. An
// attempt tries the permits' slots one after another, so a full semaphore
// costs one round trip per permit and attempt.
const MaxPermits = 1024

// slotInfix separates a semaphore's name from a slot number in the slot's
// resource name (see Manager.Semaphore).
const slotInfix = ":redlock-slot:"

// Semaphore is a counting semaphore over the Manager's instances: at most
// its number of permits holders at any time, each holding one permit as a
// *Lock. Manager.Semaphore returns it; it holds no state of its own
// besides its name and permits (every call goes to the instances), and is
// safe for concurrent use. The zero value is not usable.
//
// Each permit is a slot, an ordinary Redlock mutex of its own with the
// resource name NAME:redlock-slot:i in NAME's hash tag (see
// Manager.Semaphore), and a holder holds exactly one slot: so there are
// never more holders than slots, under the mutex's own assumptions (see the
// package documentation), at the quorum every lock uses. Every client of a
// semaphore must use the same number of permits: with different numbers
// the holders stay at most the largest number in use, and Acquire reports
// the mismatch (ErrInvalid) when it finds every one of its slots held and
// a slot beyond them held too.
type Semaphore struct {
	m       *Manager
	name    string
	permits int
	err     error    // ErrInvalid from the constructor's checks, returned by every method
	slots   []string // the slots' resource names, 0..permits-1
	keys    []string // their keys (KeyPrefix + slot), for the local wait queue
	extra   string   // the resource of slot number permits (mismatch detection)
}

// Semaphore returns the counting semaphore name with permits permits (one
// of N, like consul lock -n). It does not contact the instances. A bad
// name (see Lock) or permits outside [1, MaxPermits] does not panic: every
// method of the returned Semaphore then fails with ErrInvalid.
//
// The permits are slots: resources named "{NAME}:redlock-slot:0" to
// "{NAME}:redlock-slot:<permits-1>", or "NAME:redlock-slot:i" when
// KeyPrefix+NAME already has a hash tag, so that every slot is in one Redis
// Cluster slot. These are the keys' shapes on the instances (with
// KeyPrefix before them); other Redlock clients do not know them, so a
// semaphore excludes only the holders of this package's Semaphore with the
// same name, and a plain Lock of NAME is another lock altogether.
func (m *Manager) Semaphore(name string, permits int) *Semaphore {
	s := &Semaphore{m: m, name: name, permits: permits}
	if err := m.checkResource(name); err != nil {
		s.err = err
		return s
	}
	if permits < 1 || permits > MaxPermits {
		s.err = invalidf("semaphore %s: permits %d outside [1, %d]", quoteResource(name), permits, MaxPermits)
		return s
	}
	base := "{" + name + "}" + slotInfix
	if hashTag(m.cfg.KeyPrefix+name) != "" {
		base = name + slotInfix
	}
	s.slots = make([]string, permits)
	s.keys = make([]string, permits)
	for i := range s.slots {
		s.slots[i] = base + strconv.Itoa(i)
		s.keys[i] = m.cfg.KeyPrefix + s.slots[i]
	}
	s.extra = base + strconv.Itoa(permits)
	if err := m.checkResource(s.extra); err != nil {
		s.err = err
		return s
	}
	return s
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Permits returns the number of permits given to Manager.Semaphore.
func (s *Semaphore) Permits() int { return s.permits }

// Slot returns the resource name of slot i, 0 ≤ i ≤ Permits(): the lock a
// holder of permit i holds (Manager.Inspect tells who), and for i ==
// Permits() the slot that only a client using more permits takes (the
// mismatch check). It returns "" for an invalid semaphore or another i.
func (s *Semaphore) Slot(i int) string {
	switch {
	case s.err != nil || i < 0 || i > s.permits:
		return ""
	case i == s.permits:
		return s.extra
	}
	return s.slots[i]
}

// Acquire takes one permit, making up to Config.RetryCount attempts with a
// random delay in [RetryDelayMin, RetryDelayMax] between them, like
// Manager.Lock. Each attempt tries the slots one after another, starting at
// a random one, until one is acquired. It returns the held permit as a
// *Lock (its Resource is the slot's resource), or an error that satisfies
// errors.Is with ErrNotAcquired (every slot held by others), ErrUnavailable,
// ErrRejected, ErrInvalid (a bad semaphore or option, or a permits
// mismatch: see Semaphore) or ErrClosed; if ctx ended first, also with
// ctx.Err(). ctx bounds the whole call.
//
// The options are those of Lock, but for Token, which a semaphore refuses
// (ErrInvalid): the token of one permit could re-take another slot. With
// Metadata the permit carries it (Manager.Inspect of the slot shows it);
// with Fenced the permit's Fence is its slot's fencing token. Without TTL
// the permit is extended automatically until Unlock, Close, or loss.
func (s *Semaphore) Acquire(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return s.acquire(ctx, "Semaphore.Acquire", opts, s.m.cfg.RetryCount)
}

// TryAcquire is Acquire with a single attempt (which still tries every
// slot once).
func (s *Semaphore) TryAcquire(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return s.acquire(ctx, "Semaphore.TryAcquire", opts, 1)
}

// AcquireWait takes one permit like Acquire, but retries until it succeeds
// or ctx ends (like Manager.LockWait). Errors other than contention and
// unavailability (ErrInvalid, ErrRejected, ErrClosed) return at once.
func (s *Semaphore) AcquireWait(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return s.acquire(ctx, "Semaphore.AcquireWait", opts, -1)
}

// Do runs fn while holding one permit, as Manager.Do does for a lock: it
// acquires as Acquire does, runs fn with a context that is cancelled with
// cause ErrLost if the permit is lost, and releases the permit afterwards,
// even if fn panics.
func (s *Semaphore) Do(ctx context.Context, fn func(ctx context.Context) error, opts ...LockOption) error {
	if fn == nil {
		return invalidf("nil function")
	}
	l, err := s.acquire(ctx, "Semaphore.Do", opts, s.m.cfg.RetryCount)
	if err != nil {
		return err
	}
	return s.m.runHeld(ctx, l, s.name, fn)
}

// slotRequests are the requests of one call, one per slot, made when the
// slot is first tried (a call usually tries one or two slots).
type slotRequests struct {
	s     *Semaphore
	opts  []LockOption
	first request   // the first one made (for the Observer)
	made  []slotReq // the ones made so far, in the order tried
}

type slotReq struct {
	slot int
	req  request
}

// requests validates opts, with the request for the first slot tried.
func (s *Semaphore) requests(opts []LockOption) (*slotRequests, error) {
	if s.err != nil {
		return nil, s.err
	}
	var o lockOptions
	for _, opt := range opts {
		if opt == nil {
			return nil, invalidf("nil LockOption")
		}
		opt(&o)
	}
	if o.tokenSet {
		return nil, invalidf("semaphore %s: the Token option is not supported", quoteResource(s.name))
	}
	sr := &slotRequests{s: s, opts: opts}
	r, err := sr.get(0)
	if err != nil {
		return nil, err
	}
	sr.first = r
	return sr, nil
}

// get returns the request for slot i.
func (sr *slotRequests) get(i int) (request, error) {
	for _, x := range sr.made {
		if x.slot == i {
			return x.req, nil
		}
	}
	r, err := sr.s.m.newRequestMany(sr.s.slots[i:i+1], sr.opts)
	if err != nil {
		return request{}, err
	}
	sr.made = append(sr.made, slotReq{i, r})
	return r, nil
}

// acquire makes up to attempts attempts (forever when attempts < 0).
func (s *Semaphore) acquire(ctx context.Context, method string, opts []LockOption, attempts int) (l *Lock, err error) {
	reqs, err := s.requests(opts)
	if err != nil {
		return nil, err
	}
	m := s.m
	if !m.enter() {
		return nil, ErrClosed
	}
	defer m.leave()
	if m.obs != nil {
		var ev *AcquireEvent
		ctx, ev = m.startAcquire(ctx, method, reqs.first)
		ev.Resources = []string{s.name}
		defer func() { m.endAcquire(ctx, ev, l, err) }()
	}
	return s.loop(ctx, reqs, attempts)
}

// loop is Manager.acquireLoop for a semaphore: each attempt tries the
// slots in turn, from a random one; the caller waits, between attempts, in
// the local queue of the semaphore's slots (a release of any slot wakes
// the head of the queue).
func (s *Semaphore) loop(ctx context.Context, reqs *slotRequests, attempts int) (*Lock, error) {
	return s.m.retryLoop(ctx, "acquire", s.name, s.keys, attempts, func(ctx context.Context, t turn, n int) (*Lock, *QuorumError, time.Duration, error) {
		return s.attempt(ctx, reqs, t, n)
	})
}

// attempt tries each slot once, from a random one, and returns the first
// one acquired; otherwise an error describing the attempt (the slot whose
// outcome says most: rejected, then unavailable, then held), the shortest
// wait until a slot's holder's lease ends (0: unknown), and fatal, an
// error no retry fixes (a permits mismatch).
func (s *Semaphore) attempt(ctx context.Context, reqs *slotRequests, t turn, n int) (l *Lock, e *QuorumError, wait time.Duration, fatal error) {
	m := s.m
	off := 0
	if s.permits > 1 {
		off = mrand.IntN(s.permits)
	}
	held := 0
	for k := range s.permits {
		i := (off + k) % s.permits
		req, err := reqs.get(i)
		if err != nil {
			return nil, nil, 0, err
		}
		req.token = newToken() // fresh per attempt and slot (see acquireLoop)
		l, o, ok := m.attempt(ctx, req, t)
		if ok {
			return l, nil, 0, nil
		}
		qe := m.quorumError("acquire", s.name, o, n, false)
		if s.permits <= maxWatchedSlots {
			// Wake the waiters when a held slot's key is deleted or
			// expires, whoever released it (see KeyWatcher).
			m.watchRefused(req.ks.keys, o, nil)
		}
		if e == nil || rank(qe.Err) > rank(e.Err) {
			e = qe
		}
		if d := m.expiryWait(o); d > 0 && (wait == 0 || d < wait) {
			wait = d
		}
		if qe.Err == ErrNotAcquired {
			held++
		}
		if o.ctxErr != nil || qe.Err == ErrRejected {
			return nil, e, wait, nil
		}
	}
	if held == s.permits {
		// Every slot is held: is a slot beyond ours held too? Then another
		// client uses more permits (see Semaphore).
		if ok, err := m.IsLocked(ctx, s.extra); err == nil && ok {
			return nil, e, 0, invalidf("semaphore %s: permits mismatch: slot %d is held, so another client uses more than %d permits",
				quoteResource(s.name), s.permits, s.permits)
		}
	}
	return nil, e, wait, nil
}

// maxWatchedSlots bounds the semaphores whose waiters watch the slot keys
// (one watch per slot per instance per Manager): a larger semaphore's
// waiters are woken by release messages and retries only.
const maxWatchedSlots = 64

// rank orders the causes of a failed slot: the one that says most wins.
func rank(err error) int {
	switch err {
	case ErrRejected:
		return 3
	case ErrUnavailable:
		return 2
	case ErrNotAcquired:
		return 1
	}
	return 0
}

// AwaitRelease waits until a permit may have become free, for at most max:
// until this Manager releases one of the semaphore's slots, a release
// message names one (ReleaseChannel), or a key watch (KeyWatcher) sees a
// slot's key deleted or expire on an instance that refused this Manager's
// last attempt on it (semaphores of up to 64 permits). It reports whether
// such a wake-up came (false: max passed). It is Manager.AwaitRelease for
// callers that make their own attempts with TryAcquire (the redlock
// command's run --permits does); Acquire and AcquireWait wait this way by
// themselves. It returns ctx's error when ctx ends first, ErrClosed once
// Close started, and ErrInvalid for an invalid semaphore or a negative max.
func (s *Semaphore) AwaitRelease(ctx context.Context, max time.Duration) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	return s.m.awaitRelease(ctx, s.name, s.keys, max)
}

// Held returns how many of the semaphore's permits are held: the slots
// that a quorum of instances report held, under any token (each slot as
// Manager.IsLocked tells). It changes nothing. It returns ErrUnavailable
// when some slot cannot be told, with the count of those that could.
func (s *Semaphore) Held(ctx context.Context) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	var errs []error
	for _, slot := range s.slots {
		ok, err := s.m.IsLocked(ctx, slot)
		switch {
		case err != nil:
			errs = append(errs, err)
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return n, errors.Join(errs...)
			}
		case ok:
			n++
		}
	}
	return n, errors.Join(errs...)
}
