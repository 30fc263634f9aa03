package redlock_test

// Fifth attack review: the local handoff (waiters.go handOff, handoff,
// handoffRelease, released; acquire.go turn; lock.go unlock) and heldHere.
// An Unlock hands its release to the head of each of its keys' local
// queues; the head's attempt follows the release on each instance, and
// once the release has returned at quorum (released) the waiters are
// woken again, unless a waiter handed the release acquired with it. The
// interleavings are forced by a Client wrapper (phaseClient) that orders
// or holds one phase on every instance: a release that has run on the
// server but whose reply is held, an acquisition that waits until that
// release has run. The clients have no release messages or key watches
// (a custom Client, a cluster client; one test adds a key watch whose
// changes it reports when it chooses), so the waits below end only by a
// wake-up of the Manager itself or by the retry delay.
//
// Findings:
//   TestAttack5HandoffTakenWakesOtherKeys liveness: a LockMany lock's release handed to the head of
//                                         one key's queue, which acquires with it, counted as
//                                         taken for every key of the lock: the waiters of its
//                                         other keys were not woken and waited for their retry
//                                         delay (seen failing: 30 s retry delay, not acquired
//                                         within 5 s)
//   TestAttack5TokenHandoffOvertakesRelease two holders: a release handed to a head waiting under
//                                         the releasing lock's own token (Token): its attempt,
//                                         ahead of the release (still behind an extension on a
//                                         quorum), refreshed the key and returned a valid lock;
//                                         the release then deleted its keys and another Manager
//                                         took the lock (seen failing; fixed: only a private
//                                         token's release is handed over)
//   TestAttack5ExpiryOfLockHeldHereWakesWaiters
//                                         liveness: a fixed-TTL lock that a queued caller took
//                                         (held here: its key's watches and messages wake nobody)
//                                         and left to expire woke nobody at its end (a lock nobody
//                                         watches has no expiry timer, so Lock.lose never ran):
//                                         the next waiter, whose watches were spent on the stale
//                                         change, waited for its retry delay (seen failing: not
//                                         acquired within 6 s at 30 s; fixed: a lock recorded as
//                                         held here gets its expiry timer)
//
// Interleavings that held are kept as TestAttack5Held...
//
// Run them with go test -race -count=1 -run TestAttack5 .

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// phaseClient wraps a Client (and hides its optional interfaces: no release
// messages, no key watches) and orders or holds chosen phases (rules) of
// the calls to its instance. Every call also ends when its context does.
type phaseClient struct {
	inner redlock.Client

	mu    sync.Mutex
	rules []*phase
}

// phase is a rule of a phaseClient: the calls of script (an acquisition
// script: only those whose first key is key, when key is set) wait for
// wait (when not nil) before they reach the server, and once they ran
// there mark ran (closed by the first) and count, then hold their reply
// until replies (when not nil) is closed.
type phase struct {
	script, key string
	token       string // when set, only the calls whose first argument it is
	wait        <-chan struct{}
	replies     <-chan struct{}
	ran         chan struct{}
	once        sync.Once
	entered     atomic.Int32 // calls that reached the rule
	calls       atomic.Int32 // of those: ran on the server
}

// on adds a rule for script (and key, "" for any) and returns it.
func (c *phaseClient) on(script, key string, wait, replies <-chan struct{}) *phase {
	p := &phase{script: script, key: key, wait: wait, replies: replies, ran: make(chan struct{})}
	c.mu.Lock()
	c.rules = append(c.rules, p)
	c.mu.Unlock()
	return p
}

// onToken is on for the calls of script under token (first argument).
func (c *phaseClient) onToken(script, key, token string, wait, replies <-chan struct{}) *phase {
	p := c.on(script, key, wait, replies)
	c.mu.Lock()
	p.token = token
	c.mu.Unlock()
	return p
}

