package chaos

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/redlock-go/redlock"
)

// Race configures racing holders (Workload.Race; on when Burst > 0).
// While it holds, a racing holder fires bursts of concurrent Extend calls
// with random TTLs, some shorter than what is left and some longer, on
// auto-extended locks (the watchdog runs meanwhile) and on fixed-TTL
// ones; a worker with a token of its own (redlock.Token) also re-locks
// with it while it holds. The holder acts (looks at Valid and Until)
// every few milliseconds, also while its calls are on their way, and
// stops as soon as Valid() is false. Its window follows the deadline it
// saw last (Record.Follow): a shorter extension moves it back. Its
// Record.Extensions lists every call (Racing, Relock) and, as observed
// auto-extensions, every rise of Until past what it had seen, whatever
// made it (the watchdog or its own calls).
type Race struct {
	// HoldMin and HoldMax bound how long a holder plans to hold (uniform);
	// it fires bursts until then.
	HoldMin, HoldMax time.Duration
	// EdgeP is the probability that, after a burst, the holder stops
	// extending and acts up to the deadline it believes (until Valid()
	// turns false, at most EdgeMax), then releases.
	EdgeP   float64
	EdgeMax time.Duration
	// Burst is the most Extend calls of one burst (1 to Burst). Three
	// bursts in four are sent longest first, so that the last one sent
	// is the shortest; the calls start Stagger apart at most.
	Burst   int
	Stagger time.Duration
	// GapMax bounds the wait between bursts (uniform in [0, GapMax]).
	GapMax time.Duration
	// An extension's TTL is uniform in [ShortMin, ShortMax] (half of
	// them) or in [ShortMax, LongMax].
	ShortMin, ShortMax, LongMax time.Duration
	// ShortCtxP is the probability that an Extend gets a ctx of at most
	// ShortCtx (instead of 2×NodeTimeout): it may end after the calls
	// were sent, which then still reach the instances.
	ShortCtxP float64
	ShortCtx  time.Duration
	// TokenShare is the share of workers that lock with a token of their
	// own, the same for all their locks.
	TokenShare float64
	// RelockP is, for a worker with a token, the probability that a burst
	// includes a re-lock (TryLock with the token and a fixed TTL of at most
	// the lock's, a ctx of at most RelockCtx), and that a fixed-TTL hold
	// begins with a re-lock (fixed TTL or auto-extended) whose lock the
	// holder then uses.
	RelockP   float64
	RelockCtx time.Duration
	// Cooldown: a worker with a token does not lock a resource again within
	// Cooldown of its last call about it (Unlock, or a failed Lock), so
	// that no straggling call of the previous lock with that token (a
	// release on its way to a slow instance) meets the next one.
	Cooldown time.Duration
}

// maxLease returns the longest lease a key of the workload can get.
func (w *Workload) maxLease() time.Duration {
	return max(w.TTL, w.Race.LongMax)
}

// uniform returns a random duration in [lo, hi].
func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// racer is one racing holder.
type racer struct {
	w       *Workload
	m       *redlock.Manager
	rng     *rand.Rand // this goroutine's only: the calls' goroutines get their values
	tok     string
	rec     *Recorder
	h       *holder         // the lock the holder uses and its record
	dormant []*redlock.Lock // other handles of the lock (re-locks), released last
}

// actStep is how often a racing holder looks at its lock.
const actStep = 5 * time.Millisecond

// holdRace runs a racing critical section (see Race) on l, recorded in r,
// and releases the lock. A re-lock that returned after the lock it
// renewed had expired starts a new holding: the one before is added to rec
// and r becomes the new one.
func (w *Workload) holdRace(ctx context.Context, m *redlock.Manager, l *redlock.Lock, r *Record, rng *rand.Rand, tok string, rec *Recorder) {
	rc := &w.Race
	r.Follow = true
	x := &racer{w: w, m: m, rng: rng, tok: tok, rec: rec, h: &holder{l: l, r: r, dl: r.Deadline, last: r.Deadline}}
	start := time.Now()
	plan := uniform(rng, rc.HoldMin, rc.HoldMax)
	if tok != "" && !r.Auto && rng.Float64() < rc.RelockP {
		x.relockAndFollow()
	}
	for ctx.Err() == nil && x.h.observe() {
		left := plan - time.Since(start)
		if left <= 0 || !x.act(ctx, min(uniform(rng, 0, rc.GapMax), left)) || time.Since(start) >= plan {
			break
		}
		x.burst()
		if rng.Float64() < rc.EdgeP {
			x.act(ctx, rc.EdgeMax)
			break
		}
	}
	x.release()
}

