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
	watched     map[string]struct{}
	opening     sync.Mutex // one start at a time
}

// watchRetry holds back a new session after one failed to start.
const watchRetry = time.Second

// watchRefused asks every instance that refused attempt o to report when
// the key held by someone else there (one of keys: the refusal names it)
// changes. It returns at once: the watches are set up in the background,
// one goroutine per instance that has a key to watch, counted in m.ops. A
// key that is already gone when its watch starts wakes the waiters at
// once, unless goneWakes is false: a read-write lock's refusal may come
// from its readers or the writer-waiting mark, while the key watched is the
// writer's, which is then absent (waking would retry at round-trip speed).
func (m *Manager) watchRefused(keys []string, o *outcome, goneWakes bool) {
	for i, in := range m.inst {
		if o.votes[i] != voteRefused {
			continue
		}
		kw, ok := in.client.(KeyWatcher)
		if !ok {
			continue
		}
		key, ok := refusedKey(o.vals[i], keys)
		if !ok {
			continue
		}
		w := &in.watch
		w.mu.Lock()
		if w.unsupported || m.now().Before(w.retryAt) {
			w.mu.Unlock()
			continue
		}
		var todo []string
		if _, ok := w.watched[key]; !ok {
			if w.watched == nil {
				w.watched = make(map[string]struct{})
			}
			w.watched[key] = struct{}{}
			todo = []string{key}
		}
		w.mu.Unlock()
		if len(todo) == 0 || !m.enter() {
			m.unwatch(in, todo)
			continue
		}
		go func() {
			defer m.leave()
			m.watchKeys(in, kw, todo, goneWakes)
		}()
	}
}

// watchKeys sets up the watches of keys on in, opening its session first
// if needed; a key found absent wakes its waiters if goneWakes.
func (m *Manager) watchKeys(in *instance, kw KeyWatcher, keys []string, goneWakes bool) {
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
	for i, k := range keys {
		exists, err := s.Watch(ctx, k)
		if err != nil {
			m.unwatch(in, keys[i:])
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				m.dropSession(in, s)
			}
			return
		}
		if !exists && goneWakes {
			m.keyChanged(in, k)
		}
	}
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
	m.mu.Lock()
	for i, c := range m.subs {
		if c == s {
			m.subs = append(m.subs[:i], m.subs[i+1:]...)
			break
		}
	}
	m.mu.Unlock()
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
			m.mu.Lock()
			for i, c := range m.subs {
				if c == s {
					m.subs = append(m.subs[:i], m.subs[i+1:]...)
					break
				}
			}
			m.mu.Unlock()
			go func() {
				defer m.leave()
				_ = s.Close()
			}()
		}
		for k := range keys {
			m.waits.changed(k)
		}
		return
	}
	delete(w.watched, key)
	w.mu.Unlock()
	m.waits.changed(key)
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
