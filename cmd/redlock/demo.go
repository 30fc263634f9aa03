package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/redlock-go/redlock"
)

// demoResource is the resource the demo's workers contend for.
const demoResource = "demo-resource"

// Bounds of the demo's flags.
const (
	demoMaxWorkers   = 26
	demoMaxInstances = 15
	demoMinDuration  = 100 * time.Millisecond
	demoMaxDuration  = time.Hour
	demoColumns      = 60
)

type demoOpts struct {
	workers   int
	instances int
	duration  time.Duration
	ttl       time.Duration
}

func newDemoFlags() (*flag.FlagSet, *demoOpts) {
	fs := newFlagSet("demo")
	o := &demoOpts{}
	fs.IntVar(&o.workers, "workers", 5, "")
	fs.IntVar(&o.instances, "instances", 5, "")
	o.duration, o.ttl = 10*time.Second, time.Second
	fs.Var(seconds{&o.duration}, "duration", "")
	fs.Var(seconds{&o.ttl}, "ttl", "")
	return fs, o
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	d, code := newDemo(ctx, args, stdout, stderr)
	if d == nil {
		return code
	}
	return d.run(ctx)
}

// newDemo parses the demo's arguments and returns the demo, or nil and the
// exit code of a usage error (or of -h).
func newDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (*demo, int) {
	fs, o := newDemoFlags()
	pos, tail, _, err := parseArgs(fs, args, -1)
	if err == nil && len(pos)+len(tail) > 0 {
		err = usagef("unexpected argument %q", append(pos, tail...)[0])
	}
	switch {
	case err != nil:
	case o.workers < 1 || o.workers > demoMaxWorkers:
		err = usagef("--workers %d is outside 1..%d", o.workers, demoMaxWorkers)
	case o.instances < 1 || o.instances > demoMaxInstances:
		err = usagef("--instances %d is outside 1..%d", o.instances, demoMaxInstances)
	case o.duration < demoMinDuration || o.duration > demoMaxDuration:
		err = usagef("--duration %v is outside %v..%v", o.duration, demoMinDuration, demoMaxDuration)
	case o.ttl <= 0:
		err = usagef("--ttl %v must be positive", o.ttl)
	}
	if err != nil {
		return nil, reportUsage("demo", err, stdout, stderr)
	}
	cfg := redlock.Config{
		DefaultTTL:    o.ttl,
		RetryDelayMin: 5 * time.Millisecond,
		RetryDelayMax: 25 * time.Millisecond,
		NodeTimeout:   200 * time.Millisecond,
	}
	// Validate the configuration before starting anything (New dials no one).
	probe, err := redlock.New([]string{"127.0.0.1:1"}, cfg)
	if err != nil {
		return nil, reportUsage("demo", err, stdout, stderr)
	}
	_ = probe.Close(ctx)
	return &demo{o: o, cfg: cfg, out: stdout, errw: stderr}, exitOK
}

// demoEvents drives a demo by what happens instead of by the clock (the
// tests: a loaded machine may make few acquisitions in a given time). The
// victim goes down once down acquisitions were made, comes back once
// during more were acquired while it was down, and the run ends once after
// more were acquired since it came back; with stopOnOverlap it also ends
// at the first overlap. The caller's ctx bounds the run.
type demoEvents struct {
	down, during, after int
	stopOnOverlap       bool
}

// demo is one run of "redlock demo".
type demo struct {
	o    *demoOpts
	cfg  redlock.Config
	out  io.Writer
	errw io.Writer
	// setup, when set, runs on each worker's Manager (tests break the
	// algorithm with it to show that the checks can fail).
	setup func(*redlock.Manager)
	// events, when set, replaces the clock (see demoEvents).
	events *demoEvents
	stop   context.CancelFunc // ends the run (events)
	goDown chan struct{}      // closed when the victim is to go down (events)
	goUp   chan struct{}      // closed when it is to come back (events)
	ended  bool               // stop was called (events)

	mu      sync.Mutex
	servers []*miniredis.Miniredis // current server of each instance
	held    []interval

	start        time.Time
	total        time.Duration // how long the workers ran (--duration, or measured with events)
	victim       int
	down, up     time.Duration // since start; up is 0 while down or if never restarted
	restartErr   error
	unlockFailed atomic.Int32
}

