// Package fencing is an example of a resource protected by fencing tokens
// (redlock.Lock.Fence): a small in-memory store that accepts a write only
// when its token is at least the largest token it has seen. A lock holder
// that paused past its lease and writes late carries an older token, so its
// write is rejected instead of overwriting the next holder's work.
//
// Real resources (a database row with a version column, an object store
// with conditional writes) implement the same check; this package serves
// the examples and the fault-injection suite.
package fencing

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStale is returned for a write whose token is lower than the largest
// token the store has accepted.
var ErrStale = errors.New("fencing: stale token")

// Store is a key-value store that rejects stale writes. The zero value is
// an empty store ready to use. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	largest  uint64
	data     map[string]string
	accepted int
	rejected int
}

// Write sets key to value if token is at least the largest token seen
// (equal tokens are the same holder writing again), and remembers token.
// A zero token (a lock taken without fencing) is always rejected.
func (s *Store) Write(token uint64, key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token == 0 || token < s.largest {
		s.rejected++
		return fmt.Errorf("%w: token %d, largest seen %d", ErrStale, token, s.largest)
	}
	s.largest = token
	if s.data == nil {
		s.data = make(map[string]string)
	}
	s.data[key] = value
	s.accepted++
	return nil
}

// Read returns the value of key and whether it is set.
func (s *Store) Read(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

// Largest returns the largest token accepted so far.
func (s *Store) Largest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.largest
}

// Counts returns how many writes were accepted and rejected.
func (s *Store) Counts() (accepted, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.rejected
}
