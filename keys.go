package redlock

import (
	"strconv"
	"strings"
)

// keyset is what one lock covers: one or several resources, their Redis
// keys and, for a fenced lock, their fencing counters; for a lock with
// metadata, the metadata and its keys.
type keyset struct {
	resources []string
	keys      []string // KeyPrefix + resource, verbatim
	counters  []string // fencing counters; nil unless fenced
	nArg      string   // len(keys) as a script argument

	meta *keyMeta // the lock's metadata; nil without (no extra key, no extra argument)
	rw   *rwKeys  // a read-write lock's writer or reader (rwmutex.go); nil for a mutex
}

// keyMeta is the metadata of a lock (see Metadata), stored beside each
// lock key in the key metaKey names.
type keyMeta struct {
	metadata string
	keys     []string // metadata keys, one per lock key
	km       []string // the lock keys followed by keys: what the scripts that keep the metadata get
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

// setMetadata gives ks the metadata md, stored beside each lock key; ""
// means none. It returns ErrInvalid for a key whose metadata key would lie
// in another Redis Cluster slot (see metaKey).
func (ks *keyset) setMetadata(md string) error {
	if md == "" {
		return nil
	}
	metas := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		if !metaSameSlot(k) {
			return invalidf("key %s cannot carry metadata: its metadata key %s would be in another Redis Cluster slot (a key with a '}' needs a hash tag, e.g. {job}:1)",
				quoteResource(k), quoteResource(metaKey(k)))
		}
		metas[i] = metaKey(k)
	}
	ks.meta = &keyMeta{metadata: md, keys: metas, km: append(append(make([]string, 0, 2*len(ks.keys)), ks.keys...), metas...)}
	return nil
}

// hasMeta reports whether the lock has metadata.
func (ks *keyset) hasMeta() bool { return ks.meta != nil }

// metadata returns the lock's metadata, "" when none.
func (ks *keyset) metadata() string {
	if ks.rwRead() {
		return ks.rw.metadata
	}
	if ks.meta == nil {
		return ""
	}
	return ks.meta.metadata
}

// km returns the keys of the scripts that keep the metadata: the lock keys,
// then (with metadata) the metadata keys.
func (ks *keyset) km() []string {
	if ks.rwRead() {
		return ks.rw.keys
	}
	if ks.meta == nil {
		return ks.keys
	}
	return ks.meta.km
}

// single reports whether the lock takes the one-key scripts (the fast path).
func (ks *keyset) single() bool { return len(ks.keys) == 1 && ks.counters == nil }

// batched reports whether the lock's auto-extension goes to the Manager's
// batched extender (extend_batch.lua, one key per lock); the others are
// extended each by a round of its own (Lock.autoExtend), scheduled by the
// same extender.
func (ks *keyset) batched() bool { return len(ks.keys) == 1 && ks.meta == nil && !ks.rwRead() }

// acquireKeys returns the keys of acquire_many.lua: the lock keys, the
// counters (when fenced), the metadata keys (when there is metadata).
func (ks *keyset) acquireKeys() []string {
	if ks.meta == nil {
		return ks.withCounters()
	}
	out := make([]string, 0, len(ks.keys)+len(ks.counters)+len(ks.meta.keys))
	return append(append(append(out, ks.keys...), ks.counters...), ks.meta.keys...)
}

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

// metaKey names the metadata key of a lock key (see Metadata), the way
// counterKey names its fencing counter: "{user}:1" → "{user}:1:redlock-meta",
// "jobs" → "{jobs}:redlock-meta". It expires with the lock key.
//
// No lock key may end with metaSuffix (Manager.checkResource refuses such
// resources), so no resource name can address a metadata key.
func metaKey(key string) string {
	if hashTag(key) != "" {
		return key + metaSuffix
	}
	return "{" + key + "}" + metaSuffix
}

// metaSuffix ends every metadata key.
const metaSuffix = ":redlock-meta"

// isMetaKey reports whether key has the shape of a metadata key.
func isMetaKey(key string) bool { return strings.HasSuffix(key, metaSuffix) }

// metaSameSlot reports whether metaKey(key) is in key's Redis Cluster slot,
// as a script that reads both needs. It is, unless key has no hash tag and
// contains a '}' (such as "a}b", or "x{}y" whose tag is empty): then no
// name can share its slot and end with the suffix.
func metaSameSlot(key string) bool {
	return hashTag(key) != "" || hashTag(metaKey(key)) == key
}

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
// the keys (with counters and metadata keys) of ks fall in more than one
// slot.
func (m *Manager) checkSlots(ks *keyset) error {
	all := ks.acquireKeys()
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
	if ks.rwRead() {
		return scriptRWReadRelease, classifyRelease
	}
	if len(ks.keys) == 1 {
		return scriptRelease, classifyRelease
	}
	return scriptReleaseMany, classifyReleaseMany
}

// extendScript returns the extension script for ks (same reply codes).
func (ks *keyset) extendScript() *script {
	if ks.rwRead() {
		return scriptRWReadExtend
	}
	if len(ks.keys) == 1 {
		return scriptExtend
	}
	return scriptExtendMany
}

// pttlScript returns the remaining-TTL script for ks (same reply codes).
func (ks *keyset) pttlScript() *script {
	if ks.rwRead() {
		return scriptRWReadPTTL
	}
	if len(ks.keys) == 1 {
		return scriptPTTL
	}
	return scriptPTTLMany
}

// sharesKey reports whether ks and o name a common lock key of the same
// kind (a reader's share is not a writer's or a mutex's key): a release of
// one deletes what the other holds under the same token.
func (ks *keyset) sharesKey(o *keyset) bool {
	if ks.rwRead() != o.rwRead() {
		return false
	}
	for _, a := range ks.keys {
		for _, b := range o.keys {
			if a == b {
				return true
			}
		}
	}
	return false
}
