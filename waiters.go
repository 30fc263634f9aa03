package redlock

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"
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

// wakeReason says why a waiting caller tries again.
type wakeReason int32

const (
	wakePoll     wakeReason = iota // its retry delay passed
	wakeExpiry                     // the holder's lease has run out on enough instances (expiry-timed retry)
	wakeReleased                   // a release by this Manager, or a release message
	wakeChanged                    // a key watch saw the lock key deleted or expire (KeyWatcher)
	wakeNudged                     // a failed attempt's clean-up deleted the key
	wakeQueue                      // the caller before it in the local queue left without the lock
	wakeHandoff                    // an Unlock by this Manager is sending its release (see handoff)
	numWakeReasons
)

// waiter is one call waiting for its turn on a key (keys[0]; a LockMany
// call also listens to the releases of its other keys).
type waiter struct {
	keys []string
	ch   chan struct{} // try now; buffered 1: a wake-up is never lost, never blocks
	why  atomic.Int32  // the wakeReason of the last signal
	// gate is the release handed to the waiter (handOff), for its next
	// attempt to follow; the attempt takes it (Swap(nil)).
	gate atomic.Pointer[handoff]
	// handed is the last release handed to the waiter; guarded by
	// waitSet.mu.
	handed *handoff
	// used is the release the waiter's last attempt followed (nil: none);
	// only the waiting call reads and writes it.
	used *handoff
	// got is the lock the waiting call acquired, set before it leaves.
	got *Lock
}

