package redlock

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Observer sees what a Manager does, for metrics and traces (package
// redlockotel, its own module, turns these events into OpenTelemetry
// instruments and spans). Set it in Config.Observer; a nil Observer costs
// nothing.
//
// Every method is called after the fact, with the start time and duration
// of what it reports, on the goroutine that did the work, and never while
// the Manager holds a lock of its own: an Observer may take its time, but
// whatever time it takes is added to the call it observes, so it should
// hand heavy work elsewhere. Methods must be safe for concurrent use and
// must not call back into the Manager. The events' slices belong to the
// Observer once passed.
type Observer interface {
	// Acquired reports the end of one Lock, TryLock, LockWait, LockMany or
	// Do call (its acquisition), successful or not, with its attempts.
	// Calls refused before they start (ErrInvalid for bad arguments,
	// ErrClosed after Close) send nothing. ctx is the caller's context.
	Acquired(ctx context.Context, e AcquireEvent)
	// Extended reports one extension, manual (Extend) or automatic.
	Extended(ctx context.Context, e ExtendEvent)
	// Unlocked reports one Unlock (or the release of a held lock by Close).
	Unlocked(ctx context.Context, e UnlockEvent)
	// Lost reports a lock lost while held: an extension found it gone or
	// held by another token, or its validity deadline passed.
	Lost(e LostEvent)
	// Held reports a change of the number of locks the Manager holds: +1
	// when a lock is taken (or attached), −1 when it is unlocked or lost.
	Held(delta int)
	// Waiting reports a change of the number of callers waiting for a lock
	// in the Manager's queues: +1 when a call starts waiting after a
	// failed attempt, −1 when it stops (acquired, gave up, or closed).
	Waiting(delta int)
	// InstanceCall reports one call to one instance: its endpoint, outcome
	// and latency.
	InstanceCall(e InstanceCallEvent)
	// InstanceState reports that an instance stopped answering (Up false,
	// with the cause) or answers again (Up true); only changes.
	InstanceState(e InstanceStateEvent)
}

// Outcome words of the events, as metric attribute values.
const (
	OutcomeAcquired    = "acquired"     // AcquireEvent: the lock was taken
	OutcomeNotAcquired = "not_acquired" // AcquireEvent: held by another token
	OutcomeUnavailable = "unavailable"  // too few instances answered
	OutcomeRejected    = "rejected"     // error replies no retry fixes (ErrRejected)
	OutcomeCanceled    = "canceled"     // the caller's context ended first, or Close
	OutcomeOK          = "ok"           // ExtendEvent, UnlockEvent, InstanceCallEvent
	OutcomeFailed      = "failed"       // ExtendEvent: not extended
	OutcomeNotHeld     = "not_held"     // UnlockEvent: the lock was no longer held
	OutcomeRefused     = "refused"      // InstanceCallEvent: answered no
	OutcomeError       = "error"        // InstanceCallEvent: an error reply or a network error
	OutcomeTimeout     = "timeout"      // InstanceCallEvent: no answer in time
)

// AcquireEvent describes one acquisition call.
type AcquireEvent struct {
	Method    string   // "Lock", "TryLock", "LockWait", "LockMany", "Do", or an RWMutex method ("RWMutex.RLock", "RWMutex.Do", ...)
	Resources []string // the resources asked for
	Outcome   string   // OutcomeAcquired, OutcomeNotAcquired, OutcomeUnavailable, OutcomeRejected or OutcomeCanceled
	Err       error    // the error returned, nil when acquired
	Start     time.Time
	Duration  time.Duration
	Quorum    int
	Attempts  []AttemptEvent // in order; len(Attempts) is the number of attempts
	Fence     uint64         // the fencing token of a fenced lock that was taken
}

// AttemptEvent describes one attempt of an acquisition: each instance's
// vote.
type AttemptEvent struct {
	Start    time.Time
	Duration time.Duration
	Yes      int      // instances that agreed by the time the attempt was decided (it returns at quorum)
	Votes    []string // per instance, in endpoint order: OutcomeOK, OutcomeRefused, OutcomeError, OutcomeTimeout, or "" (no answer needed)
}

// ExtendEvent describes one extension.
type ExtendEvent struct {
	Resources []string
	Auto      bool   // by the watchdog
	Outcome   string // OutcomeOK or OutcomeFailed
	Err       error
	TTL       time.Duration
	Start     time.Time
	Duration  time.Duration
	Yes       int // instances that extended by the time the outcome was decided (a manual Extend returns at quorum; the watchdog's batch counts every answer)
	Quorum    int
}

// UnlockEvent describes one release.
type UnlockEvent struct {
	Resources []string
	Outcome   string // OutcomeOK, OutcomeNotHeld or OutcomeUnavailable
	Err       error
	Start     time.Time
	Duration  time.Duration
	Quorum    int
}

// LostEvent describes a lock lost while held.
type LostEvent struct {
	Resources []string
	Reason    string // LostExtendFailed, LostExpired or LostClosed
	Held      time.Duration
}

// Loss reasons.
const (
	LostExtendFailed = "extend_failed" // an extension found the lock gone or held by another token on too many instances
	LostExpired      = "expired"       // the validity deadline passed without a successful extension
	LostClosed       = "closed"        // Close could not release it before its ctx ended (it expires with its TTL)
)

// InstanceCallEvent describes one call to one instance.
type InstanceCallEvent struct {
	Endpoint string // redacted
	Outcome  string // OutcomeOK, OutcomeRefused, OutcomeError or OutcomeTimeout
	Duration time.Duration
}

// InstanceStateEvent describes a change of an instance's state.
type InstanceStateEvent struct {
	Endpoint string // redacted
	Up       bool
	Err      error // why it is down; nil when up
}

// acquireEventKey carries the AcquireEvent of an observed acquisition in
// its context, for its attempts to add to.
type acquireEventKey struct{}

// startAcquire begins the event of an observed acquisition.
func (m *Manager) startAcquire(ctx context.Context, method string, req request) (context.Context, *AcquireEvent) {
	ev := &AcquireEvent{Method: method, Resources: append([]string(nil), req.ks.resources...), Start: m.now(), Quorum: m.quorum}
	return context.WithValue(ctx, acquireEventKey{}, ev), ev
}

// endAcquire completes ev with the call's result and reports it.
func (m *Manager) endAcquire(ctx context.Context, ev *AcquireEvent, l *Lock, err error) {
	ev.Duration = m.now().Sub(ev.Start)
	ev.Err = err
	switch {
	case err == nil:
		ev.Outcome = OutcomeAcquired
		ev.Fence = l.fence
	case errors.Is(err, ErrClosed), ctx.Err() != nil:
		ev.Outcome = OutcomeCanceled
	case errors.Is(err, ErrRejected):
		ev.Outcome = OutcomeRejected
	case errors.Is(err, ErrNotAcquired):
		ev.Outcome = OutcomeNotAcquired
	default:
		ev.Outcome = OutcomeUnavailable
	}
	m.obs.Acquired(ctx, *ev)
}

// recordAttempt adds an attempt that started at start, with outcome o, to
// the event of the observed acquisition in ctx.
func (m *Manager) recordAttempt(ctx context.Context, start time.Time, o *outcome) {
	ev, _ := ctx.Value(acquireEventKey{}).(*AcquireEvent)
	if ev == nil || o == nil {
		return
	}
	a := AttemptEvent{Start: start, Duration: m.now().Sub(start), Yes: o.yes, Votes: make([]string, len(o.votes))}
	for i, v := range o.votes {
		a.Votes[i] = voteWord(v, o.errs[i])
	}
	ev.Attempts = append(ev.Attempts, a)
}

// voteWord is the outcome word of a vote.
func voteWord(v vote, cause error) string {
	switch v {
	case voteYes:
		return OutcomeOK
	case voteRefused:
		return OutcomeRefused
	case voteFailed:
		if errors.Is(cause, context.DeadlineExceeded) {
			return OutcomeTimeout
		}
		return OutcomeError
	}
	return ""
}

// observeCall reports one call to the instance (a nil classifier: any
// reply is ok).
func (in *instance) observeCall(s *script, start time.Time, v any, err error) {
	var word string
	if s.classify != nil {
		vt, cause := s.classify(v, err)
		if vt == voteFailed && cause == nil {
			cause = err
		}
		word = voteWord(vt, cause)
	} else if err == nil {
		word = OutcomeOK
	} else {
		word = voteWord(voteFailed, err)
	}
	in.obs.InstanceCall(InstanceCallEvent{Endpoint: in.name, Outcome: word, Duration: time.Since(start)})
}

// safeObserver calls an Observer and recovers from its panics, which it
// logs: a panicking Observer must not leave a lock held that nobody has a
// handle for (a panic in Acquired after a successful acquisition), nor crash
// the process from the Manager's background work.
type safeObserver struct {
	o   Observer
	log *slog.Logger
}

func (s safeObserver) recover(method string) {
	if p := recover(); p != nil {
		s.log.Error("redlock: the Observer panicked; event dropped", "method", method, "panic", p)
	}
}

func (s safeObserver) Acquired(ctx context.Context, e AcquireEvent) {
	defer s.recover("Acquired")
	s.o.Acquired(ctx, e)
}

func (s safeObserver) Extended(ctx context.Context, e ExtendEvent) {
	defer s.recover("Extended")
	s.o.Extended(ctx, e)
}

func (s safeObserver) Unlocked(ctx context.Context, e UnlockEvent) {
	defer s.recover("Unlocked")
	s.o.Unlocked(ctx, e)
}

func (s safeObserver) Lost(e LostEvent) {
	defer s.recover("Lost")
	s.o.Lost(e)
}

func (s safeObserver) Held(delta int) {
	defer s.recover("Held")
	s.o.Held(delta)
}

func (s safeObserver) Waiting(delta int) {
	defer s.recover("Waiting")
	s.o.Waiting(delta)
}

func (s safeObserver) InstanceCall(e InstanceCallEvent) {
	defer s.recover("InstanceCall")
	s.o.InstanceCall(e)
}

func (s safeObserver) InstanceState(e InstanceStateEvent) {
	defer s.recover("InstanceState")
	s.o.InstanceState(e)
}
