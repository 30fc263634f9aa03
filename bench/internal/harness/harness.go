// Package harness runs the same lock workloads through this library, its
// peers (redsync, bsm/redislock, rueidislock, and node-redlock in a node
// process when node and npm are available) and the raw round-trip floors (go-redis, rueidis)
// against redis-server processes it starts, and reports the medians as
// markdown and an SVG chart.
//
// Methodology (shared/reference/peer-benchmarks.md): one op is a lock+unlock
// cycle; cells of a fixed duration alternate implementations cell by cell
// (the order rotates each round); a result is the median over rounds. The
// contended workload has W waiters on one resource; a holder keeps the lock
// for Hold, unlocks, then waits until another waiter has acquired before it
// contends again.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// Options configure a run. Run fills zero durations and counts with the
// defaults below.
type Options struct {
	// Ns are the instance counts (1 runs bsm/redislock too).
	Ns []int
	// Cs are the numbers of callers on their own resources.
	Cs []int
	// Waiters contend for one resource; 0 skips the contended workload.
	Waiters int
	// HandoffTrials is the number of trials per cell of each handoff
	// workload (after expiry, after a redsync unlock); 0 skips them.
	HandoffTrials int
	// Rounds is the number of times each cell runs; results are medians.
	Rounds int
	// Cell and ContendedCell are the measured durations of one cell.
	Cell, ContendedCell time.Duration
	// Warmup runs before each cell, unmeasured.
	Warmup time.Duration
	// Hold is how long a contended holder keeps the lock.
	Hold time.Duration
	// TTL is every lock's fixed lease.
	TTL time.Duration
	// MaxOps bounds the iterations of one worker in one cell.
	MaxOps int64
	// Procs sets GOMAXPROCS for the run when > 0.
	Procs int
	// Impls are the implementations to run, in table order. Default: all.
	Impls []*Impl
	// RedisServer is the redis-server binary. Default: "redis-server".
	RedisServer string
	// QuietWait, when > 0, makes each cell wait (at most this long) until
	// processes other than the harness and its servers use under 0.2 cores,
	// for shared machines. The cell runs anyway after the wait.
	QuietWait time.Duration
	// Progress receives one line per cell (may be nil).
	Progress io.Writer
	// Command is the command line shown in the report.
	Command string
}

// Defaults (peer-benchmarks.md: medians of 2 rounds of 3s cells, contended 5s).
const (
	DefaultRounds        = 2
	DefaultCell          = 3 * time.Second
	DefaultContendedCell = 5 * time.Second
	DefaultWarmup        = 500 * time.Millisecond
	DefaultHold          = time.Millisecond
	DefaultTTL           = 10 * time.Second
	DefaultWaiters       = 16
	DefaultMaxOps        = 10_000_000
	DefaultHandoffTrials = 10
)

