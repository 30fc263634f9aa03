package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redlock-go/redlock"
)

// run takes the lock with its own loop of single attempts (TryLock) rather
// than one LockWait, so that it sees every attempt's outcome: which
// instances failed and why (redlock.QuorumError), and when a quorum last
// answered. It says so on stderr when no quorum answers (noQuorumReport),
// gives up after --unavailable-timeout, and stops at once on
// redlock.ErrRejected. Between attempts it waits as the library's LockWait
// does (backoff), and like it retries at once when the lock may be free
// (Manager.AwaitRelease: a release, or the key deleted or expired).

const (
	// firstReportAfter is how long attempts must have found no quorum
	// before run says so (a single failed attempt is not worth a line):
	// well within 5s of the first one.
	firstReportAfter = time.Second
	// reportEvery is the least time between two reports.
	reportEvery = 30 * time.Second
	// defaultUnavailableTimeout is --unavailable-timeout's default.
	defaultUnavailableTimeout = time.Minute
	// maxBackoff is the library's cap on the retry delay while instances
	// are unavailable (acquire.go), or the TTL when shorter.
	maxBackoff = 2 * time.Second
)

// retryWait is the wait before the next attempt, as the library's backoff
// (Manager.backoff): uniform in [lo, hi] with hi doubling for each attempt
// after the first of the last unavailable ones in a row that failed for want
// of instances, up to maxBackoff (or ttl if shorter, never below hi).
func retryWait(lo, hi, ttl time.Duration, unavailable int) time.Duration {
	if unavailable > 1 {
		limit := max(hi, min(maxBackoff, ttl))
		for k := 1; k < unavailable && hi < limit; k++ {
			hi *= 2
		}
		hi = min(hi, limit)
	}
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}

// health follows the outcomes of run's attempts: when a quorum last
// answered, and the current streak of attempts that found none. Its
// methods take the time, so that tests can drive it.
type health struct {
	timeout    time.Duration // --unavailable-timeout; 0: none
	lastQuorum time.Time     // when a quorum last answered (at first: the first attempt's start)
	since      time.Time     // the start of the streak's first attempt; zero when a quorum answered last
	last       *redlock.QuorumError
	// causes holds, per endpoint, the last failure seen in the streak: an
	// attempt is decided as soon as a quorum is out of reach, without the
	// replies still to come, so one attempt may not name every instance
	// (failing prefers an Inspect, which waits for every answer).
	causes     map[string]error
	reported   time.Time // the last report, in any streak
	streakSaid bool      // the streak was reported
}

func newHealth(start time.Time, timeout time.Duration) *health {
	return &health{timeout: timeout, lastQuorum: start}
}

// answered records an attempt that a quorum answered (acquired, or held
// by someone else), ending at now. It reports whether a streak that was
// reported has ended (run then says a quorum answers again).
func (h *health) answered(now time.Time) bool {
	said := h.streakSaid
	h.lastQuorum, h.since, h.last, h.streakSaid, h.causes = now, time.Time{}, nil, false, nil
	return said
}

// failed records an attempt that started at start and found no quorum.
func (h *health) failed(start time.Time, qe *redlock.QuorumError) {
	if h.since.IsZero() {
		h.since = start
	}
	h.last = qe
	if h.causes == nil {
		h.causes = make(map[string]error)
	}
	for _, c := range failures(qe) {
		h.causes[c.endpoint] = c.err
	}
}

// failing names the failing instances, in the order of endpoints: those
// that states (an Inspect, which waits for every instance) found failing,
// with that error, then the others that the last attempt names. Without
// states (ctx ended) it gives every failure seen in the streak.
func (h *health) failing(endpoints []string, states []redlock.InstanceState) []cause {
	latest := map[string]error{}
	if h.last != nil {
		for _, c := range failures(h.last) {
			latest[c.endpoint] = c.err
		}
	}
	var cs []cause
	for i, ep := range endpoints {
		if i < len(states) && states[i].Err != nil && states[i].Token == "" {
			cs = append(cs, cause{ep, states[i].Err})
		} else if err, ok := latest[ep]; ok {
			cs = append(cs, cause{ep, err})
		} else if err, ok := h.causes[ep]; ok && states == nil {
			cs = append(cs, cause{ep, err})
		}
	}
	return cs
}

// reportAt is when the current streak is to be reported next, and false
// when there is no streak.
func (h *health) reportAt() (time.Time, bool) {
	if h.since.IsZero() {
		return time.Time{}, false
	}
	at := h.since.Add(firstReportAfter)
	if !h.reported.IsZero() {
		at = later(at, h.reported.Add(reportEvery))
	}
	return at, true
}

// report records a report made at now.
func (h *health) report(now time.Time) { h.reported, h.streakSaid = now, true }

