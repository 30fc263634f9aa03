package redlock_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestSemaphoreInvalid: a bad name, bad permits or a refused option give
// ErrInvalid from every method, and the constructor does not panic.
func TestSemaphoreInvalid(t *testing.T) {
	servers := redistest.Start(t, 1)
	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	bad := map[string]*redlock.Semaphore{
		"empty name":       m.Semaphore("", 2),
		"zero permits":     m.Semaphore("s", 0),
		"negative permits": m.Semaphore("s", -1),
		"too many permits": m.Semaphore("s", redlock.MaxPermits+1),
		"reserved name":    m.Semaphore("x:redlock-fence", 1),
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			for method, call := range map[string]func() error{
				"Acquire":     func() error { _, err := s.Acquire(ctx); return err },
				"TryAcquire":  func() error { _, err := s.TryAcquire(ctx); return err },
				"AcquireWait": func() error { _, err := s.AcquireWait(ctx); return err },
				"Do":          func() error { return s.Do(ctx, func(context.Context) error { return nil }) },
				"Held":        func() error { _, err := s.Held(ctx); return err },
			} {
				if err := call(); !errors.Is(err, redlock.ErrInvalid) {
					t.Errorf("%s: err = %v, want ErrInvalid", method, err)
				}
			}
		})
	}
	s := m.Semaphore("s", 2)
	for name, opts := range map[string][]redlock.LockOption{
		"token":  {redlock.Token("t")},
		"nil":    {nil},
		"ttl":    {redlock.TTL(0)},
		"nil fn": nil,
	} {
		var err error
		if name == "nil fn" {
			err = s.Do(ctx, nil)
		} else {
			_, err = s.TryAcquire(ctx, opts...)
		}
		if !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	wantNoKeysNow(t, servers)
}

// TestSemaphoreFull: permits TryAcquires succeed, each on its own slot
// (the documented key shape), the next one fails with ErrNotAcquired, and
// a released permit can be taken again.
func TestSemaphoreFull(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{KeyPrefix: "p:"})
		ctx := testCtx(t)
		const permits = 3
		s := m.Semaphore("jobs", permits)
		held := make([]*redlock.Lock, permits)
		slots := map[string]bool{}
		for i := range held {
			l, err := s.TryAcquire(ctx, redlock.Metadata("worker"))
			if err != nil {
				t.Fatalf("TryAcquire %d: %v", i, err)
			}
			held[i] = l
			slots[l.Resource()] = true
			if !strings.HasPrefix(l.Resource(), "{jobs}:redlock-slot:") || l.Metadata() != "worker" {
				t.Errorf("permit %d: resource %q, metadata %q", i, l.Resource(), l.Metadata())
			}
			wantKeyOnQuorum(t, servers, "p:"+l.Resource(), l.Token())
		}
		if len(slots) != permits {
			t.Fatalf("permits on %d distinct slots, want %d: %v", len(slots), permits, slots)
		}
		if got, err := s.Held(ctx); err != nil || got != permits {
			t.Errorf("Held = %d, %v; want %d", got, err, permits)
		}
		if _, err := s.TryAcquire(ctx); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Fatalf("TryAcquire on a full semaphore: %v, want ErrNotAcquired", err)
		}
		if err := held[1].Unlock(ctx); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		l, err := s.TryAcquire(ctx)
		if err != nil {
			t.Fatalf("TryAcquire after a release: %v", err)
		}
		if l.Resource() != held[1].Resource() {
			t.Errorf("took slot %q, want the released %q", l.Resource(), held[1].Resource())
		}
		// Another semaphore of the same name with its own Manager agrees.
		m2 := newManager(t, servers, redlock.Config{KeyPrefix: "p:"})
		if _, err := m2.Semaphore("jobs", permits).TryAcquire(ctx); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Errorf("other Manager: %v, want ErrNotAcquired", err)
		}
		// A plain lock of the name is another lock.
		pl, err := m2.TryLock(ctx, "jobs")
		if err != nil {
			t.Fatalf("TryLock of the semaphore's name: %v", err)
		}
		_ = pl.Unlock(ctx)
	})
}

// TestSemaphoreConcurrent: many callers of two Managers, each cycling
// AcquireWait and Unlock, never hold more than permits permits at once
// (they are in one process, so a counter tells).
func TestSemaphoreConcurrent(t *testing.T) {
	servers := redistest.Start(t, 3)
	cfg := redlock.Config{RetryDelayMin: time.Millisecond, RetryDelayMax: 5 * time.Millisecond}
	ms := []*redlock.Manager{newManager(t, servers, cfg), newManager(t, servers, cfg)}
	ctx := testCtx(t)
	const permits, callers, rounds = 3, 10, 8
	var inUse, maxInUse, total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		s := ms[c%2].Semaphore("pool", permits)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				l, err := s.AcquireWait(ctx)
				if err != nil {
					errs <- err
					return
				}
				n := inUse.Add(1)
				for {
					mx := maxInUse.Load()
					if n <= mx || maxInUse.CompareAndSwap(mx, n) {
						break
					}
				}
				total.Add(1)
				// Hold it for one round trip to the instances.
				if _, err := l.IsLocked(ctx); err != nil {
					errs <- err
				}
				if !l.Valid() {
					errs <- errors.New("permit not valid while held")
				}
				inUse.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if mx := maxInUse.Load(); mx > permits {
		t.Fatalf("%d permits held at once, want at most %d", mx, permits)
	}
	if got := total.Load(); got != callers*rounds {
		t.Errorf("%d acquisitions, want %d", got, callers*rounds)
	}
	t.Logf("at most %d of %d permits held at once", maxInUse.Load(), permits)
}