func (o *Options) fill() error {
	if len(o.Ns) == 0 {
		o.Ns = []int{3}
	}
	if len(o.Cs) == 0 {
		o.Cs = []int{1, 16, 64}
	}
	for _, n := range o.Ns {
		if n < 1 || n > 15 {
			return fmt.Errorf("instance count %d outside [1, 15]", n)
		}
	}
	for _, c := range o.Cs {
		if c < 1 || c > 4096 {
			return fmt.Errorf("caller count %d outside [1, 4096]", c)
		}
	}
	if o.HandoffTrials < 0 || o.HandoffTrials > 10000 {
		return fmt.Errorf("handoff trials %d outside [0, 10000]", o.HandoffTrials)
	}
	if o.Waiters == 1 || o.Waiters < 0 || o.Waiters > 4096 {
		return fmt.Errorf("waiters %d: want 0 (skip) or 2..4096 (a holder waits for another waiter)", o.Waiters)
	}
	o.Ns = sortedUnique(o.Ns)
	o.Cs = sortedUnique(o.Cs)
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.Cell == 0 {
		o.Cell = DefaultCell
	}
	if o.ContendedCell == 0 {
		o.ContendedCell = DefaultContendedCell
	}
	if o.Hold == 0 {
		o.Hold = DefaultHold
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxOps == 0 {
		o.MaxOps = DefaultMaxOps
	}
	if o.Impls == nil {
		o.Impls = Impls()
	}
	if o.RedisServer == "" {
		o.RedisServer = "redis-server"
	}
	if o.QuietWait < 0 {
		return errors.New("quiet wait must not be negative")
	}
	if o.Rounds < 1 || o.Cell < 0 || o.ContendedCell < 0 || o.Warmup < 0 || o.Hold < 0 || o.TTL < 10*time.Millisecond || o.MaxOps < 1 {
		return errors.New("rounds, durations and max-ops must be positive (TTL ≥ 10ms)")
	}
	return nil
}

func sortedUnique(xs []int) []int {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// Workloads returns the workloads of a run, in table order.
func (o *Options) Workloads() []Workload {
	var ws []Workload
	for _, c := range o.Cs {
		ws = append(ws, Workload{C: c})
	}
	if o.Waiters > 0 {
		ws = append(ws, Workload{Contended: true, C: o.Waiters})
	}
	if o.HandoffTrials > 0 {
		ws = append(ws, Workload{Handoff: HandoffExpiry, C: 1}, Workload{Handoff: HandoffRelease, C: 1})
	}
	return ws
}

// Row is one (N, workload, implementation) of the report.
type Row struct {
	N        int
	Workload Workload
	Impl     *Impl
	// Rounds holds one result per round.
	Rounds []Result
	// Median summarises the rounds.
	Median Summary
}

// Summary is the median over rounds of each measure (MaxWait: the largest,
// Errors: the sum). Allocs is NaN where it does not apply or no round had
// ops.
type Summary struct {
	OpsPerSec float64
	P50, P99  time.Duration
	Allocs    float64
	MaxWait   time.Duration
	Errors    int64
	FirstErr  string
	// OtherCores is the largest Result.OtherCores over the rounds (-1:
	// unknown).
	OtherCores float64
	// Hold is the median over rounds of Result.Hold (0: not measured).
	Hold time.Duration
	// AcqMin and AcqMax (contended) are the smallest Result.AcqMin and the
	// largest Result.AcqMax over the rounds.
	AcqMin, AcqMax int64
	// Trials (handoff workloads) is the number of delays over all rounds;
	// P50, P99 and MaxWait are then taken over all of them (pooled, not
	// medians of rounds).
	Trials int
}

// Report is the outcome of Run.
type Report struct {
	Opts         Options
	Started      time.Time
	Duration     time.Duration
	GoVersion    string
	RedisVersion string
	GOMAXPROCS   int
	NumCPU       int
	Rows         []*Row
	// Notes are the notes of the prepared implementations, as
	// "<key>: <note>".
	Notes []string
	// Skipped lists the implementations whose Prepare failed.
	Skipped []Skipped
}

// Skipped is an implementation that did not run, and why.
type Skipped struct {
	Key    string
	Reason string
}

// Row returns the row of (n, workload, impl key), or nil.
func (r *Report) Row(n int, w Workload, key string) *Row {
	for _, row := range r.Rows {
		if row.N == n && row.Workload == w && row.Impl.Key == key {
			return row
		}
	}
	return nil
}

// Errors returns the number of failed calls over the whole run.
func (r *Report) Errors() int64 {
	var n int64
	for _, row := range r.Rows {
		n += row.Median.Errors
	}
	return n
}

// Estimate returns roughly how long Run will take with o (after fill).
func (o Options) Estimate() time.Duration {
	var d time.Duration
	for _, n := range o.Ns {
		for _, w := range o.Workloads() {
			for _, im := range o.Impls {
				if !im.appliesTo(n, w) {
					continue
				}
				cell := o.Cell
				switch {
				case w.Handoff == HandoffExpiry:
					cell = time.Duration(o.HandoffTrials) * (HandoffLease + 50*time.Millisecond)
				case w.Handoff == HandoffRelease:
					cell = time.Duration(o.HandoffTrials) * ((releaseHoldMin+releaseHoldMax)/2 + 150*time.Millisecond)
				case w.Contended:
					cell = o.ContendedCell
				}
				d += cell + o.Warmup + 20*time.Millisecond
				if im.RunCell != nil {
					d += 300 * time.Millisecond // starting a process
				}
			}
		}
	}
	return d * time.Duration(max(o.Rounds, 1))
}

// Run starts max(Ns) redis-servers, runs every cell Rounds times and stops
// the servers. ctx cancels the run between and within cells.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if opts.Procs > 0 {
		prev := runtime.GOMAXPROCS(opts.Procs)
		defer runtime.GOMAXPROCS(prev)
	}
	impls, notes, skipped, err := prepare(ctx, opts.Impls, opts.Progress)
	if err != nil {
		return nil, err
	}
	addrs, pids, version, stop, err := startServers(opts.RedisServer, opts.Ns[len(opts.Ns)-1])
	if err != nil {
		return nil, err
	}
	defer stop()

	rep := &Report{
		Opts:         opts,
		Started:      time.Now(),
		GoVersion:    runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		RedisVersion: version,
		GOMAXPROCS:   runtime.GOMAXPROCS(0),
		NumCPU:       runtime.NumCPU(),
		Notes:        notes,
		Skipped:      skipped,
	}
	for _, n := range opts.Ns {
		for _, w := range opts.Workloads() {
			for _, im := range impls {
				if im.appliesTo(n, w) {
					rep.Rows = append(rep.Rows, &Row{N: n, Workload: w, Impl: im})
				}
			}
		}
	}

	cell := 0
	total := len(rep.Rows) * opts.Rounds
	for round := range opts.Rounds {
		for _, n := range opts.Ns {
			for _, w := range opts.Workloads() {
				var rows []*Row
				for _, row := range rep.Rows {
					if row.N == n && row.Workload == w {
						rows = append(rows, row)
					}
				}
				// Alternate implementations cell by cell; rotate the order
				// each round so that none always runs first.
				for k := range rows {
					row := rows[(k+round)%len(rows)]
					cell++
					cfg := cellConfig{
						duration: opts.Cell,
						warmup:   opts.Warmup,
						hold:     opts.Hold,
						maxOps:   opts.MaxOps,
						prefix:   fmt.Sprintf("redlock-bench:%d", cell),
						pids:     pids[:n],
						trials:   opts.HandoffTrials,
					}
					if w.Contended {
						cfg.duration = opts.ContendedCell
					}
					if opts.QuietWait > 0 {
						waitQuiet(ctx, pids, opts.QuietWait)
					}
					res, err := runCell(ctx, row.Impl, addrs[:n], w, cfg, opts.TTL)
					if err != nil {
						return nil, fmt.Errorf("N=%d %s %s: %w", n, w.Name(), row.Impl.Key, err)
					}
					row.Rounds = append(row.Rounds, res)
					if opts.Progress != nil {
						fmt.Fprintf(opts.Progress, "[%d/%d] round %d N=%d %-10s %-16s %10s/s  p50 %8s  p99 %8s  %6s allocs  errors %d  other CPU %s\n",
							cell, total, round+1, n, w.Name(), row.Impl.Key, fmtInt(res.OpsPerSec()),
							fmtMicros(res.P50), fmtMicros(res.P99), fmtAllocs(res.Allocs, 1), res.Errors, fmtCores(res.OtherCores))
					}
				}
			}
		}
	}
	for _, row := range rep.Rows {
		row.Median = summarize(row.Rounds)
	}
	rep.Duration = time.Since(rep.Started)
	return rep, nil
}

