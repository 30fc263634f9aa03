package redlock_test

import (
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// A waiter behind a holder that vanished (its key left to expire) retries
// when a quorum of the holder's keys expire: the refusal carries each
// key's PTTL. The retry delay here is a minute, so only the timed retry
// can acquire before the test's deadline, and the acquisition takes two
// attempts (three at most). On the rueidis and the go-redis wires, for Lock and LockMany.
// Seen failing before the change (the waiter polled after its minute).
// The holder's lease is 1s, not less: the waiter's first attempt (on a
// fresh Manager: script loading, the go-redis wire's EVAL fallback) must
// be refused before it ends, or it acquires at once with one attempt
// (400ms was too little on a loaded machine).
func TestRetryAtHolderExpiry(t *testing.T) {
	servers := redistest.Start(t, 3)
	cfg := redlock.Config{RetryCount: 5, RetryDelayMin: time.Minute, RetryDelayMax: time.Minute}
	for _, wire := range []string{"rueidis", "go-redis"} {
		t.Run(wire, func(t *testing.T) {
			ctx := testCtx(t)
			rec := &recorder{}
			c := cfg
			c.Observer = rec
			var m *redlock.Manager
			if wire == "rueidis" {
				m = newManager(t, servers, c)
			} else {
				m, _ = newCountingManager(t, servers, c)
			}
			holder := newManager(t, servers, redlock.Config{})
			for _, many := range []bool{false, true} {
				res := wire + "-expiring"
				if many {
					res += "-many"
				}
				if _, err := holder.Lock(ctx, res, redlock.TTL(time.Second)); err != nil { // left to expire
					t.Fatal(err)
				}
				var l *redlock.Lock
				var err error
				if many {
					l, err = m.LockMany(ctx, []string{res, res + "-2"})
				} else {
					l, err = m.Lock(ctx, res)
				}
				if err != nil {
					t.Fatalf("many=%v: %v", many, err)
				}
				_ = l.Unlock(ctx)
				got := rec.snapshot().acquired
				last := got[len(got)-1]
				// A refusal, then the retry at expiry (a third when a retry
				// came a hair before a slow instance's key expired): never
				// the one-minute poll, which the test would not outlive.
				if n := len(last.Attempts); n < 2 || n > 3 {
					t.Errorf("many=%v: %d attempts, want 2 (a refusal, then the retry at expiry)", many, n)
				}
			}
		})
	}
}
