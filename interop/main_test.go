package interop

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (a client's, a manager's, a
// process reaper's) outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lease is the TTL of every lock in these tests: long enough that nothing
// expires on its own during a test (expiry is simulated with expire), short
// enough that a failed run leaves nothing behind for long.
const lease = 10 * time.Second

// ourNodeTimeout is our managers' NodeTimeout. No instance is ever down
// in these tests, so a call that times out is the machine's stall, not a
// fault: with the default 500ms, the first TryLock of a loaded -race run
// (dialing and loading the scripts on every instance) once had all three
// calls cut ("0/3 votes ... context deadline exceeded"), and at N=1 one
// cut call makes an attempt ErrUnavailable instead of the exclusion the
// tests check. Each step is bounded by callTimeout anyway.
const ourNodeTimeout = 2 * time.Second

// newManager returns one of our managers over servers, closed in t.Cleanup.
// Locks are taken with the fixed-lease option, so no watchdog runs.
func newManager(t *testing.T, servers []*server) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(addrs(servers), redlock.Config{RetryCount: 1, NodeTimeout: ourNodeTimeout})
	if err != nil {
		t.Fatalf("redlock.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	})
	return m
}

// testCtx returns a context that bounds one test step.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// variant is one configuration every interop test runs in: n instances,
// and our locks with or without metadata (redlock.Metadata). Metadata
// lives in a key of its own, so the lock key other clients read and write
// must be the same either way.
type variant struct {
	n    int
	meta bool
}

var variants = []variant{{3, false}, {3, true}, {1, false}, {1, true}}

func (v variant) name() string {
	if v.meta {
		return fmt.Sprintf("N=%d/metadata", v.n)
	}
	return fmt.Sprintf("N=%d", v.n)
}

// ourMetadata is the metadata of our locks in the metadata variants.
const ourMetadata = `{"host":"interop","pid":1,"command":"go","started":"2026-01-01T00:00:00Z"}`

// opts are our lock options: the fixed lease, metadata in the metadata
// variants, then extra.
func (v variant) opts(extra ...redlock.LockOption) []redlock.LockOption {
	out := []redlock.LockOption{redlock.TTL(lease)}
	if v.meta {
		out = append(out, redlock.Metadata(ourMetadata))
	}
	return append(out, extra...)
}

// metaKey is the metadata key of a lock key without a hash tag.
func metaKey(key string) string { return "{" + key + "}:redlock-meta" }

// requireMeta fails the test unless, in the metadata variants, every
// server holds l's metadata beside key (and, in the others, none).
func (v variant) requireMeta(t *testing.T, servers []*server, key string, l *redlock.Lock) {
	t.Helper()
	for _, s := range servers {
		got, ok := s.value(t, metaKey(key))
		want := strconv.Itoa(len(l.Token())) + ":" + l.Token() + "\n" + ourMetadata
		switch {
		case v.meta && got != want:
			t.Fatalf("%s: %s holds %q (exists: %v), want %q", s.addr, metaKey(key), got, ok, want)
		case !v.meta && ok:
			t.Fatalf("%s: %s exists without metadata: %q", s.addr, metaKey(key), got)
		}
	}
}

// noMetaLeft registers a check, run when the variant's tests are done,
// that none of our metadata keys outlived their locks.
func noMetaLeft(t *testing.T, servers []*server) {
	t.Cleanup(func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			keys, err := s.rdb.Keys(ctx, "*:redlock-meta").Result()
			cancel()
			if err != nil {
				t.Errorf("interop: KEYS on %s: %v", s.addr, err)
			} else if len(keys) != 0 {
				t.Errorf("%s: metadata keys left after the tests: %q", s.addr, keys)
			}
		}
	})
}
