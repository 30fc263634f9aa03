package redlock

import (
	"context"
	"errors"
	"sync"
	"time"
)

// keyWatch is the Manager's watch on the lock keys of one instance whose
// client is a KeyWatcher: one session (a dedicated connection), opened on
// first need, and the keys it watches, each once however many callers wait
// for it.
type keyWatch struct {
	mu          sync.Mutex
	session     KeyWatch
	unsupported bool      // the client said errors.ErrUnsupported: never again
	retryAt     time.Time // after a failed start: not before
	watched     map[string]*watchState
	opening     sync.Mutex // one start at a time
}

// watchState is one watched key of an instance.
type watchState struct {
	wake   string // the lock key whose waiters a change wakes
	known  bool   // the watch is set up: exists says what it found
	exists bool
}

// watchRetry holds back a new session after one failed to start.
const watchRetry = time.Second

// watchRefused asks every instance that refused attempt o to report when
// what refused it changes. For a mutex that is the key held by someone else
// there (one of keys: the refusal names it). For a read-write lock (rw not
// nil) it is a group of keys, any of which may refuse: the writer key and
// the readers for a writer, the writer key and the writer-waiting mark for
// a reader. It returns at once: the watches are set up in the background,
// one goroutine per instance that has keys to watch, counted in m.ops. A
// change of a watched key wakes the lock key's waiters, and so does a group
// found all absent when its watches start (released between the refusal
// and the watch): waking while one of them is present would retry at
// round-trip speed (a writer behind readers watches an absent writer key).
func (m *Manager) watchRefused(keys []string, o *outcome, rw *rwKeys) {
	var group [2]string
	for i, in := range m.inst {
		if o.votes[i] != voteRefused {
			continue
		}
		kw, ok := in.client.(KeyWatcher)
		if !ok {
			continue
		}
		var g []string
		switch {
		case rw == nil:
			key, ok := refusedKey(o.vals[i], keys)
			if !ok {
				continue
			}
			group[0] = key
			g = group[:1]
		case rw.read:
			group[0], group[1] = rw.keys[0], rw.keys[2]
			g = group[:2]
		default:
			group[0], group[1] = rw.keys[0], rw.keys[1]
			g = group[:2]
		}
		w := &in.watch
		w.mu.Lock()
		if w.unsupported || m.now().Before(w.retryAt) {
			w.mu.Unlock()
			continue
		}
		var todo []string
		for _, k := range g {
			if _, ok := w.watched[k]; !ok {
				if w.watched == nil {
					w.watched = make(map[string]*watchState)
				}
				w.watched[k] = &watchState{wake: g[0]}
				todo = append(todo, k)
			}
		}
		w.mu.Unlock()
		if len(todo) == 0 || !m.enter() {
			m.unwatch(in, todo)
			continue
		}
		g = append([]string(nil), g...)
		go func() {
			defer m.leave()
			m.watchKeys(in, kw, todo, g)
		}()
	}
}

