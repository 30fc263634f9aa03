// Package testhooks lets this module's own tests break the Redlock algorithm
// on purpose (the negative controls of the fault suite, which prove that its
// checkers can fail) and inject pauses at chosen points. It is internal:
// nothing in the public API reaches it, and a Manager without hooks
// installed never consults it.
package testhooks

// Hooks are per-Manager mutations and injection points. The zero value
// changes nothing.
type Hooks struct {
	// Quorum, when set, replaces the quorum N/2+1 with Quorum(N).
	Quorum func(n int) int
	// IgnoreElapsed computes a new lock's validity from the end of the
	// acquisition instead of its start (forgets the time it took).
	IgnoreElapsed bool
	// PlainDelete unlocks with a plain DEL, without comparing the token.
	PlainDelete bool
	// LatestReplyWins lets every successful extension set the lock's
	// validity deadline when its reply arrives (the watchdog's only when
	// later), instead of only the extension sent last, and skips lowering
	// the deadline when a shorter extension is sent.
	LatestReplyWins bool
	// AfterReplies runs inside an acquisition attempt after the quorum's
	// replies arrived and before validity is computed.
	AfterReplies func(resource string)
}

// Install installs h on m, which must be a *redlock.Manager. Package
// redlock sets it when it initialises; it is nil only if redlock is not
// linked in.
var Install func(m any, h *Hooks)
