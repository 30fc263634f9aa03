package chaos

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
)

// The fault suite of the Semaphore and the Election: goroutine workers,
// each with a Manager of its own (half of them per client group), take
// permits or campaign while a nemesis of the mutex's scenarios runs; the
// holdings they record are checked by CheckPermits and CheckLeaders. A
// worker may stall: every call of its Manager hangs for 1.5 TTLs while it
// holds (a cut-off process), so leases run out under holders too.

const (
	semName   = "chaos:sem"
	electName = "chaos:elect"
)

// stallClient is a redlock.Client whose calls hang, until the call's
// context ends, while the stall lasts.
type stallClient struct {
	redlock.Client
	until atomic.Int64 // UnixNano; calls before it hang
}

var errStalled = errors.New("chaos: stalled")

func (c *stallClient) wait(ctx context.Context) error {
	d := time.Until(time.Unix(0, c.until.Load()))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errors.Join(errStalled, ctx.Err())
	}
}

func (c *stallClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	if err := c.wait(ctx); err != nil {
		return nil, err
	}
	return c.Client.EvalSha(ctx, sha, keys, args)
}

func (c *stallClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	if err := c.wait(ctx); err != nil {
		return nil, err
	}
	return c.Client.Eval(ctx, script, keys, args)
}

// primManager is a worker's Manager over go-redis clients it can stall.
type primManager struct {
	*redlock.Manager
	clients []*stallClient
	rcs     []*redis.Client
}

func newPrimManager(eps []string) (*primManager, error) {
	pm := &primManager{}
	clients := make([]redlock.Client, len(eps))
	for i, ep := range eps {
		rc := redis.NewClient(&redis.Options{Addr: ep, MaxRetries: -1, PoolSize: 4, DialTimeout: time.Second})
		sc := &stallClient{Client: goredis.New(rc)}
		pm.rcs, pm.clients, clients[i] = append(pm.rcs, rc), append(pm.clients, sc), sc
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{
		RetryCount: 3, RetryDelayMin: 2 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond,
		DefaultTTL: ttl, NodeTimeout: 150 * time.Millisecond,
	})
	if err != nil {
		pm.close()
		return nil, err
	}
	pm.Manager = m
	return pm, nil
}

// stall makes every call hang for d from now.
func (pm *primManager) stall(d time.Duration) {
	u := time.Now().Add(d).UnixNano()
	for _, c := range pm.clients {
		c.until.Store(u)
	}
}

