package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"
	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
	rueidisadapter "github.com/redlock-go/redlock/rueidis"
)

// Both adapters implement KeyWatcher.
var (
	_ redlock.KeyWatcher = (*rueidisadapter.Client)(nil)
	_ redlock.KeyWatcher = (*goredis.Client)(nil)
)

// foreignRelease is redsync's (and aioredlock's) release: delete the key
// if it holds the token. It publishes nothing.
const foreignRelease = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`

// wakeWires runs fn on the default rueidis wire (CLIENT TRACKING) and on
// the go-redis adapter (keyspace notifications, enabled on the servers).
// The retry delay is 30 s: a waiter that acquires within the test's
// context acquired by a wake-up or an expiry-timed retry, and
// AcquiredAfter says which.
func wakeWires(t *testing.T, fn func(t *testing.T, servers []*redistest.Server, m *redlock.Manager)) {
	wakeWiresObserved(t, nil, fn)
}

// wakeWiresObserved is wakeWires with obs as the Managers' Observer.
func wakeWiresObserved(t *testing.T, obs redlock.Observer, fn func(t *testing.T, servers []*redistest.Server, m *redlock.Manager)) {
	cfg := redlock.Config{RetryDelayMin: 30 * time.Second, RetryDelayMax: 30 * time.Second, Observer: obs}
	t.Run("rueidis", func(t *testing.T) {
		t.Parallel()
		servers := redistest.Start(t, 3)
		fn(t, servers, newManager(t, servers, cfg))
	})
	t.Run("goredis", func(t *testing.T) {
		t.Parallel()
		servers := redistest.Start(t, 3)
		clients := make([]redlock.Client, len(servers))
		for i, s := range servers {
			s.Do(t, "CONFIG", "SET", "notify-keyspace-events", "Kgx")
			clients[i] = goredis.New(newGoRedis(t, s.Addr()))
		}
		m, err := redlock.NewFromClients(clients, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeQuietly(t, m) })
		fn(t, servers, m)
	})
}

// waitBehind starts m.LockWait on key and waits until m watches the key
// on a quorum of the instances (its first attempt was refused).
func waitBehind(t *testing.T, m *redlock.Manager, key string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		l, err := m.LockWait(testCtx(t), key, redlock.TTL(10*time.Second))
		if err == nil {
			err = l.Unlock(context.Background())
		}
		done <- err
	}()
	waitWatchesOnQuorum(t, m, 30*time.Second)
	// Queued too: a key watch counts as watched once asked for, before
	// the waiter joined the queue; a change seen before the join wakes it
	// as a release came meanwhile (released), not as a change.
	waitFor(t, 30*time.Second, "the waiter queued", func() bool { return redlock.Queued(m, key) == 1 })
	return done
}

// A waiter behind a redsync-style holder (no release message) acquires
// when the holder releases, woken by the key watch, not by its retry
// delay.
func TestWakeOnForeignRelease(t *testing.T) {
	wakeWires(t, func(t *testing.T, servers []*redistest.Server, m *redlock.Manager) {
		const key, token = "wake-foreign", "redsync-token"
		for _, s := range servers {
			s.Do(t, "SET", key, token, "PX", "60000")
		}
		done := waitBehind(t, m, key)
		for _, s := range servers {
			if got := s.Do(t, "EVAL", foreignRelease, "1", key, token); got != "1" {
				t.Fatalf("foreign release on %v: %q", s, got)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("LockWait: %v", err)
		}
		if got := redlock.AcquiredAfter(m); fmt.Sprint(got) != "map[changed:1]" {
			t.Fatalf("acquired after %v, want one acquisition after a key change", got)
		}
	})
}

// A waiter behind a holder that vanished acquires when the holder's key
// expires: by the key watch (the expiry deletes the key) or by the retry
// timed from the refusals' PTTL, never by its retry delay. The key's
// lease is cut short once the waiter waits: one of 1.5 s from the start
// could run out before a loaded machine made the waiter's first attempt.
// (The PEXPIRE is a change too: the waiter retries and is refused.)
func TestWakeOnExpiry(t *testing.T) {
	wakeWires(t, func(t *testing.T, servers []*redistest.Server, m *redlock.Manager) {
		const key = "wake-expiry"
		for _, s := range servers {
			s.Do(t, "SET", key, "crashed-holder", "PX", "60000")
		}
		done := waitBehind(t, m, key)
		for _, s := range servers {
			s.Do(t, "PEXPIRE", key, "1500")
		}
		if err := <-done; err != nil {
			t.Fatalf("LockWait: %v", err)
		}
		got := redlock.AcquiredAfter(m)
		if got["changed"]+got["expiry"] != 1 || len(got) != 1 {
			t.Fatalf("acquired after %v, want one acquisition after a key change or the holder's expiry", got)
		}
	})
}

// A writer waiting behind a reader watches the writer key, which is
// absent (the readers refused it): that must not wake it at once, again
// and again. With a 30 s retry delay the writer makes its first attempt,
// then retries when the reader's share ends (the refusal tells when): a
// handful of attempts, not hundreds at round-trip speed.
func TestWakeWriterBehindReaderNoStorm(t *testing.T) {
	rec := &recorder{}
	wakeWiresObserved(t, rec, func(t *testing.T, servers []*redistest.Server, m *redlock.Manager) {
		ctx := testCtx(t)
		reader := newManager(t, servers, redlock.Config{})
		name := "wake-rw-" + t.Name()[len("TestWakeWriterBehindReaderNoStorm/"):]
		if _, err := reader.RWMutex(name).RLock(ctx, redlock.TTL(1500*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		l, err := m.RWMutex(name).LockWait(ctx, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
		_ = l.Unlock(ctx)
		for _, e := range rec.snapshot().acquired {
			if !strings.HasSuffix(e.Method, "LockWait") || e.Resources[0] != name {
				continue
			}
			if n := len(e.Attempts); n > 5 {
				t.Fatalf("the writer made %d attempts behind a 1.5 s reader share, want a few (first, then at the share's end)", n)
			}
			return
		}
		t.Fatal("no LockWait event for the writer")
	})
}

// gatedWatcher is a KeyWatcher whose watches (the EXISTS that starts each)
// wait at a gate: the test decides what the watch finds.
type gatedWatcher struct {
	*rueidisadapter.Client
	gate    chan struct{}
	entered atomic.Int32
}

func (g *gatedWatcher) WatchKeys(ctx context.Context, onChange func(string)) (redlock.KeyWatch, error) {
	kw, err := g.Client.WatchKeys(ctx, onChange)
	if err != nil {
		return nil, err
	}
	return &gatedWatch{KeyWatch: kw, g: g}, nil
}

type gatedWatch struct {
	redlock.KeyWatch
	g *gatedWatcher
}

func (w *gatedWatch) Watch(ctx context.Context, key string) (bool, error) {
	w.g.entered.Add(1)
	select {
	case <-w.g.gate:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return w.KeyWatch.Watch(ctx, key)
}

// A read-write lock's writer refused by another client's writer key, which
// is released before the watch starts, is woken: the group it watches (the
// writer key and the readers) is all absent. Without that (waking on an
// absent key is off for read-write locks, whose writer key is absent while
// readers refuse) the release between the refusal and the watch was
// missed: AwaitRelease returned false after its 3 s.
func TestWakeRWWriterReleasedBeforeWatch(t *testing.T) {
	servers := redistest.Start(t, 3)
	gate := make(chan struct{})
	clients := make([]redlock.Client, len(servers))
	var gws []*gatedWatcher
	for i, s := range servers {
		rc, err := rd.NewClient(rd.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rc.Close)
		g := &gatedWatcher{Client: rueidisadapter.New(rc), gate: gate}
		gws = append(gws, g)
		clients[i] = g
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	ctx := testCtx(t)
	for _, s := range servers {
		s.Do(t, "SET", "rw-job", "redsync-token", "PX", "60000")
	}
	if _, err := m.RWMutex("rw-job").TryLock(ctx, redlock.TTL(10*time.Second)); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryLock behind another writer: %v, want ErrNotAcquired", err)
	}
	waitFor(t, 10*time.Second, "watches started on a quorum", func() bool {
		n := 0
		for _, g := range gws {
			if g.entered.Load() > 0 {
				n++
			}
		}
		return n >= 2
	})
	for _, s := range servers {
		s.Do(t, "DEL", "rw-job")
	}
	close(gate)
	released, err := m.AwaitRelease(ctx, "rw-job", 3*time.Second)
	if err != nil || !released {
		t.Fatalf("AwaitRelease = %v, %v; want woken (the watched group was all absent)", released, err)
	}
	if _, err := m.RWMutex("rw-job").TryLock(ctx, redlock.TTL(10*time.Second)); err != nil {
		t.Fatalf("TryLock after the release: %v", err)
	}
}

// A semaphore's waiter is woken when a held slot's key is deleted by
// someone who publishes nothing (here a plain DEL): its retry delay (30 s)
// and the holder's lease (60 s) both outlast the 20 s the waiter has, so
// only the key watch on the slot can get it the permit.
func TestWakeSemaphoreSlotDeleted(t *testing.T) {
	wakeWires(t, func(t *testing.T, servers []*redistest.Server, m *redlock.Manager) {
		ctx := testCtx(t)
		holder := newManager(t, servers, redlock.Config{})
		h, err := holder.Semaphore("wake-sem", 1).Acquire(ctx, redlock.TTL(60*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			l, err := m.Semaphore("wake-sem", 1).AcquireWait(wctx, redlock.TTL(10*time.Second))
			if err == nil {
				err = l.Unlock(context.Background())
			}
			done <- err
		}()
		waitWatchesOnQuorum(t, m, 10*time.Second)
		for _, s := range servers {
			s.Do(t, "DEL", h.Resource())
		}
		if err := <-done; err != nil {
			t.Fatalf("AcquireWait after the slot's key was deleted: %v", err)
		}
	})
}

// Semaphore.AwaitRelease, for callers that make their own attempts
// (TryAcquire), is woken when a held slot's key is deleted by someone who
// sends no release message; max (60s) is longer than the test's ctx, so
// only a wake-up returns true in time.
func TestWakeSemaphoreAwaitRelease(t *testing.T) {
	wakeWires(t, func(t *testing.T, servers []*redistest.Server, m *redlock.Manager) {
		ctx := testCtx(t)
		holder := newManager(t, servers, redlock.Config{})
		h, err := holder.Semaphore("await-sem", 1).Acquire(ctx, redlock.TTL(60*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		sem := m.Semaphore("await-sem", 1)
		if _, err := sem.TryAcquire(ctx, redlock.TTL(10*time.Second)); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire of a held permit: %v, want ErrNotAcquired", err)
		}
		done := make(chan error, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			woken, err := sem.AwaitRelease(wctx, time.Minute)
			if err == nil && !woken {
				err = errors.New("AwaitRelease returned without a wake-up")
			}
			done <- err
		}()
		waitWatchesOnQuorum(t, m, 10*time.Second)
		for _, s := range servers {
			s.Do(t, "DEL", h.Resource())
		}
		if err := <-done; err != nil {
			t.Fatalf("AwaitRelease after the slot's key was deleted: %v", err)
		}
		if _, err := (&redlock.Semaphore{}).AwaitRelease(ctx, time.Second); !errors.Is(err, redlock.ErrInvalid) {
			t.Fatalf("AwaitRelease of a zero Semaphore: %v, want ErrInvalid", err)
		}
	})
}

// waitWatchesOnQuorum waits until m has key watches on a quorum of its 3
// instances.
func waitWatchesOnQuorum(t *testing.T, m *redlock.Manager, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "watches on a quorum", func() bool {
		n := 0
		for i := range 3 {
			if redlock.Watched(m, i) > 0 {
				n++
			}
		}
		return n >= 2
	})
}

// The go-redis adapter's watch session resubscribes by itself after its
// pub/sub connection dropped, and a deletion published meanwhile reaches
// nobody: the resubscription itself must wake the waiters. The holder's
// keys are deleted right after the server killed the session's connection
// (one pipeline: no event can reach it), so only that wake-up acquires
// before the 30 s retry delay.
func TestWakeGoRedisAfterPubSubReconnect(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		s.Do(t, "CONFIG", "SET", "notify-keyspace-events", "Kgx")
		clients[i] = goredis.New(newGoRedis(t, s.Addr()))
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{RetryDelayMin: 30 * time.Second, RetryDelayMax: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	const key, token = "wake-reconnect", "redsync-token"
	for _, s := range servers {
		s.Do(t, "SET", key, token, "PX", "60000")
	}
	done := waitBehind(t, m, key)
	// The subscriptions start in the background (the release channel's on
	// every server, the key's on those that refused): on a loaded machine
	// one may not be up yet when the waiter waits ("no subscribed
	// connection"). Wait until the key's are up on a quorum, and every
	// server has a subscribed connection.
	watchedOnQuorum(t, servers, m, key, "the key's keyspace channel subscribed on a quorum")
	subscribed := func(s *redistest.Server) (ids []string, list string) {
		// The subscribed connections (sub=N, N > 0): CLIENT KILL TYPE
		// pubsub misses RESP3 ones.
		list = s.Do(t, "CLIENT", "LIST")
		for _, line := range strings.Split(list, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && !slices.Contains(f, "sub=0") && slices.ContainsFunc(f, func(x string) bool { return strings.HasPrefix(x, "sub=") }) {
				ids = append(ids, strings.TrimPrefix(f[0], "id="))
			}
		}
		return ids, list
	}
	waitFor(t, 15*time.Second, "a subscribed connection on every server", func() bool {
		for _, s := range servers {
			if ids, _ := subscribed(s); len(ids) == 0 {
				return false
			}
		}
		return true
	})
	for _, s := range servers {
		rc := newGoRedis(t, s.Addr())
		ids, list := subscribed(s)
		if len(ids) == 0 {
			t.Fatalf("no subscribed connection on %v:\n%s", s, list)
		}
		cmds, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				p.Do(ctx, "CLIENT", "KILL", "ID", id)
			}
			p.Del(ctx, key)
			return nil
		})
		if err != nil {
			t.Fatalf("kill and delete on %v: %v %v", s, cmds, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("LockWait: %v", err)
	}
	if got := redlock.AcquiredAfter(m); fmt.Sprint(got) != "map[changed:1]" {
		t.Fatalf("acquired after %v, want one acquisition after a key change (the resubscription)", got)
	}
}
