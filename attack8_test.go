package redlock_test

import (
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestAttack8TopUpQueuedBeforeSiblingRelease: releaseSiblings marks the
// other handles of the token before the release goes out, but a top-up
// that one of them had already sent (its extension found the key missing
// on an instance and succeeded on a quorum) is not ordered before the
// release: it reaches the instance after the release through Attach
// returned and sets the key again, for what was left of the lease.
func TestAttack8TopUpQueuedBeforeSiblingRelease(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
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
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	cs[2].setGateFor("topup", gate, entered)
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
	waitFor(t, 20*time.Second, "the top-up returned", func() bool { return cs[2].doneCalls("topup") >= 1 })
	// The release the third instance got has returned too (it may follow
	// the top-up there).
	waitFor(t, 20*time.Second, "the release on the third instance returned", func() bool { return cs[2].doneCalls("release") >= 1 })
	for _, s := range servers {
		if v := get(t, s, key); v != "(nil)" {
			t.Errorf("%s: GET = %q (PTTL %d ms) after the release through Attach returned and ran everywhere: a top-up sent before it arrived after it", s, v, pttl(t, s, key))
		}
	}
}
