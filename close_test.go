package redlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// Close is bounded by its ctx: with 2 of 3 instances paused it releases the
// held locks in parallel, ends a LockWait in flight (ErrClosed), reports
// what it could not release, and returns once ctx ends, not after
// NodeTimeout per lock. Seen failing before the change: with 8 locks and a
// 300 ms ctx it took 5.8 s at the default NodeTimeout (here NodeTimeout is
// 20 s, so the old code took minutes and the bound below fails it).
func TestCloseBoundedByCtx(t *testing.T) {
	servers := redistest.Start(t, 3)
	m, err := redlock.New(addrs(servers), redlock.Config{NodeTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	other := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	for i := 0; i < 8; i++ {
		if _, err := m.Lock(ctx, "close-"+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Lock(ctx, "close-held", redlock.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := m.LockWait(context.Background(), "close-held")
		waiting <- err
	}()
	servers[1].Pause(t)
	servers[2].Pause(t)
	defer servers[1].Resume(t)
	defer servers[2].Resume(t)

	cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = m.Close(cctx)
	took := time.Since(start)
	t.Logf("Close with 8 locks and 2 of 3 instances paused, 300ms ctx: %v, %v", took, err)
	// A failure bound, far below NodeTimeout: Close must not wait for the
	// paused instances.
	if took > 10*time.Second {
		t.Errorf("Close took %v with a 300ms ctx and a 20s NodeTimeout", took)
	}
	if !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("Close: %v, want the unreleased locks reported (ErrUnavailable)", err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, redlock.ErrClosed) {
			t.Errorf("LockWait in flight during Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LockWait did not return after Close")
	}
}
