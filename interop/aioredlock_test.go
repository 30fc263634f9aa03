package interop

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redlock-go/redlock"
)

// aioredlock (Python) cannot be installed in this environment, so this file
// runs its wire protocol from Go instead: the exact Lua scripts of
// aioredlock 0.7.3 (aioredlock/redis.py, Instance.SET_LOCK_SCRIPT and
// UNSET_LOCK_SCRIPT, whitespace-stripped and loaded as _register_scripts
// does), sent with EVALSHA and reloaded on NOSCRIPT, with its quorum rule
// (int(N/2)+1 instances answering without error), its validity check
// (ttl - elapsed - (ttl*0.01 + 2ms) > 0) and its clean-up of a failed
// acquisition. See /work/shared/reference/aioredlock-behaviour.md.

const (
	aioSetLockScript = `
    local identifier = redis.call('get', KEYS[1])
    if not identifier or identifier == ARGV[1] then
        return redis.call("set", KEYS[1], ARGV[1], 'PX', ARGV[2])
    else
        return redis.error_reply('ERROR')
    end`

	aioUnsetLockScript = `
    local identifier = redis.call('get', KEYS[1])
    if not identifier then
        return redis.status_reply('OK')
    elseif identifier == ARGV[1] then
        return redis.call("del", KEYS[1])
    else
        return redis.error_reply('ERROR')
    end`
)

// aioLeadingSpace is aioredlock's re.sub(r"^\s+", "", script, flags=re.M).
var aioLeadingSpace = regexp.MustCompile(`(?m)^\s+`)

// aioredlock's error classes, as the stand-in raises them.
var (
	// errAioAcquiring is LockAcquiringError: an instance answered with an
	// error reply (the key holds another identifier).
	errAioAcquiring = errors.New("aioredlock: LockAcquiringError")
	// errAioRuntime is LockRuntimeError: an instance could not be reached.
	errAioRuntime = errors.New("aioredlock: LockRuntimeError")
	// errAioTimeout is the LockError raised when validity is used up.
	errAioTimeout = errors.New("aioredlock: LockError: lock timeout")
)

// aioredlock is the stand-in client: one go-redis client per instance.
type aioredlock struct {
	clients []*redis.Client
}

func newAioredlock(t *testing.T, servers []*server) *aioredlock {
	t.Helper()
	a := &aioredlock{}
	for _, s := range servers {
		c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		a.clients = append(a.clients, c)
	}
	return a
}

// aioScript is a script as aioredlock registers it.
func aioScript(src string) *redis.Script {
	return redis.NewScript(strings.TrimSpace(aioLeadingSpace.ReplaceAllString(src, "")))
}

var (
	aioSetLock   = aioScript(aioSetLockScript)
	aioUnsetLock = aioScript(aioUnsetLockScript)
)

// evalsha runs s by its SHA1 and, on NOSCRIPT, loads it and retries once
// (aioredlock's register_scripts=True retry).
func evalsha(ctx context.Context, c *redis.Client, s *redis.Script, key string, args ...any) error {
	err := s.EvalSha(ctx, c, []string{key}, args...).Err()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := s.Load(ctx, c).Err(); err != nil {
			return err
		}
		err = s.EvalSha(ctx, c, []string{key}, args...).Err()
	}
	return err
}

// classify maps one instance's failure to aioredlock's error class: an
// error reply from the script is LockAcquiringError, anything else (network,
// timeout) LockRuntimeError.
func classify(err error) error {
	var reply redis.Error
	if errors.As(err, &reply) {
		return fmt.Errorf("%w: %w", errAioAcquiring, err)
	}
	return fmt.Errorf("%w: %w", errAioRuntime, err)
}

// gather runs op on every instance at once and returns how many succeeded
// and the first error of the class raise_error would pick (runtime first).
func (a *aioredlock) gather(ctx context.Context, op func(context.Context, *redis.Client) error) (int, error) {
	errs := make([]error, len(a.clients))
	var wg sync.WaitGroup
	for i, c := range a.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := op(ctx, c); err != nil {
				errs[i] = classify(err)
			}
		}()
	}
	wg.Wait()
	ok := 0
	var acquiring, runtime error
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errAioRuntime) && runtime == nil:
			runtime = err
		case errors.Is(err, errAioAcquiring) && acquiring == nil:
			acquiring = err
		}
	}
	if runtime != nil {
		return ok, runtime
	}
	return ok, acquiring
}

// newUUID returns a random UUIDv4 in text form, like Python's
// str(uuid.uuid4()), aioredlock's default lock_identifier.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (a *aioredlock) quorum() int { return len(a.clients)/2 + 1 }

