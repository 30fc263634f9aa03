package redlock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// shaGateClient wraps a Client and holds the EvalSha calls of one script
// (by SHA1) at a gate; every other call passes.
type shaGateClient struct {
	redlock.Client
	mu       sync.Mutex
	sha      string
	gate     chan struct{}
	entered  chan struct{}  // one value per held call (non-blocking)
	returned chan struct{}  // one value per held call that returned (non-blocking)
	done     map[string]int // EvalSha calls returned, by SHA1
}

// doneCalls returns how many EvalSha calls of the named script returned.
func (c *shaGateClient) doneCalls(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done[redlock.ScriptSHA(script)]
}

func (c *shaGateClient) count(sha string) {
	c.mu.Lock()
	if c.done == nil {
		c.done = make(map[string]int)
	}
	c.done[sha]++
	c.mu.Unlock()
}

func (c *shaGateClient) setGate(script string, gate, entered, returned chan struct{}) {
	c.mu.Lock()
	c.sha, c.gate, c.entered, c.returned = redlock.ScriptSHA(script), gate, entered, returned
	c.mu.Unlock()
}

func (c *shaGateClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.mu.Lock()
	gate, entered, returned := c.gate, c.entered, c.returned
	held := gate != nil && sha == c.sha
	c.mu.Unlock()
	defer c.count(sha)
	if !held {
		return c.Client.EvalSha(ctx, sha, keys, args)
	}
	select {
	case entered <- struct{}{}:
	default:
	}
	select {
	case <-gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	v, err := c.Client.EvalSha(ctx, sha, keys, args)
	select {
	case returned <- struct{}{}:
	default:
	}
	return v, err
}

// TestAttack8TopUpQueuedBeforeSiblingRelease: releaseSiblings marks the
// other handles of the token before the release goes out, but a top-up
// that one of them had already sent (its extension found the key missing
// on an instance and succeeded on a quorum) is not ordered before the
// release: it reaches the instance after the release through Attach
// returned and sets the key again, for what was left of the lease.
func TestAttack8TopUpQueuedBeforeSiblingRelease(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newWrappedManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second}, func(c redlock.Client, _ *redistest.Server) *shaGateClient {
		return &shaGateClient{Client: c}
	})
	const key = "topup-queued"
	l, err := m.Lock(ctx, key, redlock.TTL(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tok := l.Token()
	for _, s := range servers {
		waitFor(t, 20*time.Second, s.String()+" holding the key", func() bool { return get(t, s, key) == tok })
	}
	servers[2].Do(t, "DEL", key) // the third instance lost it (FLUSHALL, restart)
	gate, entered, returned := make(chan struct{}), make(chan struct{}, 1), make(chan struct{}, 1)
	cs[2].setGate("topup", gate, entered, returned)
	if err := l.Extend(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, chanOf(entered), 20*time.Second, "the top-up held on the third instance")
	a, err := m.Attach(ctx, key, tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		waitFor(t, 20*time.Second, s.String()+" free of the key", func() bool { return get(t, s, key) == "(nil)" })
	}
	close(gate)
	waitClosed(t, chanOf(returned), 20*time.Second, "the top-up returned")
	// The release the third instance got has returned too (it may follow
	// the top-up there).
	waitFor(t, 20*time.Second, "the release on the third instance returned", func() bool { return cs[2].doneCalls("release") >= 1 })
	for _, s := range servers {
		if v := get(t, s, key); v != "(nil)" {
			t.Errorf("%s: GET = %q (PTTL %d ms) after the release through Attach returned and ran everywhere: a top-up sent before it arrived after it", s, v, pttl(t, s, key))
		}
	}
}
