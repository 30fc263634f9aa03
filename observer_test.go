package redlock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// recorder is an Observer that keeps every event.
type recorder struct {
	mu       sync.Mutex
	acquired []redlock.AcquireEvent
	extended []redlock.ExtendEvent
	unlocked []redlock.UnlockEvent
	lost     []redlock.LostEvent
	held     int
	waiting  int
	maxWait  int
	calls    map[string]int // outcome -> count
	states   []redlock.InstanceStateEvent
}

func (r *recorder) Acquired(_ context.Context, e redlock.AcquireEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acquired = append(r.acquired, e)
}
func (r *recorder) Extended(_ context.Context, e redlock.ExtendEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.extended = append(r.extended, e)
}
func (r *recorder) Unlocked(_ context.Context, e redlock.UnlockEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unlocked = append(r.unlocked, e)
}
func (r *recorder) Lost(e redlock.LostEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, e)
}
func (r *recorder) Held(d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held += d
}
func (r *recorder) Waiting(d int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting += d
	r.maxWait = max(r.maxWait, r.waiting)
}
func (r *recorder) InstanceCall(e redlock.InstanceCallEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = make(map[string]int)
	}
	r.calls[e.Outcome]++
}
func (r *recorder) InstanceState(e redlock.InstanceStateEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, e)
}

// recorded is a copy of what a recorder kept.
type recorded struct {
	acquired []redlock.AcquireEvent
	extended []redlock.ExtendEvent
	unlocked []redlock.UnlockEvent
	lost     []redlock.LostEvent
	held     int
	waiting  int
	maxWait  int
	calls    map[string]int
}

func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := make(map[string]int, len(r.calls))
	for k, v := range r.calls {
		calls[k] = v
	}
	return recorded{
		acquired: append([]redlock.AcquireEvent(nil), r.acquired...),
		extended: append([]redlock.ExtendEvent(nil), r.extended...),
		unlocked: append([]redlock.UnlockEvent(nil), r.unlocked...),
		lost:     append([]redlock.LostEvent(nil), r.lost...),
		held:     r.held, waiting: r.waiting, maxWait: r.maxWait, calls: calls,
	}
}

// The Observer sees acquisitions with their attempts and outcome, the held
// and waiting counts (back to 0 after Close), extensions, unlocks, losses,
// each instance call and instance state changes.
func TestObserverEvents(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	rec := &recorder{}
	m, err := redlock.New(addrs(servers), redlock.Config{Observer: rec, RetryDelayMin: 5 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	other := newManager(t, servers, redlock.Config{RetryCount: 1})

	l, err := m.Lock(ctx, "obs", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := other.Lock(ctx, "obs-held", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLock(ctx, "obs-held"); err == nil {
		t.Fatal("TryLock of a held lock succeeded")
	}
	// A LockWait that needs a second attempt: the holder unlocks once it
	// is waiting.
	done := make(chan error, 1)
	go func() {
		l, err := m.LockWait(ctx, "obs-held", redlock.TTL(time.Second))
		if err == nil {
			err = l.Unlock(ctx)
		}
		done <- err
	}()
	waitFor(t, 10*time.Second, "the LockWait to wait", func() bool { return rec.snapshot().waiting == 1 })
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lost, err := m.Lock(ctx, "obs-lost", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		s.Do(t, "SET", "obs-lost", "someone-else", "PX", "60000")
	}
	_ = lost.Extend(ctx, 5*time.Second) // finds it held by another token: lost
	if err := m.Close(ctx); err != nil {
		t.Logf("Close: %v", err)
	}

	got := rec.snapshot()
	want := []struct{ method, outcome string }{
		{"Lock", redlock.OutcomeAcquired}, {"TryLock", redlock.OutcomeNotAcquired},
		{"LockWait", redlock.OutcomeAcquired}, {"Lock", redlock.OutcomeAcquired},
	}
	if len(got.acquired) != len(want) {
		t.Fatalf("%d acquisition events, want %d: %+v", len(got.acquired), len(want), got.acquired)
	}
	for i, w := range want {
		e := got.acquired[i]
		if e.Method != w.method || e.Outcome != w.outcome || e.Quorum != 2 || len(e.Attempts) == 0 {
			t.Errorf("acquisition %d: %s %s (quorum %d, %d attempts), want %s %s", i, e.Method, e.Outcome, e.Quorum, len(e.Attempts), w.method, w.outcome)
		}
	}
	if n := len(got.acquired[2].Attempts); n < 2 {
		t.Errorf("the LockWait reported %d attempts, want at least 2", n)
	}
	if v := got.acquired[1].Attempts[0].Votes; len(v) != 3 {
		t.Errorf("TryLock attempt votes %q, want one per instance", v)
	}
	if got.held != 0 || got.waiting != 0 || got.maxWait != 1 {
		t.Errorf("held %d, waiting %d (max %d) after Close, want 0, 0 (1)", got.held, got.waiting, got.maxWait)
	}
	if len(got.extended) != 2 || got.extended[0].Outcome != redlock.OutcomeOK || got.extended[1].Outcome != redlock.OutcomeFailed {
		t.Errorf("extension events %+v, want ok then failed", got.extended)
	}
	if len(got.unlocked) < 2 || got.unlocked[0].Outcome != redlock.OutcomeOK {
		t.Errorf("unlock events %+v, want ok first", got.unlocked)
	}
	if len(got.lost) != 1 || got.lost[0].Reason != redlock.LostExtendFailed {
		t.Errorf("loss events %+v, want one extend_failed", got.lost)
	}
	if got.calls[redlock.OutcomeOK] == 0 || got.calls[redlock.OutcomeRefused] == 0 {
		t.Errorf("instance call outcomes %v, want ok and refused", got.calls)
	}
}
