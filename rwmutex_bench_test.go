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
	// Each kind returns the lock call for a name, made once per caller (an
	// RWMutex is meant to be kept: Manager.RWMutex builds its key names).
	type kind struct {
		name string
		prep func(m *Manager, name string) func(ctx context.Context) (*Lock, error)
	}
	kinds := []kind{
		{"mutex", func(m *Manager, name string) func(ctx context.Context) (*Lock, error) {
			return func(ctx context.Context) (*Lock, error) { return m.Lock(ctx, name, ttl) }
		}},
		{"rlock", func(m *Manager, name string) func(ctx context.Context) (*Lock, error) {
			rw := m.RWMutex(name)
			return func(ctx context.Context) (*Lock, error) { return rw.RLock(ctx, ttl) }
		}},
		{"wlock", func(m *Manager, name string) func(ctx context.Context) (*Lock, error) {
			rw := m.RWMutex(name)
			return func(ctx context.Context) (*Lock, error) { return rw.Lock(ctx, ttl) }
		}},
	}
	cycleOf := func(ctx context.Context, lock func(context.Context) (*Lock, error)) error {
		l, err := lock(ctx)
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
			lock := k.prep(m, "bench:rw:seq")
			b.ReportAllocs()
			for b.Loop() {
				if err := cycleOf(ctx, lock); err != nil {
					b.Fatal(err)
				}
			}
			perSec(b)
		})
	}
	procs := runtime.GOMAXPROCS(0)
	for _, k := range append(kinds, kind{"rlock-shared", kinds[1].prep}) {
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
				lock := k.prep(m, name)
				for pb.Next() {
					if err := cycleOf(ctx, lock); err != nil {
						b.Error(err) // not Fatal: this is not the benchmark's goroutine
						return
					}
				}
			})
			perSec(b)
		})
	}
}
