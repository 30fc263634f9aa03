package redistest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
)

// Standalone runs this package's starters outside a test, for a command
// such as the benchmark harness (bench/cmd/redlock-bench): Run hands them a
// testing.TB whose Fatal ends the call with an error instead of failing a
// test, and Close stops every process they started, as t.Cleanup would.
//
//	sa := redistest.NewStandalone()
//	defer sa.Close()
//	var servers []*redistest.Server
//	if err := sa.Run(func(t testing.TB) { servers = redistest.Start(t, 3) }); err != nil {
//		return err
//	}
//
// A Standalone is safe for concurrent use.
type Standalone struct {
	mu       sync.Mutex
	cleanups []func()
	errs     []error // reported by clean-ups during Close
	closing  bool
}

// NewStandalone returns a Standalone with nothing started.
func NewStandalone() *Standalone { return &Standalone{} }

// Run calls f with a testing.TB that supports what the starters of this
// package use (Helper, Fatal, Fatalf, Error, Errorf, Log, Logf, Cleanup,
// TempDir, Name, Failed), on a goroutine of its own, and waits for it. A
// Fatal or Fatalf in f ends f there (as in a test) and Run returns its
// message as an error. f must not call other testing.TB methods.
func (s *Standalone) Run(f func(t testing.TB)) error {
	tb := &standaloneTB{s: s}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(tb)
	}()
	<-done
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return errors.Join(tb.errs...)
}

// Close runs the clean-ups registered so far, last first (stopping the
// processes and removing their directories), and returns the errors they
// reported. Close is idempotent; Run after Close registers new clean-ups
// that a further Close runs.
func (s *Standalone) Close() error {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.closing = true
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := errors.Join(s.errs...)
	s.errs, s.closing = nil, false
	return err
}

func (s *Standalone) cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// closeErr records err if Close is running (a clean-up reported it) and
// reports whether it did.
func (s *Standalone) closeErr(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		s.errs = append(s.errs, err)
	}
	return s.closing
}

// standaloneTB is the testing.TB of one Standalone.Run. The embedded
// interface is nil: a method not defined below panics, which is why Run
// documents the methods its f may use.
type standaloneTB struct {
	testing.TB
	s    *Standalone
	mu   sync.Mutex
	errs []error // this Run's failures
}

func (t *standaloneTB) fail(msg string) {
	err := errors.New(msg)
	if t.s.closeErr(err) { // a clean-up's failure: Close reports it
		return
	}
	t.mu.Lock()
	t.errs = append(t.errs, err)
	t.mu.Unlock()
}

func (t *standaloneTB) Helper()                         {}
func (t *standaloneTB) Name() string                    { return "redistest.Standalone" }
func (t *standaloneTB) Log(args ...any)                 {}
func (t *standaloneTB) Logf(format string, args ...any) {}

func (t *standaloneTB) Error(args ...any) { t.fail(fmt.Sprint(args...)) }
func (t *standaloneTB) Errorf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
}

func (t *standaloneTB) Fatal(args ...any) {
	t.fail(fmt.Sprint(args...))
	runtime.Goexit()
}

func (t *standaloneTB) Fatalf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (t *standaloneTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.errs) > 0
}

func (t *standaloneTB) Cleanup(f func()) { t.s.cleanup(f) }

// TempDir returns a new directory removed by Close (after the processes
// registered later have been stopped, as clean-ups run last first).
func (t *standaloneTB) TempDir() string {
	d, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		t.Fatalf("redistest: temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("redistest: remove %s: %v", d, err)
		}
	})
	return d
}