// interval is one holding of the lock by a worker, in time since start.
type interval struct {
	worker     int
	acquired   time.Duration // Lock returned
	released   time.Duration // the worker stopped using it, before Unlock
	validUntil time.Duration // the lock's validity deadline (Lock.Until) then
	lost       bool
}

// end is when the worker's right to the lock ended: its release, or its
// validity deadline if that came first (a pause longer than the TTL).
func (iv interval) end() time.Duration { return min(iv.released, iv.validUntil) }

func (d *demo) run(ctx context.Context) int {
	addrs := make([]string, d.o.instances)
	for i := range addrs {
		s := miniredis.NewMiniRedis()
		s.ClockTTL(true) // keys expire in real time, as in Redis
		if err := s.StartAddr("127.0.0.1:0"); err != nil {
			d.closeServers()
			fmt.Fprintf(d.errw, "redlock demo: starting an embedded instance: %s\n", msg(err))
			return exitSoftware
		}
		d.servers = append(d.servers, s)
		addrs[i] = s.Addr()
	}
	defer d.closeServers()
	d.victim = d.o.instances / 2

	managers := make([]*redlock.Manager, d.o.workers)
	for i := range managers {
		m, err := redlock.New(addrs, d.cfg)
		if err != nil {
			fmt.Fprintf(d.errw, "redlock demo: %s\n", msg(err))
			return exitSoftware
		}
		managers[i] = m
		if d.setup != nil {
			d.setup(m)
		}
	}
	quorum := managers[0].Quorum()
	fmt.Fprintf(d.out, "redlock demo: %d workers contend for %q on %d embedded Redis instances (miniredis, quorum %d)\n",
		d.o.workers, demoResource, d.o.instances, quorum)
	fmt.Fprintf(d.out, "each worker: lock (TTL %v, auto-extended), hold 10-50ms, unlock, pause 0-20ms", d.o.ttl)
	if d.events == nil {
		fmt.Fprintf(d.out, "; for %v", d.o.duration)
	}
	fmt.Fprintln(d.out)
	if e := d.events; e != nil {
		fmt.Fprintf(d.out, "instance %d goes down after %d acquisitions and comes back empty after %d more; the run ends after %d more\n\n",
			d.victim+1, e.down, e.during, e.after)
	} else {
		fmt.Fprintf(d.out, "instance %d goes down at %v and comes back empty at %v\n\n",
			d.victim+1, (d.o.duration / 3).Round(time.Millisecond), (2 * d.o.duration / 3).Round(time.Millisecond))
	}

	d.start = time.Now()
	var dctx context.Context
	var cancel context.CancelFunc
	if d.events != nil {
		dctx, cancel = context.WithCancel(ctx)
		d.stop, d.goDown, d.goUp = cancel, make(chan struct{}), make(chan struct{})
	} else {
		dctx, cancel = context.WithDeadline(ctx, d.start.Add(d.o.duration))
	}
	defer cancel()
	var wg sync.WaitGroup
	for i, m := range managers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.worker(dctx, i, m)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.chaos(dctx)
	}()
	wg.Wait()
	d.total = d.o.duration
	if d.events != nil {
		d.total = time.Since(d.start)
	}
	for _, m := range managers {
		cctx, ccancel := boundedCtx(ctx, d.cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		ccancel()
	}
	return d.report(quorum)
}

// worker locks, holds, unlocks and pauses until ctx ends.
func (d *demo) worker(ctx context.Context, id int, m *redlock.Manager) {
	for {
		l, err := m.LockWait(ctx, demoResource)
		if err != nil {
			return // ctx ended
		}
		acquired := time.Since(d.start)
		hold := time.NewTimer(10*time.Millisecond + rand.N(40*time.Millisecond))
		lost := false
		select {
		case <-hold.C:
		case <-l.Lost():
			hold.Stop()
			lost = true
		}
		released := time.Since(d.start)
		validUntil := l.Until().Sub(d.start)
		d.mu.Lock()
		d.record(interval{worker: id, acquired: acquired, released: released, validUntil: validUntil, lost: lost})
		d.mu.Unlock()
		uctx, cancel := boundedCtx(ctx, d.cfg.NodeTimeout+timeoutSlack)
		if err := l.Unlock(uctx); err != nil {
			d.unlockFailed.Add(1)
		}
		cancel()
		pause := time.NewTimer(rand.N(20 * time.Millisecond))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return
		}
	}
}

