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

// BenchmarkSemaphoreAcquireUnlock compares Semaphore Acquire + Unlock
// cycles with the mutex's Lock + Unlock (fixed TTL, no watchdog), N=3 over
// the default wire, at C = 1 and 64 callers:
//
//	mutex/C=1                 one caller, one resource
//	semaphore/P=1/C=1         one caller, a semaphore of 1 permit
//	semaphore/P=64/C=1        one caller, 64 permits (the first slot tried is free)
//	mutex/C=64                64 callers, a resource each (uncontended)
//	semaphore/P=64/C=64       64 callers, one semaphore of 64 permits: a
//	                          caller whose random first slot is held tries the next
//	mutex-shared/C=64         64 callers, one resource, LockWait (contended)
//	semaphore/P=8/C=64        64 callers, 8 permits, AcquireWait (contended)
//
// ops are cycles; cycles/s is reported too. Run with
//
//	go test -run XXX -bench SemaphoreAcquireUnlock -benchmem -count 3 .
func BenchmarkSemaphoreAcquireUnlock(b *testing.B) {
	servers := redistest.Start(b, 3)
	ttl := TTL(10 * time.Second)
	type cycler func(ctx context.Context, id int64) error
	mutexOwn := func(m *Manager) cycler {
		return func(ctx context.Context, id int64) error {
			return cycle(ctx, m, "bench:mutex:"+strconv.FormatInt(id, 10))
		}
	}
	mutexShared := func(m *Manager) cycler {
		return func(ctx context.Context, _ int64) error {
			l, err := m.LockWait(ctx, "bench:mutex-shared", ttl)
			if err != nil {
				return err
			}
			return l.Unlock(ctx)
		}
	}
	sem := func(permits int, wait bool) func(m *Manager) cycler {
		return func(m *Manager) cycler {
			s := m.Semaphore("bench:sem:"+strconv.Itoa(permits), permits)
			return func(ctx context.Context, _ int64) error {
				var l *Lock
				var err error
				if wait {
					l, err = s.AcquireWait(ctx, ttl)
				} else {
					l, err = s.Acquire(ctx, ttl)
				}
				if err != nil {
					return err
				}
				return l.Unlock(ctx)
			}
		}
	}
	cases := []struct {
		name string
		c    int
		make func(m *Manager) cycler
	}{
		{"mutex/C=1", 1, mutexOwn},
		{"semaphore/P=1/C=1", 1, sem(1, false)},
		{"semaphore/P=64/C=1", 1, sem(64, false)},
		{"mutex/C=64", 64, mutexOwn},
		{"semaphore/P=64/C=64", 64, sem(64, true)},
		{"mutex-shared/C=64", 64, mutexShared},
		{"semaphore/P=8/C=64", 64, sem(8, true)},
	}
	procs := runtime.GOMAXPROCS(0)
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			m := benchManager(b, servers, 3, dial)
			m.cfg.RetryDelayMin, m.cfg.RetryDelayMax = time.Millisecond, 5*time.Millisecond
			warm(b, m)
			f := tc.make(m)
			var ids atomic.Int64
			b.ReportAllocs()
			if tc.c == 1 {
				ctx := context.Background()
				for b.Loop() {
					if err := f(ctx, 0); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((tc.c + procs - 1) / procs)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					id := ids.Add(1)
					for pb.Next() {
						if err := f(ctx, id); err != nil {
							b.Error(err) // not Fatal: this is not the benchmark's goroutine
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
		})
	}
}
