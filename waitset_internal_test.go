package redlock

import "testing"

// TestWaitSetLeave pins who is signalled when a waiter leaves its queue: the
// new head after a failure or cancellation (it may have taken a wake-up
// meant for the queue), nobody after an acquisition (the new head would
// only find the lock taken).
func TestWaitSetLeave(t *testing.T) {
	signalled := func(w *waiter) bool {
		select {
		case <-w.ch:
			return true
		default:
			return false
		}
	}
	var s waitSet
	a := s.join("k")
	if !signalled(a) {
		t.Fatal("the first waiter was not signalled on joining")
	}
	b := s.join("k")
	c := s.join("k")
	if signalled(b) || signalled(c) {
		t.Fatal("a waiter behind the head was signalled on joining")
	}
	s.leave("k", a, true)
	if signalled(b) {
		t.Error("the new head was signalled after the old head acquired the lock")
	}
	if !s.head("k", b) {
		t.Fatal("b is not the head after a left")
	}
	s.leave("k", b, false)
	if !signalled(c) {
		t.Error("the new head was not signalled after the old head gave up")
	}
	s.leave("k", c, false)
	if len(s.q) != 0 {
		t.Errorf("queues left: %v", s.q)
	}
}