// giveUpAt is when run gives up for --unavailable-timeout, and false when
// it does not (no streak, or no timeout).
func (h *health) giveUpAt() (time.Time, bool) {
	if h.since.IsZero() || h.timeout <= 0 {
		return time.Time{}, false
	}
	return h.lastQuorum.Add(h.timeout), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unavailableTimeout is the error of a run that gave up for
// --unavailable-timeout.
type unavailableTimeout struct {
	after time.Duration
	what  string // the failures, worded by noQuorum
}

func (e *unavailableTimeout) Error() string {
	return fmt.Sprintf("giving up after %v without a quorum (--unavailable-timeout): %s", e.after, e.what)
}

// described is a final error of lockLoop with the words for it.
type described struct {
	err  error
	what string
}

func (d *described) Error() string { return d.what }
func (d *described) Unwrap() error { return d.err }

// lockLoop makes attempts until the lock is acquired, ctx ends (the -w
// deadline, a signal), the attempts allowed are made (-n: 1,
// --retry-count), the instances reject the attempts (ErrRejected), or no
// quorum answered for --unavailable-timeout. It returns the lock, or the
// last complete attempt's error (ctx's error if there was none); one for
// want of a quorum comes as *described or *unavailableTimeout, naming each
// failing instance. parent is ctx without the -w deadline: once it ended
// (a signal), nothing more is sent.
func (r *runner) lockLoop(ctx, parent context.Context, attempts int, clearLine bool) (*redlock.Lock, error) {
	opts := r.lockOptions() // shared.go

	h := newHealth(time.Now(), r.o.unavailableTimeout)
	clear := ""
	if clearLine {
		clear = "\r\x1b[K" // the status line: redrawn at its next tick
	}
	recovered := func() {
		if h.answered(time.Now()) {
			r.say.printf("%sredlock: a quorum answers again for %s\n", clear, quote(r.res))
		}
	}
	// final words err, the outcome of the last complete attempt.
	final := func(err error) error {
		var qe *redlock.QuorumError
		switch {
		case !errors.As(err, &qe) || parent.Err() != nil:
			return err
		case errors.Is(err, redlock.ErrRejected):
			h.failed(time.Now(), qe) // its failures, merged below
			return &described{err, rejected(r.res, h.failing(r.m.Endpoints(), r.inspect(parent)))}
		case errors.Is(err, redlock.ErrUnavailable):
			return &described{err, noQuorum(r.res, false, qe.N, qe.Quorum, h.failing(r.m.Endpoints(), r.inspect(parent)))}
		}
		return err
	}
	var last error
	unavailable := 0 // attempts in a row that found no quorum
	for i := 0; ; i++ {
		start := time.Now()
		l, err := r.tryLock(ctx, opts)
		if err == nil {
			recovered()
			return l, nil
		}
		var qe *redlock.QuorumError
		if !errors.As(err, &qe) {
			if last != nil {
				return nil, final(last)
			}
			return nil, err // ErrInvalid, ErrClosed, or ctx ended before the attempt
		}
		if qe.Ctx != nil && last != nil {
			return nil, final(last) // cut short: the last complete attempt says more
		}
		last = err
		switch {
		case qe.Ctx != nil, errors.Is(err, redlock.ErrRejected):
			return nil, final(err)
		case errors.Is(err, redlock.ErrUnavailable):
			unavailable++
			h.failed(start, qe)
		default:
			unavailable = 0
			recovered()
		}
		if attempts > 0 && i+1 >= attempts {
			return nil, final(err)
		}
		// Wait for the next attempt, reporting the streak when due.
		next := time.Now().Add(retryWait(r.cfg.RetryDelayMin, r.cfg.RetryDelayMax, r.o.lock.ttl, unavailable))
		for {
			now := time.Now()
			if at, ok := h.giveUpAt(); ok && !now.Before(at) {
				what := noQuorum(r.res, false, qe.N, qe.Quorum, h.failing(r.m.Endpoints(), r.inspect(parent)))
				return nil, &unavailableTimeout{after: r.o.unavailableTimeout, what: what}
			}
			if at, ok := h.reportAt(); ok && !now.Before(at) {
				what := noQuorum(r.res, true, qe.N, qe.Quorum, h.failing(r.m.Endpoints(), r.inspect(ctx)))
				r.say.printf("%sredlock: %s\n", clear, what)
				h.report(now)
				continue
			}
			if !now.Before(next) {
				break
			}
			wake := next
			if at, ok := h.reportAt(); ok && at.Before(wake) {
				wake = at
			}
			if at, ok := h.giveUpAt(); ok && at.Before(wake) {
				wake = at
			}
			// Woken early when the lock may be free: a release, or its key
			// deleted or expired on an instance that refused (the
			// library's key watch), whoever released it.
			released, err := r.awaitRelease(ctx, wake.Sub(now))
			if err != nil {
				return nil, final(last)
			}
			if released {
				break
			}
		}
	}
}

// inspect asks every instance about the resource (Manager.Inspect, which
// waits for each answer, where an attempt stops at the first sign that it
// failed), to name each failing instance; nil once ctx ended.
func (r *runner) inspect(ctx context.Context) []redlock.InstanceState {
	if ctx.Err() != nil {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, r.cfg.NodeTimeout+timeoutSlack)
	defer cancel()
	states, _ := r.m.Inspect(ictx, r.res)
	return states
}

// awaitRelease waits up to d before the next attempt, and less when the
// lock, or one of the semaphore's permits, may have been released
// (Manager.AwaitRelease, Semaphore.AwaitRelease).
func (r *runner) awaitRelease(ctx context.Context, d time.Duration) (bool, error) {
	if r.sem != nil {
		return r.sem.AwaitRelease(ctx, d)
	}
	return r.m.AwaitRelease(ctx, r.res, d)
}
