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
// (a custom Client, a cluster client), so the waits below end only by a
// wake-up of the Manager itself or by the retry delay.
//
// Findings:
//   TestAttack5HandoffTakenWakesOtherKeys liveness: a LockMany lock's release handed to the head of
//                                         one key's queue, which acquires with it, counted as
//                                         taken for every key of the lock: the waiters of its
//                                         other keys were not woken and waited for their retry
//                                         delay (seen failing: 30 s retry delay, not acquired
//                                         within 5 s)
//
// Run them with go test -race -count=1 -run TestAttack5 .

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// phaseClient wraps a Client (and hides its optional interfaces: no release
// messages, no key watches). Once armed, a call of the release script
// runs on the server, then marks the instance's release as run (ran) and
// holds its reply until replies opens; an acquisition of the key acquire
// waits until the release has run on the instance. Either also ends when
// its context does.
type phaseClient struct {
	inner redlock.Client

	mu      sync.Mutex
	release string // the release script's name ("" : not armed)
	acquire string // the suffix of the key whose acquisitions wait
	ran     chan struct{}
	once    sync.Once
	replies chan struct{}
}

// arm holds the calls of script release and of acquisitions of the key
// ending in acquire (see phaseClient).
func (c *phaseClient) arm(release, acquire string, replies chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release, c.acquire, c.ran, c.replies = release, acquire, make(chan struct{}), replies
}

func (c *phaseClient) call(ctx context.Context, sha string, keys []string, do func() (any, error)) (any, error) {
	c.mu.Lock()
	release, acquire, ran, replies := c.release, c.acquire, c.ran, c.replies
	c.mu.Unlock()
	name := scriptName(sha)
	switch {
	case release != "" && name == release:
		v, err := do()
		c.once.Do(func() { close(ran) })
		select {
		case <-replies:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return v, err
	case acquire != "" && strings.HasPrefix(name, "acquire") && len(keys) > 0 && strings.HasSuffix(keys[0], acquire):
		select {
		case <-ran:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return do()
}

func (c *phaseClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	return c.call(ctx, sha, keys, func() (any, error) { return c.inner.EvalSha(ctx, sha, keys, args) })
}

func (c *phaseClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	return c.call(ctx, sha1Hex(src), keys, func() (any, error) { return c.inner.Eval(ctx, src, keys, args) })
}

// newPhaseManager is a Manager over phaseClients (go-redis underneath, the
// scripts loaded), closed in t.Cleanup.
func newPhaseManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, []*phaseClient) {
	t.Helper()
	loadScripts(t, servers)
	pcs := make([]*phaseClient, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		pcs[i] = &phaseClient{inner: goredis.New(newGoRedis(t, s.Addr()))}
		clients[i] = pcs[i]
	}
	m, err := redlock.NewFromClients(clients, cfg)
	if err != nil {
		t.Fatalf("NewFromClients: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	return m, pcs
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

	replies := make(chan struct{})
	for _, pc := range pcs {
		pc.arm("release_many", ":a", replies)
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
