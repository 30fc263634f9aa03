package interop

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock/internal/redistest"
)

// callTimeout bounds every direct command a test sends to a server.
const callTimeout = 5 * time.Second

// server is one redis-server process owned by a test (started by the root
// module's internal/redistest), with a go-redis client for direct
// inspection (closed before the process is stopped).
type server struct {
	addr string
	rdb  *redis.Client
}

// startServers starts n redis-servers (no persistence) on free loopback
// ports and returns them once all answer PING. They are stopped in
// t.Cleanup. A missing redis-server binary fails the test: it never skips.
func startServers(t *testing.T, n int) []*server {
	t.Helper()
	out := make([]*server, n)
	for i, rs := range redistest.Start(t, n) {
		s := &server{addr: rs.Addr(), rdb: redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})}
		t.Cleanup(func() { _ = s.rdb.Close() }) // runs before redistest stops the process
		out[i] = s
	}
	return out
}

// addrs returns the servers' host:port addresses.
func addrs(servers []*server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.addr
	}
	return out
}

// value returns what key holds on s, and whether it exists.
func (s *server) value(t *testing.T, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	if err != nil {
		t.Fatalf("interop: GET %q on %s: %v", key, s.addr, err)
	}
	return v, true
}

// requireAll fails the test unless key holds want on every server.
func requireAll(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	for _, s := range servers {
		got, ok := s.value(t, key)
		if !ok {
			t.Fatalf("%s: key %q is missing, want it to hold %q", s.addr, key, want)
		}
		if got != want {
			t.Fatalf("%s: key %q holds %q, want %q", s.addr, key, got, want)
		}
	}
}

// waitAll waits until key holds want on every server, failing the test
// after a generous deadline. Our TryLock returns once a quorum has
// answered, so the remaining instances may still be running the acquire
// script when it returns; the step-by-step tests wait for them so that each
// step starts from the same state on every server.
func waitAll(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for _, s := range servers {
		for {
			got, ok := s.value(t, key)
			if ok && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: key %q holds %q (exists: %v), want %q within %v", s.addr, key, got, ok, want, callTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// requireQuorum fails the test unless key holds want on a quorum
// (len/2+1) of the servers: what a winner of a contended attempt holds.
func requireQuorum(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	holders := 0
	for _, s := range servers {
		if got, ok := s.value(t, key); ok && got == want {
			holders++
		}
	}
	if q := len(servers)/2 + 1; holders < q {
		t.Fatalf("key %q holds %q on %d of %d servers, want at least %d", key, want, holders, len(servers), q)
	}
}

// waitNone waits until key exists on no server, failing the test after a
// generous deadline. Our Unlock returns once a quorum confirmed, so the
// release may still be running on the remaining instances.
func waitNone(t *testing.T, servers []*server, key string) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for _, s := range servers {
		for {
			got, ok := s.value(t, key)
			if !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: key %q still holds %q after %v, want it gone", s.addr, key, got, callTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// expire deletes key on every server, with our metadata key beside it
// (which has the lock key's TTL): what the key's TTL running out does,
// without waiting for it.
func expire(t *testing.T, servers []*server, key string) {
	t.Helper()
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		err := s.rdb.Del(ctx, key, metaKey(key)).Err()
		cancel()
		if err != nil {
			t.Fatalf("interop: DEL %q on %s: %v", key, s.addr, err)
		}
	}
}
