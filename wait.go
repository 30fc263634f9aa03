package redlock

import (
	"context"
	"io"
	"sync"
	"time"
)

// ReleaseChannel is the pub/sub channel on which the release scripts
// publish the key of every lock they delete. Waiting callers subscribe to it
// (one connection per instance, shared by all resources) to retry at once
// instead of polling. A Redis ACL user needs "&redlock:released" (or
// allchannels) for it; without it releases still work and waiters poll.
const ReleaseChannel = "redlock:released"

// Subscriber is an optional interface of Client: a client that can
// subscribe to a pub/sub channel lets waiting Lock and LockWait calls wake
// up as soon as the lock is released, instead of after their retry delay.
// The goredis and rueidis adapters implement it.
type Subscriber interface {
	// Subscribe calls onMessage with the payload of every message published
	// on channel until the returned Closer is closed; Close stops the
	// subscription and waits until onMessage is no longer called. onMessage
	// must not block. The subscription reconnects by itself after errors.
	Subscribe(ctx context.Context, channel string, onMessage func(payload string)) (io.Closer, error)
}

// waiter is one call waiting for its turn on a key.
type waiter struct {
	ch   chan struct{} // try now; buffered 1: a wake-up is never lost, never blocks
	head chan struct{} // became the head: start polling; buffered 1 too
}

func (w *waiter) signal() { notify(w.ch) }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitSet queues, per key, the calls of this Manager that wait for a lock.
// Only the head of a queue retries: the others wait for their turn, which
// keeps the order fair and stops local waiters from splitting the votes
// among themselves.
type waitSet struct {
	mu sync.Mutex
	q  map[string][]*waiter
}

// join queues a new waiter on key; the head is signalled at once.
func (s *waitSet) join(key string) *waiter {
	w := &waiter{ch: make(chan struct{}, 1), head: make(chan struct{}, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q == nil {
		s.q = make(map[string][]*waiter)
	}
	s.q[key] = append(s.q[key], w)
	if s.q[key][0] == w {
		// A release may have come between our failed attempt and now: try
		// again at once. From here on no wake-up is lost.
		w.signal()
	}
	return w
}

// leave removes w from key's queue and signals the new head, unless w
// leaves because it acquired the lock: the new head would only find it
// taken, so it is only told that it is the head now, and waits for the
// release or its first poll (the lock may be left to expire).
func (s *waitSet) leave(key string, w *waiter, acquired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.q[key]
	for i, x := range q {
		if x == w {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(s.q, key)
		return
	}
	s.q[key] = q
	if acquired {
		notify(q[0].head)
	} else {
		q[0].signal()
	}
}

// head reports whether w is first in key's queue.
func (s *waitSet) head(key string, w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.q[key]
	return len(q) > 0 && q[0] == w
}

// wake signals the head of key's queue: the lock may be free.
func (s *waitSet) wake(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.q[key]; len(q) > 0 {
		q[0].signal()
	}
}

// waitTurn waits before the next attempt of w on key: for a release (or
// the turn, for a waiter that is not first), or at most delay for the first
// waiter, which keeps polling in case a message is lost.
func (m *Manager) waitTurn(ctx context.Context, key string, w *waiter, delay time.Duration) error {
	for {
		var t *time.Timer
		var timeout <-chan time.Time
		if m.waits.head(key, w) {
			t = time.NewTimer(delay)
			timeout = t.C
		}
		turn := false
		select {
		case <-w.ch:
			turn = m.waits.head(key, w)
		case <-w.head:
			// Now first: loop to start polling.
		case <-timeout:
			turn = true
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if turn {
			return nil
		}
	}
}

// subscribe starts, once, the release subscriptions of the instances whose
// client is a Subscriber: in the background, one goroutine per instance
// (counted in m.ops, so Close waits for them), so that a slow or dead
// instance never delays the caller. Failures only leave waiters polling.
// The caller holds an operation (m.enter).
func (m *Manager) subscribe() {
	m.subOnce.Do(func() {
		for _, in := range m.inst {
			sub, ok := in.client.(Subscriber)
			if !ok || !m.enter() {
				continue
			}
			go func() {
				defer m.leave()
				ctx, cancel := context.WithTimeout(context.Background(), max(m.cfg.NodeTimeout, time.Second))
				c, err := sub.Subscribe(ctx, ReleaseChannel, m.onRelease)
				cancel()
				if err != nil {
					m.log.Warn("redlock: release subscription failed; waiters poll", "instance", in.name, "err", err)
					return
				}
				m.mu.Lock()
				if m.closed {
					m.mu.Unlock()
					_ = c.Close()
					return
				}
				m.subs = append(m.subs, c)
				m.mu.Unlock()
			}()
		}
	})
}

// onRelease handles a message on ReleaseChannel: the payload is a key.
func (m *Manager) onRelease(key string) { m.waits.wake(key) }
