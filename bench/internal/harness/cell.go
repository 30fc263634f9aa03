package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Workload is one kind of cell: C callers on their own resources, Waiters
// contending for one resource, or one waiter behind a holder that vanishes
// or a foreign holder that releases (Handoff).
type Workload struct {
	// Contended: all callers lock the same resource.
	Contended bool
	// C is the number of concurrent callers (1 in a handoff workload).
	C int
	// Handoff, when set, is a handoff workload: HandoffExpiry or
	// HandoffRelease.
	Handoff string
}

// The handoff workloads (handoff.go).
const (
	// HandoffExpiry: a holder takes a short lease and vanishes; the waiter's
	// delay runs from the key's expiry to its acquisition.
	HandoffExpiry = "expiry"
	// HandoffRelease: a redsync holder unlocks (redsync publishes nothing);
	// the delay runs from its Unlock returning to the waiter's acquisition.
	HandoffRelease = "release"
)

// Name is the workload's row label, e.g. "C=64", "16 waiters" or "after
// expiry".
func (w Workload) Name() string {
	switch {
	case w.Handoff == HandoffExpiry:
		return "after expiry"
	case w.Handoff == HandoffRelease:
		return "after redsync unlock"
	case w.Contended:
		return fmt.Sprintf("%d waiters", w.C)
	}
	return fmt.Sprintf("C=%d", w.C)
}

// Result is what one cell measured.
type Result struct {
	// Ops is the number of lock+unlock cycles (uncontended) or handoffs
	// (contended: acquisitions that followed another holder's release).
	Ops int64
	// Elapsed is the measured time.
	Elapsed time.Duration
	// P50 and P99 are quantiles of the cycle latency (uncontended) or of the
	// handoff latency: from the previous holder starting its Unlock to the
	// next holder's Lock returning (contended).
	P50, P99 time.Duration
	// Allocs is runtime.MemStats.Mallocs over the measured time divided by
	// Ops (process-wide: client background goroutines count too); NaN where
	// it does not apply (an implementation outside this process).
	Allocs float64
	// MaxWait (contended) is the longest time a waiter spent in Lock,
	// including waits still running when the cell ended.
	MaxWait time.Duration
	// Errors counts failed calls; FirstErr is the first one's text.
	Errors   int64
	FirstErr string
	// OtherCores is how many cores, on average, processes other than the
	// harness and its redis-servers kept busy during the cell (-1: unknown).
	// Other load disturbs the figures.
	OtherCores float64
	// Hold (contended) is the mean time a holder actually kept the lock
	// before it started Unlock (the configured hold plus the sleep's
	// overshoot); 0 when not measured.
	Hold time.Duration
	// AcqMin and AcqMax (contended) are the fewest and the most
	// acquisitions of a single waiter in the cell.
	AcqMin, AcqMax int64
	// Delays (handoff workloads) are the measured delays of every trial,
	// in order; P50/P99 summarise them. Ops counts the trials.
	Delays []time.Duration
}

// OpsPerSec is Ops per second of Elapsed.
func (r Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// cellConfig is how long and how hard one cell runs.
type cellConfig struct {
	duration time.Duration
	warmup   time.Duration
	hold     time.Duration
	maxOps   int64 // per worker, on top of the duration
	prefix   string
	pids     []int // the redis-servers, for the CPU accounting
	trials   int   // handoff workloads: trials per cell
}

// callTimeout bounds one uncontended Lock or Unlock and every Unlock.
const callTimeout = 10 * time.Second

// errSink keeps the error count and the first error.
type errSink struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errSink) add(what string, err error) {
	if e.n.Add(1) == 1 {
		e.mu.Lock()
		e.first = what + ": " + err.Error()
		e.mu.Unlock()
	}
}

func (e *errSink) fill(r *Result) {
	r.Errors = e.n.Load()
	e.mu.Lock()
	r.FirstErr = e.first
	e.mu.Unlock()
}

