package redlock_test

import (
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestTopUpAfterReleaseThroughAttach: a lock released through another
// handle of its token (Attach, as TestConnCluster does) while one of the
// lock's own extensions is still on its way to an instance: that
// extension arrives after the release, finds the key missing, and the
// top-up that follows it (sent because the extension succeeded on a
// quorum) sets the key again. The key then outlives a release that
// returned, for the extension's lease. The extension is held at a gate
// on the third instance until the release has run everywhere.
//
// Found by TestConnCluster ("keys left: cluster-2", 2 runs of 18 beside
// three busy loops): there the cluster's calls of one lock lagged behind
// the plain servers' after SCRIPT FLUSH, so the Attach handle's release
// reached the cluster before the original handle's extension.
func TestTopUpAfterReleaseThroughAttach(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
	l, err := m.Lock(ctx, "topup-attach", redlock.TTL(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers { // every instance holds the key
		waitFor(t, 20*time.Second, s.String()+" holding the key", func() bool { return get(t, s, "topup-attach") == l.Token() })
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	cs[2].setGate(gate, entered)
	if err := l.Extend(ctx, 30*time.Second); err != nil { // at quorum: 0 and 1
		t.Fatal(err)
	}
	waitClosed(t, chanOf(entered), 20*time.Second, "the extension held on the third instance")
	cs[2].setGate(nil, nil) // later calls pass; the extension stays held
	a, err := m.Attach(ctx, "topup-attach", l.Token())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers { // the release ran everywhere
		waitFor(t, 20*time.Second, s.String()+" free of the key", func() bool { return get(t, s, "topup-attach") == "(nil)" })
	}
	close(gate) // the extension reaches the third instance: key missing
	waitFor(t, 20*time.Second, "the held extension returned", func() bool {
		return cs[2].returned.Load() == cs[2].evalsha.Load()
	})
	// A top-up, if one follows, is queued after the extension's reply, and
	// a later call of the lock on the instance follows it: the lock's
	// read, then every call there returned.
	_, _ = l.TTL(ctx)
	waitFor(t, 20*time.Second, "every call of the third instance returned", func() bool {
		return cs[2].returned.Load() == cs[2].evalsha.Load() && cs[2].calls("pttl") > 0
	})
	t.Logf("top-up calls on the third instance: %d", cs[2].calls("topup"))
	for _, s := range servers {
		if v := get(t, s, "topup-attach"); v != "(nil)" {
			t.Errorf("%s: GET = %q (PTTL %d ms) after the release through Attach returned and ran everywhere: the lock's late extension topped it up", s, v, pttl(t, s, "topup-attach"))
		}
	}
}

// chanOf is ch as a channel closed on its first value.
func chanOf(ch <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() { <-ch; close(done) }()
	return done
}
