package interop

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/go-redsync/redsync/v4"
	rsredis "github.com/go-redsync/redsync/v4/redis"
	rsgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redlock-go/redlock"
)

// redsync v4 (mutex.go, scripts.go) uses the mutex name as the key verbatim
// (it has no prefix option), a random base64 value, SET NX PX to acquire,
// and a GET-compare-DEL script to release. Our wire format is KeyPrefix +
// resource with the token as value, so with no KeyPrefix both sides contend
// for the same key.

// newRedsync returns a redsync over servers with clients of its own, closed
// in t.Cleanup.
func newRedsync(t *testing.T, servers []*server) *redsync.Redsync {
	t.Helper()
	pools := make([]rsredis.Pool, len(servers))
	for i, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		pools[i] = rsgoredis.NewPool(c)
	}
	return redsync.New(pools...)
}

// newMutex is a redsync mutex making a single attempt per Lock call, with
// the same lease as our locks.
func newMutex(rs *redsync.Redsync, name string) *redsync.Mutex {
	return rs.NewMutex(name, redsync.WithTries(1), redsync.WithExpiry(lease))
}

// requireTaken fails unless err is redsync's "taken on a quorum" error
// naming n nodes.
func requireTaken(t *testing.T, err error, n int) {
	t.Helper()
	var taken *redsync.ErrTaken
	if !errors.As(err, &taken) {
		t.Fatalf("redsync error = %v (%T), want *redsync.ErrTaken", err, err)
	}
	if len(taken.Nodes) != n {
		t.Fatalf("redsync ErrTaken.Nodes = %v, want all %d nodes", taken.Nodes, n)
	}
}

// requireNotAcquired fails unless err is our ErrNotAcquired with at least a
// quorum of the n instances refusing because another token holds the key (the
// manager may return once the outcome is decided, before the others answer).
func requireNotAcquired(t *testing.T, err error, n int) {
	t.Helper()
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryLock error = %v, want ErrNotAcquired", err)
	}
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("TryLock error %T is not a *redlock.QuorumError", err)
	}
	if len(qe.Instances) < n/2+1 {
		t.Fatalf("QuorumError has %d instance causes, want at least %d: %v", len(qe.Instances), n/2+1, err)
	}
	for _, ie := range qe.Instances {
		if !errors.Is(ie.Err, redlock.ErrHeldByOther) {
			t.Fatalf("instance %s: cause %v, want ErrHeldByOther", ie.Endpoint, ie.Err)
		}
	}
}

