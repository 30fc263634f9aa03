package redlock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every error returned by this package satisfies errors.Is
// with at most one of these (plus, where a context ended, ctx.Err()).
var (
	// ErrNotAcquired means that another token holds the resource on enough
	// instances that a quorum could not be reached (aioredlock's
	// LockAcquiringError).
	ErrNotAcquired = errors.New("redlock: lock not acquired")

	// ErrUnavailable means that too few instances answered (connection
	// errors, timeouts, error replies) for the operation to reach a quorum,
	// or that acquisition took longer than the lock's TTL allows
	// (aioredlock's LockRuntimeError).
	ErrUnavailable = errors.New("redlock: not enough instances available")

	// ErrRejected means that instances answered, but with error replies
	// that no retry will fix (a misconfiguration: WRONGTYPE for a key of
	// another type at the resource's name, NOPERM from an ACL, READONLY
	// from a replica, a wrong password, an unknown command or
	// a script error), and that without them a quorum cannot be reached.
	// Lock, LockWait and friends return it at once, without retrying; each
	// rejecting instance and its reply are in the *InstanceError values.
	ErrRejected = errors.New("redlock: rejected by the instances")

	// ErrNotHeld means that an Extend, Unlock or Attach concerned a lock that
	// is no longer held under its token on a quorum: it expired, was
	// released, or another token holds it now.
	ErrNotHeld = errors.New("redlock: lock not held")

	// ErrInvalid means a bad argument or configuration: an empty resource,
	// a TTL out of range, a malformed endpoint, a nil client.
	ErrInvalid = errors.New("redlock: invalid argument")

	// ErrClosed is returned by every Manager method called after Close.
	ErrClosed = errors.New("redlock: manager closed")

	// ErrLost is the cause of the context that Do passes to its function
	// when the lock is lost while the function runs (see context.Cause).
	ErrLost = errors.New("redlock: lock lost")
)

// IsRejection reports whether err, one instance's answer (the Err of an
// InstanceError, or of an InstanceState from Inspect), is an error reply
// that no retry fixes: the replies that make up ErrRejected.
func IsRejection(err error) bool { return isRejection(err) }

// isRejection reports whether err is an error reply that a retry will not
// fix (see ErrRejected). Transient replies (LOADING, BUSY, TRYAGAIN,
// MASTERDOWN, "ERR max number of clients reached", ...) are not, and
// neither are OOM (under noeviction an instance over maxmemory accepts
// writes again once keys expire or are released) and MISCONF (a failed
// background save; Redis retries it and accepts writes once one succeeds).
func isRejection(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range rejectionPrefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

var rejectionPrefixes = []string{
	"WRONGTYPE", "NOPERM", "READONLY", "WRONGPASS", "NOAUTH",
	"ERR unknown command", "ERR user_script", "ERR Error running script", "ERR Error compiling script",
	"ERR The user executing the script can't run this command", // an ACL, inside a script (Redis 7)
}

// invalidf returns an error wrapping ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// InstanceError records what one instance answered when it did not vote for
// an operation. Endpoint never contains a password.
type InstanceError struct {
	// Endpoint names the instance (its redacted address, or "client[i]").
	Endpoint string
	// Err is the cause: a network error, a timeout (context.DeadlineExceeded),
	// a Redis error reply, or ErrHeldByOther when the key holds another token.
	Err error
}

// Error implements error.
func (e *InstanceError) Error() string { return e.Endpoint + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *InstanceError) Unwrap() error { return e.Err }

// QuorumError is the error of an operation that did not reach a quorum. It
// satisfies errors.Is with its sentinel (ErrNotAcquired, ErrUnavailable,
// ErrRejected or ErrNotHeld), with the caller's context error where one ended, and
// errors.As finds the per-instance causes (*InstanceError).
type QuorumError struct {
	// Op is the operation: "lock", "extend", "unlock", "attach", "is-locked", "ttl", "force-release".
	Op string
	// Resource is the resource (or the first of several) concerned.
	Resource string
	// Votes is how many instances agreed, Quorum how many were needed, of N.
	Votes, Quorum, N int
	// Attempts is how many attempts were made (lock only; 1 otherwise).
	Attempts int
	// Err is the sentinel that classifies the failure.
	Err error
	// Ctx is the context error that ended the operation, if any.
	Ctx error
	// Instances holds the causes from the instances that did not vote yes,
	// in endpoint order, as seen in the last attempt.
	Instances []*InstanceError
}

// Error implements error. It never contains a password.
func (e *QuorumError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	b.WriteString(": ")
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(quoteResource(e.Resource))
	b.WriteString(" (")
	b.WriteString(strconv.Itoa(e.Votes))
	b.WriteString("/")
	b.WriteString(strconv.Itoa(e.N))
	b.WriteString(" votes, quorum ")
	b.WriteString(strconv.Itoa(e.Quorum))
	if e.Attempts > 1 {
		b.WriteString(", ")
		b.WriteString(strconv.Itoa(e.Attempts))
		b.WriteString(" attempts")
	}
	b.WriteString(")")
	if e.Ctx != nil {
		b.WriteString(": ")
		b.WriteString(e.Ctx.Error())
	}
	for i, ie := range e.Instances {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(ie.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel, the context error and the instance errors.
func (e *QuorumError) Unwrap() []error {
	errs := make([]error, 0, 2+len(e.Instances))
	errs = append(errs, e.Err)
	if e.Ctx != nil {
		errs = append(errs, e.Ctx)
	}
	for _, ie := range e.Instances {
		errs = append(errs, ie)
	}
	return errs
}

// quoteResource renders a resource for messages: printable names as they
// are in quotes, others Go-quoted, long ones shortened.
func quoteResource(r string) string {
	const max = 64
	if len(r) > max {
		return strconv.Quote(r[:max]) + "…"
	}
	return strconv.Quote(r)
}

// ErrHeldByOther is the per-instance cause (see InstanceError) when an
// instance refused because the key holds another token. It never appears at
// the top level of a returned error.
var ErrHeldByOther = errors.New("held by another token")
