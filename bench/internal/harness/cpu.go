package harness

import (
	"context"
	"time"
)

// cpuSample is cumulative CPU time in seconds: busy is the whole machine's,
// ours is this process's plus the redis-servers'. ok is false where it
// cannot be read.
type cpuSample struct {
	busy, ours float64
	ok         bool
}

// otherCores returns how many cores, on average over elapsed, processes
// other than the harness and its servers kept busy between a and b; -1 if
// unknown.
func otherCores(a, b cpuSample, elapsed time.Duration) float64 {
	if !a.ok || !b.ok || elapsed <= 0 {
		return -1
	}
	v := ((b.busy - a.busy) - (b.ours - a.ours)) / elapsed.Seconds()
	return max(v, 0)
}

// quietWindow is the sampling window of waitQuiet.
const quietWindow = 500 * time.Millisecond

// waitQuiet returns once other processes kept fewer than otherCoresWarn
// cores busy over a sampling window, after bound, when ctx ends, or at once
// where the load cannot be read.
func waitQuiet(ctx context.Context, pids []int, bound time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	t := time.NewTimer(quietWindow)
	defer t.Stop()
	for range int(bound/quietWindow) + 1 {
		a, start := sampleCPU(pids), time.Now()
		if !a.ok {
			return
		}
		t.Reset(quietWindow)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if otherCores(a, sampleCPU(pids), time.Since(start)) < otherCoresWarn {
			return
		}
	}
}
