package redlock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestUnwatchedLocksArePruned: fixed-TTL locks that nobody unlocks or
// watches cost no timer, but they do not pile up in the held set either:
// once expired they are dropped as new locks are taken.
func TestUnwatchedLocksArePruned(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{})
	const n, ttl = 300, 100 * time.Millisecond
	var last *redlock.Lock
	for i := 0; i < n; i++ {
		l, err := m.Lock(ctx, fmt.Sprint("left-", i), redlock.TTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		last = l
	}
	// (Some may already have expired and been pruned on a slow machine:
	// the set is pruned whenever it doubles.)
	if got := redlock.HeldForTest(m); got > n {
		t.Fatalf("held set: %d locks, want at most %d", got, n)
	}
	waitFor(t, 10*time.Second, "the locks to expire", func() bool { return !last.Valid() })
	if got := len(m.Locks()); got != 0 {
		t.Errorf("Locks() lists %d expired locks", got)
	}
	// Taking as many again makes the set double: it is pruned on the way.
	for i := 0; i < n; i++ {
		l, err := m.Lock(ctx, fmt.Sprint("more-", i), redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock(ctx)
	}
	if got := redlock.HeldForTest(m); got > n+64 {
		t.Errorf("held set: %d locks after %d expired and %d new, want the expired ones pruned", got, n, n)
	}
	if got := len(m.Locks()); got != n {
		t.Errorf("Locks() lists %d, want the %d valid ones", got, n)
	}
}

// TestLostAfterUnwatchedExpiry: Lost() asked for the first time after the
// deadline passed returns a channel that closes (at once).
func TestLostAfterUnwatchedExpiry(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{})
	l, err := m.Lock(ctx, "lost-late", redlock.TTL(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the lock to expire", func() bool { return !l.Valid() })
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost() not closed after the deadline passed")
	}
	// And Lost of a lock unlocked before anyone asked is closed too.
	l2, err := m.Lock(ctx, "lost-unlocked", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l2.Lost():
	default:
		t.Fatal("Lost() of an unlocked lock is not closed")
	}
}

// TestReleaseScriptLoadedWithAcquire: the first acquisition on an instance
// without the scripts also loads the release script, so that a release
// which reaches the instance only after its caller stopped waiting (it
// gets no EVAL fallback) does not fail with NOSCRIPT and leave the key.
func TestReleaseScriptLoadedWithAcquire(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	m := newManager(t, servers, redlock.Config{})
	sha := redlock.ScriptSHA("release")
	if got := servers[0].Do(t, "SCRIPT", "EXISTS", sha); got != "0" {
		t.Fatalf("fresh server: SCRIPT EXISTS release = %s", got)
	}
	l, err := m.Lock(ctx, "primed", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := servers[0].Do(t, "SCRIPT", "EXISTS", sha); got != "1" {
		t.Errorf("after the first acquisition: SCRIPT EXISTS release = %s, want 1", got)
	}
	if got := servers[0].Do(t, "GET", "primed"); got != l.Token() {
		t.Errorf("the priming call touched the lock: %q, want %q", got, l.Token())
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
