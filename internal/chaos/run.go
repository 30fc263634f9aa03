package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
)

// Scenario is one run of the workload under one kind of fault.
type Scenario struct {
	// Name names it in the report.
	Name string
	// Cluster configures the servers and proxies.
	Cluster ClusterOptions
	// Workload is the template of every worker's workload; Endpoints and
	// Seed are filled in per worker.
	Workload Workload
	// GoWorkers is the number of goroutine workers (group 0).
	GoWorkers int
	// Subprocesses is the number of worker subprocesses, each running
	// SubWorkers workers (group Cluster.Groups-1).
	Subprocesses, SubWorkers int
	// Nemesis injects the faults. It runs on the test goroutine and must
	// return once r.Sleep returns false. Nil means no faults.
	Nemesis func(r *Run)
	// MinAcquisitions and MinDuration: the run ends once both are reached
	// (and the nemesis returned), or at MaxDuration.
	MinAcquisitions          int
	MinDuration, MaxDuration time.Duration
	// Control marks a negative control: the run ends as soon as a
	// violation of a kind in Expect is seen (checked online, every 100ms,
	// on the records so far).
	Control bool
	// Expect lists the violation kinds a control must produce. Default:
	// "overlap" (the exclusion checker itself must see the failure).
	Expect []string
	// Seed seeds the nemesis and the workers.
	Seed uint64
}

// expects reports whether kind is one a control must produce.
func (sc *Scenario) expects(kind string) bool {
	if len(sc.Expect) == 0 {
		return kind == "overlap"
	}
	for _, k := range sc.Expect {
		if k == kind {
			return true
		}
	}
	return false
}

// Run is a scenario in progress, as the nemesis sees it.
type Run struct {
	T    testing.TB    // the test: Cluster methods that take it run on its goroutine
	C    *Cluster      // the servers and their proxies
	Rng  *rand.Rand    // seeded by Scenario.Seed
	Subs []*Subprocess // the worker subprocesses (SIGSTOP them for holder pauses)

	sc       *Scenario
	start    time.Time
	rec      *Recorder
	detected int64 // CLOCK_MONOTONIC of the first violation seen online
	lastChk  time.Time
	faults   map[string]int
}

// Fault counts one injected fault of kind for the report.
func (r *Run) Fault(kind string) { r.faults[kind]++ }

// Done reports whether the run should end.
func (r *Run) Done() bool {
	el := time.Since(r.start)
	if el >= r.sc.MaxDuration {
		return true
	}
	if r.sc.Control {
		if r.detected == 0 && time.Since(r.lastChk) >= 100*time.Millisecond {
			r.lastChk = time.Now()
			recs := r.rec.Snapshot()
			for _, p := range r.Subs {
				recs = append(recs, p.Peek()...)
			}
			vs := CheckExclusion(recs)
			if fv, ran := CheckFencing(recs); ran {
				vs = append(vs, fv...)
			}
			for _, v := range vs {
				if r.sc.expects(v.Kind) && (r.detected == 0 || v.At < r.detected) {
					r.detected = v.At
				}
			}
		}
		return r.detected != 0
	}
	return el >= r.sc.MinDuration && r.Acquired() >= r.sc.MinAcquisitions
}

// Acquired returns the successful acquisitions so far, subprocesses
// included (as they last reported).
func (r *Run) Acquired() int {
	n := r.rec.Acquired()
	for _, p := range r.Subs {
		n += p.Acquired()
	}
	return n
}

// Sleep waits d, or less if the run should end; it returns false then.
// Nemeses call it between faults.
func (r *Run) Sleep(d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		if r.Done() {
			return false
		}
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 20*time.Millisecond))
	}
}

// Result is what a scenario produced.
type Result struct {
	Name         string
	N            int
	Acquisitions int
	Attempts     int // Lock calls not ended by the run's own cancellation
	Violations   []Violation
	P99Acquire   time.Duration
	Duration     time.Duration
	Extensions   int // successful explicit and observed auto-extensions
	Pauses       int // holder pauses past the deadline
	AcqPauses    int // Lock calls that paused after the replies for ≥ TTL
	AcqPausedOK  int // Lock calls whose winning attempt paused for ≥ TTL
	KeySamples   int
	KeysGone     time.Duration // from the end of the workload to no key left
	KeysLeft     []string
	Fencing      string        // what the fencing check did
	Fenced       int           // acquisitions that carried a fencing token
	Detected     time.Duration // from the start to the first violation
	FirstKind    string        // the kind of the first violation
	Expected     int           // violations of the kinds Scenario.Expect lists
	ExpectedAt   time.Duration // from the start to the first of them
	ExpectedKind string        // and its kind
	Faults       string
	Records      []Record
	start        int64
}

