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
	}
	panic("redlock: no script " + name)
}
