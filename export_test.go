package redlock

import "time"

// Test-only accessors for the external test package (redlock_test).

// SetClock replaces m's clock. Call it right after New, before any lock
// exists: the clock is read without synchronisation by the Manager itself,
// so now must be safe for concurrent use.
func SetClock(m *Manager, now func() time.Time) { m.now = now }

// Drift exposes Config.drift for c with defaults applied.
func Drift(c Config, ttl time.Duration) time.Duration { return c.drift(ttl) }

// Validity exposes Config.validity for c with defaults applied.
func Validity(c Config, ttl, elapsed time.Duration) time.Duration { return c.validity(ttl, elapsed) }

// ScriptSHA returns the SHA1 under which the named embedded script is run.
func ScriptSHA(name string) string {
	switch name {
	case "acquire":
		return scriptAcquire.sha
	case "extend":
		return scriptExtend.sha
	case "release":
		return scriptRelease.sha
	case "pttl":
		return scriptPTTL.sha
	case "inspect":
		return scriptInspect.sha
	case "extend_batch":
		return scriptExtendBatch.sha
	case "topup":
		return scriptTopUp.sha
	}
	panic("redlock: no script " + name)
}

// AcquiredAfter returns how many acquisitions m made after waiting, by
// what ended the wait: "poll" (the retry delay), "expiry" (the holder's
// lease ran out), "released" (a release by m or a release message),
// "changed" (a key watch), "nudged", "queue", "handoff" (an attempt that
// followed a release handed over by m's Unlock).
func AcquiredAfter(m *Manager) map[string]int64 {
	names := [numWakeReasons]string{wakePoll: "poll", wakeExpiry: "expiry", wakeReleased: "released", wakeChanged: "changed", wakeNudged: "nudged", wakeQueue: "queue", wakeHandoff: "handoff"}
	out := make(map[string]int64)
	for i, n := range names {
		if c := m.acquiredAfter[i].Load(); c > 0 {
			out[n] = c
		}
	}
	return out
}

// Watched returns how many keys m watches on its instance i.
func Watched(m *Manager, i int) int {
	w := &m.inst[i].watch
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watched)
}

// DirectCallsOn reports, for each instance of m dialed by New, whether its
// direct calls may still run synchronously (see directClient); false for
// instances of other clients.
func DirectCallsOn(m *Manager) []bool {
	on := make([]bool, len(m.inst))
	for i, in := range m.inst {
		if c, ok := in.client.(*directClient); ok {
			on[i] = !c.off.Load()
		}
	}
	return on
}

// DirectConnected reports, for each instance of m dialed by New, whether
// the connection of its direct calls is made (see connGate): until it is,
// a direct call goes to the pipelined connection. False for instances of
// other clients.
func DirectConnected(m *Manager) []bool {
	on := make([]bool, len(m.inst))
	for i, in := range m.inst {
		if c, ok := in.client.(*directClient); ok {
			on[i] = c.syncGate.up.Load()
		}
	}
	return on
}

// Queued returns how many calls of m wait in the local queue of resource's
// key (see waitSet).
func Queued(m *Manager, resource string) int {
	s := &m.waits
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q[m.cfg.KeyPrefix+resource])
}
