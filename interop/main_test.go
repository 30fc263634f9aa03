package interop

import (
	"context"
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

// newManager returns one of our managers over servers, closed in t.Cleanup.
// Locks are taken with the fixed-lease option, so no watchdog runs.
func newManager(t *testing.T, servers []*server) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(addrs(servers), redlock.Config{RetryCount: 1})
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
