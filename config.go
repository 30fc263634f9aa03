package redlock

import (
	"crypto/rand"
	"encoding/hex"
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

// LockOption is a per-call choice for Lock, TryLock, LockWait and Do.
type LockOption func(*lockOptions)

type lockOptions struct {
	ttl      time.Duration
	ttlSet   bool
	token    string
	tokenSet bool
	fenced   bool
	metadata string
	metaSet  bool
}

// TTL gives the lock a fixed lease of d, with no auto-extension
// (aioredlock's lock_timeout). d is truncated to whole milliseconds and must
// be within [MinTTL, MaxTTL] and larger than twice the drift allowance.
// Without TTL a lock gets Config.DefaultTTL and is extended automatically
// until it is unlocked.
func TTL(d time.Duration) LockOption {
	return func(o *lockOptions) { o.ttl, o.ttlSet = d, true }
}

// Token makes the lock use token instead of a random one (aioredlock's
// lock_identifier). Locking again with the token of a lock that is held
// refreshes its lease, never shortening it (the held handle's deadline
// stays true). An attempt that fails with a token you chose releases
// nothing: the keys it set expire with their TTL (a release cannot tell
// them from the keys of your next attempt under the same token, and one
// that arrived late would delete those), so others may find the resource
// taken until then; you can take it again with the same token at once. Handles that share a token share the lock: an Unlock or a shorter
// Extend through one of them applies to the others too, and two
// acquisitions with one token must not run at once. The token must be
// non-empty and at most MaxTokenLen bytes; whoever knows it can extend and
// release the lock.
func Token(token string) LockOption {
	return func(o *lockOptions) { o.token, o.tokenSet = token, true }
}

// Fenced makes the lock carry a fencing token (see Lock.Fence): a number
// that is unique per resource and strictly increasing from one holder to the
// next while the lock's safety assumptions hold. It costs one more round
// trip per acquisition. Config.Fencing turns it on for every lock.
func Fenced() LockOption {
	return func(o *lockOptions) { o.fenced = true }
}

// MaxMetadataLen is the largest metadata a lock may carry (see Metadata).
const MaxMetadataLen = 4096

// Metadata stores s beside the lock: who holds it, for Manager.Inspect
// (InstanceState.Metadata), Manager.Attach and Lock.Metadata, e.g. the
// holder's host, process and start time (the redlock command stores such a
// JSON object). It lives on the lock's instances in a key of its own, next
// to the lock key in its Redis Cluster slot ("{KEY}:redlock-meta" for the
// key KEY = KeyPrefix + resource, or KEY + ":redlock-meta" when KEY has a
// hash tag), with the lock
// key's TTL: extended with the lock (never shortened), restored with it by
// a top-up, deleted by Unlock, by a failed attempt's clean-up and by
// ForceRelease. The lock key itself still holds only the token, so other
// Redlock clients (aioredlock, redsync, node-redlock) still exclude and
// are excluded by the lock. A re-lock with the same token (the Token
// option) replaces the metadata where it refreshes the key; one without
// Metadata leaves the metadata alone (it then expires on its own).
//
// s may hold any bytes, at most MaxMetadataLen of them (else the call
// fails with ErrInvalid); "" means no metadata, which costs nothing: no
// extra key and no extra work per call. With metadata an acquisition,
// extension and release each do a little more on each instance, and an
// auto-extended lock is extended by a call of its own rather than in the
// Manager's batches. LockMany stores s beside each of its keys. The key's
// name (see above) must be in the lock key's slot: a key with a '}' but no
// hash tag, such as "a}b", cannot carry metadata (ErrInvalid). Anyone who
// can read the instances can read it: keep secrets out.
func Metadata(s string) LockOption {
	return func(o *lockOptions) { o.metadata, o.metaSet = s, true }
}

// request is a validated lock request.
type request struct {
	resource string // the first resource (the only one, but for LockMany)
	ks       keyset
	token    string
	own      bool // token generated here: no one else can use it
	ttl      time.Duration
	auto     bool
	fenced   bool
}

func (m *Manager) newRequest(resource string, opts []LockOption) (request, error) {
	if err := m.checkResource(resource); err != nil {
		return request{}, err
	}
	return m.newRequestMany([]string{resource}, opts)
}

// newRequestMany validates a request for resources, which the caller has
// checked one by one.
func (m *Manager) newRequestMany(resources []string, opts []LockOption) (request, error) {
	var o lockOptions
	for _, opt := range opts {
		if opt == nil {
			return request{}, invalidf("nil LockOption")
		}
		opt(&o)
	}
	fenced := o.fenced || m.cfg.Fencing
	r := request{resource: resources[0], ks: m.newKeyset(resources, fenced), ttl: m.cfg.DefaultTTL, auto: true, fenced: fenced}
	if o.ttlSet {
		if err := m.cfg.checkTTL(o.ttl); err != nil {
			return request{}, err
		}
		r.ttl, r.auto = o.ttl.Truncate(time.Millisecond), false
		if err := m.cfg.checkTTL(r.ttl); err != nil {
			return request{}, err
		}
	}
	if o.tokenSet {
		if o.token == "" {
			return request{}, invalidf("empty token")
		}
		if len(o.token) > MaxTokenLen {
			return request{}, invalidf("token is %d bytes, over %d", len(o.token), MaxTokenLen)
		}
		r.token = o.token
	} else {
		r.token, r.own = newToken(), true
	}
	if o.metaSet {
		if len(o.metadata) > MaxMetadataLen {
			return request{}, invalidf("metadata is %d bytes, over %d", len(o.metadata), MaxMetadataLen)
		}
		if err := r.ks.setMetadata(o.metadata); err != nil {
			return request{}, err
		}
	}
	return r, nil
}

// checkResource checks a resource name: not empty, not too long, and not
// one whose key (KeyPrefix + resource) has the shape of a fencing counter
// (see counterKey) or of a metadata key (see metaKey), which a lock must
// never be able to address.
func (m *Manager) checkResource(resource string) error {
	if resource == "" {
		return invalidf("empty resource")
	}
	if len(resource) > MaxResourceLen {
		return invalidf("resource is %d bytes, over %d", len(resource), MaxResourceLen)
	}
	if isCounterKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q are reserved for fencing counters", quoteResource(resource), counterSuffix)
	}
	if isMetaKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q are reserved for lock metadata", quoteResource(resource), metaSuffix)
	}
	if isRWKey(m.cfg.KeyPrefix + resource) {
		return invalidf("resource %s: keys ending in %q, %q or %q are reserved for read-write locks", quoteResource(resource), readersSuffix, wwaitSuffix, rmetaSuffix)
	}
	return nil
}

// newToken returns 128 random bits from crypto/rand as UUIDv4 text.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
