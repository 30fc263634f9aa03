package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// The fault suite measures load, not only safety: with a majority of the
// instances down, callers that wait for a lock (LockWait) must not flood
// the instances still up (the library's retry backoff), and once the
// instances are back they must all get the lock, one after the other.

// scriptCalls returns the EVALSHA and EVAL calls s has served (INFO
// commandstats), asked directly, not through a proxy.
func scriptCalls(t testing.TB, s *redistest.Server) int64 {
	t.Helper()
	var n int64
	for _, line := range strings.Split(s.Do(t, "INFO", "commandstats"), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		v, _, _ := strings.Cut(rest, ",")
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		n += c
	}
	return n
}

// The load scenario: loadWaiters callers over loadManagers Managers, each
// waiting (LockWait) in a loop on one of loadResources resources; waiter i
// uses Manager i%loadManagers and resource (i/loadManagers)%loadResources,
// so that every Manager has waiters on every resource (2 or 3 each).
const (
	loadManagers  = 4
	loadWaiters   = 40
	loadResources = 4
	// loadBound is the most script calls per second that one waiting
	// caller (a LockWait) may send to an instance that is still up while
	// a majority is down, averaged over the outage: the root package's
	// TestNoRetryStormWithMajorityDown allows 60 per LockWait in 3 s (1
	// and 20 Managers, one LockWait each, default retry delays), i.e.
	// 20/s. The bound holds per waiter because every waiter polls on its
	// own delay (waiters.go: the per-key queue of a Manager only orders the
	// wake-ups on a release, it does not make its waiters share one
	// poll); the rate per Manager and resource is held to the same 20/s,
	// which it meets here with 2 or 3 waiters per Manager and resource.
	loadBound = 20.0
)

// loadOutage is how long the majority stays down.
func loadOutage() time.Duration {
	if full() {
		return 10 * time.Second
	}
	return 3 * time.Second
}

// loadHeader is the header of the load table.
const loadHeader = "| N | down | retry delay | outage | Managers / waiters / resources | script calls/s at each survivor | per Manager | per Manager-resource | per waiter | peak 0.5 s, per waiter | bound 20/s (waiter, Manager-resource) | attempts/s per waiter (ending not acquired) | after healing: first / all acquired | acquisitions | violations |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"

// loadCase is one run of TestLoadMajorityDown.
type loadCase struct {
	n     int
	fault string // "stopped" (SIGKILL) or "black-holed" (toxiproxy timeout)
	// suiteDelays retries after 2-10ms (the suite's workload) instead of
	// the library's defaults (100-300ms); the bound is then reported, not
	// asserted (see TestLoadMajorityDown).
	suiteDelays bool
}

// TestLoadMajorityDown: a majority of the instances stopped (SIGKILL) or
// black-holed (toxiproxy timeout) for loadOutage while 40 callers over 4
// Managers (default retry delays, DefaultTTL 1s, NodeTimeout 150ms) wait
// for 4 resources. The script calls that reach each surviving instance
// (INFO commandstats, before and after the outage) stay under loadBound
// per waiter and per Manager-resource (averaged over the outage; the
// peak half-second is reported); nothing is acquired while the majority
// is down; after healing every waiter acquires (liveness; a failure bound
// of 30 s, the time is reported), exclusion holds (CheckExclusion) and no
// key remains.
//
// Full mode also runs N=3 with the suite's retry delays (2-10ms), where
// the bound is reported but not asserted: with a majority stopped, the
// survivor's refusal (another waiter's key is there) and one fast
// connection error decide a quarter to a third of the attempts before the
// third instance's error arrives, so they end "not acquired" rather than
// "unavailable" and the retry delay falls back to [RetryDelayMin,
// RetryDelayMax] instead of growing. Seen, 2 stopped for 10 s: 5.8 to 8.3
// attempts and 9.8 to 14.4 script calls per second per waiter (24.5 to 36
// per Manager-resource; peak half-second 22 to 24 per waiter);
// black-holed, where the failures come last: 1.6 and 2.1.
func TestLoadMajorityDown(t *testing.T) {
	cases := []loadCase{{3, "stopped", false}, {3, "black-holed", false}}
	if full() {
		cases = append(cases, loadCase{5, "stopped", false}, loadCase{5, "black-holed", false},
			loadCase{3, "stopped", true}, loadCase{3, "black-holed", true})
	}
	for ci, lc := range cases {
		name := fmt.Sprintf("N=%d/%s", lc.n, lc.fault)
		if lc.suiteDelays {
			name += "/suite-delays"
		}
		t.Run(name, func(t *testing.T) {
			loadMajorityDown(t, lc, uint64(7000+ci))
		})
	}
}