// act acts on the lock for d, looking at it every actStep; false as soon
// as the lock is not valid or ctx ended.
func (x *racer) act(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		if !x.h.observe() {
			return false
		}
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, actStep))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// burst fires concurrent Extend calls (and maybe a re-lock) on the lock
// and acts while they are on their way.
func (x *racer) burst() {
	rc, rng, l := &x.w.Race, x.rng, x.h.l
	ttls := make([]time.Duration, 1+rng.IntN(rc.Burst))
	for i := range ttls {
		if rng.IntN(2) == 0 {
			ttls[i] = uniform(rng, rc.ShortMin, rc.ShortMax)
		} else {
			ttls[i] = uniform(rng, rc.ShortMax, rc.LongMax)
		}
	}
	if rng.IntN(4) != 0 {
		sort.Slice(ttls, func(i, j int) bool { return ttls[i] > ttls[j] })
	}
	stagger := uniform(rng, 0, rc.Stagger)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		exts []Extension
	)
	for i, d := range ttls {
		timeout := 2 * x.w.NodeTimeout
		if rng.Float64() < rc.ShortCtxP {
			timeout = uniform(rng, 100*time.Microsecond, rc.ShortCtx)
		}
		delay := time.Duration(i) * stagger
		wg.Add(1)
		go func() {
			defer wg.Done()
			if delay > 0 {
				time.Sleep(delay)
			}
			e := Extension{Racing: true, TTL: int64(d), Prev: MonoOf(l.Until())}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			e.Invoke = Mono()
			err := l.Extend(ctx, d)
			e.Return = Mono()
			cancel()
			e.OK, e.Err = err == nil, Classify(err)
			e.Deadline = MonoOf(l.Until())
			mu.Lock()
			exts = append(exts, e)
			mu.Unlock()
		}()
	}
	if x.tok != "" && rng.Float64() < rc.RelockP {
		// A re-lock with a fixed TTL races the extensions. It never
		// shortens the lease and its handle stays unused (no watchdog, no
		// extension) until the release, so the holder keeps following l.
		d := uniform(rng, rc.ShortMin, x.w.TTL)
		timeout := uniform(rng, time.Millisecond, rc.RelockCtx)
		res := x.h.r.Resource
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, l2 := x.relock(l, res, timeout, d)
			mu.Lock()
			exts = append(exts, e)
			if l2 != nil {
				x.dormant = append(x.dormant, l2)
			}
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// Act while they are on their way; once the lock is not valid, only
	// wait for them.
	acting := true
	for waiting := true; waiting; {
		if acting {
			acting = x.h.observe()
		}
		t := time.NewTimer(actStep)
		select {
		case <-done:
			waiting = false
		case <-t.C:
		}
		t.Stop()
	}
	x.h.r.Extensions = append(x.h.r.Extensions, exts...)
}

// relock locks res again with the worker's token (TTL d, or
// auto-extended when d is 0) within timeout, and returns the call's
// record (Prev: l's deadline) and the new handle, nil if it failed. It
// runs on any goroutine.
func (x *racer) relock(l *redlock.Lock, res string, timeout, d time.Duration) (Extension, *redlock.Lock) {
	opts := []redlock.LockOption{redlock.Token(x.tok)}
	if d > 0 {
		opts = append(opts, redlock.TTL(d))
	}
	e := Extension{Relock: true, TTL: int64(d), Prev: MonoOf(l.Until())}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	e.Invoke = Mono()
	l2, err := x.m.TryLock(ctx, res, opts...)
	e.Return = Mono()
	e.OK, e.Err = err == nil, Classify(err)
	if err != nil {
		return e, nil
	}
	e.Deadline = MonoOf(l2.Until())
	return e, l2
}

// relockAndFollow re-locks a fixed-TTL lock that no extension has touched
// yet (its only call so far, the acquisition, never shortens a lease even
// when it reaches a slow instance late) and goes on with the new handle,
// leaving the old one unused. If the old one expired before the re-lock
// returned, the holding it recorded ends at its deadline and a new one
// begins at the return.
func (x *racer) relockAndFollow() {
	rc, rng := &x.w.Race, x.rng
	var d time.Duration // 0: auto-extended
	if rng.IntN(2) == 0 {
		d = uniform(rng, rc.ShortMin, x.w.TTL)
	}
	l1, r := x.h.l, x.h.r
	e, l2 := x.relock(l1, r.Resource, uniform(rng, time.Millisecond, rc.RelockCtx), d)
	if l2 == nil {
		r.Extensions = append(r.Extensions, e)
		return
	}
	x.dormant = append(x.dormant, l1)
	// l1 had no call since its acquisition: its deadline has not moved.
	u := MonoOf(l1.Until())
	if u > e.Return {
		// Still valid when the re-lock returned: the same holding goes
		// on, with l2's deadline from now on.
		r.Extensions = append(r.Extensions, e)
		x.h.l = l2
		x.h.observe()
		return
	}
	r.FinalDeadline = u // the window ends before the new one begins
	x.rec.Add(*r)
	ttl := d
	if d == 0 {
		ttl = x.w.TTL
	}
	*r = Record{Worker: r.Worker, Resource: r.Resource, Token: r.Token, Auto: d == 0, TTL: int64(ttl),
		Invoke: e.Invoke, Return: e.Return, OK: true, Deadline: e.Deadline, Follow: true}
	x.h = &holder{l: l2, r: r, dl: e.Deadline, last: e.Deadline}
}

// release looks at the lock a last time and unlocks it, then the other
// handles.
func (x *racer) release() {
	x.h.observe()
	r := x.h.r
	r.FinalDeadline = x.h.last
	ctx, cancel := context.WithTimeout(context.Background(), 2*x.w.NodeTimeout+time.Second)
	defer cancel()
	r.Release = Mono()
	r.ReleaseErr = Classify(x.h.l.Unlock(ctx))
	for _, l := range x.dormant {
		_ = l.Unlock(ctx)
	}
}