// chaos takes the victim instance down at a third of the run and brings
// it back, empty, on the same address at two thirds (with events: when
// record says so).
func (d *demo) chaos(ctx context.Context) {
	if !d.until(ctx, d.goDown, d.o.duration/3) {
		return
	}
	d.mu.Lock()
	s := d.servers[d.victim]
	addr := s.Addr()
	d.mu.Unlock()
	s.Close()
	d.mu.Lock()
	d.down = time.Since(d.start)
	d.mu.Unlock()
	if !d.until(ctx, d.goUp, 2*d.o.duration/3) {
		return
	}
	ns, err := restartOn(ctx, addr)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.restartErr = err
		return
	}
	d.servers[d.victim] = ns
	d.up = time.Since(d.start)
}

// until waits for ch with events, else until at (since start); false if
// ctx ended first.
func (d *demo) until(ctx context.Context, ch <-chan struct{}, at time.Duration) bool {
	if d.events == nil {
		return sleepCtx(ctx, time.Until(d.start.Add(at)))
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// record adds a holding and, with events, moves the run on. d.mu is held.
func (d *demo) record(iv interval) {
	d.held = append(d.held, iv)
	e := d.events
	if e == nil || d.ended {
		return
	}
	since := func(t time.Duration) int {
		n := 0
		for _, h := range d.held {
			if h.acquired >= t {
				n++
			}
		}
		return n
	}
	end := false
	if e.stopOnOverlap {
		for _, h := range d.held[:len(d.held)-1] {
			if h.acquired < iv.end() && iv.acquired < h.end() {
				end = true
			}
		}
	}
	switch {
	case d.down == 0:
		if len(d.held) >= e.down {
			closeOnce(d.goDown)
		}
	case d.up == 0:
		if since(d.down) >= e.during {
			closeOnce(d.goUp)
		}
	default:
		end = end || since(d.up) >= e.after
	}
	if end {
		d.ended = true
		d.stop()
	}
}

// closeOnce closes ch unless it is closed.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// restartOn starts an empty instance on addr, retrying briefly while the
// port is still taken.
func restartOn(ctx context.Context, addr string) (*miniredis.Miniredis, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := miniredis.NewMiniRedis()
		s.ClockTTL(true)
		err := s.StartAddr(addr)
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, err
		}
	}
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *demo) closeServers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.servers {
		s.Close() // a no-op for the one already closed
	}
}

