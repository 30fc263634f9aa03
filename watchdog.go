package redlock

import (
	"container/heap"
	"context"
	"slices"
	"sort"
	"sync"
	"time"
)

// The watchdog: automatic extension of held locks, one path for all of
// them. The Manager's extender goroutine keeps every auto-extended lock in
// one heap by due time; each tick it extends the single-key locks without
// metadata that are due in batches (one script call per instance for all
// of them, extender.extend) and the others (several keys, metadata) each
// with its own round (Lock.autoExtend). Both reschedule in the same heap,
// 0.6×TTL after the extension's start, or by the same retry rule
// (retryAfter) when too few instances answered.

// scriptExtendBatch extends many single-key locks in one call.
var scriptExtendBatch = loadScript("extend_batch")

// Batching of auto-extensions.
const (
	// batchWindow: locks due within this window of the earliest one are
	// extended together.
	batchWindow = 25 * time.Millisecond
	// batchMax bounds the keys of one script call.
	batchMax = 512
)

// extender is the Manager's one auto-extension goroutine. Each tick it
// takes every lock that is due and extends the single-key ones all with
// one script call per instance (per slot group on a Redis Cluster), so
// 10,000 auto-extended locks cost one goroutine plus one per instance
// during a tick, not one per lock; a lock with several keys or metadata
// gets a goroutine for its own extension (Lock.autoExtend).
type extender struct {
	m     *Manager
	mu    sync.Mutex
	due   dueHeap
	kick  chan struct{} // buffered 1: an earlier lock was added
	stop  chan struct{}
	done  chan struct{}
	start sync.Once
}

// dueHeap orders locks by their next extension time.
type dueHeap []*Lock

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(*Lock)) }
func (h *dueHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return l
}