func (c *phaseClient) call(ctx context.Context, sha string, keys, args []string, do func() (any, error)) (any, error) {
	name := scriptName(sha)
	var p *phase
	c.mu.Lock()
	for _, r := range c.rules {
		if r.script == name && (r.key == "" || len(keys) > 0 && keys[0] == r.key) && (r.token == "" || len(args) > 0 && args[0] == r.token) {
			p = r
			break
		}
	}
	c.mu.Unlock()
	if p == nil {
		return do()
	}
	p.entered.Add(1)
	if p.wait != nil {
		select {
		case <-p.wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	v, err := do()
	p.calls.Add(1)
	p.once.Do(func() { close(p.ran) })
	if p.replies != nil {
		select {
		case <-p.replies:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return v, err
}

func (c *phaseClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	return c.call(ctx, sha, keys, args, func() (any, error) { return c.inner.EvalSha(ctx, sha, keys, args) })
}

func (c *phaseClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	return c.call(ctx, sha1Hex(src), keys, args, func() (any, error) { return c.inner.Eval(ctx, src, keys, args) })
}

// newPhaseManager is a Manager over phaseClients (go-redis underneath, the
// scripts loaded), closed in t.Cleanup.
func newPhaseManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, []*phaseClient) {
	t.Helper()
	loadScripts(t, servers)
	return newWrappedManager(t, servers, cfg, func(c redlock.Client, _ *redistest.Server) *phaseClient {
		return &phaseClient{inner: c}
	})
}

// slowRetries is a Config whose retry delay is far longer than any wait
// of these tests: a waiter that acquires in time was woken.
var slowRetries = redlock.Config{RetryDelayMin: 30 * time.Second, RetryDelayMax: 30 * time.Second, RetryCount: 3, NodeTimeout: 5 * time.Second}

// TestAttack5HandoffTakenWakesOtherKeys: L1 holds "a" and "c" (LockMany).
// W1 waits for "a" and heads its queue; W3 waits for "d" and "c"
// (LockMany: it queues on "d" and listens to the releases of "c"). L1's
// Unlock hands its release to W1 (the head of "a"'s queue; nobody heads
// "c"'s), W1's attempt follows the release and takes "a", and only then do
// the release's replies come back. "c" is free and nobody took it: W3 must
// be woken (released) and acquire at once. It was not: the release was
// marked taken as a whole, and released skipped the waiters of every key
// of the lock, so W3 waited for its 30 s retry delay.
func TestAttack5HandoffTakenWakesOtherKeys(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, pcs := newPhaseManager(t, servers, slowRetries)
	l1, err := m.LockMany(ctx, []string{"a", "c"}, redlock.TTL(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	w1 := make(chan error, 1)
	go func() {
		l, err := m.LockWait(ctx, "a", redlock.TTL(2*time.Minute))
		if err == nil {
			err = l.Unlock(context.Background())
		}
		w1 <- err
	}()
	waitFor(t, 5*time.Second, "W1 queued on a", func() bool { return redlock.Queued(m, "a") == 1 })
	w3ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w3 := make(chan error, 1)
	go func() {
		l, err := m.LockMany(w3ctx, []string{"d", "c"}, redlock.TTL(2*time.Minute))
		if err == nil {
			err = l.Unlock(context.Background())
		}
		w3 <- err
	}()
	waitFor(t, 5*time.Second, "W3 queued on d", func() bool { return redlock.Queued(m, "d") == 1 })

	// On each instance: the release runs, and W1's acquisition of a runs
	// after it; the release's reply is held.
	replies := make(chan struct{})
	for _, pc := range pcs {
		rel := pc.on("release_many", "", nil, replies)
		pc.on("acquire", "a", rel.ran, nil)
	}
	unlocked := make(chan error, 1)
	go func() { unlocked <- l1.Unlock(ctx) }()
	// W1 acquires behind the release (and unlocks again) before the
	// release's replies are let through.
	if err := <-w1; err != nil {
		t.Fatalf("W1, handed the release: %v", err)
	}
	close(replies)
	if err := <-unlocked; err != nil {
		t.Fatalf("L1.Unlock: %v", err)
	}
	if err := <-w3; err != nil {
		t.Fatalf("W3 was not woken by the release of c, which nobody took: %v (acquired after: %v)", err, redlock.AcquiredAfter(m))
	}
}

// TestAttack5HeldHandedReleaseBehindExtend: L1's Extend is on its way to
// instances 0 and 1 (held there before the server) when L1 is unlocked,
// and W, the head of the local queue, is handed the release. The release
// follows the extension on 0 and 1, but the handoff marks it issued at
// once (handoffRelease), so W's attempt reaches 0 and 1 before it: it must
// be refused there (the key still holds L1's token), and W must not hold
// the lock until the release has run; then W acquires (when the release
// returns), and once every held call was delivered W's lock is held on a
// quorum under its token, and no other Manager can take it. It would fail
// if a handed attempt could take or refresh the key of the release it
// follows (the releasing lock's token, or no compare).
func TestAttack5HeldHandedReleaseBehindExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, pcs := newPhaseManager(t, servers, slowRetries)
	l1, err := m.Lock(ctx, "r", redlock.TTL(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	token1 := tokenOnAll(t, servers, "r")
	got := lockWaitAsync(t, ctx, m, "W", "r", redlock.TTL(2*time.Minute))
	waitFor(t, 5*time.Second, "W queued on r", func() bool { return redlock.Queued(m, "r") == 1 })

	acq0 := pcs[0].on("acquire", "r", nil, nil)
	extGate := make(chan struct{})
	extended, unlocked := unlockBehindHeldExtend(t, ctx, pcs, l1, extGate)
	// W's handed attempt reaches instance 0 ahead of the release (held
	// behind the extension): it runs there and must be refused.
	waitFor(t, 5*time.Second, "W's handed attempt on instance 0", func() bool { return acq0.calls.Load() >= 1 })
	for _, i := range []int{0, 1} {
		if v := servers[i].Do(t, "GET", "r"); v != token1 {
			t.Errorf("instance %d: key r holds %q before L1's release ran there, want L1's token %q", i, v, token1)
		}
	}
	close(extGate)
	if err := <-extended; err != nil && !errors.Is(err, redlock.ErrNotHeld) {
		t.Errorf("L1.Extend: %v", err) // ErrNotHeld: unlocked while it was on its way
	}
	if err := <-unlocked; err != nil {
		t.Fatalf("L1.Unlock: %v", err)
	}
	w := <-got
	if w == nil {
		t.FailNow()
	}
	checkSafety(t, "the head's lock, handed a release that waited behind an extension", servers, w, "r")
	wantNotAcquiredByOther(t, ctx, servers, "r", w)
	t.Logf("acquired after: %v", redlock.AcquiredAfter(m))
	if err := w.Unlock(ctx); err != nil {
		t.Error(err)
	}
}

// TestAttack5TokenHandoffOvertakesRelease: two callers of one Manager wait
// for "r" under one token they chose (Token), behind another lock. The
// first takes it (L1); the second, W, now heads the queue. L1's Extend is
// on its way to instances 0 and 1 (held there before the server) when L1
// is unlocked, and W is handed the release: its attempt reaches 0 and 1
// ahead of the release (marked issued at once, it still waits for the
// extension there), finds its own token and refreshes the key, a yes vote:
// W returns a valid lock. Then the release arrives and deletes W's keys
// on 0 and 1: W is Valid on one instance, and another Manager takes "r".
// Two holders. A handed attempt is refused where it overtakes the release
// only when the head's token differs from the release's; before the
// handoff W's attempt started once the release had returned at quorum.
func TestAttack5TokenHandoffOvertakesRelease(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, pcs := newPhaseManager(t, servers, slowRetries)
	x, err := m.Lock(ctx, "r", redlock.TTL(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const token = "attack5-shared-token"
	got := make(chan *redlock.Lock, 2)
	for i := 1; i <= 2; i++ {
		go func() {
			l, err := m.LockWait(ctx, "r", redlock.TTL(2*time.Minute), redlock.Token(token))
			if err != nil {
				t.Errorf("LockWait with Token: %v", err)
			}
			got <- l
		}()
		waitFor(t, 5*time.Second, "the callers with the token queued on r", func() bool { return redlock.Queued(m, "r") == i })
	}
	if err := x.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l1 := <-got // the head, handed x's release; W still waits (30 s retry delay)
	if l1 == nil {
		t.FailNow()
	}
	extGate := make(chan struct{})
	extended, unlocked := unlockBehindHeldExtend(t, ctx, pcs, l1, extGate)
	var w *redlock.Lock
	select {
	case w = <-got:
	case <-time.After(time.Second):
		// Not handed the release ahead of it: W waits until the release
		// has returned (or its retry delay); let the extension through.
	}
	close(extGate)
	if err := <-extended; err != nil && !errors.Is(err, redlock.ErrNotHeld) {
		t.Errorf("L1.Extend: %v", err)
	}
	if err := <-unlocked; err != nil {
		t.Fatalf("L1.Unlock: %v", err)
	}
	if w == nil {
		w = <-got
	}
	if w == nil {
		t.FailNow()
	}
	checkSafety(t, "the lock handed to a caller of the releasing lock's token", servers, w, "r")
	wantNotAcquiredByOther(t, ctx, servers, "r", w)
	_ = w.Unlock(ctx)
}

// watchingClient is a phaseClient with a KeyWatcher whose changes the test
// reports (fire) at the moment it chooses: the invalidation of a key
// watched on the instance, delivered late.
type watchingClient struct {
	*phaseClient

	mu       sync.Mutex
	onChange func(string)
	watched  map[string]bool
}

func (c *watchingClient) WatchKeys(_ context.Context, onChange func(string)) (redlock.KeyWatch, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onChange = onChange
	return watchSession{c}, nil
}

// watching reports whether key is watched on the instance.
func (c *watchingClient) watching(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watched[key]
}

// fire reports a change of key to the watch session, as once per watch.
func (c *watchingClient) fire(key string) {
	c.mu.Lock()
	f, ok := c.onChange, c.watched[key]
	delete(c.watched, key)
	c.mu.Unlock()
	if ok && f != nil {
		f(key)
	}
}

type watchSession struct{ c *watchingClient }

func (s watchSession) Watch(_ context.Context, key string) (bool, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.watched == nil {
		s.c.watched = make(map[string]bool)
	}
	s.c.watched[key] = true
	return true, nil
}

func (watchSession) Close() error { return nil }

// TestAttack5ExpiryOfLockHeldHereWakesWaiters: L0 holds "k" for 2 minutes; W2
// and W3 wait for it (30 s retry delay), and W3's refusal watches "k" on
// every instance. L0's Unlock hands the release to W2, which takes "k"
// with a 1 s lease that it never releases (a fixed-TTL lock left to
// expire: normal use). The watches report the change (L0's release) only
// once W2 holds "k": held here (heldHere), it wakes nobody, and the
// watches are spent. W2's lock then ends at its deadline, and "k" expires:
// W3 must get it then. Nothing woke it: no Unlock, no loss (a lock nobody
// watches has no expiry timer, so Lock.lose never ran and nudged no
// one), no watch, and W3's last refusal (by L0) said 2 minutes: it waited
// for its 30 s retry delay.
func TestAttack5ExpiryOfLockHeldHereWakesWaiters(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	loadScripts(t, servers)
	wcs := make([]*watchingClient, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		wcs[i] = &watchingClient{phaseClient: &phaseClient{inner: goredis.New(newGoRedis(t, s.Addr()))}}
		clients[i] = wcs[i]
	}
	m, err := redlock.NewFromClients(clients, slowRetries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	l0, err := m.Lock(ctx, "k", redlock.TTL(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	w2 := lockWaitAsync(t, ctx, m, "W2", "k", redlock.TTL(time.Second))
	waitFor(t, 5*time.Second, "W2 queued on k", func() bool { return redlock.Queued(m, "k") == 1 })
	w3ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	w3 := make(chan error, 1)
	go func() {
		l, err := m.LockWait(w3ctx, "k", redlock.TTL(time.Minute))
		if err == nil {
			err = l.Unlock(context.Background())
		}
		w3 <- err
	}()
	waitFor(t, 5*time.Second, "W3 queued on k", func() bool { return redlock.Queued(m, "k") == 2 })
	waitFor(t, 5*time.Second, "k watched on a quorum (the instances that refused)", func() bool {
		n := 0
		for _, c := range wcs {
			if c.watching("k") {
				n++
			}
		}
		return n >= 2
	})
	if err := l0.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l2 := <-w2 // left to expire
	if l2 == nil {
		t.FailNow()
	}
	for _, c := range wcs {
		c.fire("k") // L0's release, reported late
	}
	if err := <-w3; err != nil {
		t.Fatalf("W3 was not woken when the lock held here ended (W2's lease, %v after it was taken): %v (acquired after: %v)",
			time.Second, err, redlock.AcquiredAfter(m))
	}
}

// TestAttack5HeldHandoffFenced: fenced locks handed over in a chain: each
// head's acquisition follows the release handed to it, and its fence round
// follows its acquisition; every holder's fencing token must exceed the
// one before, and each holder holds a quorum. The release's replies are
// held until the head has acquired (so the head's attempt, and its fence
// round, ran with the release still on its way), and the head's
// acquisition on each instance runs only after the release ran there.
func TestAttack5HeldHandoffFenced(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, pcs := newPhaseManager(t, servers, slowRetries)
	prev, err := m.Lock(ctx, "f", redlock.TTL(2*time.Minute), redlock.Fenced())
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		// prev's token (not read with Token: that ends handoffs), once
		// prev holds every instance: W's first attempt, made before
		// prev's call to the last instance, would take the key there
		// and its clean-up delete it, and prev would hold only a quorum.
		token := tokenOnAll(t, servers, "f")
		got := lockWaitAsync(t, ctx, m, "W", "f", redlock.TTL(2*time.Minute), redlock.Fenced())
		waitFor(t, 5*time.Second, "W queued on f", func() bool { return redlock.Queued(m, "f") == 1 })
		replies := make(chan struct{})
		for _, pc := range pcs {
			pc.mu.Lock()
			pc.rules = nil
			pc.mu.Unlock()
			rel := pc.onToken("release", "f", token, nil, replies)
			pc.on("acquire_many", "f", rel.ran, nil) // a fenced lock takes its key and counter
		}
		unlocked := make(chan error, 1)
		go func() { unlocked <- prev.Unlock(ctx) }()
		w := <-got
		close(replies)
		if err := <-unlocked; err != nil {
			t.Fatalf("round %d: Unlock: %v", round, err)
		}
		if w == nil {
			t.FailNow()
		}
		if w.Fence() <= prev.Fence() {
			t.Errorf("round %d: the head's fencing token %d does not exceed the last holder's %d", round, w.Fence(), prev.Fence())
		}
		// Not checkSafety yet: it reads w.Token, and a lock whose token
		// was read hands no release over (see Lock.private).
		wantNotAcquiredByOther(t, ctx, servers, "f", w)
		prev = w
	}
	checkSafety(t, "the last of the fenced locks handed over", servers, prev, "f")
	if n := redlock.AcquiredAfter(m)["handoff"]; n != 3 {
		t.Errorf("%d acquisitions behind a handed release, want 3: %v", n, redlock.AcquiredAfter(m))
	}
	_ = prev.Unlock(ctx)
}

// tokenOnAll waits until every server holds key with one value (a lock
// returns at quorum: the last instance's call may still be on its way) and
// returns it. It reads the servers, not Lock.Token, which ends handoffs.
func tokenOnAll(t *testing.T, servers []*redistest.Server, key string) string {
	t.Helper()
	var v string
	waitFor(t, 5*time.Second, "key "+key+" set on every instance", func() bool {
		v = servers[0].Do(t, "GET", key)
		if v == "(nil)" {
			return false
		}
		for _, s := range servers[1:] {
			if s.Do(t, "GET", key) != v {
				return false
			}
		}
		return true
	})
	return v
}

// unlockBehindHeldExtend starts l.Extend, held before instances 0 and 1
// until gate is closed, waits until both calls are held there, then starts
// l.Unlock, whose release follows the extension on each instance. It
// returns the channels of Extend's and Unlock's results.
func unlockBehindHeldExtend(t *testing.T, ctx context.Context, pcs []*phaseClient, l *redlock.Lock, gate chan struct{}) (extended, unlocked <-chan error) {
	t.Helper()
	ext0 := pcs[0].on("extend", "", gate, nil)
	ext1 := pcs[1].on("extend", "", gate, nil)
	e := make(chan error, 1)
	go func() { e <- l.Extend(ctx, 2*time.Minute) }()
	waitFor(t, 5*time.Second, "the extension held on instances 0 and 1", func() bool {
		return ext0.entered.Load() == 1 && ext1.entered.Load() == 1
	})
	u := make(chan error, 1)
	go func() { u <- l.Unlock(ctx) }()
	return e, u
}

// lockWaitAsync runs m.LockWait(ctx, resource, opts...) on a goroutine and
// returns the channel of its lock (nil after an error, which fails the test
// under what's name).
func lockWaitAsync(t *testing.T, ctx context.Context, m *redlock.Manager, what, resource string, opts ...redlock.LockOption) <-chan *redlock.Lock {
	t.Helper()
	got := make(chan *redlock.Lock, 1)
	go func() {
		l, err := m.LockWait(ctx, resource, opts...)
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
		got <- l
	}()
	return got
}
