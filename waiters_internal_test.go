package redlock

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// signalled reports (and takes) a pending "try now" signal of w.
func signalled(w *waiter) bool {
	select {
	case <-w.ch:
		return true
	default:
		return false
	}
}

// TestWaitSetLeave pins who is signalled when a waiter joins or leaves its
// queue: a new head on joining only if a release came since its attempt
// started; the new head after a failure or cancellation (it may have taken
// a wake-up meant for the queue), nobody after an acquisition (the new head
// would only find the lock taken, and polls on its own).
func TestWaitSetLeave(t *testing.T) {
	var s waitSet
	since := s.releases.Load()
	a := s.join([]string{"k"}, since)
	if signalled(a) {
		t.Fatal("the first waiter was signalled on joining without a release since its attempt")
	}
	s.leave(a, false)
	s.wake("k") // a release between the attempt and the join
	a = s.join([]string{"k"}, since)
	if !signalled(a) {
		t.Fatal("the first waiter was not signalled on joining after a release")
	}
	since = s.releases.Load()
	b := s.join([]string{"k"}, since-1)
	c := s.join([]string{"k"}, since-1)
	if signalled(b) || signalled(c) {
		t.Fatal("a waiter behind the head was signalled on joining")
	}
	s.leave(a, true)
	if signalled(b) {
		t.Error("the new head was signalled after the old head acquired the lock")
	}
	if !s.head(b) {
		t.Fatal("b is not the head after a left")
	}
	s.leave(b, false)
	if !signalled(c) {
		t.Error("the new head was not signalled after the old head gave up")
	}
	s.nudge("k")
	if !signalled(c) {
		t.Error("a clean-up's nudge did not signal the head")
	}
	if s.releases.Load() != since {
		t.Error("a clean-up's nudge counted as a release")
	}
	s.leave(c, false)
	if len(s.q) != 0 || len(s.others) != 0 {
		t.Errorf("queues left: %v", s.q)
	}
}

// A LockMany waiter queues on its first key and is woken by the releases of
// its other keys while it heads its queue.
func TestWaitSetManyKeys(t *testing.T) {
	var s waitSet
	m1 := s.join([]string{"a", "b"}, 0)
	m3 := s.join([]string{"a", "b"}, 0) // behind m1 on "a"
	single := s.join([]string{"b"}, 0)
	s.wake("b")
	if !signalled(m1) {
		t.Error("a release of its second key did not wake the multi-key head")
	}
	if !signalled(single) {
		t.Error("a release did not wake the head of the key's own queue")
	}
	if signalled(m3) {
		t.Error("a multi-key waiter that is not first in its queue was woken")
	}
	s.leave(m1, false)
	if !signalled(m3) {
		t.Error("the next multi-key waiter was not signalled when the head gave up")
	}
	s.wake("b")
	if !signalled(m3) {
		t.Error("the new multi-key head was not woken by a release of its second key")
	}
	s.leave(m3, false)
	s.leave(single, false)
	if len(s.q) != 0 || len(s.others) != 0 {
		t.Errorf("left behind: queues %v, others %v", s.q, s.others)
	}
}

// A LockMany call that found one of its resources taken retries as soon as
// this Manager releases it, whichever position that resource has: its retry
// delay is far longer than the test's deadline.
func TestLockManyWakesOnRelease(t *testing.T) {
	servers := redistest.Start(t, 3)
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.URL())
	}
	// Enough attempts for the wake-ups that are not for it (a first attempt
	// that got a yes releases it and wakes the queue; late release
	// messages), few enough that polling alone could not succeed.
	m, err := New(eps, Config{RetryCount: 20, RetryDelayMin: time.Minute, RetryDelayMax: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	for _, pos := range []int{0, 1} {
		t.Run("held="+strconv.Itoa(pos), func(t *testing.T) {
			x, y := "x"+strconv.Itoa(pos), "y"+strconv.Itoa(pos) // fresh keys: no late messages
			held := []string{x, y}[pos]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h, err := m.Lock(ctx, held)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				l, err := m.LockMany(ctx, []string{x, y})
				if err == nil {
					err = l.Unlock(ctx)
				}
				done <- err
			}()
			waitQueued(t, m, m.cfg.KeyPrefix+x, 1) // LockMany queues on its first key
			if err := h.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("LockMany after the release of %q: %v", held, err)
			}
		})
	}
}

// queued returns how many callers wait in m's queue for key.
func queued(m *Manager, key string) int {
	m.waits.mu.Lock()
	defer m.waits.mu.Unlock()
	return len(m.waits.q[key])
}

func waitQueued(t *testing.T, m *Manager, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued(m, key) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers queued on %q, want %d", queued(m, key), key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Locks left to expire (never unlocked) wake nobody: each waiter in turn
// must find the lock free by polling, including one that became the head
// when the waiter before it acquired the lock.
func TestLockWaitQueuedAfterExpiry(t *testing.T) {
	servers := redistest.Start(t, 3)
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.URL())
	}
	m, err := New(eps, Config{RetryDelayMin: 20 * time.Millisecond, RetryDelayMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ttl := TTL(300 * time.Millisecond)
	if _, err := m.Lock(ctx, "expiring", ttl); err != nil { // left to expire
		t.Fatal(err)
	}
	key := m.cfg.KeyPrefix + "expiring"
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.LockWait(ctx, "expiring", ttl) // left to expire too
		}()
		waitQueued(t, m, key, i+1) // the first waiter queues before the second
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("waiter %d: %v", i, err)
		}
	}
}

// A queued caller whose attempts fail with a vote other than a refusal
// (here: an instance that is down) still waits its retry delay between
// attempts: the clean-up of its own attempt must not wake it.
func TestLockWaitRetryDelayWithInstanceDown(t *testing.T) {
	servers := redistest.Start(t, 3)
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.URL())
	}
	const delay = 200 * time.Millisecond
	m, err := New(eps, Config{RetryDelayMin: delay, RetryDelayMax: delay, NodeTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ctx := context.Background()
	// Held by another token on servers[0] and servers[1] (a lock of
	// another process), servers[2] down: every attempt gets one refusal
	// and one failure besides its own yes.
	key := m.cfg.KeyPrefix + "busy"
	for _, s := range servers[:2] {
		s.Do(t, "SET", key, "someone-else", "PX", "60000")
	}
	servers[2].Stop(t)
	before := evalshaCalls(t, servers[0])
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := m.LockWait(wctx, "busy"); err == nil {
		t.Fatal("acquired a lock held by another token")
	}
	calls := evalshaCalls(t, servers[0]) - before
	// About 1s/200ms + 2 = 7 attempts, one script call each on this
	// instance, plus the EVAL fallback and the release priming on first
	// use (10 seen); a caller that woke itself would make one attempt per
	// round trip (hundreds).
	if calls > 25 {
		t.Errorf("%d script calls on one instance in 1s with a %v retry delay: the caller retried without waiting", calls, delay)
	}
	t.Logf("%d script calls in 1s", calls)
}

// evalshaCalls returns the number of EVALSHA and EVAL calls s has served.
func evalshaCalls(t *testing.T, s *redistest.Server) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(s.Do(t, "INFO", "commandstats"), "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		v, _, _ := strings.Cut(rest, ",")
		c, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		n += c
	}
	return n
}