func TestRedsync(t *testing.T) {
	for _, vt := range variants {
		n := vt.n
		t.Run(vt.name(), func(t *testing.T) {
			servers := startServers(t, n)
			noMetaLeft(t, servers)
			m := newManager(t, servers)
			rs := newRedsync(t, servers)

			t.Run("ours excludes redsync", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:redsync:a"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)

				mu := newMutex(rs, res)
				requireTaken(t, mu.TryLockContext(ctx), n)
				// redsync released its failed attempt with its own value:
				// our key must have survived that.
				requireAll(t, servers, res, l.Token())

				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
				if err := mu.TryLockContext(ctx); err != nil {
					t.Fatalf("redsync TryLock after our Unlock: %v", err)
				}
				requireAll(t, servers, res, mu.Value())
				if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
					t.Fatalf("redsync Unlock = %v, %v; want true, nil", ok, err)
				}
				waitNone(t, servers, res)
			})

			t.Run("redsync excludes ours", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:redsync:b"
				mu := newMutex(rs, res)
				if err := mu.TryLockContext(ctx); err != nil {
					t.Fatalf("redsync TryLock: %v", err)
				}
				requireAll(t, servers, res, mu.Value())

				_, err := m.TryLock(ctx, res, vt.opts()...)
				requireNotAcquired(t, err, n)
				// Our failed attempt cleaned up with our token only.
				requireAll(t, servers, res, mu.Value())
				if locked, err := m.IsLocked(ctx, res); err != nil || !locked {
					t.Fatalf("IsLocked while redsync holds it = %v, %v; want true, nil", locked, err)
				}

				if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
					t.Fatalf("redsync Unlock = %v, %v; want true, nil", ok, err)
				}
				waitNone(t, servers, res)
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after redsync Unlock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
			})

			t.Run("our Unlock keeps redsync's key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:redsync:c"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				expire(t, servers, res) // our lease runs out
				mu := newMutex(rs, res)
				if err := mu.TryLockContext(ctx); err != nil {
					t.Fatalf("redsync TryLock after our key expired: %v", err)
				}
				if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
					t.Fatalf("Extend of our expired lock = %v, want ErrNotHeld", err)
				}
				if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
					t.Fatalf("Unlock of our expired lock = %v, want ErrNotHeld", err)
				}
				requireAll(t, servers, res, mu.Value())
				if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
					t.Fatalf("redsync Unlock = %v, %v; want true, nil", ok, err)
				}
			})

			t.Run("redsync's Unlock keeps our key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:redsync:d"
				mu := newMutex(rs, res)
				if err := mu.TryLockContext(ctx); err != nil {
					t.Fatalf("redsync TryLock: %v", err)
				}
				expire(t, servers, res) // redsync's lease runs out
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after redsync's key expired: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if ok, err := mu.ExtendContext(ctx); ok {
					t.Fatalf("redsync Extend over our lock = true (%v), want false", err)
				}
				ok, err := mu.UnlockContext(ctx)
				if ok {
					t.Fatalf("redsync Unlock over our lock = true, want false")
				}
				requireTaken(t, err, n)
				requireAll(t, servers, res, l.Token())
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
			})

			t.Run("concurrent rounds", func(t *testing.T) {
				ctx := testCtx(t)
				const rounds = 50
				var oursWon, theirsWon, neither int
				defer func() {
					t.Logf("%d rounds: redlock won %d, redsync won %d, neither %d", rounds, oursWon, theirsWon, neither)
				}()
				for i := range rounds {
					res := fmt.Sprintf("interop:redsync:race:%d", i)
					mu := newMutex(rs, res)
					var (
						wg     sync.WaitGroup
						ours   *redlock.Lock
						ourErr error
						rsErr  error
					)
					wg.Add(2)
					go func() { defer wg.Done(); ours, ourErr = m.TryLock(ctx, res, vt.opts()...) }()
					go func() { defer wg.Done(); rsErr = mu.TryLockContext(ctx) }()
					wg.Wait()
					if ourErr == nil && rsErr == nil {
						t.Fatalf("round %d: both redlock (%s) and redsync (%s) hold %q", i, ours.Token(), mu.Value(), res)
					}
					if ourErr != nil && !errors.Is(ourErr, redlock.ErrNotAcquired) {
						t.Fatalf("round %d: TryLock: %v, want nil or ErrNotAcquired", i, ourErr)
					}
					if rerr := (*redsync.RedisError)(nil); errors.As(rsErr, &rerr) {
						t.Fatalf("round %d: redsync: %v, want a refusal, not a Redis error", i, rsErr)
					}
					switch {
					case ourErr == nil:
						oursWon++
						requireQuorum(t, servers, res, ours.Token())
						if err := ours.Unlock(ctx); err != nil {
							t.Fatalf("round %d: Unlock: %v", i, err)
						}
					case rsErr == nil:
						theirsWon++
						requireQuorum(t, servers, res, mu.Value())
						if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
							t.Fatalf("round %d: redsync Unlock = %v, %v", i, ok, err)
						}
					default:
						neither++
					}
				}
			})

			// Negative control: with a KeyPrefix our key is not redsync's
			// key, and the checks above would catch it (both acquire).
			t.Run("KeyPrefix mismatch is not exclusion", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:redsync:e"
				pm, err := redlock.New(addrs(servers), redlock.Config{RetryCount: 1, KeyPrefix: "app:", NodeTimeout: ourNodeTimeout})
				if err != nil {
					t.Fatalf("redlock.New: %v", err)
				}
				defer func() {
					if err := pm.Close(ctx); err != nil {
						t.Errorf("Close: %v", err)
					}
				}()
				l, err := pm.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, "app:"+res, l.Token())
				mu := newMutex(rs, res)
				if err := mu.TryLockContext(ctx); err != nil {
					t.Fatalf("redsync on the unprefixed name = %v, want it acquired (different key)", err)
				}
				if ok, err := mu.UnlockContext(ctx); !ok || err != nil {
					t.Fatalf("redsync Unlock = %v, %v", ok, err)
				}
				// redsync with the prefixed name is excluded again.
				requireTaken(t, newMutex(rs, "app:"+res).TryLockContext(ctx), n)
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
			})
		})
	}
}