// loop runs every worker in a lock+unlock loop until d has passed (at
// least one cycle each, at most cfg.maxOps), recording cycle latencies in
// hists when they are non-nil.
func loop(ctx context.Context, workers []Worker, d time.Duration, maxOps int64, hists []hist, counts []int64, errs *errSink) {
	ctx, cancel := context.WithTimeout(ctx, d+callTimeout)
	defer cancel()
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int64
			for iter := int64(0); iter < maxOps && ctx.Err() == nil; iter++ {
				t0 := time.Now()
				err := w.Lock(ctx)
				if err != nil {
					errs.add("lock", err)
				} else if err = w.Unlock(ctx); err != nil {
					errs.add("unlock", err)
				}
				t1 := time.Now()
				if err == nil && hists != nil {
					hists[i].record(t1.Sub(t0))
					n++
				}
				if !t1.Before(deadline) {
					break
				}
			}
			if counts != nil {
				counts[i] = n
			}
		}()
	}
	wg.Wait()
}

// warm runs c callers on private resources for cfg.warmup, unmeasured, so
// that the measured part starts with the connections dialed. Its errors are
// not counted: if they persist, the measured part reports them.
func warm(ctx context.Context, tgt Target, c int, cfg cellConfig) {
	if cfg.warmup <= 0 {
		return
	}
	workers := make([]Worker, c)
	for i := range workers {
		workers[i] = tgt.NewWorker(fmt.Sprintf("%s:warm:%d", cfg.prefix, i))
	}
	loop(ctx, workers, cfg.warmup, cfg.maxOps, nil, nil, &errSink{})
}

// runUncontended runs c callers, each locking and unlocking its own
// resource in a loop for the measured duration.
func runUncontended(ctx context.Context, tgt Target, c int, cfg cellConfig) Result {
	workers := make([]Worker, c)
	hists := make([]hist, c)
	counts := make([]int64, c)
	for i := range workers {
		workers[i] = tgt.NewWorker(fmt.Sprintf("%s:%d", cfg.prefix, i))
	}
	errs := &errSink{}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := sampleCPU(cfg.pids)
	start := time.Now()
	loop(ctx, workers, cfg.duration, cfg.maxOps, hists, counts, errs)
	elapsed := time.Since(start)
	cpu1 := sampleCPU(cfg.pids)
	runtime.ReadMemStats(&after)

	var r Result
	var all hist
	for i := range hists {
		all.merge(&hists[i])
		r.Ops += counts[i]
	}
	r.Elapsed = elapsed
	r.P50, r.P99 = all.quantile(0.50), all.quantile(0.99)
	if r.Ops > 0 {
		r.Allocs = float64(after.Mallocs-before.Mallocs) / float64(r.Ops)
	}
	r.OtherCores = otherCores(cpu0, cpu1, elapsed)
	errs.fill(&r)
	return r
}

// handoffs is the state shared by contending waiters.
type handoffs struct {
	base        time.Time
	lastRelease atomic.Int64 // since base, when a holder started Unlock; 0: none yet
	mu          sync.Mutex
	acquired    chan struct{} // closed at the next acquisition
}

func (h *handoffs) since() int64 { return int64(time.Since(h.base)) }

// acquiredNow signals the waiters blocked in waitOther and returns the
// channel closed at the next acquisition.
func (h *handoffs) acquiredNow() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.acquired)
	h.acquired = make(chan struct{})
	return h.acquired
}

