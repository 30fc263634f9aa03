package redlock_test

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestAttack7CloseDuringGateDial: a Manager closed while a connGate's dial
// is under way (the proxy holds the new connection) leaves no connection
// and no goroutine behind once Close returned. rueidis's Close marks the
// client's wire dead, but a dial already running stores its new
// connection over it when it ends: the gate's goroutine then PINGs on a
// connection no one will close.
func TestAttack7CloseDuringGateDial(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	p := startSetupDelayProxy(t, s.Addr(), 400*time.Millisecond)
	before := goleak.IgnoreCurrent()
	m, err := redlock.New([]string{p.Addr()}, redlock.Config{NodeTimeout: 100 * time.Millisecond, RetryCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// The lock's calls start the gates' dials and give up within 100 ms.
	if _, err := m.Lock(ctx, "close-during-dial"); err == nil {
		t.Fatal("Lock succeeded behind a 400ms connection set-up with NodeTimeout 100ms")
	}
	if p.accepted.Load() == 0 {
		t.Fatal("no connection was dialed")
	}
	if err := m.Close(ctx); err != nil && !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("Close: %v", err)
	}
	// Close returned: the dials it waited for ended. Nothing of m may run.
	if err := goleak.Find(before,
		goleak.IgnoreAnyFunction("github.com/redlock-go/redlock_test.(*setupDelayProxy).accept.func1"),
		goleak.IgnoreAnyFunction("github.com/redlock-go/redlock_test.(*setupDelayProxy).accept.func1.1"),
	); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
	t.Logf("clients of the server after Close: %v", s.Do(t, "CLIENT", "LIST"))
}