func (pm *primManager) close() {
	if pm.Manager != nil {
		for _, c := range pm.clients {
			c.until.Store(0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = pm.Manager.Close(ctx)
		cancel()
	}
	for _, rc := range pm.rcs {
		_ = rc.Close()
	}
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// holdTime picks how long a holder holds: mostly short, sometimes through
// an auto-extension or two; stall says whether it stalls meanwhile.
func holdTime(rng *rand.Rand, short time.Duration, stallP float64) (d time.Duration, stall bool) {
	switch p := rng.Float64(); {
	case p < stallP:
		return ttl * 3 / 2, true
	case p < stallP+0.05:
		return ttl*7/10 + time.Duration(rng.Int64N(int64(ttl*6/10))), false
	}
	return time.Duration(rng.Int64N(int64(short) + 1)), false
}

// hold holds l for d (stalling pm meanwhile when stall is set) and
// releases it; it returns the holder's window end: the earlier of the
// deadline it read last and the release, or the release alone when
// ignoreLost (a broken holder, for the negative controls), and whether
// the deadline came first.
func hold(ctx context.Context, pm *primManager, l *redlock.Lock, d time.Duration, stall, ignoreLost bool) (int64, bool) {
	if stall {
		pm.stall(d)
	}
	sleepCtx(ctx, d)
	dl := MonoOf(l.Until())
	end := Mono()
	lost := dl < end
	if !ignoreLost && lost {
		end = dl
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = l.Unlock(uctx)
	cancel()
	return end, lost
}

// primWorker runs one worker until ctx ends, reporting each holding.
type primWorker func(ctx context.Context, name string, eps []string, rng *rand.Rand, add func(Holding)) error

// semWorker takes permits of the semaphore semName with permits permits,
// half of them with a fixed TTL, half auto-extended.
func semWorker(permits int, stallP float64) primWorker {
	return func(ctx context.Context, name string, eps []string, rng *rand.Rand, add func(Holding)) error {
		pm, err := newPrimManager(eps)
		if err != nil {
			return err
		}
		defer pm.close()
		s := pm.Semaphore(semName, permits)
		for ctx.Err() == nil {
			var opts []redlock.LockOption
			d, stall := holdTime(rng, 20*time.Millisecond, stallP)
			if rng.IntN(2) == 0 && !stall {
				opts = append(opts, redlock.TTL(ttl))
			}
			l, err := s.Acquire(ctx, opts...)
			if err != nil {
				if errors.Is(err, redlock.ErrInvalid) {
					return err
				}
				continue
			}
			start := Mono()
			end, lost := hold(ctx, pm, l, d, stall, false)
			add(Holding{Worker: name, Slot: l.Resource(), Start: start, End: end, Lost: lost})
		}
		return nil
	}
}

// electWorker campaigns in the election electName, leads for a while and
// resigns, again and again.
func electWorker(stallP float64, ignoreLost bool) primWorker {
	return func(ctx context.Context, name string, eps []string, rng *rand.Rand, add func(Holding)) error {
		pm, err := newPrimManager(eps)
		if err != nil {
			return err
		}
		defer pm.close()
		e := pm.Election(electName)
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			l, err := e.Campaign(cctx, name)
			cancel()
			if err != nil {
				if errors.Is(err, redlock.ErrInvalid) {
					return err
				}
				continue
			}
			start := Mono()
			d, stall := holdTime(rng, 100*time.Millisecond, stallP)
			end, lost := hold(ctx, pm, l, d, stall, ignoreLost)
			add(Holding{Worker: name, Start: start, End: end, Term: l.Fence(), Lost: lost})
			sleepCtx(ctx, time.Duration(rng.Int64N(int64(20*time.Millisecond))))
		}
		return nil
	}
}

// primScenario is one run of a primitive's workload under one nemesis.
type primScenario struct {
	name     string
	n        int
	groups   int // client groups (default 2); worker i is in group i mod groups
	aof      bool
	nemesis  func(*Run)
	seed     uint64
	workers  int
	worker   primWorker
	check    func([]Holding) []Violation
	patterns []string // KEYS patterns of the keys that must expire (none without a TTL, none left)
	// minAcq and minDur end the run once both are reached; maxDur ends
	// it anyway.
	minAcq         int
	minDur, maxDur time.Duration
}

// primResult is what a primitive's scenario produced.
type primResult struct {
	holdings   []Holding
	violations []Violation
	faults     string
	duration   time.Duration
}

const primHeader = "| scenario | N | holdings | leases run out under the holder | violations | faults | duration |\n|---|---|---|---|---|---|---|"

func (r *primResult) row(sc *primScenario) string {
	lost := 0
	for _, h := range r.holdings {
		if h.Lost {
			lost++
		}
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d %v | %s | %v |", sc.name, sc.n, len(r.holdings), lost, len(r.violations),
		kinds(r.violations), r.faults, r.duration.Round(100*time.Millisecond))
}

// executePrim runs sc and checks its history; the caller asserts.
func executePrim(t *testing.T, sc primScenario) *primResult {
	t.Helper()
	groups := max(sc.groups, 2)
	c := NewCluster(t, ClusterOptions{N: sc.n, Groups: groups, AOF: sc.aof})
	r := &Run{T: t, C: c, Rng: rand.New(rand.NewPCG(sc.seed, 0x6e656d65)), rec: &Recorder{}, faults: map[string]int{},
		sc: &Scenario{MinAcquisitions: sc.minAcq, MinDuration: sc.minDur, MaxDuration: sc.maxDur}}
	var samplers []*KeySampler
	for _, p := range sc.patterns {
		samplers = append(samplers, StartKeySampler(c.Servers, p, 200*time.Millisecond))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var hs []Holding
	add := func(h Holding) {
		mu.Lock()
		hs = append(hs, h)
		mu.Unlock()
		r.rec.Add(Record{OK: true}) // counts for Run.Done
	}
	var wg sync.WaitGroup
	errs := make(chan error, sc.workers)
	r.start = time.Now()
	for i := range sc.workers {
		name := fmt.Sprintf("w%d", i)
		h := fnv.New64a()
		h.Write([]byte(name))
		rng := rand.New(rand.NewPCG(sc.seed, h.Sum64()))
		eps := c.Endpoints(i % groups)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sc.worker(ctx, name, eps, rng, add); err != nil {
				errs <- err
			}
		}()
	}
	if sc.nemesis != nil {
		sc.nemesis(r)
	}
	for r.Sleep(time.Hour) {
	}
	duration := time.Since(r.start)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("chaos: worker: %v", err)
	}
	c.Heal(t)
	res := &primResult{holdings: hs, duration: duration}
	res.violations = sc.check(hs)
	for _, s := range samplers {
		_, vs := s.Stop()
		res.violations = append(res.violations, vs...)
	}
	// Every worker stopped and the faults are healed: no key may remain
	// once the longest lease (a TTL, plus drift and slack) has passed.
	bound := ttl + ttl/100 + 2*time.Millisecond + 250*time.Millisecond
	for _, p := range sc.patterns {
		if _, left := WaitNoKeys(c.Servers, p, time.Now().Add(bound)); len(left) > 0 {
			for _, k := range left {
				res.violations = append(res.violations, Violation{Kind: "key-left", At: Mono(), Detail: k})
			}
		}
	}
	var fk []string
	for k, n := range r.faults {
		fk = append(fk, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(fk)
	res.faults = strings.Join(fk, " ")
	return res
}

// nemesisOf returns the nemesis of the mutex scenario named name, and
// whether it needs AOF.
func nemesisOf(t *testing.T, name string) (func(*Run), bool) {
	for _, s := range scenarios {
		if s.name == name {
			var sc Scenario
			s.build(&sc)
			return sc.Nemesis, sc.Cluster.AOF
		}
	}
	t.Fatalf("no scenario %q", name)
	return nil, false
}

// primNemeses are the nemeses the primitives run under.
var primNemeses = []string{
	"minority paused (SIGSTOP ≤ 2.5×TTL)",
	"crash + immediate restart (AOF always)",
	"latency 0-100ms",
	"minority black-holed (per client group)",
}

// bounds sets a scenario's run length: short mode stops soon (CI).
func (sc *primScenario) bounds(minFull int) {
	if full() {
		sc.minAcq, sc.minDur, sc.maxDur = minFull, 8*time.Second, 90*time.Second
	} else {
		sc.minAcq, sc.minDur, sc.maxDur = 10, 2*time.Second, 8*time.Second
	}
}

// semScenario: 8 workers, permits 2 of N=3 (the counterexample's
// shape) or 3 of N=5, 3% of the holders stalling past their lease.
func semScenario(t *testing.T, nemesis string, n int, seed uint64) primScenario {
	permits := 2
	if n == 5 {
		permits = 3
	}
	nem, aof := nemesisOf(t, nemesis)
	sc := primScenario{
		name: fmt.Sprintf("semaphore (%d permits): %s", permits, nemesis), n: n, aof: aof, nemesis: nem, seed: seed,
		workers: 8, worker: semWorker(permits, 0.03),
		check:    func(hs []Holding) []Violation { return CheckPermits(hs, permits) },
		patterns: []string{"{" + semName + "}:redlock-slot:*"},
	}
	sc.bounds(500)
	return sc
}

// electScenario: 6 campaigners, 10% of the leaders stalling past their
// lease.
func electScenario(t *testing.T, nemesis string, n int, seed uint64) primScenario {
	nem, aof := nemesisOf(t, nemesis)
	sc := primScenario{
		name: "election: " + nemesis, n: n, aof: aof, nemesis: nem, seed: seed,
		workers: 6, worker: electWorker(0.1, false),
		check:    CheckLeaders,
		patterns: []string{"{" + electName + "}:redlock-election", "{" + electName + "}:redlock-election:redlock-meta"},
	}
	sc.bounds(100)
	return sc
}

func runPrimScenario(t *testing.T, sc primScenario) {
	base := OpenFDs()
	t.Cleanup(func() { checkFDs(t, base) })
	res := executePrim(t, sc)
	report.Add("Semaphore and Election scenarios (0 violations expected)", primHeader, res.row(&sc))
	t.Logf("\n%s\n%s", primHeader, res.row(&sc))
	for i, v := range res.violations {
		if i == 20 {
			t.Errorf("... and %d more", len(res.violations)-i)
			break
		}
		t.Errorf("violation: %v", v)
	}
	if floor := min(sc.minAcq, 5); len(res.holdings) < floor {
		t.Errorf("%d holdings, want at least %d", len(res.holdings), floor)
	}
	if full() && len(res.holdings) < sc.minAcq {
		t.Errorf("%d holdings, want at least %d", len(res.holdings), sc.minAcq)
	}
}

func TestSemaphoreScenarios(t *testing.T) {
	for ni, nem := range primNemeses {
		for _, n := range []int{3, 5} {
			t.Run(fmt.Sprintf("%s/N=%d", nem, n), func(t *testing.T) {
				runPrimScenario(t, semScenario(t, nem, n, uint64(7000+100*ni+n)))
			})
		}
	}
	// The negative control's fault, on the real semaphore: each of 3
	// client groups slow to another server.
	t.Run("slow own server per client group/N=3", func(t *testing.T) {
		sc := semScenario(t, primNemeses[0], 3, 7900)
		sc.name, sc.groups, sc.nemesis, sc.aof = "semaphore (2 permits): each client group slow to another server", 3, slowOwn, false
		runPrimScenario(t, sc)
	})
}

func TestElectionScenarios(t *testing.T) {
	for ni, nem := range primNemeses {
		for _, n := range []int{3, 5} {
			t.Run(fmt.Sprintf("%s/N=%d", nem, n), func(t *testing.T) {
				runPrimScenario(t, electScenario(t, nem, n, uint64(8000+100*ni+n)))
			})
		}
	}
}

// runPrimControl runs sc once per control seed and asserts that each run
// produced a violation of kind.
func runPrimControl(t *testing.T, sc primScenario, kind string) {
	for _, seed := range controlSeeds() {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			base := OpenFDs()
			t.Cleanup(func() { checkFDs(t, base) })
			sc := sc
			sc.seed = seed
			sc.minAcq, sc.minDur, sc.maxDur = 0, 6*time.Second, 6*time.Second
			res := executePrim(t, sc)
			report.Add("Semaphore and Election negative controls (violations expected)", primHeader, res.row(&sc))
			t.Logf("\n%s\n%s", primHeader, res.row(&sc))
			n := kinds(res.violations)[kind]
			if n == 0 {
				t.Fatalf("negative control %q: no %s violation in %v (%d holdings; violations %v): the checker cannot see this failure",
					sc.name, kind, res.duration, len(res.holdings), kinds(res.violations))
			}
			for _, v := range res.violations {
				if v.Kind == kind {
					t.Logf("first %s: %v", kind, v)
					break
				}
			}
		})
	}
}

// ctlAcquire is the control semaphore's acquisition on one instance: a
// sorted set of holders scored by expiry (server time, ms). KEYS[1] is the
// set; ARGV[1] the holder's token, ARGV[2] the permits, ARGV[3] the TTL in
// ms. It drops expired holders and adds the token when fewer than permits
// remain: 1 added, 0 full.
const ctlAcquire = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1`

// ctlSemWorker is the broken semaphore of the negative control
// (swarthy/redis-semaphore's RedlockSemaphore): each instance counts the
// holders, and a majority of instances admitting the caller admits it.
// With 2 permits on 3 instances, clients A, B and C can each be admitted
// by 2 of the 3.
//
// The workers attempt together, at every tick of a 300ms clock (and hold
// for less than a tick): with an empty set on every instance and each
// client group slow to another instance (slowOwn), that is the
// counterexample.
func ctlSemWorker(permits int, holdMax time.Duration) primWorker {
	const tick = 300 * time.Millisecond
	return func(ctx context.Context, name string, eps []string, rng *rand.Rand, add func(Holding)) error {
		rcs := make([]*redis.Client, len(eps))
		for i, ep := range eps {
			rcs[i] = redis.NewClient(&redis.Options{Addr: ep, MaxRetries: -1, PoolSize: 4})
		}
		defer func() {
			for _, rc := range rcs {
				_ = rc.Close()
			}
		}()
		key := "ctl:{" + semName + "}"
		quorum := len(eps)/2 + 1
		for ctx.Err() == nil {
			now := time.Now()
			sleepCtx(ctx, now.Truncate(tick).Add(tick).Sub(now)+time.Duration(rng.Int64N(int64(time.Millisecond))))
			tok := fmt.Sprintf("%s:%d", name, rng.Uint64())
			start := time.Now()
			var yes atomic.Int32
			var wg sync.WaitGroup
			for _, rc := range rcs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
					defer cancel()
					if n, err := rc.Eval(cctx, ctlAcquire, []string{key}, tok, permits, ttl.Milliseconds()).Int(); err == nil && n == 1 {
						yes.Add(1)
					}
				}()
			}
			wg.Wait()
			until := start.Add(ttl - ttl/100 - 2*time.Millisecond)
			release := func() {
				for _, rc := range rcs {
					cctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
					rc.ZRem(cctx, key, tok)
					cancel()
				}
			}
			if int(yes.Load()) < quorum || !time.Now().Before(until) {
				release()
				continue
			}
			begin := Mono()
			sleepCtx(ctx, holdMax/2+time.Duration(rng.Int64N(int64(holdMax/2))))
			end := min(Mono(), MonoOf(until))
			release()
			add(Holding{Worker: name, Slot: "count", Start: begin, End: end})
		}
		return nil
	}
}

// slowOwn gives each client group g (of N) a slow link (80ms) to one
// server of its own, a random permutation redrawn every 0.5-1.5s: each group sees
// another pair of servers first, the madelson/DistributedLock
// counterexample's arrival orders. It needs N groups.
func slowOwn(r *Run) {
	n := r.C.N()
	names := make([]string, n)
	slow := make([]int, n)
	clear := func() {
		for g, name := range names {
			if name != "" {
				if err := r.C.RemoveToxic(g, slow[g], name); err != nil {
					r.T.Fatal(err)
				}
				names[g] = ""
			}
		}
	}
	defer clear()
	for {
		clear()
		for g, i := range r.Rng.Perm(n) {
			name, err := r.C.Toxic(g, i, "latency", "upstream", map[string]any{"latency": 80})
			if err != nil {
				r.T.Fatal(err)
			}
			names[g], slow[g] = name, i
			r.Fault("slow-own")
		}
		if !r.Sleep(between(r, 500*time.Millisecond, 1500*time.Millisecond)) {
			return
		}
	}
}

// TestControlSemaphorePerInstanceCount: a semaphore that counts holders
// per instance and admits on a plain majority (2 permits, N=3, three
// clients, each in a client group slow to another server) must let the
// permits checker see more than 2 holders.
func TestControlSemaphorePerInstanceCount(t *testing.T) {
	runPrimControl(t, primScenario{
		name: "control: semaphore counting per instance, plain majority (2 permits)", n: 3, groups: 3, nemesis: slowOwn,
		workers: 3, worker: ctlSemWorker(2, 80*time.Millisecond),
		check: func(hs []Holding) []Violation { return CheckPermits(hs, 2) },
	}, "over-permits")
}

// TestControlElectionIgnoresLost: leaders that keep leading after Lost (a
// third of them stall past their lease) must let the leaders checker see
// two leaders at once.
func TestControlElectionIgnoresLost(t *testing.T) {
	runPrimControl(t, primScenario{
		name: "control: leader ignores Lost (stalls past its lease)", n: 3,
		workers: 6, worker: electWorker(0.3, true),
		check: CheckLeaders,
	}, "leader-overlap")
}

// TestControlElectionAmnesia: term counters lost with the keys (a
// majority restarted without persistence every 300ms) must let the
// leaders checker see a term that does not increase.
func TestControlElectionAmnesia(t *testing.T) {
	runPrimControl(t, primScenario{
		name: "control: election, counters lost (restart without persistence)", n: 3, nemesis: amnesia,
		workers: 6, worker: electWorker(0, false),
		check: CheckLeaders,
	}, "term-order")
}