// report prints the timeline and the summary, and returns the exit code:
// 0 when no two workers ever held the lock at once and there was at least
// one acquisition.
func (d *demo) report(quorum int) int {
	d.mu.Lock()
	held := slices.Clone(d.held)
	down, up, restartErr := d.down, d.up, d.restartErr
	d.mu.Unlock()
	slices.SortFunc(held, func(a, b interval) int { return cmp.Compare(a.acquired, b.acquired) })
	total := d.total
	if total <= 0 {
		total = d.o.duration
	}

	d.timeline(held, down, up, total)

	counts := make([]int, d.o.workers)
	lost := 0
	for _, iv := range held {
		counts[iv.worker]++
		if iv.lost {
			lost++
		}
	}
	var parts []string
	for i, c := range counts {
		parts = append(parts, fmt.Sprintf("worker %d: %d", i+1, c))
	}
	fmt.Fprintf(d.out, "acquisitions:    %s (total %d)\n", strings.Join(parts, ", "), len(held))

	// Redlock promises exclusion while a lock is valid: an overlap is a
	// holding that starts before another one's end. A worker that went on
	// past its validity deadline (a pause longer than the TTL) is counted
	// apart: that is what fencing tokens are for.
	overlaps, lateOverlaps, late := 0, 0, 0
	for i := range held {
		if held[i].released > held[i].validUntil {
			late++
		}
		for j := i + 1; j < len(held) && held[j].acquired < held[i].released; j++ {
			if held[j].acquired < held[i].end() {
				overlaps++
			} else {
				lateOverlaps++
			}
		}
	}
	fmt.Fprintf(d.out, "overlaps:        %d (%d [acquired, released] intervals compared pairwise)\n", overlaps, len(held))

	var gaps []time.Duration
	for i := 1; i < len(held); i++ {
		if g := held[i].acquired - held[i-1].released; g >= 0 {
			gaps = append(gaps, g)
		}
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		fmt.Fprintf(d.out, "handoff latency: p50 %v, max %v (release to next acquisition, %d handoffs)\n",
			roundMs(gaps[len(gaps)/2]), roundMs(gaps[len(gaps)-1]), len(gaps))
	}

	switch {
	case down == 0:
		fmt.Fprintf(d.out, "outage:          none (the run ended before instance %d went down)\n", d.victim+1)
	default:
		end := up
		if end == 0 {
			end = total
		}
		during := 0
		for _, iv := range held {
			if iv.acquired >= down && iv.acquired < end {
				during++
			}
		}
		state := fmt.Sprintf("back at %v", roundMs(up))
		if restartErr != nil {
			state = fmt.Sprintf("not restarted: %v", restartErr)
		} else if up == 0 {
			state = "still down at the end"
		}
		fmt.Fprintf(d.out, "outage:          instance %d down at %v, %s; %d acquisitions meanwhile (quorum %d of the %d still up)\n",
			d.victim+1, roundMs(down), state, during, quorum, d.o.instances-1)
	}
	fmt.Fprintf(d.out, "lost locks:      %d; failed unlocks: %d\n", lost, d.unlockFailed.Load())
	if late > 0 {
		fmt.Fprintf(d.out, "late releases:   %d holdings outlived their validity (this process paused longer than the TTL);\n"+
			"                 %d overlaps came after a validity deadline: what fencing tokens guard against\n", late, lateOverlaps)
	}

	switch {
	case overlaps > 0:
		fmt.Fprintln(d.out, "\nFAIL: two workers held the lock at the same time")
		return exitConflict
	case len(held) == 0:
		fmt.Fprintln(d.out, "\nFAIL: no worker acquired the lock")
		return exitConflict
	}
	fmt.Fprintln(d.out, "\nOK: no two workers ever held a valid lock at the same time")
	return exitOK
}

// timeline draws one row per worker (# where it held the lock) and one for
// the instance that went down (X while down).
func (d *demo) timeline(held []interval, down, up, total time.Duration) {
	cols := demoColumns
	col := func(t time.Duration) int {
		c := int(int64(t) * int64(cols) / int64(total))
		return min(max(c, 0), cols-1)
	}
	labelW := len(fmt.Sprintf("worker %d", d.o.workers))
	if w := len(fmt.Sprintf("instance %d", d.victim+1)); w > labelW {
		labelW = w
	}
	pad := strings.Repeat(" ", labelW+1)

	axis := []byte(strings.Repeat(" ", cols+2))
	ticks := []byte(strings.Repeat(" ", cols+2))
	for _, f := range []int{0, 1, 2, 3, 4} {
		c := f * cols / 4
		label := fmtAxis(total * time.Duration(f) / 4)
		at := min(max(c+1-len(label)/2, 0), len(axis)-len(label))
		copy(axis[at:], label)
		ticks[c+1] = '|'
	}
	fmt.Fprintf(d.out, "%s%s\n%s%s\n", pad, strings.TrimRight(string(axis), " "), pad, strings.TrimRight(string(ticks), " "))

	rows := make([][]byte, d.o.workers)
	for i := range rows {
		rows[i] = []byte(strings.Repeat(" ", cols))
	}
	for _, iv := range held {
		for c := col(iv.acquired); c <= col(iv.released); c++ {
			rows[iv.worker][c] = '#'
		}
	}
	for i, r := range rows {
		fmt.Fprintf(d.out, "%-*s |%s|\n", labelW, fmt.Sprintf("worker %d", i+1), r)
	}
	inst := []byte(strings.Repeat("-", cols))
	if down > 0 {
		end := up
		if end == 0 {
			end = total
		}
		for c := col(down); c <= col(end); c++ {
			inst[c] = 'X'
		}
	}
	fmt.Fprintf(d.out, "%-*s |%s|\n", labelW, fmt.Sprintf("instance %d", d.victim+1), inst)
	fmt.Fprintf(d.out, "%s one column = %v; # = held the lock in that slice (several workers can share a\n%s column when the lock changed hands within it); X = instance down\n\n",
		pad, roundMs(total/time.Duration(cols)), pad)
}

// fmtAxis renders an axis label: 0s, 2.5s, 5s.
func fmtAxis(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func roundMs(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
