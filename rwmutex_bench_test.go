package redlock

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// BenchmarkRWMutex is lock + unlock cycles of a read-write lock beside the
// mutex's, N=3 over rueidis (New's wire), fixed TTL, with allocations per
// cycle; ops = cycles, and cycles/s is reported:
//
//	go test -run '^$' -bench 'RWMutex' -benchmem -count 3 .
//
// kinds: mutex (Manager.Lock), rlock (RWMutex.RLock, a reader's share),
// wlock (RWMutex.Lock, the writer). C=1 is one caller on one name; C=64 is
// 64 callers, each on a name of its own (uncontended, as
// BenchmarkLockUnlockParallel), and rlock-shared/C=64 has the 64 readers
// share one name (a ZSET of up to 64 members on each instance).
func BenchmarkRWMutex(b *testing.B) {
	servers := redistest.Start(b, 3)
	ttl := TTL(10 * time.Second)
	kinds := []struct {
		name string
		lock func(ctx context.Context, m *Manager, name string) (*Lock, error)
	}{
		{"mutex", func(ctx context.Context, m *Manager, name string) (*Lock, error) { return m.Lock(ctx, name, ttl) }},
		{"rlock", func(ctx context.Context, m *Manager, name string) (*Lock, error) {
			return m.RWMutex(name).RLock(ctx, ttl)
		}},
		{"wlock", func(ctx context.Context, m *Manager, name string) (*Lock, error) {
			return m.RWMutex(name).Lock(ctx, ttl)
		}},
	}
	cycleOf := func(ctx context.Context, m *Manager, lock func(context.Context, *Manager, string) (*Lock, error), name string) error {
		l, err := lock(ctx, m, name)
		if err != nil {
			return err
		}
		return l.Unlock(ctx)
	}
	perSec := func(b *testing.B) {
		if s := b.Elapsed().Seconds(); s > 0 {
			b.ReportMetric(float64(b.N)/s, "cycles/s")
		}
	}
	for _, k := range kinds {
		b.Run(k.name+"/C=1", func(b *testing.B) {
			m := benchManager(b, servers, 3, dialRueidis)
			warm(b, m)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := cycleOf(ctx, m, k.lock, "bench:rw:seq"); err != nil {
					b.Fatal(err)
				}
			}
			perSec(b)
		})
	}
	procs := runtime.GOMAXPROCS(0)
	for _, k := range append(kinds, struct {
		name string
		lock func(ctx context.Context, m *Manager, name string) (*Lock, error)
	}{"rlock-shared", kinds[1].lock}) {
		b.Run(k.name+"/C=64", func(b *testing.B) {
			m := benchManager(b, servers, 3, dialRueidis)
			warm(b, m)
			var ids atomic.Int64
			b.ReportAllocs()
			b.SetParallelism((64 + procs - 1) / procs)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				name := "bench:rw:par:" + strconv.FormatInt(ids.Add(1), 10)
				if k.name == "rlock-shared" {
					name = "bench:rw:shared"
				}
				for pb.Next() {
					if err := cycleOf(ctx, m, k.lock, name); err != nil {
						b.Error(err) // not Fatal: this is not the benchmark's goroutine
						return
					}
				}
			})
			perSec(b)
		})
	}
}
