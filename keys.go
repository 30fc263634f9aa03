package redlock

import (
	"strconv"
	"strings"
)

// keyset is what one lock covers: one or several resources, their Redis
// keys and, for a fenced lock, their fencing counters.
type keyset struct {
	resources []string
	keys      []string // KeyPrefix + resource, verbatim
	counters  []string // fencing counters; nil unless fenced
	nArg      string   // len(keys) as a script argument
}

func (m *Manager) newKeyset(resources []string, fenced bool) keyset {
	ks := keyset{resources: resources, keys: make([]string, len(resources))}
	for i, r := range resources {
		ks.keys[i] = m.cfg.KeyPrefix + r
	}
	if fenced {
		ks.counters = make([]string, len(ks.keys))
		for i, k := range ks.keys {
			ks.counters[i] = counterKey(k)
		}
	}
	ks.nArg = strconv.Itoa(len(ks.keys))
	return ks
}

// single reports whether the lock takes the one-key scripts (the fast path).
func (ks *keyset) single() bool { return len(ks.keys) == 1 && ks.counters == nil }

// withCounters returns the lock keys followed by the counters.
func (ks *keyset) withCounters() []string {
	if ks.counters == nil {
		return ks.keys
	}
	out := make([]string, 0, 2*len(ks.keys))
	return append(append(out, ks.keys...), ks.counters...)
}

// counterKey names the fencing counter of a lock key. It never expires and
// stays in the lock key's Redis Cluster slot: when the key has a hash tag
// the counter keeps it ("{user}:1" → "{user}:1:redlock-fence"); otherwise
// the whole key becomes the tag ("jobs" → "{jobs}:redlock-fence").
//
// No lock key may end with counterSuffix (Manager.checkResource refuses
// such resources), so no resource name can address a counter.
func counterKey(key string) string {
	if hashTag(key) != "" {
		return key + counterSuffix
	}
	return "{" + key + "}" + counterSuffix
}

// counterSuffix ends every fencing counter's key.
const counterSuffix = ":redlock-fence"

// isCounterKey reports whether key has the shape of a fencing counter.
func isCounterKey(key string) bool { return strings.HasSuffix(key, counterSuffix) }

// hashTag returns the Redis Cluster hash tag of key: the text between the
// first '{' and the first '}' after it, when that text is not empty.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return key[i+1 : i+1+j]
}

// keySlot returns the Redis Cluster slot of key (CRC16/XMODEM of the hash
// tag or of the whole key, mod 16384).
func keySlot(key string) int {
	if tag := hashTag(key); tag != "" {
		key = tag
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// clustered is implemented by clients of a Redis Cluster (the goredis
// adapter does for *redis.ClusterClient). A multi-key script must stay in
// one slot there, so LockMany checks the slots up front.
type clustered interface{ IsCluster() bool }

// checkSlots returns ErrInvalid when some instance is a Redis Cluster and
// the keys (with counters) of ks fall in more than one slot.
func (m *Manager) checkSlots(ks *keyset) error {
	all := ks.withCounters()
	if len(all) < 2 {
		return nil
	}
	cluster := false
	for _, in := range m.inst {
		if c, ok := in.client.(clustered); ok && c.IsCluster() {
			cluster = true
			break
		}
	}
	if !cluster {
		return nil
	}
	slot := keySlot(all[0])
	for _, k := range all[1:] {
		if keySlot(k) != slot {
			return invalidf("keys %s and %s are in different Redis Cluster slots: give the resources a common hash tag, e.g. {order:42}:items and {order:42}:payment",
				quoteResource(all[0]), quoteResource(k))
		}
	}
	return nil
}

// releaseScript returns the compare-and-delete script for ks and the
// classifier of its replies.
func (ks *keyset) releaseScript() (*script, classifier) {
	if len(ks.keys) == 1 {
		return scriptRelease, classifyRelease
	}
	return scriptReleaseMany, classifyReleaseMany
}

// extendScript returns the extension script for ks (same reply codes).
func (ks *keyset) extendScript() *script {
	if len(ks.keys) == 1 {
		return scriptExtend
	}
	return scriptExtendMany
}

// pttlScript returns the remaining-TTL script for ks (same reply codes).
func (ks *keyset) pttlScript() *script {
	if len(ks.keys) == 1 {
		return scriptPTTL
	}
	return scriptPTTLMany
}

func classifyReleaseMany(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := toInt(v)
	switch {
	case !ok:
		return voteFailed, errBadReply
	case n >= 0:
		return voteYes, nil
	}
	return voteRefused, ErrHeldByOther
}