// TestSemaphoreCrashedHolder: a holder that stops extending (a permit
// with a fixed TTL, never released) frees its slot by expiry: a waiter
// gets the slot once the holder's permit is lost. The permit's TTL is 2s:
// the check that the slot is taken (a TryAcquire on a second Manager,
// which dials the instances first) must run before it ends (800ms could
// be too little on a loaded machine: then the TryAcquire got the slot).
func TestSemaphoreCrashedHolder(t *testing.T) {
	servers := redistest.Start(t, 3)
	crashed := newManager(t, servers, redlock.Config{})
	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	s1 := crashed.Semaphore("crash", 1)
	l1, err := s1.TryAcquire(ctx, redlock.TTL(2*time.Second))
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	s2 := m.Semaphore("crash", 1)
	if _, err := s2.TryAcquire(ctx); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryAcquire while held: %v, want ErrNotAcquired", err)
	}
	l2, err := s2.AcquireWait(ctx)
	if err != nil {
		t.Fatalf("AcquireWait: %v", err)
	}
	defer l2.Unlock(ctx)
	if l2.Resource() != l1.Resource() {
		t.Errorf("slot %q, want %q", l2.Resource(), l1.Resource())
	}
	// The first permit's validity ended before the second was granted.
	if l1.Valid() {
		t.Errorf("the crashed holder's permit is still valid while another holds its slot")
	}
	waitClosed(t, l1.Lost(), 5*time.Second, "crashed holder's Lost")
}

// TestSemaphorePermitsMismatch: a client with fewer permits that finds its
// slots held and a slot beyond them held too reports ErrInvalid, at once
// (AcquireWait does not wait).
func TestSemaphorePermitsMismatch(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	big := m.Semaphore("mm", 3)
	for i := range 3 {
		if _, err := big.TryAcquire(ctx); err != nil {
			t.Fatalf("TryAcquire %d: %v", i, err)
		}
	}
	small := m.Semaphore("mm", 2)
	if _, err := small.AcquireWait(ctx); !errors.Is(err, redlock.ErrInvalid) {
		t.Fatalf("AcquireWait with fewer permits: %v, want ErrInvalid", err)
	}
	if _, err := small.TryAcquire(ctx); !errors.Is(err, redlock.ErrInvalid) || !strings.Contains(err.Error(), "permits mismatch") {
		t.Fatalf("TryAcquire with fewer permits: %v, want the mismatch", err)
	}
}

// TestSemaphoreDo: Do holds a permit while fn runs and releases it after.
func TestSemaphoreDo(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	s := m.Semaphore("do", 1)
	ran := false
	err := s.Do(ctx, func(ctx context.Context) error {
		ran = true
		if n, err := s.Held(ctx); err != nil || n != 1 {
			t.Errorf("Held inside Do = %d, %v; want 1", n, err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("Do: %v (ran %v)", err, ran)
	}
	if n, err := s.Held(ctx); err != nil || n != 0 {
		t.Errorf("Held after Do = %d, %v; want 0", n, err)
	}
	boom := errors.New("boom")
	if err := s.Do(ctx, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Do: %v, want fn's error", err)
	}
}

// Slot names the slots as the semaphore takes them, and the one beyond
// them that only a client with more permits takes.
func TestSemaphoreSlotNames(t *testing.T) {
	m, err := redlock.NewFromClients([]redlock.Client{nopClient{}}, redlock.Config{KeyPrefix: "p:"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, m)
	for _, tc := range []struct {
		name    string
		permits int
		i       int
		want    string
	}{
		{"jobs", 2, 0, "{jobs}:redlock-slot:0"},
		{"jobs", 2, 1, "{jobs}:redlock-slot:1"},
		{"jobs", 2, 2, "{jobs}:redlock-slot:2"},
		{"jobs", 2, 3, ""},
		{"jobs", 2, -1, ""},
		{"{t}jobs", 1, 0, "{t}jobs:redlock-slot:0"},
		{"", 1, 0, ""},
		{"jobs", 0, 0, ""},
	} {
		if got := m.Semaphore(tc.name, tc.permits).Slot(tc.i); got != tc.want {
			t.Errorf("Semaphore(%q, %d).Slot(%d) = %q, want %q", tc.name, tc.permits, tc.i, got, tc.want)
		}
	}
}

// nopClient is a Client that is never called (TestSemaphoreSlotNames
// contacts no instance).
type nopClient struct{}

func (nopClient) EvalSha(context.Context, string, []string, []string) (any, error) {
	return nil, errors.New("nopClient: not called")
}

func (nopClient) Eval(context.Context, string, []string, []string) (any, error) {
	return nil, errors.New("nopClient: not called")
}
