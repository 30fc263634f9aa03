package redlock

import (
	"context"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// The hot-path benchmarks: one lock + unlock cycle (ops = cycles) against
// real redis-servers on loopback, through each wire, with allocations per
// cycle. Run them with
//
//	go test -run XXX -bench . -benchmem -count 3 .
//
// The servers share the machine's cores with the benchmark: compare only
// figures from one run.

// benchWires are the clients a Manager can dial: go-redis (dial, today's
// default) and rueidis (dialRueidis).
var benchWires = []struct {
	name string
	dial func(Endpoint, Config) (Client, io.Closer, error)
}{
	{"goredis", dial},
	{"rueidis", dialRueidis},
}

// benchManager dials n of servers with the given wire and closes the
// Manager when b ends (before the servers stop).
func benchManager(b *testing.B, servers []*redistest.Server, n int, dialer func(Endpoint, Config) (Client, io.Closer, error)) *Manager {
	b.Helper()
	cfg, err := Config{}.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	inst := make([]*instance, n)
	closers := make([]io.Closer, 0, n)
	for i := range inst {
		ep := Endpoint{Addr: servers[i].Addr()}
		c, closer, err := dialer(ep, cfg)
		if err != nil {
			b.Fatalf("dial %s: %v", ep, err)
		}
		closers = append(closers, closer)
		inst[i] = &instance{client: c, name: ep.String()}
	}
	m := newManager(inst, closers, cfg)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	return m
}

// cycle is one lock + unlock of resource with a fixed TTL (no watchdog).
func cycle(ctx context.Context, m *Manager, resource string) error {
	l, err := m.Lock(ctx, resource, TTL(10*time.Second))
	if err != nil {
		return err
	}
	return l.Unlock(ctx)
}

// warm runs a few cycles so that connections exist and scripts are cached.
func warm(b *testing.B, m *Manager) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := cycle(ctx, m, "bench:warm"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLockUnlock is one caller doing lock + unlock cycles on one
// resource, for N = 1, 3, 5 instances.
func BenchmarkLockUnlock(b *testing.B) {
	servers := redistest.Start(b, 5)
	for _, w := range benchWires {
		for _, n := range []int{1, 3, 5} {
			b.Run(w.name+"/N="+strconv.Itoa(n), func(b *testing.B) {
				m := benchManager(b, servers, n, w.dial)
				warm(b, m)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if err := cycle(ctx, m, "bench:seq"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLockUnlockMetadata is BenchmarkLockUnlock at N=3 over rueidis
// with 200 bytes of metadata (the redlock command's JSON is about that
// size): the cost of the metadata path against BenchmarkLockUnlock's.
func BenchmarkLockUnlockMetadata(b *testing.B) {
	servers := redistest.Start(b, 3)
	m := benchManager(b, servers, 3, dialRueidis)
	warm(b, m)
	ctx := context.Background()
	md := Metadata(`{"host":"build-worker-17.example.internal","pid":4242424,"command":"nightly-report","started":"2026-11-27T03:00:00.123456789Z"}` +
		"                                                                               ")
	b.ReportAllocs()
	for b.Loop() {
		l, err := m.Lock(ctx, "bench:meta", TTL(10*time.Second), md)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLockUnlockParallel is C callers, each cycling on its own
// resource (uncontended), N=1 and N=3. C=GOMAXPROCS and C=64 (the peer
// benchmarks' highest concurrency).
func BenchmarkLockUnlockParallel(b *testing.B) {
	servers := redistest.Start(b, 3)
	procs := runtime.GOMAXPROCS(0)
	for _, w := range benchWires {
		for _, n := range []int{1, 3} {
			for _, c := range []int{procs, 64} {
				b.Run(w.name+"/N="+strconv.Itoa(n)+"/C="+strconv.Itoa(c), func(b *testing.B) {
					m := benchManager(b, servers, n, w.dial)
					warm(b, m)
					var ids atomic.Int64
					b.ReportAllocs()
					b.SetParallelism((c + procs - 1) / procs)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						ctx := context.Background()
						resource := "bench:par:" + strconv.FormatInt(ids.Add(1), 10)
						for pb.Next() {
							if err := cycle(ctx, m, resource); err != nil {
								b.Error(err) // not Fatal: this is not the benchmark's goroutine
								return
							}
						}
					})
				})
			}
		}
	}
}

// BenchmarkExtend is one caller extending one held lock, N=3.
func BenchmarkExtend(b *testing.B) {
	servers := redistest.Start(b, 3)
	for _, w := range benchWires {
		b.Run(w.name+"/N=3", func(b *testing.B) {
			m := benchManager(b, servers, 3, w.dial)
			warm(b, m)
			ctx := context.Background()
			l, err := m.Lock(ctx, "bench:extend", TTL(10*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Extend(ctx, 10*time.Second); err != nil {
					b.Fatalf("Extend: %v", err)
				}
			}
			b.StopTimer()
			if err := l.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkLockUnlockResources is one caller cycling while the Manager
// holds H other locks (N=3; H = 0, 100, 10,000, 100,000, taken by 64
// goroutines before the measurement, with a fixed TTL): per-resource state
// (the held set, the instances' keyspace) must not make a cycle slower as
// it grows (issue 7: flat ±20% from 1 to 100,000 resources). The caller
// itself cycles over 1,000 names.
func BenchmarkLockUnlockResources(b *testing.B) {
	servers := redistest.Start(b, 3)
	m := benchManager(b, servers, 3, dialRueidis)
	warm(b, m)
	ctx := context.Background()
	names := make([]string, 1000)
	for i := range names {
		names[i] = "bench:probe:" + strconv.Itoa(i)
	}
	b.Cleanup(func() { // before Close (cleanups run last first): release in parallel
		locks := m.Locks()
		var wg sync.WaitGroup
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(locks); i += 64 {
					_ = locks[i].Unlock(ctx)
				}
			}()
		}
		wg.Wait()
	})
	held := 0
	for _, h := range []int{0, 100, 10_000, 100_000} {
		// Take the locks up to h (they stay held until Close).
		var wg sync.WaitGroup
		var failed atomic.Int64
		next := atomic.Int64{}
		next.Store(int64(held))
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(h) {
						return
					}
					if _, err := m.Lock(ctx, "bench:held:"+strconv.FormatInt(i, 10), TTL(10*time.Minute)); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			b.Fatalf("%d locks of %d not taken", failed.Load(), h-held)
		}
		held = max(held, h)
		b.Run("held="+strconv.Itoa(h), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := cycle(ctx, m, names[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(names) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkHandoffAfterExpiry: a holder takes a 200 ms lease and vanishes
// (never unlocks); a waiter of another Manager, already refused once,
// acquires when the key expires. Reported: how long after the holder's
// lease ended (its Lock call's start + TTL, an upper bound of the keys'
// expiry) the waiter held the lock, p50 and max over b.N handoffs. ops =
// handoffs (each takes one lease):
//
//	go test -run XXX -bench 'HandoffAfterExpiry' -benchtime 20x .
func BenchmarkHandoffAfterExpiry(b *testing.B) {
	servers := redistest.Start(b, 3)
	holder := benchManager(b, servers, 3, dialRueidis)
	waiter := benchManager(b, servers, 3, dialRueidis)
	ctx := context.Background()
	const ttl = 200 * time.Millisecond
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res := "expiry-" + strconv.Itoa(i)
		start := time.Now()
		if _, err := holder.Lock(ctx, res, TTL(ttl)); err != nil {
			b.Fatal(err)
		}
		l, err := waiter.LockWait(ctx, res, TTL(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start.Add(ttl)))
		_ = l.Unlock(ctx)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms-after-expiry")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms-after-expiry")
}

// BenchmarkHandoffContended is the bench's "16 waiters" cell in the
// package: 16 goroutines of one Manager (N=3) take turns on one resource
// with LockWait and a fixed TTL; a holder holds 1 ms (nanosleep, as the
// bench does), unlocks, and waits until another one acquired. ops =
// handoffs. Reported: the handoff (from the start of Unlock to the next
// LockWait returning) and Unlock's own duration (one release round), p50;
// the attempts that followed a release handed over by the Unlock
// (handOff) per handoff, and the share of them that acquired (the rest
// were refused: they overtook the release on too many instances, or found
// the lock taken by a waiter that polled). wake=local hides the clients'
// Subscriber and KeyWatcher: local wake-ups only, no release messages and
// key watches to handle (what they cost in the handoff):
//
//	go test -run XXX -bench 'HandoffContended' -benchtime 3000x .
func BenchmarkHandoffContended(b *testing.B) {
	servers := redistest.Start(b, 3)
	for _, w := range benchWires {
		for _, local := range []bool{false, true} {
			name := w.name + "/wake=all"
			dial := w.dial
			if local {
				name = w.name + "/wake=local"
				dial = func(ep Endpoint, cfg Config) (Client, io.Closer, error) {
					c, closer, err := w.dial(ep, cfg)
					return plainClient{c}, closer, err
				}
			}
			b.Run(name, func(b *testing.B) {
				m := benchManager(b, servers, 3, dial)
				warm(b, m)
				benchHandoffs(b, m, "bench:handoff:"+name)
			})
		}
	}
}

// plainClient is a Client without its optional interfaces.
type plainClient struct{ Client }

// newPlainManager is a Manager of rueidis clients to servers without
// their optional interfaces (plainClient): no key watch, no release
// subscription; its waiters are woken only by this Manager and by time.
func newPlainManager(t testing.TB, servers []*redistest.Server, cfg Config) *Manager {
	t.Helper()
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	inst := make([]*instance, len(servers))
	var closers []io.Closer
	for i, s := range servers {
		ep := Endpoint{Addr: s.Addr()}
		c, closer, err := dialRueidis(ep, cfg)
		if err != nil {
			for _, c := range closers {
				_ = c.Close()
			}
			t.Fatal(err)
		}
		closers = append(closers, closer)
		inst[i] = &instance{client: plainClient{c}, name: ep.String()}
	}
	m := newManager(inst, closers, cfg)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// benchHandoffs runs b.N handoffs of resource among 16 waiters of m.
func benchHandoffs(b *testing.B, m *Manager, resource string) {
	const waiters, hold = 16, time.Millisecond
	var (
		done     atomic.Int64
		released atomic.Int64 // time since base at the last Unlock's start, ns
		mu       sync.Mutex
		next     = make(chan struct{})           // closed at the next acquisition; guarded by mu
		lat      = make([]time.Duration, 0, b.N) // handoffs; guarded by mu
		unl      = make([]time.Duration, 0, b.N) // Unlock's durations; guarded by mu
	)
	tries0, won0 := m.handoffTries.Load(), m.acquiredAfter[wakeHandoff].Load()
	base := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ResetTimer()
	var wg sync.WaitGroup
	for g := 0; g < waiters; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(b.N) && ctx.Err() == nil {
				l, err := m.LockWait(ctx, resource, TTL(10*time.Second))
				if err != nil {
					return
				}
				now := time.Since(base)
				mu.Lock()
				if rel := released.Load(); rel > 0 {
					lat = append(lat, now-time.Duration(rel))
				}
				close(next)
				next = make(chan struct{})
				mine := next
				mu.Unlock()
				done.Add(1)
				ts := syscall.NsecToTimespec(int64(hold))
				_ = syscall.Nanosleep(&ts, nil)
				released.Store(int64(time.Since(base)))
				u0 := time.Now()
				if err := l.Unlock(context.Background()); err != nil {
					b.Error(err)
					return
				}
				u := time.Since(u0)
				mu.Lock()
				unl = append(unl, u)
				mu.Unlock()
				if done.Load() >= int64(b.N) {
					return
				}
				select {
				case <-mine:
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if len(lat) == 0 || len(unl) == 0 {
		b.Fatal("no handoff")
	}
	slices.Sort(lat)
	slices.Sort(unl)
	tries, won := m.handoffTries.Load()-tries0, m.acquiredAfter[wakeHandoff].Load()-won0
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "handoff-p50-µs")
	b.ReportMetric(float64(unl[len(unl)/2])/1e3, "unlock-p50-µs")
	b.ReportMetric(float64(tries)/float64(len(lat)), "handed-tries/handoff")
	if tries > 0 {
		b.ReportMetric(float64(won)/float64(tries), "handed-won/tries")
	}
}