// lock is one aioredlock acquisition attempt (retry_count=1) of resource
// under id for ttl. On failure it releases what it may have set, as
// aioredlock's lock() does in its clean-up.
func (a *aioredlock) lock(ctx context.Context, resource, id string, ttl time.Duration) error {
	start := time.Now()
	ttlMs := strconv.FormatInt(ttl.Milliseconds(), 10)
	ok, err := a.gather(ctx, func(ctx context.Context, c *redis.Client) error {
		return evalsha(ctx, c, aioSetLock, resource, id, ttlMs)
	})
	elapsed := time.Since(start)
	drift := time.Duration(float64(ttl)*0.01) + 2*time.Millisecond
	switch {
	case ok < a.quorum():
		// err is non-nil: fewer than a quorum succeeded.
	case ttl-elapsed-drift <= 0:
		err = errAioTimeout
	default:
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	_ = a.unlock(cctx, resource, id)
	return err
}

// unlock is aioredlock's unset_lock: it succeeds when a quorum of the
// instances ran the release script without an error reply.
func (a *aioredlock) unlock(ctx context.Context, resource, id string) error {
	ok, err := a.gather(ctx, func(ctx context.Context, c *redis.Client) error {
		return evalsha(ctx, c, aioUnsetLock, resource, id)
	})
	if ok >= a.quorum() {
		return nil
	}
	return err
}

func TestAioredlockScripts(t *testing.T) {
	for _, vt := range variants {
		n := vt.n
		t.Run(vt.name(), func(t *testing.T) {
			servers := startServers(t, n)
			noMetaLeft(t, servers)
			m := newManager(t, servers)
			aio := newAioredlock(t, servers)

			t.Run("ours excludes aioredlock", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:aio:a"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); !errors.Is(err, errAioAcquiring) {
					t.Fatalf("aioredlock lock while we hold it = %v, want LockAcquiringError", err)
				}
				// Its clean-up (unset_lock with its identifier) left ours alone.
				requireAll(t, servers, res, l.Token())
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock after our Unlock: %v", err)
				}
				requireAll(t, servers, res, id)
				if err := aio.unlock(ctx, res, id); err != nil {
					t.Fatalf("aioredlock unlock: %v", err)
				}
				waitNone(t, servers, res)
			})

			t.Run("aioredlock excludes ours", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:aio:b"
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock: %v", err)
				}
				_, err := m.TryLock(ctx, res, vt.opts()...)
				requireNotAcquired(t, err, n)
				requireAll(t, servers, res, id)
				if err := aio.unlock(ctx, res, id); err != nil {
					t.Fatalf("aioredlock unlock: %v", err)
				}
				waitNone(t, servers, res)
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after aioredlock unlock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
			})

			t.Run("same token re-acquires both ways", func(t *testing.T) {
				// aioredlock's lock_identifier and our Token option name the
				// same value: a lock taken by one side can be refreshed and
				// released by the other (aioredlock re-acquire semantics).
				ctx := testCtx(t)
				const res = "interop:aio:token"
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock: %v", err)
				}
				l, err := m.TryLock(ctx, res, vt.opts(redlock.Token(id))...)
				if err != nil {
					t.Fatalf("TryLock with aioredlock's identifier: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock re-lock under our lock with the same identifier: %v", err)
				}
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
			})

			t.Run("our Unlock keeps aioredlock's key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:aio:c"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				expire(t, servers, res)
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock after our key expired: %v", err)
				}
				if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
					t.Fatalf("Unlock of our expired lock = %v, want ErrNotHeld", err)
				}
				requireAll(t, servers, res, id)
				if err := aio.unlock(ctx, res, id); err != nil {
					t.Fatalf("aioredlock unlock: %v", err)
				}
			})

			t.Run("aioredlock's unlock keeps our key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:aio:d"
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock: %v", err)
				}
				expire(t, servers, res)
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after aioredlock's key expired: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if err := aio.unlock(ctx, res, id); !errors.Is(err, errAioAcquiring) {
					t.Fatalf("aioredlock unlock over our lock = %v, want LockAcquiringError", err)
				}
				requireAll(t, servers, res, l.Token())
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
			})

			t.Run("NOSCRIPT reload", func(t *testing.T) {
				// The stand-in must really reach the instances by EVALSHA
				// after a SCRIPT FLUSH, as aioredlock does.
				ctx := testCtx(t)
				const res = "interop:aio:flush"
				for _, s := range servers {
					if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
						t.Fatalf("SCRIPT FLUSH: %v", err)
					}
				}
				id := newUUID()
				if err := aio.lock(ctx, res, id, lease); err != nil {
					t.Fatalf("aioredlock lock after SCRIPT FLUSH: %v", err)
				}
				requireAll(t, servers, res, id)
				if err := aio.unlock(ctx, res, id); err != nil {
					t.Fatalf("aioredlock unlock: %v", err)
				}
			})

			t.Run("concurrent rounds", func(t *testing.T) {
				ctx := testCtx(t)
				const rounds = 50
				var oursWon, theirsWon, neither int
				defer func() {
					t.Logf("%d rounds: redlock won %d, aioredlock won %d, neither %d", rounds, oursWon, theirsWon, neither)
				}()
				for i := range rounds {
					res := fmt.Sprintf("interop:aio:race:%d", i)
					id := newUUID()
					var (
						wg     sync.WaitGroup
						ours   *redlock.Lock
						ourErr error
						aioErr error
					)
					wg.Add(2)
					go func() { defer wg.Done(); ours, ourErr = m.TryLock(ctx, res, vt.opts()...) }()
					go func() { defer wg.Done(); aioErr = aio.lock(ctx, res, id, lease) }()
					wg.Wait()
					if ourErr == nil && aioErr == nil {
						t.Fatalf("round %d: both redlock (%s) and aioredlock (%s) hold %q", i, ours.Token(), id, res)
					}
					if ourErr != nil && !errors.Is(ourErr, redlock.ErrNotAcquired) {
						t.Fatalf("round %d: TryLock: %v, want nil or ErrNotAcquired", i, ourErr)
					}
					if aioErr != nil && !errors.Is(aioErr, errAioAcquiring) {
						t.Fatalf("round %d: aioredlock lock: %v, want nil or LockAcquiringError", i, aioErr)
					}
					switch {
					case ourErr == nil:
						oursWon++
						requireQuorum(t, servers, res, ours.Token())
						if err := ours.Unlock(ctx); err != nil {
							t.Fatalf("round %d: Unlock: %v", i, err)
						}
					case aioErr == nil:
						theirsWon++
						requireQuorum(t, servers, res, id)
						if err := aio.unlock(ctx, res, id); err != nil {
							t.Fatalf("round %d: aioredlock unlock: %v", i, err)
						}
					default:
						neither++
					}
				}
			})
		})
	}
}