// startServers starts n redis-servers (7.x or newer) with the root
// module's launcher, internal/redistest: loopback, free ports, no
// persistence, killed by the kernel if the harness dies. stop stops them
// and removes their directories.
func startServers(bin string, n int) (addrs []string, pids []int, version string, stop func() error, err error) {
	sa := redistest.NewStandalone()
	var servers []*redistest.Server
	err = sa.Run(func(t testing.TB) {
		if p, err := exec.LookPath(bin); err == nil {
			bin = p
		}
		for range n {
			servers = append(servers, redistest.StartWith(t, redistest.Options{Binary: bin}))
		}
	})
	if err == nil {
		version, err = serverVersion(servers[0])
	}
	if err != nil {
		return nil, nil, "", nil, errors.Join(err, sa.Close())
	}
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
		pids = append(pids, s.Pid())
	}
	return addrs, pids, version, sa.Close, nil
}

// serverVersion reads redis_version from INFO and requires 7 or newer.
func serverVersion(s *redistest.Server) (string, error) {
	info, err := s.TryDo(10*time.Second, "INFO", "server")
	if err != nil {
		return "", fmt.Errorf("INFO server on %s: %w", s.Addr(), err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
			if major < 7 {
				return v, fmt.Errorf("redis-server is version %s, need 7.x or newer", v)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("no redis_version in INFO server of %s", s.Addr())
}

// prepare runs the Prepare of every implementation that has one and returns
// the implementations that can run, their notes and the skipped ones (one
// progress line each). It fails only when ctx ends.
func prepare(ctx context.Context, all []*Impl, progress io.Writer) (impls []*Impl, notes []string, skipped []Skipped, err error) {
	for _, im := range all {
		if im.Prepare == nil {
			impls = append(impls, im)
			continue
		}
		note, err := im.Prepare(ctx)
		if ctx.Err() != nil {
			return nil, nil, nil, errors.Join(fmt.Errorf("%s: prepare: interrupted", im.Key), ctx.Err())
		}
		if err != nil {
			reason := strings.Join(strings.Fields(err.Error()), " ")
			skipped = append(skipped, Skipped{Key: im.Key, Reason: reason})
			if progress != nil {
				fmt.Fprintf(progress, "%s: not run: %s\n", im.Key, reason)
			}
			continue
		}
		notes = append(notes, im.Key+": "+note)
		if progress != nil {
			fmt.Fprintf(progress, "%s: %s\n", im.Key, note)
		}
		impls = append(impls, im)
	}
	return impls, notes, skipped, nil
}

// summarize takes the medians over rounds; Allocs is NaN when no round had
// ops.
func summarize(rs []Result) Summary {
	s := Summary{OtherCores: -1}
	var ops, allocs, p50, p99, holds []float64
	for _, r := range rs {
		ops = append(ops, r.OpsPerSec())
		if r.Hold > 0 {
			holds = append(holds, float64(r.Hold))
		}
		if r.Ops > 0 { // a round without ops has no latency to report
			allocs = append(allocs, r.Allocs)
			p50 = append(p50, float64(r.P50))
			p99 = append(p99, float64(r.P99))
		}
		s.MaxWait = max(s.MaxWait, r.MaxWait)
		s.Errors += r.Errors
		s.OtherCores = max(s.OtherCores, r.OtherCores)
		if s.FirstErr == "" {
			s.FirstErr = r.FirstErr
		}
	}
	s.OpsPerSec, s.Allocs = median(ops), median(allocs)
	if len(allocs) == 0 {
		s.Allocs = math.NaN()
	}
	s.P50, s.P99 = time.Duration(median(p50)), time.Duration(median(p99))
	s.Hold = time.Duration(median(holds))
	var delays []time.Duration
	for i, r := range rs {
		delays = append(delays, r.Delays...)
		if i == 0 || r.AcqMin < s.AcqMin {
			s.AcqMin = r.AcqMin
		}
		s.AcqMax = max(s.AcqMax, r.AcqMax)
	}
	if len(delays) > 0 {
		s.Trials = len(delays)
		s.P50, s.P99, s.MaxWait = quantile(delays, 0.50), quantile(delays, 0.99), quantile(delays, 1)
	}
	return s
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
