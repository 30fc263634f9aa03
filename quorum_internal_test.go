package redlock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gateClient answers every script with 1 once its gate is open; entered
// counts the calls that reached it.
type gateClient struct {
	gate    <-chan struct{}
	entered *atomic.Int32
}

func (c *gateClient) EvalSha(ctx context.Context, _ string, _, _ []string) (any, error) {
	c.entered.Add(1)
	select {
	case <-c.gate:
		return int64(1), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *gateClient) Eval(ctx context.Context, _ string, keys, args []string) (any, error) {
	return c.EvalSha(ctx, "", keys, args)
}

func parked(in *instance) int {
	in.pool.mu.Lock()
	defer in.pool.mu.Unlock()
	return len(in.pool.parked)
}

// settle waits until no worker is busy: the stragglers of the last round
// (instances that answered after the quorum) have parked.
func settle(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, in := range m.inst {
		for {
			in.pool.mu.Lock()
			busy := in.pool.live - len(in.pool.parked)
			in.pool.mu.Unlock()
			if busy == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d workers still busy", in.name, busy)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func starts(in *instance) int {
	in.pool.mu.Lock()
	defer in.pool.mu.Unlock()
	return in.pool.starts
}

// The call workers: one per call in flight at the peak, reused afterwards,
// gone once idle for the pool's idle time, and all gone after Close.
func TestCallWorkers(t *testing.T) {
	gate := make(chan struct{})
	var entered atomic.Int32
	clients := []Client{&gateClient{gate, &entered}, &gateClient{gate, &entered}, &gateClient{gate, &entered}}
	m, err := NewFromClients(clients, Config{})
	if err != nil {
		t.Fatal(err)
	}
	const idle = 50 * time.Millisecond
	for _, in := range m.inst {
		in.pool.idle = idle
	}
	ctx := context.Background()

	// 4 Locks in flight at once need 4 workers per instance.
	const peak = 4
	var wg sync.WaitGroup
	locks := make([]*Lock, peak)
	for i := range peak {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Lock(ctx, "r"+string(rune('a'+i)))
			if err != nil {
				t.Error(err)
			}
			locks[i] = l
		}()
	}
	// Wait until every call is blocked on the gate.
	deadline := time.Now().Add(10 * time.Second)
	for int(entered.Load()) < peak*len(m.inst) {
		if time.Now().After(deadline) {
			t.Fatalf("calls in flight: %d, want %d", entered.Load(), peak*len(m.inst))
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	settle(t, m)
	for i, in := range m.inst {
		if got := starts(in); got != peak {
			t.Errorf("instance %d: %d workers started for %d calls in flight, want %d", i, got, peak, peak)
		}
	}
	// Sequential calls reuse the parked workers: none is added.
	for _, l := range locks {
		if l != nil {
			if err := l.Unlock(ctx); err != nil {
				t.Error(err)
			}
			settle(t, m)
		}
	}
	for i, in := range m.inst {
		if got := starts(in); got != peak {
			t.Errorf("instance %d: %d workers started after sequential calls, want still %d", i, got, peak)
		}
	}

	// Idle workers exit by themselves (the pool's timer), without Close.
	exited := make(chan struct{})
	go func() {
		m.workers.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("idle workers still running 10s after their last call (idle time %v); parked: %d", idle, parked(m.inst[0]))
	}
	for i, in := range m.inst {
		if got := parked(in); got != 0 {
			t.Errorf("instance %d: %d parked workers after the idle time", i, got)
		}
	}

	// A new call starts a worker again; Close stops it.
	l, err := m.Lock(ctx, "again")
	if err != nil {
		t.Fatal(err)
	}
	settle(t, m)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	settle(t, m)
	if got := starts(m.inst[0]); got != peak+1 {
		t.Errorf("%d workers started after one more Lock and Unlock, want %d", got, peak+1)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, in := range m.inst {
		if got := parked(in); got != 0 || in.pool.live != 0 {
			t.Errorf("instance %d: %d parked, %d live workers after Close", i, got, in.pool.live)
		}
	}
}
