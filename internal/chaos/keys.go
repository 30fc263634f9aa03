package chaos

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// LockKeys is the KEYS pattern of the scenarios' lock keys: every resource
// is named "chaos:..." and the workers use no KeyPrefix. Fencing counters
// ("{chaos:...}:redlock-fence") do not match: they never expire, on
// purpose.
const LockKeys = "chaos:*"

// Scripts the key checks run on each server directly (not through the
// proxies), with the KEYS pattern as ARGV[1]. Their first reply element is
// a marker, so that an error reply (which redistest formats as text) is
// never mistaken for a key name.
const (
	scriptKeysWithoutTTL = `local out = {'ok'}
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
  if redis.call('PTTL', k) == -1 then out[#out+1] = k end
end
return out`
	scriptAllKeys = `local out = {'ok'}
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do out[#out+1] = k end
return out`
)

// evalKeys runs one of the scripts above for the keys matching pattern and
// returns the keys it listed; ok is false when the server did not answer
// usably (paused, down, loading).
func evalKeys(s *redistest.Server, script, pattern string, timeout time.Duration) (keys []string, ok bool) {
	out, err := s.TryDo(timeout, "EVAL", script, "0", pattern)
	if err != nil {
		return nil, false
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "ok" {
		return nil, false
	}
	return lines[1:], true
}

// KeySampler checks, every interval while a scenario runs, that no lock
// key on any server lacks a TTL (it would never expire).
type KeySampler struct {
	servers  []*redistest.Server
	pattern  string
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	samples  int
	failures []Violation
}

// StartKeySampler starts sampling the keys matching pattern (see
// LockKeys); Stop ends it.
func StartKeySampler(servers []*redistest.Server, pattern string, interval time.Duration) *KeySampler {
	k := &KeySampler{servers: servers, pattern: pattern, stop: make(chan struct{}), done: make(chan struct{})}
	go k.run(interval)
	return k
}

func (k *KeySampler) run(interval time.Duration) {
	defer close(k.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		k.SampleOnce()
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
	}
}

// SampleOnce checks every server once and records keys without a TTL.
func (k *KeySampler) SampleOnce() {
	for i, s := range k.servers {
		keys, ok := evalKeys(s, scriptKeysWithoutTTL, k.pattern, 200*time.Millisecond)
		if !ok {
			continue
		}
		k.mu.Lock()
		k.samples++
		for _, key := range keys {
			k.failures = append(k.failures, Violation{Kind: "key-without-ttl", At: Mono(),
				Detail: fmt.Sprintf("server %d (%s): key %q has no TTL", i, s.Addr(), key)})
		}
		k.mu.Unlock()
	}
}

// Stop ends sampling and returns how many server samples were taken and
// the violations found.
func (k *KeySampler) Stop() (samples int, vs []Violation) {
	close(k.stop)
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.samples, append([]Violation(nil), k.failures...)
}

// WaitNoKeys polls every server until none holds a key matching pattern,
// or until deadline. It returns when that happened (as time since the
// call) and, if the deadline passed first, the keys that remained.
func WaitNoKeys(servers []*redistest.Server, pattern string, deadline time.Time) (took time.Duration, left []string) {
	start := time.Now()
	for {
		left = left[:0]
		answered := 0
		for i, s := range servers {
			keys, ok := evalKeys(s, scriptAllKeys, pattern, time.Second)
			if !ok {
				left = append(left, fmt.Sprintf("server %d (%s): no answer", i, s.Addr()))
				continue
			}
			answered++
			for _, key := range keys {
				left = append(left, fmt.Sprintf("server %d (%s): %q", i, s.Addr(), key))
			}
		}
		if len(left) == 0 && answered == len(servers) {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), left
		}
		time.Sleep(20 * time.Millisecond)
	}
}
