// Package redlockotel turns the events of a redlock.Manager into
// OpenTelemetry metrics and spans.
//
// It is a module of its own (github.com/redlock-go/redlock/redlockotel), so
// that the redlock library never requires OpenTelemetry. Wire it with
// Config.Observer:
//
//	m, err := redlock.New(endpoints, redlock.Config{
//		Observer: redlockotel.NewObserver(),
//	})
//
// NewObserver uses the global meter and tracer providers (otel.SetMeterProvider,
// otel.SetTracerProvider) unless WithMeterProvider or WithTracerProvider name
// others.
//
// # Metrics
//
//	redlock.acquire.duration  histogram       s         redlock.method, redlock.outcome
//	redlock.acquire.attempts  histogram       {attempt} redlock.method, redlock.outcome
//	redlock.locks.held        up-down counter {lock}
//	redlock.waiters           up-down counter {waiter}
//	redlock.extend.duration   histogram       s         redlock.outcome, redlock.auto
//	redlock.unlock.duration   histogram       s         redlock.outcome
//	redlock.lock.lost         counter         {lock}    redlock.reason
//	redlock.instance.duration histogram       s         server.address, redlock.outcome
//	redlock.instance.up       gauge           1         server.address
//
// redlock.method is Lock, TryLock, LockWait, LockMany or Do; the outcomes are
// the redlock.Outcome* words and the reasons the redlock.Lost* words (and
// "closed": Close gave up releasing the lock).
// server.address is the instance's endpoint as the Manager names it,
// password redacted. redlock.instance.up is 1 for an instance that answers
// and 0 for one that stopped answering; an instance is reported from the
// first event that names it on, and counts as up until the Manager reports
// it down.
//
// Resource names are not metric attributes (their number is unbounded):
// WithResourceAttribute adds a redlock.resource attribute to the acquire,
// extend, unlock and lost instruments, computed from the resource name by a
// function that should map it to one of a few values (a prefix, a kind).
//
// # Spans
//
// One span per call, created after the fact with the call's start and end
// times: redlock.Lock, redlock.TryLock, redlock.LockWait, redlock.LockMany,
// redlock.Do (the acquisition of a Do call), redlock.Extend (manual and
// automatic; an automatic one has redlock.auto true) and redlock.Unlock. The
// span's parent is the span in the context of the call (an automatic
// extension has none: it is a root span). Attributes: redlock.resource (a
// string, or for a lock on several resources a string slice),
// redlock.outcome, redlock.quorum, and on acquisitions redlock.attempts and,
// for a fenced lock, redlock.fence; on extensions redlock.auto, redlock.ttl
// (seconds) and redlock.yes (the instances that extended). Every attempt of
// an acquisition is a span event named "attempt", at the attempt's start,
// with redlock.attempt (1, 2, ...), redlock.yes, redlock.votes (each
// instance's vote, in endpoint order) and redlock.attempt.duration
// (seconds). A call that returned an error has the status Error with the
// error's message.
//
// # Failure
//
// Telemetry never breaks locking: the observer never calls into the
// Manager, and a panic inside it (in an SDK, an exporter or the resource
// function) is recovered and handed to otel.Handle, the global OpenTelemetry
// error handler.
package redlockotel
