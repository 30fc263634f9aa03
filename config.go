package redlock

import (
	"log/slog"
	"math"
	"time"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultRetryCount    = 3
	DefaultRetryDelayMin = 100 * time.Millisecond
	DefaultRetryDelayMax = 300 * time.Millisecond
	DefaultLockTTL       = 10 * time.Second
	DefaultDriftFactor   = 0.01
	DefaultNodeTimeout   = 500 * time.Millisecond
)

// Limits on arguments. Values outside them give ErrInvalid.
const (
	// MinTTL is the smallest lock TTL: Redis expires keys with millisecond
	// precision, and the drift allowance (TTL×DriftFactor + 2ms) must leave at
	// least half of the TTL as validity.
	MinTTL = time.Millisecond
	// MaxTTL is the largest lock TTL (one year).
	MaxTTL = 365 * 24 * time.Hour
	// MaxResourceLen is the longest resource name in bytes (1 MiB). Redis
	// allows longer keys, but every lock call sends the name to every instance.
	MaxResourceLen = 1 << 20
	// MaxTokenLen is the longest caller-chosen token in bytes.
	MaxTokenLen = 4096
)

// clockDrift is the fixed part of the drift allowance: Redis expires keys
// with up to 1ms of imprecision, and another for the round trip.
const clockDrift = 2 * time.Millisecond

// Config configures a Manager. The zero value of every field means its
// default; New validates the whole struct and returns an error wrapping
// ErrInvalid for a bad value (it never clamps).
type Config struct {
	// RetryCount is the number of acquisition attempts Lock makes in total
	// (not retries after the first). Must be ≥ 0. Default: 3.
	RetryCount int

	// RetryDelayMin and RetryDelayMax bound the random wait (uniform in
	// [min, max]) before each attempt after the first. Must be ≥ 0 with
	// min ≤ max. Defaults: 100ms and max(300ms, RetryDelayMin).
	RetryDelayMin time.Duration
	RetryDelayMax time.Duration

	// DefaultTTL is the lease of a lock taken without the TTL option; such a
	// lock is extended automatically every 0.6×DefaultTTL until it is
	// unlocked (aioredlock's internal_lock_timeout). It is truncated to
	// whole milliseconds, as the instances take it. Default: 10s.
	DefaultTTL time.Duration

	// DriftFactor is the share of the TTL set aside for clock drift between
	// the client and the instances: validity = TTL − elapsed − (TTL×DriftFactor
	// + 2ms). Must be in [0, 0.5). Default: 0.01.
	DriftFactor float64

	// NodeTimeout bounds each call to one instance. A dead or black-holed
	// instance costs an operation at most this long; an attempt is also never
	// longer than the lock's TTL. Default: 500ms.
	NodeTimeout time.Duration

	// KeyPrefix is prepended to every resource to form the Redis key.
	// Default: none (the key is the resource, as in aioredlock, redsync and
	// node-redlock, so that their locks exclude ours).
	KeyPrefix string

	// Fencing gives every lock a fencing token, as the Fenced option does
	// per lock. Default: off.
	Fencing bool

	// Logger receives debug and warning records (failed extensions, clean-up
	// errors). Records never contain passwords. Default: discard.
	Logger *slog.Logger

	// Observer, when set, sees every acquisition, extension, release and
	// loss, the waiters and held locks, and each call to each instance
	// (see Observer; package redlockotel adapts it to OpenTelemetry).
	// Default: none, at no cost.
	Observer Observer
}

// withDefaults validates c and returns it with defaults applied.
func (c Config) withDefaults() (Config, error) {
	if c.RetryCount < 0 {
		return c, invalidf("RetryCount %d is negative", c.RetryCount)
	}
	if c.RetryCount == 0 {
		c.RetryCount = DefaultRetryCount
	}
	if c.RetryDelayMin < 0 || c.RetryDelayMax < 0 {
		return c, invalidf("RetryDelayMin %v and RetryDelayMax %v must not be negative", c.RetryDelayMin, c.RetryDelayMax)
	}
	if c.RetryDelayMin == 0 {
		c.RetryDelayMin = DefaultRetryDelayMin
		if c.RetryDelayMax != 0 && c.RetryDelayMax < c.RetryDelayMin {
			c.RetryDelayMin = c.RetryDelayMax
		}
	}
	if c.RetryDelayMax == 0 {
		c.RetryDelayMax = max(DefaultRetryDelayMax, c.RetryDelayMin)
	}
	if c.RetryDelayMax < c.RetryDelayMin {
		return c, invalidf("RetryDelayMax %v is below RetryDelayMin %v", c.RetryDelayMax, c.RetryDelayMin)
	}
	if math.IsNaN(c.DriftFactor) || c.DriftFactor < 0 || c.DriftFactor >= 0.5 {
		return c, invalidf("DriftFactor %v is outside [0, 0.5)", c.DriftFactor)
	}
	if c.DriftFactor == 0 {
		c.DriftFactor = DefaultDriftFactor
	}
	if c.NodeTimeout < 0 {
		return c, invalidf("NodeTimeout %v is negative", c.NodeTimeout)
	}
	if c.NodeTimeout == 0 {
		c.NodeTimeout = DefaultNodeTimeout
	}
	if c.DefaultTTL < 0 {
		return c, invalidf("DefaultTTL %v is negative", c.DefaultTTL)
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = DefaultLockTTL
	}
	if err := c.checkTTL(c.DefaultTTL); err != nil {
		return c, err
	}
	// PX and PEXPIRE take whole milliseconds: the deadline is computed
	// from what the instances are sent.
	c.DefaultTTL = c.DefaultTTL.Truncate(time.Millisecond)
	if err := c.checkTTL(c.DefaultTTL); err != nil {
		return c, err
	}
	if len(c.KeyPrefix) > MaxResourceLen {
		return c, invalidf("KeyPrefix is %d bytes, over %d", len(c.KeyPrefix), MaxResourceLen)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// drift is the time set aside from a TTL for clock drift.
func (c *Config) drift(ttl time.Duration) time.Duration {
	return time.Duration(float64(ttl)*c.DriftFactor) + clockDrift
}

// checkTTL validates a lock TTL.
func (c *Config) checkTTL(ttl time.Duration) error {
	switch {
	case ttl <= 0:
		return invalidf("TTL %v is not positive", ttl)
	case ttl < MinTTL:
		return invalidf("TTL %v is under %v", ttl, MinTTL)
	case ttl > MaxTTL:
		return invalidf("TTL %v is over %v", ttl, MaxTTL)
	case ttl <= 2*c.drift(ttl):
		return invalidf("TTL %v leaves no validity after the drift allowance %v (need TTL > 2×drift)", ttl, c.drift(ttl))
	}
	return nil
}

// validity returns how long a lock acquired with ttl stays valid after an
// attempt that took elapsed; ≤ 0 means the attempt failed.
func (c *Config) validity(ttl, elapsed time.Duration) time.Duration {
	return ttl - elapsed - c.drift(ttl)
}