// runContended runs c waiters on one resource. A holder keeps the lock for
// cfg.hold, unlocks, then waits until another waiter has acquired before
// contending again (with no hold, the releaser wins its own next attempt
// and two workers ping-pong while the others sleep).
func runContended(ctx context.Context, tgt Target, c int, cfg cellConfig) Result {
	workers := make([]Worker, c)
	for i := range workers {
		workers[i] = tgt.NewWorker(cfg.prefix + ":shared")
	}
	hists := make([]hist, c)
	waits := make([]time.Duration, c)
	acqs := make([]int64, c)
	errs := &errSink{}
	var heldSum, holdCount atomic.Int64
	st := &handoffs{base: time.Now(), acquired: make(chan struct{})}
	st.base = st.base.Add(-time.Nanosecond) // since() > 0 from the start

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu0 := sampleCPU(cfg.pids)
	cellCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hists[i]
			var longest, held time.Duration
			var holds int64
			for n := int64(0); n < cfg.maxOps && cellCtx.Err() == nil; n++ {
				t0 := st.since()
				err := w.Lock(cellCtx)
				t1 := st.since()
				longest = max(longest, time.Duration(t1-t0))
				if err != nil {
					if cellCtx.Err() == nil {
						errs.add("lock", err)
						continue
					}
					break // the cell ended while waiting: the wait counts above
				}
				if rel := st.lastRelease.Load(); rel > 0 {
					h.record(time.Duration(t1 - rel))
				}
				next := st.acquiredNow()
				if cfg.hold > 0 {
					hold(cfg.hold)
				}
				held += time.Duration(st.since() - t1)
				holds++
				st.lastRelease.Store(st.since())
				uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
				if err := w.Unlock(uctx); err != nil {
					errs.add("unlock", err)
				}
				ucancel()
				select {
				case <-next:
				case <-cellCtx.Done():
				}
			}
			waits[i] = longest
			acqs[i] = holds
			heldSum.Add(int64(held))
			holdCount.Add(holds)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := sampleCPU(cfg.pids)
	runtime.ReadMemStats(&after)

	var r Result
	var all hist
	r.AcqMin = math.MaxInt64
	for i := range hists {
		all.merge(&hists[i])
		r.MaxWait = max(r.MaxWait, waits[i])
		r.AcqMin, r.AcqMax = min(r.AcqMin, acqs[i]), max(r.AcqMax, acqs[i])
	}
	r.Ops = int64(all.total)
	r.Elapsed = elapsed
	r.P50, r.P99 = all.quantile(0.50), all.quantile(0.99)
	if r.Ops > 0 {
		r.Allocs = float64(after.Mallocs-before.Mallocs) / float64(r.Ops)
	}
	r.OtherCores = otherCores(cpu0, cpu1, elapsed)
	if n := holdCount.Load(); n > 0 {
		r.Hold = time.Duration(heldSum.Load() / n)
	}
	errs.fill(&r)
	return r
}

// hold sleeps for d with nanosleep(2), which blocks this thread for about d
// (plus the kernel's 50 µs timer slack; the scheduler hands the thread's P
// to other goroutines meanwhile). A Go timer wakes through the runtime's
// netpoller, whose epoll timeout has millisecond granularity: on the 2-core
// machine of bench/results a 1 ms timer fired after 1.48 ms on average
// under this workload (1.15 ms idle), which capped the handoffs of every
// implementation near 1/1.5 ms whatever the lock did.
func hold(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		err := syscall.Nanosleep(&ts, &rem)
		if err != syscall.EINTR {
			return
		}
		ts = rem
	}
}

// runCell sets im up over addrs, runs w and closes it (or hands the cell to
// im.RunCell).
func runCell(ctx context.Context, im *Impl, addrs []string, w Workload, cfg cellConfig, ttl time.Duration) (Result, error) {
	if im.RunCell != nil {
		r, err := im.RunCell(ctx, addrs, w, cfg, ttl)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil && ctx.Err() != nil {
			return r, errors.Join(errors.New("interrupted"), err)
		}
		return r, err
	}
	if w.Handoff != "" {
		r, err := runHandoff(ctx, im, addrs, w, cfg, ttl)
		if err == nil {
			err = ctx.Err()
		}
		return r, err
	}
	tgt, err := im.Setup(addrs, Params{TTL: ttl, Contended: w.Contended})
	if err != nil {
		return Result{}, fmt.Errorf("%s: set up: %w", im.Key, err)
	}
	warm(ctx, tgt, w.C, cfg)
	var r Result
	if w.Contended {
		r = runContended(ctx, tgt, w.C, cfg)
	} else {
		r = runUncontended(ctx, tgt, w.C, cfg)
	}
	if err := tgt.Close(); err != nil {
		return r, fmt.Errorf("%s: close: %w", im.Key, err)
	}
	if err := ctx.Err(); err != nil {
		return r, errors.Join(errors.New("interrupted"), err)
	}
	return r, nil
}
