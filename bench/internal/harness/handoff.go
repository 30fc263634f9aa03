package harness

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// HandoffLease is the lease of the holder that vanishes in the
// after-expiry workload.
const HandoffLease = 500 * time.Millisecond

// The waiter's retries must not be in step with the event it waits for (a
// waiter polling every 100 ms that starts with the holder's 500 ms lease
// would retry just after every expiry), so each trial draws its timing:
//   - after expiry, the waiter starts a random 0-250 ms after the holder
//     acquired (well before the expiry);
//   - after release, the redsync holder unlocks a random 50-350 ms after
//     the waiter started (its first attempt was refused by then).
const (
	expiryStartMax = 250 * time.Millisecond
	releaseHoldMin = 50 * time.Millisecond
	releaseHoldMax = 350 * time.Millisecond
)

// abandoner is a Target whose own holders cannot vanish (they extend and
// release from goroutines of their own): Abandon leaves a lock on resource
// in its key format that nothing releases or extends, as a crashed holder
// would.
type abandoner interface {
	Abandon(ctx context.Context, resource string, ttl time.Duration) error
}

// runHandoff runs cfg.trials trials of a handoff workload. In each, a
// holder (other clients than the waiter's: another process, as far as the
// waiter can tell) takes a fresh resource, then the waiter (im, in its
// waiting mode: LockWait, unlimited tries...) asks for it at once.
//
//   - HandoffExpiry: the holder is im itself with a HandoffLease lease (or
//     im's Abandon), and never unlocks; the waiter starts 0-250 ms later. The delay runs from the key's
//     expiry, taken as the start of the holder's lock call + the lease (so
//     the delay is an upper bound by at most the holder's round trip), to
//     the waiter's Lock returning.
//   - HandoffRelease: the holder is redsync (which publishes nothing on
//     release); it unlocks a random 50-350 ms after the waiter started. The delay runs from
//     its Unlock returning to the waiter's Lock returning, 0 when the waiter
//     got the lock before Unlock returned (at N=3 a quorum of deletes can
//     reach the waiter before redsync has all its replies).
//
// The waiter unlocks after each trial. Ops is the number of trials with a
// delay; P50/P99 are nearest-rank quantiles of Delays; MaxWait the longest
// delay.
func runHandoff(ctx context.Context, im *Impl, addrs []string, w Workload, cfg cellConfig, ttl time.Duration) (Result, error) {
	var holderImpl *Impl
	holderTTL := HandoffLease
	switch w.Handoff {
	case HandoffExpiry:
		holderImpl = im
	case HandoffRelease:
		holderImpl, holderTTL = implRedsync(), ttl
	default:
		return Result{}, fmt.Errorf("unknown handoff workload %q", w.Handoff)
	}
	waiter, err := im.Setup(addrs, Params{TTL: ttl, Contended: true})
	if err != nil {
		return Result{}, fmt.Errorf("%s: set up the waiter: %w", im.Key, err)
	}
	holder, err := holderImpl.Setup(addrs, Params{TTL: holderTTL})
	if err != nil {
		waiter.Close()
		return Result{}, fmt.Errorf("%s: set up the holder: %w", holderImpl.Key, err)
	}
	warm(ctx, waiter, 1, cfg)
	warm(ctx, holder, 1, cfg)
	ab, _ := holder.(abandoner)
	if w.Handoff != HandoffExpiry {
		ab = nil
	}

	errs := &errSink{}
	var r Result
	cpu0 := sampleCPU(cfg.pids)
	start := time.Now()
	for i := 0; i < cfg.trials && ctx.Err() == nil; i++ {
		d, ok := handoffTrial(ctx, w, holder, ab, waiter, fmt.Sprintf("%s:%d", cfg.prefix, i), errs)
		if ok {
			r.Delays = append(r.Delays, d)
		}
	}
	r.Elapsed = time.Since(start)
	r.OtherCores = otherCores(cpu0, sampleCPU(cfg.pids), r.Elapsed)
	r.Ops = int64(len(r.Delays))
	r.P50, r.P99, r.MaxWait = quantile(r.Delays, 0.50), quantile(r.Delays, 0.99), quantile(r.Delays, 1)
	r.Allocs = math.NaN()
	errs.fill(&r)
	werr := waiter.Close()
	// The holder's Close may try to release locks that expired long ago
	// (the library releases what it still tracks): its error says nothing
	// about the handoff and is ignored.
	_ = holder.Close()
	if werr != nil {
		return r, fmt.Errorf("%s: close: %w", im.Key, werr)
	}
	return r, nil
}

// handoffTrial runs one trial on resource and returns the delay, or false
// when a call failed (counted in errs).
func handoffTrial(ctx context.Context, w Workload, holder Target, ab abandoner, waiter Target, resource string, errs *errSink) (time.Duration, bool) {
	hctx, hcancel := context.WithTimeout(ctx, callTimeout)
	defer hcancel()
	hw := holder.NewWorker(resource)
	t0 := time.Now()
	var err error
	if ab != nil {
		err = ab.Abandon(hctx, resource, HandoffLease)
	} else {
		err = hw.Lock(hctx)
	}
	if err != nil {
		errs.add("holder lock", err)
		return 0, false
	}

	if w.Handoff == HandoffExpiry {
		time.Sleep(rand.N(expiryStartMax))
	}
	ww := waiter.NewWorker(resource)
	wctx, wcancel := context.WithTimeout(ctx, HandoffLease+releaseHoldMax+callTimeout)
	defer wcancel()
	acquired := make(chan error, 1)
	var tAcq time.Time
	go func() {
		err := ww.Lock(wctx)
		tAcq = time.Now()
		acquired <- err
	}()

	var ref time.Time
	if w.Handoff == HandoffExpiry {
		ref = t0.Add(HandoffLease)
	} else {
		time.Sleep(releaseHoldMin + rand.N(releaseHoldMax-releaseHoldMin))
		if err := hw.Unlock(hctx); err != nil {
			errs.add("holder unlock", err)
		}
		ref = time.Now()
	}
	if err := <-acquired; err != nil {
		errs.add("waiter lock", err)
		return 0, false
	}
	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer ucancel()
	if err := ww.Unlock(uctx); err != nil {
		errs.add("waiter unlock", err)
	}
	return max(tAcq.Sub(ref), 0), true
}

// quantile is the nearest-rank q-quantile of ds (0 when empty).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(q*float64(len(s))+0.999999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}
