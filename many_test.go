package redlock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

func TestLockManyOverlapExcludes(t *testing.T) {
	for _, n := range []int{1, 3} {
		servers := redistest.Start(t, n)
		m := newManagerAt(t, urls(servers), redlock.Config{RetryCount: 1})
		ctx := context.Background()
		ab, err := m.LockMany(ctx, []string{"a", "b"}, redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := ab.Resources(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Fatalf("Resources() = %v", got)
		}
		if _, err := m.LockMany(ctx, []string{"b", "c"}); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Fatalf("N=%d: overlapping set: %v, want ErrNotAcquired", n, err)
		}
		if _, err := m.TryLock(ctx, "a"); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Fatalf("N=%d: single lock on a member: %v", n, err)
		}
		// Nothing of the failed set was left behind: c is free.
		cd, err := m.LockMany(ctx, []string{"c", "d"}, redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatalf("N=%d: disjoint set: %v", n, err)
		}
		if err := ab.Extend(ctx, 0); err != nil {
			t.Fatal(err)
		}
		d, err := ab.TTL(ctx)
		if err != nil || d <= 0 {
			t.Fatalf("TTL = %v, %v", d, err)
		}
		if err := ab.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cd.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// Unlock returns at quorum; the last release lands just after.
		for _, s := range servers {
			deadline := time.Now().Add(5 * time.Second)
			for keys := s.Keys(t); len(keys) != 0; keys = s.Keys(t) {
				if time.Now().After(deadline) {
					t.Fatalf("N=%d: keys left after unlock: %v", n, keys)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// A set that is partly held by another token on a quorum fails, and what
// the attempt took on the other instances is released.
func TestLockManyRollsBackPartialHolds(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newManagerAt(t, urls(servers), redlock.Config{RetryCount: 2, RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
	ctx := context.Background()
	// Another client holds "y" on two instances; the third is free.
	servers[0].Do(t, "SET", "y", "other", "PX", "60000")
	servers[1].Do(t, "SET", "y", "other", "PX", "60000")
	_, err := m.LockMany(ctx, []string{"x", "y", "z"})
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("err = %v, want ErrNotAcquired", err)
	}
	for i, s := range servers {
		keys := s.Keys(t)
		want := 0
		if i < 2 {
			want = 1
		}
		if len(keys) != want {
			t.Fatalf("server %d keys = %v after a failed LockMany", i, keys)
		}
	}
	if v := servers[0].Do(t, "GET", "y"); v != "other" {
		t.Fatalf("foreign key changed: %q", v)
	}
}

// Two callers taking overlapping sets in opposite orders both make progress.
func TestLockManyNoDeadlock(t *testing.T) {
	servers := redistest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sets := [][]string{{"p", "q", "r"}, {"r", "q", "p"}}
	var wg sync.WaitGroup
	counts := make([]int, len(sets))
	errs := make([]error, len(sets))
	for i, set := range sets {
		m := newManagerAt(t, urls(servers), redlock.Config{RetryCount: 1000, RetryDelayMin: time.Millisecond, RetryDelayMax: 3 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for counts[i] < 50 && ctx.Err() == nil {
				l, err := m.LockMany(ctx, set, redlock.TTL(2*time.Second))
				if err != nil {
					errs[i] = err
					return
				}
				counts[i]++
				if err := l.Unlock(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range sets {
		if errs[i] != nil || counts[i] < 50 {
			t.Fatalf("caller %d: %d acquisitions, err %v", i, counts[i], errs[i])
		}
	}
}

// TestLockManyAutoExtendAndLost: an auto-extended LockMany lock outlives
// several TTLs, and is lost once another token takes a member everywhere.
//
// DefaultTTL 1.5s and NodeTimeout 2s (loadedNodeTimeout): an extension
// (every 0.6×TTL, a round of its own) may be 583ms late (0.4×TTL less the
// drift) before the lease runs out, and a slow call is not cut. With
// 300ms it was 108ms ("lost while auto-extending" on a loaded machine),
// with 1s 388ms.
func TestLockManyAutoExtendAndLost(t *testing.T) {
	servers := redistest.Start(t, 3)
	const ttl = 1500 * time.Millisecond
	m := newManagerAt(t, urls(servers), redlock.Config{DefaultTTL: ttl, NodeTimeout: loadedNodeTimeout})
	ctx := context.Background()
	l, err := m.LockMany(ctx, []string{"e1", "e2"}, redlock.Fenced())
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() == 0 {
		t.Fatal("fenced LockMany has no fence")
	}
	// Outlive several TTLs through auto-extension: wait for the deadline to
	// move past three TTLs from now.
	target := time.Now().Add(3 * ttl)
	deadline := time.After(15 * time.Second)
	for l.Until().Before(target) {
		select {
		case <-l.Lost():
			t.Fatal("lost while auto-extending")
		case <-deadline:
			t.Fatal("not extended")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Another token takes one member everywhere: the next extension fails
	// on the quorum and the whole set is lost.
	for _, s := range servers {
		s.Do(t, "SET", "e2", "thief", "PX", "60000")
	}
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed after a member was taken")
	}
	for _, s := range servers {
		if v := s.Do(t, "GET", "e2"); v != "thief" {
			t.Fatalf("thief's key = %q", v)
		}
	}
}

func TestLockManyBadInput(t *testing.T) {
	servers := redistest.Start(t, 1)
	m := newManagerAt(t, urls(servers), redlock.Config{})
	ctx := context.Background()
	for name, set := range map[string][]string{
		"empty":     nil,
		"duplicate": {"a", "a"},
		"blank":     {"a", ""},
	} {
		if _, err := m.LockMany(ctx, set); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestLockManyClusterSlots(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	m, err := redlock.NewFromClients([]redlock.Client{goredis.New(rc)}, redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ctx := context.Background()
	if _, err := m.LockMany(ctx, []string{"alpha", "beta"}); !errors.Is(err, redlock.ErrInvalid) {
		t.Fatalf("different slots: %v, want ErrInvalid", err)
	}
	l, err := m.LockMany(ctx, []string{"{order:42}:items", "{order:42}:payment"}, redlock.Fenced(), redlock.TTL(time.Second))
	if err != nil {
		t.Fatalf("shared hash tag: %v", err)
	}
	if l.Fence() == 0 {
		t.Fatal("no fence")
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// A single fenced resource keeps its counter in its own slot.
	l, err = m.Lock(ctx, "gamma", redlock.Fenced(), redlock.TTL(time.Second))
	if err != nil {
		t.Fatalf("fenced single lock on a cluster: %v", err)
	}
	_ = l.Unlock(ctx)
}