// SuccessRate is Acquisitions / Attempts.
func (r *Result) SuccessRate() float64 {
	if r.Attempts == 0 {
		return 0
	}
	return float64(r.Acquisitions) / float64(r.Attempts)
}

// Execute runs sc and returns its result; the caller asserts. Everything
// it starts is stopped before it returns (servers in t.Cleanup).
func Execute(t testing.TB, sc Scenario) *Result {
	t.Helper()
	c := NewCluster(t, sc.Cluster)
	groups := max(sc.Cluster.Groups, 1)
	r := &Run{T: t, C: c, Rng: rand.New(rand.NewPCG(sc.Seed, 0x6e656d65)), sc: &sc, rec: &Recorder{}, faults: map[string]int{}}
	sampler := StartKeySampler(c.Servers, LockKeys, 200*time.Millisecond)
	sampling := true
	defer func() {
		if sampling {
			sampler.Stop()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, sc.GoWorkers)
	var ready sync.WaitGroup
	start := make(chan struct{})
	barrier := &Barrier{Ready: ready.Done, Start: start}
	for i := 0; i < sc.GoWorkers; i++ {
		w := sc.Workload
		w.Endpoints, w.Seed = c.Endpoints(0), sc.Seed
		w.MaxDuration = sc.MaxDuration + time.Minute
		wg.Add(1)
		ready.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := RunWorker(ctx, fmt.Sprintf("g%d", i), w, r.rec, barrier); err != nil {
				errs <- err
			}
		}(i)
	}
	for i := 0; i < sc.Subprocesses; i++ {
		w := sc.Workload
		w.Endpoints, w.Seed = c.Endpoints(groups-1), sc.Seed
		w.MaxDuration = sc.MaxDuration + time.Minute
		r.Subs = append(r.Subs, StartSubprocess(t, SubprocessConfig{Name: fmt.Sprintf("p%d", i), Workers: sc.SubWorkers, Workload: w}))
	}
	// Start the clock once every worker is connected: process start-up and
	// first dials are not part of the measurement.
	ready.Wait() // every goroutine worker calls Ready, even on failure
	for _, p := range r.Subs {
		select {
		case <-p.Ready():
		case <-p.Done():
			p.Wait(t) // fails the test with the subprocess's output
			t.Fatalf("chaos: worker subprocess %s exited before it was ready", p.cfg.Name)
		case <-time.After(60 * time.Second):
			t.Fatalf("chaos: worker subprocess %s not ready after 60s", p.cfg.Name)
		}
	}
	mono0 := Mono()
	r.start = time.Now()
	close(start)
	for _, p := range r.Subs {
		p.Start()
	}

	if sc.Nemesis != nil {
		sc.Nemesis(r)
	}
	for r.Sleep(time.Hour) {
	}
	mono1 := Mono()
	duration := time.Since(r.start)

	// Stop the workers first, then heal: a server killed without
	// persistence must not come back while anyone could still lock on it.
	cancel()
	for _, p := range r.Subs {
		p.Tell()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("chaos: worker: %v", err)
	}
	recs := r.rec.Snapshot()
	for _, p := range r.Subs {
		recs = append(recs, p.Wait(t)...)
	}
	c.Heal(t)
	samples, keyViolations := sampler.Stop()
	sampling = false

	// Every writer has stopped and the faults are healed (a server that
	// was paused has just run the commands it had buffered, a toxic that
	// delayed data has just let it through): no key may remain TTL + drift
	// from now (the longest lease a key can get: an extension may ask for
	// more than the TTL). 250ms of slack covers the time healing itself
	// takes on a loaded machine.
	ttl := sc.Workload.maxLease()
	bound := ttl + time.Duration(float64(ttl)*redlock.DefaultDriftFactor) + 2*time.Millisecond + 250*time.Millisecond
	gone, left := WaitNoKeys(c.Servers, LockKeys, time.Now().Add(bound))

	res := &Result{
		Name: sc.Name, N: sc.Cluster.N, Duration: duration, KeySamples: samples, KeysGone: gone, KeysLeft: left,
		Records: recs, start: mono0,
	}
	var lat []time.Duration
	for i := range recs {
		rc := &recs[i]
		if rc.Invoke > mono1 {
			continue // started after the run ended: not part of the measurement
		}
		if rc.Err != "ctx" {
			res.Attempts++
		}
		if rc.AcqPaused >= rc.TTL && rc.TTL > 0 {
			res.AcqPauses++
		}
		if rc.OK && rc.AcqPausedLast >= rc.TTL && rc.TTL > 0 {
			res.AcqPausedOK++
		}
		if rc.OK && rc.Fence != nil {
			res.Fenced++
		}
		if rc.OK {
			res.Acquisitions++
			lat = append(lat, time.Duration(rc.Return-rc.Invoke))
			for _, e := range rc.Extensions {
				if e.OK {
					res.Extensions++
				}
			}
			if rc.Paused != 0 {
				res.Pauses++
			}
		}
	}
	res.P99Acquire = percentile(lat, 0.99)
	res.Violations = append(CheckExclusion(recs), keyViolations...)
	for _, k := range left {
		res.Violations = append(res.Violations, Violation{Kind: "key-left", At: Mono(), Detail: k})
	}
	if fv, ran := CheckFencing(recs); ran {
		res.Fencing = fmt.Sprintf("%d tokens checked, %d violations", res.Fenced, len(fv))
		res.Violations = append(res.Violations, fv...)
	} else {
		res.Fencing = "not run (locks without fencing)"
	}
	if len(res.Violations) > 0 {
		first := res.Violations[0]
		for _, v := range res.Violations {
			if v.At < first.At {
				first = v
			}
		}
		res.Detected, res.FirstKind = time.Duration(first.At-mono0), first.Kind
	}
	for _, v := range res.Violations {
		if !sc.expects(v.Kind) {
			continue
		}
		if res.Expected == 0 || time.Duration(v.At-mono0) < res.ExpectedAt {
			res.ExpectedAt, res.ExpectedKind = time.Duration(v.At-mono0), v.Kind
		}
		res.Expected++
	}
	var kinds []string
	for k, n := range r.faults {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(kinds)
	res.Faults = strings.Join(kinds, " ")
	return res
}

// FailureSummary counts the failed Lock calls by worker kind (goroutine
// or subprocess) and error message, most frequent first, at most max
// lines: what to look at when a run made fewer acquisitions than it should.
func (r *Result) FailureSummary(max int) []string {
	counts := map[string]int{}
	for _, rc := range r.Records {
		if rc.OK {
			continue
		}
		kind := "goroutine"
		if strings.HasPrefix(rc.Worker, "p") {
			kind = "subprocess"
		}
		msg := rc.ErrText
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		counts[kind+": "+msg]++
	}
	lines := make([]string, 0, len(counts))
	for k, n := range counts {
		lines = append(lines, fmt.Sprintf("%6d %s", n, k))
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i] > lines[j] })
	if len(lines) > max {
		lines = lines[:max]
	}
	// A timeline: calls and successes per half second, by invocation.
	type bucket struct{ calls, ok int }
	var tl []bucket
	for _, rc := range r.Records {
		b := int((rc.Invoke - r.start) / int64(500*time.Millisecond))
		if b < 0 || b > 1000 {
			continue
		}
		for len(tl) <= b {
			tl = append(tl, bucket{})
		}
		tl[b].calls++
		if rc.OK {
			tl[b].ok++
		}
	}
	var sb strings.Builder
	sb.WriteString("timeline (ok/calls per 0.5s):")
	for _, b := range tl {
		fmt.Fprintf(&sb, " %d/%d", b.ok, b.calls)
	}
	lines = append(lines, sb.String())
	for _, rc := range r.Records {
		if !rc.OK && rc.ErrText != "" {
			lines = append(lines, "first failure in full: "+rc.ErrText)
			break
		}
	}
	return lines
}

// percentile returns the p-quantile of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}