func (w *waiter) signal(why wakeReason) {
	w.why.Store(int32(why))
	notify(w.ch)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitSet queues, per key, the calls of this Manager that wait for a lock.
// A release wakes only the head of a queue, which keeps the order fair and
// stops local waiters from splitting the votes among themselves; every
// waiter, queued or not, also retries on its own after its retry delay, so
// that each call keeps its own attempt budget (a Lock with RetryCount 3
// behind a LockWait does not wait for the LockWait). A call for several keys
// queues on its first key only (queueing on all of them could deadlock two
// calls that each head one queue), and is also woken by the releases of its
// other keys while it is the head of its queue.
type waitSet struct {
	// releases counts the releases this Manager saw (its own Unlocks and
	// forced releases, and release messages): a caller that joins after a
	// failed attempt retries at once only when one came since the attempt
	// started. The clean-up of a failed attempt is no release: it does not
	// count (otherwise a caller would wake itself, and with instances down
	// retry at round-trip speed).
	releases atomic.Uint64

	mu     sync.Mutex
	q      map[string][]*waiter
	others map[string][]*waiter // by key: the multi-key waiters that have it but not first
	// mine is, by key, the lock on it that a queued caller took last while
	// others still wait (see heldHere); an entry goes with its queue.
	mine map[string]*Lock
}

// join queues a new waiter on keys[0]. since is the release count read
// before the caller's failed attempt: when a release came since, the new
// head is signalled at once (its message may have come before it joined).
func (s *waitSet) join(keys []string, since uint64) *waiter {
	w := &waiter{keys: keys, ch: make(chan struct{}, 1)}
	key := keys[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q == nil {
		s.q = make(map[string][]*waiter)
	}
	s.q[key] = append(s.q[key], w)
	for _, k := range keys[1:] {
		if s.others == nil {
			s.others = make(map[string][]*waiter)
		}
		s.others[k] = append(s.others[k], w)
	}
	if s.q[key][0] == w && s.releases.Load() != since {
		w.signal(wakeReleased)
	}
	return w
}

// leave removes w from key's queue and signals the new head, unless w
// leaves because it acquired the lock: the new head would only find it
// taken, and it polls on its own anyway.
func (s *waitSet) leave(w *waiter, acquired bool) {
	key := w.keys[0]
	var held *Lock // recorded in mine: see below
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		if held != nil {
			// Its end must wake the waiters, who heard no watch or
			// message about its key meanwhile (see heldHere): an expiry
			// timer makes a lock left to its TTL lost at its deadline
			// (Lock.lose nudges them), not only at the next Valid.
			held.mu.Lock()
			held.watchLocked()
			held.mu.Unlock()
		}
	}()
	for _, k := range w.keys[1:] {
		if o := remove(s.others[k], w); len(o) > 0 {
			s.others[k] = o
		} else {
			delete(s.others, k)
		}
	}
	if acquired && w.used != nil && w.got != nil {
		w.used.taken = append(w.used.taken, w.got)
	}
	q := remove(s.q[key], w)
	if len(q) == 0 {
		delete(s.q, key)
		delete(s.mine, key)
		return
	}
	s.q[key] = q
	if l := w.got; acquired && l != nil && l.ks.rw == nil && l.ks.keys[0] == key {
		if s.mine == nil {
			s.mine = make(map[string]*Lock)
		}
		s.mine[key] = l
		held = l
	}
	if !acquired {
		q[0].signal(wakeQueue)
	}
}

// remove returns q without w.
func remove(q []*waiter, w *waiter) []*waiter {
	for i, x := range q {
		if x == w {
			return append(q[:i], q[i+1:]...)
		}
	}
	return q
}

// head reports whether w is first in its queue.
func (s *waitSet) head(w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headLocked(w)
}

func (s *waitSet) headLocked(w *waiter) bool {
	q := s.q[w.keys[0]]
	return len(q) > 0 && q[0] == w
}

// wake signals the head of key's queue, and the multi-key waiters that
// want key and head their own queue: the lock was released. It counts as a
// release (see waitSet.releases).
func (s *waitSet) wake(key string) {
	s.releases.Add(1)
	s.signal(key, wakeReleased)
}

// handOff hands the release that this Manager's Unlock is about to send
// to the heads of the queues of keys, and wakes them: their next attempt
// goes out at once, each call right behind the release's call to the same
// instance (see handoff), instead of a round later once the release has
// returned. It is an ordinary attempt: on an instance where it would come
// before the release the key is still held and the instance refuses (the
// release's token is private, never the head's: see Lock.unlock). It
// returns the handoff, nil when no local caller waits; the release to n
// instances, which follows prev (may be nil), must then be sent to every
// instance with the predecessor (*handoffRelease)(h).
func (s *waitSet) handOff(keys []string, n int, prev predecessor) *handoff {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h *handoff
	for _, k := range keys {
		q := s.q[k]
		if len(q) == 0 {
			continue
		}
		if h == nil {
			h = newHandoff(n, prev)
		}
		w := q[0]
		w.handed = h
		w.gate.Store(h)
		w.signal(wakeHandoff)
	}
	return h
}

// released is wake once the release h (nil: none was handed) has returned
// at quorum: the waiters handed h that are still queued (their attempt
// failed, or has not returned) are signalled again, and the others as by
// wake, unless a waiter handed h acquired key with it: they would only find
// it taken. A waiter that acquired another key of the release (a LockMany
// lock's, a semaphore's other slot) took nothing from key's waiters.
func (s *waitSet) released(key string, h *handoff) {
	s.releases.Add(1)
	if h == nil {
		s.signal(key, wakeReleased)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	taken := h.tookLocked(key)
	if q := s.q[key]; len(q) > 0 && (!taken || q[0].handed == h) {
		q[0].signal(wakeReleased)
	}
	if taken {
		return
	}
	for _, w := range s.others[key] {
		if s.headLocked(w) {
			w.signal(wakeReleased)
		}
	}
}

// handoff is a release round of this Manager's Unlock, handed to the head
// of the lock's local queue (handOff) so that the head's attempt is on the
// wire right behind the release instead of a round later: a handoff then
// costs about one round, not two. Each instance receives a connection's
// commands in the order they were issued (the rueidis wire: one pipelined
// connection per instance), so the head's call to instance i waits only
// until the release's call to i is about to be issued (marked by the
// release's worker, as predecessor handoffRelease, right before it calls),
// not until it has returned. An attempt that overtakes the release all the
// same (a pooled wire, two workers racing into the client, a release that
// waits for an earlier call about its lock) is refused on that instance
// like any attempt on a held key, and the head tries again when the
// release returns (released). The release must be sent to every instance.
type handoff struct {
	prev   predecessor   // the release's own predecessor (the lock's last round); may be nil
	marked []atomic.Bool // marked[i]: the release's call to instance i is issued
	mu     sync.Mutex    // guards waitCh
	waitCh []chan struct{}
	// taken holds the locks that waiters handed this release acquired
	// with it; guarded by waitSet.mu.
	taken []*Lock

	markedArr [smallN]atomic.Bool
	chArr     [smallN]chan struct{}
	takenArr  [1]*Lock
}

// tookLocked reports whether a waiter handed h acquired key with it.
// Callers hold waitSet.mu.
func (h *handoff) tookLocked(key string) bool {
	for _, l := range h.taken {
		if slices.Contains(l.ks.keys, key) {
			return true
		}
	}
	return false
}

// newHandoff returns the handoff of a release to n instances that follows
// prev (may be nil).
func newHandoff(n int, prev predecessor) *handoff {
	h := &handoff{prev: prev}
	h.taken = h.takenArr[:0]
	if n <= smallN {
		h.marked, h.waitCh = h.markedArr[:n], h.chArr[:n]
	} else {
		h.marked, h.waitCh = make([]atomic.Bool, n), make([]chan struct{}, n)
	}
	return h
}

// pendingCh implements predecessor for the head's attempt: nil once the
// release's call to instance i is issued, else a channel closed then.
func (h *handoff) pendingCh(i int) <-chan struct{} {
	if h.marked[i].Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.marked[i].Load() {
		return nil
	}
	if h.waitCh[i] == nil {
		h.waitCh[i] = make(chan struct{})
	}
	return h.waitCh[i]
}

// handoffRelease is the predecessor of the release round itself: its
// worker for instance i asks for it right before issuing the call, which
// marks the call as issued. The release still follows its own predecessor;
// when that has not returned on i, the mark comes before the release is
// issued there, and an attempt may overtake it (refused: see handoff).
type handoffRelease handoff

// pendingCh implements predecessor.
func (r *handoffRelease) pendingCh(i int) <-chan struct{} {
	h := (*handoff)(r)
	var wait <-chan struct{}
	if h.prev != nil {
		wait = h.prev.pendingCh(i)
	}
	h.mu.Lock()
	h.marked[i].Store(true)
	if ch := h.waitCh[i]; ch != nil {
		close(ch)
	}
	h.mu.Unlock()
	return wait
}

// heldHere reports whether key is held by a valid lock of this Manager
// that a queued caller took (mine): while it is, nobody else can take the
// key, so a refusal on it needs no key watch, and a release message or a
// key watch's change about it is stale (the release before this lock, or
// this lock's own acquisition) and wakes nobody: the waiters would only be
// refused. This lock's Unlock wakes them (handOff, released), and so does
// its loss (Lock.lose nudges its keys), its expiry included: a lock
// recorded here gets its expiry timer (leave).
func (s *waitSet) heldHere(key string) bool {
	s.mu.Lock()
	l := s.mine[key]
	s.mu.Unlock()
	return l != nil && l.Valid()
}

// changed is wake for a key that a key watch saw deleted or expire on an
// instance (or written: an extension of the holder's lease is reported
// too, and costs the head one attempt).
func (s *waitSet) changed(key string) {
	s.releases.Add(1)
	if s.heldHere(key) {
		return
	}
	s.signal(key, wakeChanged)
}

// nudge is wake for a key that a failed attempt's clean-up deleted: the
// head of its queue may find the lock free now, but it is no release for
// the callers that join later.
func (s *waitSet) nudge(key string) { s.signal(key, wakeNudged) }

// signal signals the head of key's queue, and the multi-key waiters that
// want key and head their own queue.
func (s *waitSet) signal(key string, why wakeReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.q[key]; len(q) > 0 {
		q[0].signal(why)
	}
	for _, w := range s.others[key] {
		if s.headLocked(w) {
			w.signal(why)
		}
	}
}

// waitTurn waits before the next attempt of w: until a release of one of
// its keys wakes it (as the head of its queue), or delay passes. It
// returns ctx's error, or ErrClosed once Close started.
func (m *Manager) waitTurn(ctx context.Context, w *waiter, delay time.Duration) error {
	_, err := m.waitTurnWhy(ctx, w, delay, false)
	return err
}

// waitTurnWhy is waitTurn that says why it returned (timed says that delay
// is the holder's remaining lease, not a retry delay).
func (m *Manager) waitTurnWhy(ctx context.Context, w *waiter, delay time.Duration, timed bool) (wakeReason, error) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-w.ch:
			if m.waits.head(w) {
				return wakeReason(w.why.Load()), nil
			}
		case <-t.C:
			if timed {
				return wakeExpiry, nil
			}
			return wakePoll, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-m.closing:
			return 0, ErrClosed
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
// A message about a key held here is stale (see heldHere).
func (m *Manager) onRelease(key string) {
	if m.waits.heldHere(key) {
		m.waits.releases.Add(1)
		return
	}
	m.waits.wake(key)
}

// expiryWait returns how long after attempt o a quorum of instances will be
// free if the holder does not extend: the instances that voted yes, plus
// the refusing ones whose holder's key has expired by then (Redis expires a
// key when it is accessed, so an acquisition right after its PTTL
// succeeds). 0 when the replies do not tell. A margin of 1 ms covers the
// rounding of PTTL to milliseconds; no share of the TTL for clock drift:
// the key on the instance, not this clock, decides, and a retry that
// comes early is refused with what is left and retries after that.
func (m *Manager) expiryWait(o *outcome) time.Duration {
	yes := 0
	var leftArr [smallN]time.Duration
	left := leftArr[:0]
	for i, v := range o.votes {
		switch v {
		case voteYes:
			yes++
		case voteRefused:
			if d, ok := holderLeft(o.vals[i]); ok {
				left = append(left, d)
			}
		}
	}
	need := m.quorum - yes
	if need <= 0 || need > len(left) {
		return 0
	}
	slices.Sort(left)
	w := left[need-1]
	return w + time.Millisecond
}

// AwaitRelease waits until the lock on resource may have become free, for
// at most max: until this Manager releases it, a release message names it
// (ReleaseChannel), or a key watch (KeyWatcher) sees its key deleted or
// expire on an instance that refused this Manager's last attempt on it. It
// reports whether such a wake-up came (false: max passed). It is for
// callers that make their own attempts with TryLock, to report each one
// (the redlock command does); Lock and LockWait wait this way by
// themselves. It returns ctx's error when ctx ends first, ErrClosed once
// Close started, and ErrInvalid for a bad resource or a negative max.
func (m *Manager) AwaitRelease(ctx context.Context, resource string, max time.Duration) (bool, error) {
	return m.awaitRelease(ctx, resource, []string{m.cfg.KeyPrefix + resource}, max)
}

// awaitRelease is AwaitRelease for the lock named resource whose keys are
// keys: woken by a change of any of them.
func (m *Manager) awaitRelease(ctx context.Context, resource string, keys []string, max time.Duration) (bool, error) {
	if max < 0 {
		return false, invalidf("negative wait %v", max)
	}
	if err := m.begin(ctx, resource); err != nil {
		return false, err
	}
	defer m.leave()
	m.subscribe()
	// A release (of any key) since this Manager's last failed acquisition
	// began wakes at once: it may be this one's, come before the wait.
	w := m.waits.join(keys, m.refusedSince.Load())
	defer m.waits.leave(w, false)
	why, err := m.waitTurnWhy(ctx, w, max, false)
	if err != nil {
		return false, err
	}
	return why != wakePoll, nil
}
