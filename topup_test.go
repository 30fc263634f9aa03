package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// An instance that lost a held lock's key (FLUSHALL, a restart without
// persistence) gets it back from the next extension, automatic or manual,
// with no more lease than the others: redundancy returns. Never where
// another token holds the key, and never for a lock that a quorum no
// longer holds. Seen failing before the top-up (the key stayed missing).
func TestTopUpRestoresRedundancy(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{DefaultTTL: time.Second})

	t.Run("watchdog", func(t *testing.T) {
		l, err := m.Lock(ctx, "topup-auto")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock(ctx)
		wantKeyEverywhere(t, servers, "topup-auto", l.Token(), time.Second)
		servers[2].Do(t, "FLUSHALL")
		// The watchdog extends every 0.6 s: back within two ticks (the
		// bound only fails the test; it is not a timing claim).
		waitFor(t, 5*time.Second, "the key back on the flushed instance", func() bool {
			return get(t, servers[2], "topup-auto") == l.Token()
		})
		if p := pttl(t, servers[2], "topup-auto"); p <= 0 || p > 1000 {
			t.Errorf("restored key's PTTL %d, want in (0, 1000]", p)
		}
	})

	t.Run("manual", func(t *testing.T) {
		l, err := m.Lock(ctx, "topup-manual", redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock(ctx)
		wantKeyEverywhere(t, servers, "topup-manual", l.Token(), 5*time.Second)
		servers[1].Do(t, "DEL", "topup-manual")
		if err := l.Extend(ctx, 4*time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the key back on the instance that lost it", func() bool {
			return get(t, servers[1], "topup-manual") == l.Token()
		})
		if p := pttl(t, servers[1], "topup-manual"); p <= 0 || p > 4000 {
			t.Errorf("restored key's PTTL %d, want in (0, 4000]", p)
		}
	})

	t.Run("never over another token", func(t *testing.T) {
		l, err := m.Lock(ctx, "topup-other", redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock(ctx)
		wantKeyEverywhere(t, servers, "topup-other", l.Token(), 5*time.Second)
		servers[0].Do(t, "SET", "topup-other", "someone-else", "PX", "60000")
		if err := l.Extend(ctx, 4*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := get(t, servers[0], "topup-other"); got != "someone-else" {
			t.Errorf("the extension overwrote another token: %q", got)
		}
	})

	t.Run("forced release is not undone", func(t *testing.T) {
		l, err := m.Lock(ctx, "topup-forced")
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, "topup-forced", l.Token(), time.Second)
		for _, s := range servers {
			s.Do(t, "DEL", "topup-forced")
		}
		waitClosed(t, l.Lost(), 5*time.Second, "the lock lost after its keys were deleted everywhere")
		// The DELs are not atomic: a watchdog batch that runs between the
		// first and the second finds the key on B and C (a quorum) and
		// rightly tops the first instance up; that key then outlives the
		// loss for what is left of its lease. A quorum, though, must not
		// get the key back once the lock was lost.
		var restored []string
		for _, s := range servers {
			if got := get(t, s, "topup-forced"); got != "(nil)" {
				restored = append(restored, fmt.Sprintf("%s=%q", s, got))
			}
		}
		if len(restored) >= m.Quorum() {
			t.Errorf("key restored on a quorum after a forced release: %v", restored)
		} else if len(restored) > 0 {
			t.Logf("key left on a minority (topped up between the DELs): %v", restored)
		}
		if err := l.Unlock(context.Background()); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Unlock of the lost lock: %v, want ErrNotHeld", err)
		}
	})
}