// watchKeys sets up the watches of keys (those of group not watched yet) on
// in, opening its session first if needed; when every key of group is
// found absent, the lock key's waiters are woken.
func (m *Manager) watchKeys(in *instance, kw KeyWatcher, keys, group []string) {
	ctx, cancel := context.WithTimeout(context.Background(), max(m.cfg.NodeTimeout, time.Second))
	defer cancel()
	go func() {
		// Close ends the setup early.
		select {
		case <-m.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := m.watchSession(ctx, in, kw)
	if err != nil {
		m.unwatch(in, keys)
		return
	}
	w := &in.watch
	for i, k := range keys {
		exists, err := s.Watch(ctx, k)
		if err != nil {
			m.unwatch(in, keys[i:])
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				m.dropSession(in, s)
			}
			return
		}
		w.mu.Lock()
		if st := w.watched[k]; st != nil {
			st.known, st.exists = true, exists
		}
		w.mu.Unlock()
	}
	w.mu.Lock()
	for _, k := range group {
		if st := w.watched[k]; st == nil || !st.known || st.exists {
			w.mu.Unlock()
			return
		}
	}
	for _, k := range group {
		delete(w.watched, k)
	}
	w.mu.Unlock()
	m.waits.changed(group[0])
}

// watchSession returns in's watch session, opening it if there is none.
func (m *Manager) watchSession(ctx context.Context, in *instance, kw KeyWatcher) (KeyWatch, error) {
	w := &in.watch
	w.opening.Lock()
	defer w.opening.Unlock()
	w.mu.Lock()
	s := w.session
	w.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := kw.WatchKeys(ctx, func(key string) { m.keyChanged(in, key) })
	if err != nil {
		w.mu.Lock()
		if errors.Is(err, errors.ErrUnsupported) {
			w.unsupported = true
		} else {
			w.retryAt = m.now().Add(watchRetry)
		}
		w.mu.Unlock()
		m.log.Debug("redlock: key watch unavailable; waiters rely on release messages and retries", "instance", in.name, "err", err)
		return nil, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = s.Close()
		return nil, ErrClosed
	}
	m.subs = append(m.subs, s)
	m.mu.Unlock()
	w.mu.Lock()
	w.session = s
	w.mu.Unlock()
	return s, nil
}

// dropSession forgets in's session s after it failed: the next watch opens
// a new one. Its keys are no longer watched.
func (m *Manager) dropSession(in *instance, s KeyWatch) {
	w := &in.watch
	w.mu.Lock()
	if w.session != s {
		w.mu.Unlock()
		return
	}
	w.session = nil
	w.watched = nil
	w.mu.Unlock()
	m.forgetSub(s)
	_ = s.Close()
}

// unwatch forgets keys on in without a change: their watches did not start.
func (m *Manager) unwatch(in *instance, keys []string) {
	w := &in.watch
	w.mu.Lock()
	for _, k := range keys {
		delete(w.watched, k)
	}
	w.mu.Unlock()
}

// keyChanged handles a change of key on in ("" for every key: the session
// lost track): the key is no longer watched there, and the waiters for it
// try again.
func (m *Manager) keyChanged(in *instance, key string) {
	w := &in.watch
	w.mu.Lock()
	if key == "" {
		keys := w.watched
		w.watched = nil
		s := w.session
		w.session = nil
		w.mu.Unlock()
		if s != nil && m.enter() {
			// The session is over: close it in the background (Close
			// waits for this call to return); if Close already started,
			// it closes it.
			m.forgetSub(s)
			go func() {
				defer m.leave()
				_ = s.Close()
			}()
		}
		woken := make(map[string]bool)
		for _, st := range keys {
			if !woken[st.wake] {
				woken[st.wake] = true
				m.waits.changed(st.wake)
			}
		}
		return
	}
	wake := key
	if st := w.watched[key]; st != nil {
		wake = st.wake
	}
	delete(w.watched, key)
	w.mu.Unlock()
	m.waits.changed(wake)
}

// refusedKey returns the key that a refusal of the acquire scripts names:
// the only key (acquire: -2 - PTTL), or key i of {0, i, PTTL}
// (acquire_many).
func refusedKey(v any, keys []string) (string, bool) {
	switch x := v.(type) {
	case int64:
		if len(keys) == 1 {
			return keys[0], true
		}
	case []any:
		if len(x) == 3 {
			if i, ok := toInt(x[1]); ok && i >= 1 && int(i) <= len(keys) {
				return keys[i-1], true
			}
		}
	}
	return "", false
}

// forgetSub takes s off the list of subscriptions and sessions that Close
// closes: its owner closes it.
func (m *Manager) forgetSub(s KeyWatch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.subs {
		if c == s {
			m.subs = append(m.subs[:i], m.subs[i+1:]...)
			return
		}
	}
}