func loadMajorityDown(t *testing.T, lc loadCase, seed uint64) {
	n, fault := lc.n, lc.fault
	base := OpenFDs()
	t.Cleanup(func() { checkFDs(t, base) })
	c := NewCluster(t, ClusterOptions{N: n})
	down := n/2 + 1
	survivors := c.Servers[down:]
	w := baseWorkload()
	w.Endpoints = c.Endpoints(0)
	obs := &attemptObserver{quorum: n/2 + 1}
	delayMin, delayMax := redlock.DefaultRetryDelayMin, redlock.DefaultRetryDelayMax
	if lc.suiteDelays {
		delayMin, delayMax = w.RetryDelayMin, w.RetryDelayMax
	}
	ms := make([]*redlock.Manager, loadManagers)
	for i := range ms {
		m, err := redlock.New(w.Endpoints, redlock.Config{
			RetryDelayMin: delayMin, RetryDelayMax: delayMax,
			DefaultTTL: w.TTL, NodeTimeout: w.NodeTimeout, Observer: obs,
		})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	closed := false
	closeAll := func() {
		if closed {
			return
		}
		closed = true
		for _, m := range ms {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := m.Close(cctx); err != nil {
				t.Errorf("Close: %v", err)
			}
			cancel()
		}
	}
	defer closeAll()
	res := resources(loadResources)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &Recorder{}
	var healed atomic.Int64  // CLOCK_MONOTONIC of the heal, 0 before
	var after sync.WaitGroup // one per waiter, done at its first acquisition after healing
	firstAfter := make([]int64, loadWaiters)
	var wg sync.WaitGroup
	after.Add(loadWaiters)
	for i := 0; i < loadWaiters; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("w%d", i)
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			m, r := ms[i%loadManagers], res[(i/loadManagers)%loadResources]
			counted := false
			defer func() {
				if !counted {
					after.Done()
				}
			}()
			for ctx.Err() == nil {
				rc := Record{Worker: name, Resource: r, TTL: int64(ttl)}
				rc.Invoke = Mono()
				l, err := m.LockWait(ctx, r, redlock.TTL(ttl))
				rc.Return = Mono()
				if err != nil {
					rc.Err, rc.ErrText = Classify(err), err.Error()
					rec.Add(rc)
					if ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond) // an error that is not the end: recorded, checked below
					}
					continue
				}
				rc.OK, rc.Token, rc.Deadline = true, l.Token(), MonoOf(l.Until())
				w.hold(ctx, l, &rc, rng)
				rec.Add(rc)
				if h := healed.Load(); h != 0 && rc.Return > h && !counted {
					counted = true
					firstAfter[i] = rc.Return
					after.Done()
					return // one acquisition after healing is what liveness asks
				}
			}
		}(i)
	}

	// Warm-up: every waiter has had a turn (connections dialed, scripts
	// loaded) and the waiters churn on the resources.
	warm := time.Now()
	for rec.Acquired() < loadWaiters {
		if time.Since(warm) > 30*time.Second {
			t.Fatalf("warm-up: %d acquisitions in 30s with every instance up, want %d", rec.Acquired(), loadWaiters)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The outage.
	for i := 0; i < down; i++ {
		switch fault {
		case "stopped":
			c.Kill(t, i)
		case "black-holed":
			if _, err := c.Toxic(-1, i, "timeout", "upstream", map[string]any{"timeout": 0}); err != nil {
				t.Fatal(err)
			}
		}
	}
	faultMono := Mono()
	outage := loadOutage()
	before := make([]int64, len(survivors))
	for j, s := range survivors {
		before[j] = scriptCalls(t, s)
	}
	start := time.Now()
	// The peak: the most calls one survivor served in a half-second step.
	prev := append([]int64(nil), before...)
	var peak int64
	for step := 1; ; step++ {
		next := start.Add(time.Duration(step) * 500 * time.Millisecond)
		if next.After(start.Add(outage)) {
			time.Sleep(time.Until(start.Add(outage)))
			break
		}
		time.Sleep(time.Until(next))
		for j, s := range survivors {
			v := scriptCalls(t, s)
			peak = max(peak, v-prev[j])
			prev[j] = v
		}
	}
	var calls []int64
	for j, s := range survivors {
		calls = append(calls, scriptCalls(t, s)-before[j])
	}
	measured := time.Since(start)
	// From here on a waiter may acquire: the instances come back during
	// Heal (a killed server answers before Heal returns).
	healTime := time.Now()
	healMono := Mono()
	healed.Store(healMono)
	c.Heal(t)

	// Liveness: every waiter acquires after healing.
	allIn := make(chan struct{})
	go func() { after.Wait(); close(allIn) }()
	live := true
	select {
	case <-allIn:
	case <-time.After(30 * time.Second):
		live = false
	}
	liveTook := time.Since(healTime)
	cancel()
	wg.Wait()
	if !live {
		<-allIn // every waiter returned once ctx ended
	}
	closeAll()

	recs := rec.Snapshot()
	vs := CheckExclusion(recs)
	acquired, errsOther := 0, map[string]int{}
	for _, r := range recs {
		if r.OK {
			acquired++
			// An attempt in flight when the fault came may still win
			// (within its NodeTimeout); nothing later, until healing.
			if r.Return > faultMono+int64(ttl) && r.Return < healMono {
				vs = append(vs, Violation{Kind: "acquired-majority-down", At: r.Return,
					Detail: fmt.Sprintf("%s acquired %q %v into the outage, with %d of %d instances %s", r.Worker, r.Resource, time.Duration(r.Return-faultMono), down, n, fault)})
			}
		} else if r.Err != "ctx" {
			errsOther[r.ErrText]++
		}
	}
	ttlBound := ttl + time.Duration(float64(ttl)*redlock.DefaultDriftFactor) + 2*time.Millisecond + 250*time.Millisecond
	if _, left := WaitNoKeys(c.Servers, LockKeys, time.Now().Add(ttlBound)); len(left) > 0 {
		for _, k := range left {
			vs = append(vs, Violation{Kind: "key-left", At: Mono(), Detail: k})
		}
	}
	var first, last int64
	for _, f := range firstAfter {
		if f == 0 {
			continue
		}
		if first == 0 || f < first {
			first = f
		}
		last = max(last, f)
	}
	got := 0
	for _, f := range firstAfter {
		if f != 0 {
			got++
		}
	}

	secs := measured.Seconds()
	att := obs.between(start, healTime)
	var worst int64
	for _, v := range calls {
		worst = max(worst, v)
	}
	perSurvivor := float64(worst) / secs
	perManager := perSurvivor / loadManagers
	perMR := perSurvivor / (loadManagers * loadResources)
	perWaiter := perSurvivor / loadWaiters
	peakPerWaiter := float64(peak) / 0.5 / loadWaiters
	attPerWaiter := float64(att.total) / secs / loadWaiters
	notAcq := 0.0
	if att.total > 0 {
		notAcq = float64(att.notAcquired) / float64(att.total)
	}
	afterHeal := fmt.Sprintf("%v / %v (%d of %d)", time.Duration(first-healMono).Round(time.Millisecond), time.Duration(last-healMono).Round(time.Millisecond), got, loadWaiters)
	if !live {
		afterHeal = fmt.Sprintf("%d of %d within %v", got, loadWaiters, liveTook.Round(time.Second))
	}
	var callStr []string
	for _, v := range calls {
		callStr = append(callStr, fmt.Sprintf("%.0f", float64(v)/secs))
	}
	delays := fmt.Sprintf("%v-%v", delayMin, delayMax)
	bound := met(perWaiter <= loadBound && perMR <= loadBound)
	if lc.suiteDelays {
		bound += " (not asserted)"
	}
	row := fmt.Sprintf("| %d | %d %s | %s | %v | %d / %d / %d | %s | %.1f | %.1f | %.2f | %.2f | %s | %.2f (%.0f%%) | %s | %d | %d |",
		n, down, fault, delays, measured.Round(100*time.Millisecond), loadManagers, loadWaiters, loadResources, strings.Join(callStr, ", "),
		perManager, perMR, perWaiter, peakPerWaiter, bound, attPerWaiter, 100*notAcq, afterHeal, acquired, len(vs))
	report.Add("Load: LockWait with a majority down, script calls at the surviving instances (TestLoadMajorityDown)", loadHeader, row)
	t.Logf("\n%s\n%s", loadHeader, row)
	t.Logf("N=%d, %d %s for %v, retry delay %s: %v script calls at the survivors (%s/s): %.1f/s per Manager, %.1f per Manager-resource, %.2f per waiter (bound %v), peak half-second %.2f per waiter; %d attempts (%.2f/s per waiter) by votes: %v; after healing first acquisition %v, all %d waiters %v",
		n, down, fault, measured.Round(time.Millisecond), delays, calls, strings.Join(callStr, ", "), perManager, perMR, perWaiter, loadBound, peakPerWaiter,
		att.total, attPerWaiter, att.byClass, time.Duration(first-healMono).Round(time.Millisecond), loadWaiters, time.Duration(last-healMono).Round(time.Millisecond))

	if !lc.suiteDelays {
		if perWaiter > loadBound {
			t.Errorf("%.2f script calls/s per waiter at a surviving instance, over %v", perWaiter, loadBound)
		}
		if perMR > loadBound {
			t.Errorf("%.1f script calls/s per Manager-resource at a surviving instance, over %v", perMR, loadBound)
		}
	}
	if !live {
		t.Errorf("liveness: %d of %d waiters acquired within 30s of healing", got, loadWaiters)
	}
	for i, v := range vs {
		if i == 20 {
			t.Errorf("... and %d more", len(vs)-i)
			break
		}
		t.Errorf("violation: %v", v)
	}
	if len(errsOther) > 0 {
		var lines []string
		for msg, k := range errsOther {
			lines = append(lines, fmt.Sprintf("%6d %s", k, msg))
		}
		sort.Strings(lines)
		t.Errorf("LockWait failed other than by its ctx ending:\n%s", strings.Join(lines, "\n"))
	}
}

// attemptObserver is a redlock.Observer that keeps the attempts of every
// acquisition (reported when the acquisition ends), to classify those
// made during an outage.
type attemptObserver struct {
	quorum int
	mu     sync.Mutex
	att    []redlock.AttemptEvent
}

func (o *attemptObserver) Acquired(_ context.Context, e redlock.AcquireEvent) {
	o.mu.Lock()
	o.att = append(o.att, e.Attempts...)
	o.mu.Unlock()
}
func (o *attemptObserver) Extended(context.Context, redlock.ExtendEvent) {}
func (o *attemptObserver) Unlocked(context.Context, redlock.UnlockEvent) {}
func (o *attemptObserver) Lost(redlock.LostEvent)                        {}
func (o *attemptObserver) Held(int)                                      {}
func (o *attemptObserver) Waiting(int)                                   {}
func (o *attemptObserver) InstanceCall(redlock.InstanceCallEvent)        {}
func (o *attemptObserver) InstanceState(redlock.InstanceStateEvent)      {}

// attemptStats counts attempts by their votes.
type attemptStats struct {
	total, notAcquired int
	byClass            map[string]int
}

// between returns the attempts that started in [from, to), by the class
// their votes give (as the library classifies a failed round: refused
// with few enough failures is "not acquired", else "unavailable").
func (o *attemptObserver) between(from, to time.Time) attemptStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := attemptStats{byClass: map[string]int{}}
	for _, a := range o.att {
		if a.Start.Before(from) || !a.Start.Before(to) {
			continue
		}
		st.total++
		yes, refused, failed, none := 0, 0, 0, 0
		for _, v := range a.Votes {
			switch v {
			case redlock.OutcomeOK:
				yes++
			case redlock.OutcomeRefused:
				refused++
			case redlock.OutcomeError, redlock.OutcomeTimeout:
				failed++
			default:
				none++
			}
		}
		n := len(a.Votes)
		class := "unavailable"
		switch {
		case yes >= o.quorum:
			class = "acquired"
		case refused > 0 && failed <= n-o.quorum:
			class = "not acquired"
			st.notAcquired++
		}
		st.byClass[fmt.Sprintf("%s (yes %d, refused %d, failed %d, unanswered %d)", class, yes, refused, failed, none)]++
	}
	return st
}