// schedule (re)queues l for extension at due.
func (e *extender) schedule(l *Lock, due time.Time) {
	e.start.Do(func() {
		e.kick = make(chan struct{}, 1)
		e.stop = make(chan struct{})
		e.done = make(chan struct{})
		go e.run()
	})
	e.mu.Lock()
	l.due = due
	heap.Push(&e.due, l)
	first := e.due[0] == l
	e.mu.Unlock()
	if first {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// close stops the goroutine and waits for it (a no-op if it never started).
func (e *extender) close() {
	started := false
	e.start.Do(func() {}) // after this, run never starts
	e.mu.Lock()
	started = e.stop != nil
	e.mu.Unlock()
	if started {
		close(e.stop)
		<-e.done
	}
}

func (e *extender) run() {
	defer close(e.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		e.mu.Lock()
		wait := time.Hour
		if len(e.due) > 0 {
			wait = e.due[0].due.Sub(e.m.now())
		}
		e.mu.Unlock()
		t.Reset(max(wait, 0))
		select {
		case <-e.stop:
			return
		case <-e.kick:
			continue
		case <-t.C:
		}
		e.mu.Lock()
		var batch []*Lock
		limit := e.m.now().Add(batchWindow)
		for len(e.due) > 0 && !e.due[0].due.After(limit) {
			batch = append(batch, heap.Pop(&e.due).(*Lock))
		}
		e.mu.Unlock()
		// Locks the batch script cannot extend (several keys, metadata)
		// are extended one by one, each by a call of its own.
		batched := batch[:0]
		for _, l := range batch {
			if l.ks.batched() {
				batched = append(batched, l)
			} else if e.m.enter() {
				go l.autoExtend()
			}
		}
		if len(batched) > 0 {
			e.extend(batched)
		}
	}
}

// batchCalls is one batch's calls as the predecessor of the next call
// about each of its locks: done[i] is closed once the batch's calls to
// instance i have returned (and the calls they followed).
type batchCalls struct{ done []chan struct{} }

func (b *batchCalls) pendingCh(i int) <-chan struct{} {
	select {
	case <-b.done[i]:
		return nil
	default:
		return b.done[i]
	}
}

// extend extends batch: one call per instance (per slot group on a Redis
// Cluster instance, in chunks of batchMax), all in parallel. It keeps a
// fan-out of its own rather than quorum.go's round: a round sends one
// script with the same keys to every instance, while a batch sends each
// instance its own keys and arguments (the locks whose previous call there
// has returned, grouped by cluster slot), and decides per lock, not per
// call (one call per instance per tick for all locks: 64 callers' locks
// extend in one script call per instance instead of 64). Like every
// extension, a lock's part of the batch reaches an instance only after the
// lock's previous call there returned; a lock whose previous call has not
// returned by the batch's deadline is left out of that instance's call.
func (e *extender) extend(batch []*Lock) {
	m := e.m
	if !m.enter() {
		return // closing: Close releases the locks
	}
	defer m.leave()
	bc := &batchCalls{done: make([]chan struct{}, len(m.inst))}
	for i := range bc.done {
		bc.done[i] = make(chan struct{})
	}
	// Drop locks that were released or lost meanwhile, and order the
	// rest: each lock's TTL and previous call are read under its mu
	// (Extend may run meanwhile), and the batch becomes the call that the
	// lock's next one follows.
	start := m.now()
	live := batch[:0]
	var ttls []time.Duration
	var after []predecessor
	for _, l := range batch {
		l.mu.Lock()
		if !l.released && !l.gone {
			after = append(after, l.tail)
			l.tail = bc
			live = append(live, l)
			ttls = append(ttls, l.ttl)
		}
		l.mu.Unlock()
	}
	batch = live
	if len(batch) == 0 {
		for _, ch := range bc.done {
			close(ch)
		}
		return
	}
	minTTL := ttls[0]
	for _, t := range ttls {
		minTTL = min(minTTL, t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(m.cfg.NodeTimeout, minTTL))
	defer cancel()
	codes := make([][]int8, len(m.inst))     // codes[i][j]: instance i, lock j; 2 = no answer
	doneAt := make([]time.Time, len(m.inst)) // when instance i's calls returned
	var wg sync.WaitGroup
	for i, in := range m.inst {
		codes[i] = make([]int8, len(batch))
		for j := range codes[i] {
			codes[i][j] = 2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A lock whose previous call to this instance has not returned
			// is left out of this instance's call (it counts as no answer):
			// waiting for it would hold back every other lock of the batch
			// there. The batch counts as returned on the instance only once
			// those calls have, which a goroutine of its own waits for (in
			// m.ops; each returns by its own deadline), so that the batch's
			// outcome does not wait for them either.
			var late []<-chan struct{}
			ready := make([]bool, len(batch))
			for j, a := range after {
				if a != nil {
					if ch := a.pendingCh(i); ch != nil {
						late = append(late, ch)
						continue
					}
				}
				ready[j] = true
			}
			defer func() {
				doneAt[i] = m.now()
				if len(late) == 0 {
					close(bc.done[i])
					return
				}
				m.ops.Add(1)
				go func() {
					defer m.ops.Done()
					for _, ch := range late {
						<-ch
					}
					close(bc.done[i])
				}()
			}()
			for _, group := range groups(in, batch) {
				keys := make([]string, 0, len(group))
				args := make([]string, 0, 2*len(group))
				var idx []int
				for _, j := range group {
					if ready[j] {
						keys = append(keys, batch[j].ks.keys[0])
						args = append(args, batch[j].token, fmtMillis(ttls[j]))
						idx = append(idx, j)
					}
				}
				if len(idx) == 0 {
					continue
				}
				v, err := call(ctx, in, scriptExtendBatch, keys, args)
				a, _ := v.([]any)
				if err != nil || len(a) != len(idx) {
					continue
				}
				for k, j := range idx {
					if n, ok := toInt(a[k]); ok {
						codes[i][j] = int8(n)
					}
				}
			}
		}()
	}
	wg.Wait()
	var yesAt []time.Time
	for j, l := range batch {
		yes, refused := 0, 0
		var missing []bool
		yesAt = yesAt[:0]
		for i := range m.inst {
			switch codes[i][j] {
			case 1:
				yes++
				yesAt = append(yesAt, doneAt[i])
			case 0:
				refused++
				if missing == nil {
					missing = make([]bool, len(m.inst))
				}
				missing[i] = true
			case -1:
				refused++
			}
		}
		// The lock's extension was decided when its quorum-th yes came:
		// its validity counts from then, not from the slowest instance.
		now := start
		if yes >= m.quorum {
			slices.SortFunc(yesAt, func(a, b time.Time) int { return a.Compare(b) })
			now = yesAt[m.quorum-1]
		}
		l.afterAutoExtend(start, now, ttls[j], yes, refused, missing)
		if m.obs != nil {
			var err error
			switch {
			case len(m.inst)-refused < m.quorum:
				err = &QuorumError{Op: "extend", Resource: l.resource, Votes: yes, Quorum: m.quorum, N: len(m.inst), Err: ErrNotHeld}
			case yes < m.quorum || m.cfg.validity(ttls[j], now.Sub(start)) <= 0:
				err = &QuorumError{Op: "extend", Resource: l.resource, Votes: yes, Quorum: m.quorum, N: len(m.inst), Err: ErrUnavailable}
			}
			l.observeExtend(context.Background(), start, ttls[j], true, yes, err)
		}
	}
}

// groups splits the batch into the calls one instance gets: chunks of
// batchMax keys, and on a Redis Cluster one group per slot.
func groups(in *instance, batch []*Lock) [][]int {
	idx := make([]int, len(batch))
	for j := range idx {
		idx[j] = j
	}
	var out [][]int
	if c, ok := in.client.(clustered); ok && c.IsCluster() {
		slot := func(j int) int { return keySlot(batch[j].ks.keys[0]) }
		sort.SliceStable(idx, func(a, b int) bool { return slot(idx[a]) < slot(idx[b]) })
		for len(idx) > 0 {
			n := 1
			for n < len(idx) && n < batchMax && slot(idx[n]) == slot(idx[0]) {
				n++
			}
			out = append(out, idx[:n])
			idx = idx[n:]
		}
		return out
	}
	for len(idx) > 0 {
		n := min(len(idx), batchMax)
		out = append(out, idx[:n])
		idx = idx[n:]
	}
	return out
}

// afterAutoExtend applies the outcome of a batched extension to l and
// schedules the next one.
func (l *Lock) afterAutoExtend(start, now time.Time, ttl time.Duration, yes, refused int, missing []bool) {
	m := l.m
	l.mu.Lock()
	if l.released || l.gone {
		l.mu.Unlock()
		return
	}
	// ttl is the lease the instances were sent (l.ttl may have changed
	// since, by Extend).
	if yes >= m.quorum && m.cfg.validity(ttl, now.Sub(start)) > 0 {
		if !m.now().Before(l.until) {
			// The deadline passed while the batch was on its way (a later,
			// shorter extension may have moved it): no revival.
			l.mu.Unlock()
			l.lose(reasonExpired)
			return
		}
		l.applyExtendLocked(start, ttl, true)
		if refused > 0 {
			l.topUpLocked(missing, start, ttl)
		}
		next := start.Add(l.refreshDelay())
		l.mu.Unlock()
		m.ext.schedule(l, next)
		return
	}
	if len(m.inst)-refused < m.quorum {
		l.mu.Unlock()
		l.lose("extension refused by a quorum")
		return
	}
	left := l.until.Sub(m.now())
	l.mu.Unlock()
	m.log.Warn("redlock: auto-extension failed, retrying", "resource", quoteResource(l.resource), "left", left, "votes", yes)
	m.ext.schedule(l, m.now().Add(m.retryAfter(left)))
}

// refreshDelay is how long after an extension's start the watchdog
// extends again: 0.6×TTL.
func (l *Lock) refreshDelay() time.Duration { return l.ttl * 6 / 10 }

// retryAfter is the watchdog's retry rule after an extension that too few
// instances answered, left before the validity deadline: again soon, at
// most RetryDelayMin later and within the first quarter of what is left.
func (m *Manager) retryAfter(left time.Duration) time.Duration {
	return min(m.cfg.RetryDelayMin, max(left/4, time.Millisecond))
}

// nextExtension is when the watchdog extends next: 0.6×TTL after the start
// of the acquisition or extension that set the current deadline (validity
// counts from that start, not from when the call returned: a slow call
// must not push the next extension past the deadline). Callers hold l.mu.
func (l *Lock) nextExtension() time.Time {
	return l.until.Add(-(l.ttl - l.m.cfg.drift(l.ttl))).Add(l.refreshDelay())
}

// autoExtend is the watchdog's extension of a lock that the batch script
// cannot extend (several keys, metadata): it extends the lock by its TTL
// and schedules the next extension 0.6×TTL after this one's start. When an
// extension fails because too few instances answered, it tries again
// (retryAfter) until the deadline passes; when the lock is held by another
// token or gone on too many instances, the lock is lost. The extender
// entered an operation (m.enter) for it.
func (l *Lock) autoExtend() {
	defer l.m.leave() // the extender entered for it
	l.mu.Lock()
	if l.released || l.gone {
		l.mu.Unlock()
		return
	}
	ttl := l.ttl
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.m.cfg.NodeTimeout)
	err := l.extend(ctx, ttl, true)
	cancel()
	l.mu.Lock()
	if l.released || l.gone {
		l.mu.Unlock()
		return
	}
	if err == nil {
		next := l.nextExtension()
		l.mu.Unlock()
		l.m.ext.schedule(l, next)
		return
	}
	// Unavailable: try again soon, while the lock is still valid.
	left := l.until.Sub(l.m.now())
	l.mu.Unlock()
	l.m.log.Warn("redlock: auto-extension failed, retrying", "resource", quoteResource(l.resource), "left", left, "err", err)
	l.m.ext.schedule(l, l.m.now().Add(l.m.retryAfter(left)))
}
