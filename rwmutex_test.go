package redlock_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// loadedNodeTimeout is the NodeTimeout of these tests: CI runs them on 2
// shared cores beside other packages (load averages above 10 seen), where
// the default 500ms made a first call (dial, script load) time out.
const loadedNodeTimeout = 2 * time.Second

// wantNotAcquired fails the test unless err says the lock was held.
func wantNotAcquired(t *testing.T, what string, l *redlock.Lock, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: acquired %v, want ErrNotAcquired", what, l)
	}
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("%s: %v, want ErrNotAcquired", what, err)
	}
}

func mustLock(t *testing.T, what string, f func() (*redlock.Lock, error)) *redlock.Lock {
	t.Helper()
	l, err := f()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return l
}

func mustUnlock(t *testing.T, ctx context.Context, l *redlock.Lock) {
	t.Helper()
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock %v: %v", l, err)
	}
}

// Readers share; a writer excludes readers and writers; a mutex of the
// same name excludes both sides.
func TestRWMutexExclusion(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		m := newManager(t, redistest.Start(t, n), redlock.Config{NodeTimeout: loadedNodeTimeout})
		rw := m.RWMutex("doc")

		r1 := mustLock(t, "RLock 1", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
		r2 := mustLock(t, "RLock 2", func() (*redlock.Lock, error) { return rw.RLock(ctx) })
		l, err := rw.TryLock(ctx)
		wantNotAcquired(t, "writer while readers hold", l, err)
		mustUnlock(t, ctx, r1)
		l, err = rw.TryLock(ctx)
		wantNotAcquired(t, "writer while one reader holds", l, err)
		mustUnlock(t, ctx, r2)

		// The writer's mark from the refused attempts keeps new readers out
		// for a moment; the writer comes first anyway.
		w := mustLock(t, "writer once readers left", func() (*redlock.Lock, error) { return rw.TryLock(ctx) })
		l, err = rw.TryRLock(ctx)
		wantNotAcquired(t, "reader while the writer holds", l, err)
		l, err = rw.TryLock(ctx)
		wantNotAcquired(t, "second writer", l, err)
		l, err = m.TryLock(ctx, "doc")
		wantNotAcquired(t, "mutex of the same name while the writer holds", l, err)
		if ok, err := m.IsLocked(ctx, "doc"); err != nil || !ok {
			t.Fatalf("IsLocked(doc) while the writer holds = %v, %v; want true (the writer key is the mutex key)", ok, err)
		}
		mustUnlock(t, ctx, w)

		mu := mustLock(t, "mutex", func() (*redlock.Lock, error) { return m.TryLock(ctx, "doc") })
		l, err = rw.TryRLock(ctx)
		wantNotAcquired(t, "reader while a mutex of the same name holds", l, err)
		l, err = rw.TryLock(ctx)
		wantNotAcquired(t, "writer while a mutex of the same name holds", l, err)
		mustUnlock(t, ctx, mu)

		r := mustLock(t, "reader after all", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
		if !r.Valid() || r.Fence() != 0 || r.Resource() != "doc" {
			t.Fatalf("reader: Valid %v Fence %d Resource %q", r.Valid(), r.Fence(), r.Resource())
		}
		if ok, err := r.IsLocked(ctx); err != nil || !ok {
			t.Fatalf("reader IsLocked = %v, %v; want true", ok, err)
		}
		if d, err := r.TTL(ctx); err != nil || d <= 0 || d > redlock.DefaultLockTTL {
			t.Fatalf("reader TTL = %v, %v; want in (0, %v]", d, err, redlock.DefaultLockTTL)
		}
		mustUnlock(t, ctx, r)
		if err := r.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
		}
		if ok, err := r.IsLocked(ctx); err != nil || ok {
			t.Fatalf("reader IsLocked after Unlock = %v, %v; want false", ok, err)
		}
	})
}

func TestRWMutexInvalid(t *testing.T) {
	ctx := testCtx(t)
	m := newManager(t, redistest.Start(t, 1), redlock.Config{NodeTimeout: loadedNodeTimeout})
	for _, name := range []string{"", strings.Repeat("x", redlock.MaxResourceLen+1), "a}b",
		"x:redlock-readers", "x:redlock-wwait", "x:redlock-rmeta", "x:redlock-fence", "x:redlock-meta"} {
		rw := m.RWMutex(name) // never panics
		for method, f := range map[string]func(context.Context, ...redlock.LockOption) (*redlock.Lock, error){
			"Lock": rw.Lock, "TryLock": rw.TryLock, "LockWait": rw.LockWait,
			"RLock": rw.RLock, "TryRLock": rw.TryRLock, "RLockWait": rw.RLockWait,
		} {
			if l, err := f(ctx); !errors.Is(err, redlock.ErrInvalid) {
				t.Errorf("RWMutex(%q).%s = %v, %v; want ErrInvalid", name, method, l, err)
			}
		}
		if _, err := rw.Inspect(ctx); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("RWMutex(%q).Inspect: %v, want ErrInvalid", name, err)
		}
	}
	var zero redlock.RWMutex
	for method, f := range map[string]func(context.Context, ...redlock.LockOption) (*redlock.Lock, error){
		"Lock": zero.Lock, "TryLock": zero.TryLock, "LockWait": zero.LockWait,
		"RLock": zero.RLock, "TryRLock": zero.TryRLock, "RLockWait": zero.RLockWait,
	} {
		if l, err := f(ctx); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("zero RWMutex %s = %v, %v; want ErrInvalid", method, l, err)
		}
	}
	if err := zero.Do(ctx, func(context.Context) error { return nil }); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("zero RWMutex Do: %v, want ErrInvalid", err)
	}
	if _, err := zero.Inspect(ctx); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("zero RWMutex Inspect: %v, want ErrInvalid", err)
	}
	// The companion keys cannot be locked as resources either.
	for _, name := range []string{"x:redlock-readers", "{x}:redlock-wwait", "x:redlock-rmeta"} {
		if l, err := m.TryLock(ctx, name); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("Manager.TryLock(%q) = %v, %v; want ErrInvalid", name, l, err)
		}
	}
	rw := m.RWMutex("ok")
	if l, err := rw.TryRLock(ctx, redlock.Fenced()); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("TryRLock(Fenced) = %v, %v; want ErrInvalid", l, err)
	}
	if l, err := rw.TryRLock(ctx, redlock.TTL(0)); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("TryRLock(TTL(0)) = %v, %v; want ErrInvalid", l, err)
	}
	if l, err := rw.TryRLock(ctx, nil); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("TryRLock(nil) = %v, %v; want ErrInvalid", l, err)
	}
}

// A writer's fencing token and metadata work as a mutex's; a reader's
// metadata is its own and shows in Inspect.
func TestRWMutexFenceMetadataInspect(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: loadedNodeTimeout})
	rw := m.RWMutex("{rep}:1")

	w1 := mustLock(t, "writer 1", func() (*redlock.Lock, error) { return rw.TryLock(ctx, redlock.Fenced(), redlock.Metadata("w1")) })
	st, err := m.Inspect(ctx, "{rep}:1")
	if err != nil || !slices.ContainsFunc(st, func(s redlock.InstanceState) bool { return s.Token == w1.Token() && s.Metadata == "w1" }) {
		t.Fatalf("Manager.Inspect of the writer: %+v, %v", st, err)
	}
	rst, err := rw.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	writers := 0
	for _, s := range rst {
		if s.Err != nil || len(s.Readers) != 0 {
			t.Fatalf("RWMutex.Inspect with a writer: %+v", s)
		}
		if s.Writer == w1.Token() && s.WriterTTL > 0 {
			writers++
		}
	}
	if writers < m.Quorum() {
		t.Fatalf("RWMutex.Inspect shows the writer on %d instances, want a quorum: %+v", writers, rst)
	}
	mustUnlock(t, ctx, w1)
	w2 := mustLock(t, "writer 2", func() (*redlock.Lock, error) { return rw.TryLock(ctx, redlock.Fenced()) })
	if w1.Fence() == 0 || w2.Fence() <= w1.Fence() {
		t.Fatalf("fences %d then %d, want increasing", w1.Fence(), w2.Fence())
	}
	mustUnlock(t, ctx, w2)
	// The release returned at quorum; the third instance's may still wait
	// behind w2's acquisition there (a call of a lock waits for the
	// previous one's reply on its instance). Every instance must be free
	// of the writer before the readers' check below, which wants none.
	for _, s := range servers {
		waitFor(t, 20*time.Second, s.String()+" free of writer 2", func() bool { return get(t, s, "{rep}:1") == "(nil)" })
	}

	r1 := mustLock(t, "reader 1", func() (*redlock.Lock, error) { return rw.TryRLock(ctx, redlock.Metadata("alice")) })
	r2 := mustLock(t, "reader 2", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
	if r1.Metadata() != "alice" || r2.Metadata() != "" {
		t.Fatalf("reader metadata %q, %q", r1.Metadata(), r2.Metadata())
	}
	if st, err := m.Inspect(ctx, "{rep}:1"); err != nil || slices.ContainsFunc(st, func(s redlock.InstanceState) bool { return s.Metadata != "" }) {
		t.Fatalf("readers must not touch the writer's metadata key: %+v, %v", st, err)
	}
	rst, err = rw.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := 0
	for _, s := range rst {
		got := map[string]string{}
		for _, r := range s.Readers {
			if r.TTL <= 0 {
				t.Fatalf("reader share TTL %v", r.TTL)
			}
			got[r.Token] = r.Metadata
		}
		if s.Err != nil || s.Writer != "" || len(got) > 2 {
			t.Fatalf("RWMutex.Inspect with two readers: %+v", s)
		}
		// Each grant returned at quorum: the calls to the others may
		// still be on their way.
		if md, ok := got[r1.Token()]; ok && md == "alice" && len(got) == 2 && got[r2.Token()] == "" {
			full++
		}
	}
	if full < 1 {
		t.Fatalf("RWMutex.Inspect with two readers: no instance shows both: %+v", rst)
	}
	mustUnlock(t, ctx, r1)
	mustUnlock(t, ctx, r2)
	// Each release returned at quorum; the others follow: every instance
	// ends with the fencing counter alone (the last reader's release
	// deletes the readers keys).
	for _, s := range servers {
		for {
			keys := s.Keys(t)
			if !slices.ContainsFunc(keys, func(k string) bool { return !strings.HasSuffix(k, ":redlock-fence") }) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s keeps %q after every holder left", s, keys)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// A reader that stops extending (a crashed process: its handle has a fixed
// TTL and is never unlocked) stops holding at the end of its lease, by the
// servers' clocks, while another reader keeps extending its own share: the
// readers key's TTL, which that reader keeps moving, does not keep it.
//
// The live reader must keep its share throughout: DefaultTTL 2s, so that an
// extension may be 788ms late (0.4×TTL less the drift) before its lease
// runs out (388ms with 1s). The crashed reader's fixed 600ms lease still
// expires.
func TestRWMutexCrashedReaderExpires(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	const ttl = 2 * time.Second
	m := newManager(t, servers, redlock.Config{DefaultTTL: ttl, NodeTimeout: loadedNodeTimeout})
	rw := m.RWMutex("files")

	crashed := mustLock(t, "reader to crash", func() (*redlock.Lock, error) { return rw.RLock(ctx, redlock.TTL(600*time.Millisecond)) })
	alive := mustLock(t, "auto-extended reader", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
	first := alive.Until()

	// Wait for the crashed reader's lease to end (its own expiry timer),
	// then for the other reader to have extended past it: an extension
	// prunes the expired share on each instance. A deadline past the
	// crashed one by a TTL is set by an extension that started after it.
	<-crashed.Lost()
	deadline := crashed.Until().Add(ttl)
	for !alive.Until().After(deadline) {
		select {
		case <-alive.Lost():
			t.Fatal("the auto-extended reader lost its share")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !alive.Until().After(first) || !alive.Valid() {
		t.Fatal("the auto-extended reader did not extend")
	}
	// On a quorum at least (the last extension returned at quorum; the
	// others may not have had it yet), only the live reader is left.
	only := 0
	for _, s := range servers {
		if s.Do(t, "ZRANGE", "{files}:redlock-readers", "0", "-1") == alive.Token() {
			only++
		}
	}
	if only < m.Quorum() {
		t.Fatalf("%d instances hold only the live reader, want a quorum (%d)", only, m.Quorum())
	}
	// The writer is refused while the live reader holds, and gets the lock
	// at once when it leaves: the crashed reader no longer counts.
	l, err := rw.TryLock(ctx)
	wantNotAcquired(t, "writer behind the live reader", l, err)
	mustUnlock(t, ctx, alive)
	w := mustLock(t, "writer after the live reader left", func() (*redlock.Lock, error) { return rw.TryLock(ctx) })
	mustUnlock(t, ctx, w)
}

// A writer waiting behind readers gets the lock while new readers keep
// arriving: once its writer-waiting mark is on the instances, new readers
// wait (a reader that holds may still extend), the writer gets the lock as
// soon as the readers that held leave, and the waiting readers come after.
func TestRWMutexWriterPreference(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 30 * time.Millisecond, NodeTimeout: loadedNodeTimeout})
		rw := m.RWMutex("feed")

		held := mustLock(t, "reader", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
		var (
			mu    sync.Mutex
			order []string
		)
		record := func(s string) {
			mu.Lock()
			order = append(order, s)
			mu.Unlock()
		}
		type result struct {
			l   *redlock.Lock
			err error
		}
		wch := make(chan result, 1)
		go func() {
			l, err := rw.LockWait(ctx)
			if err == nil {
				record("w")
			}
			wch <- result{l, err}
		}()
		// The writer's mark reaches a quorum of instances (its attempts
		// that readers refuse set it; the reader's share may not have
		// reached the others before the writer asked there).
		for marked := 0; marked < m.Quorum(); {
			marked = 0
			for _, s := range servers {
				if s.Do(t, "EXISTS", "{feed}:redlock-wwait") == "1" {
					marked++
				}
			}
			select {
			case r := <-wch:
				t.Fatalf("writer returned while a reader held: %v, %v", r.l, r.err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		// New readers are refused; the reader that holds may extend.
		for i := 0; i < 10; i++ {
			l, err := rw.TryRLock(ctx)
			wantNotAcquired(t, "new reader behind the waiting writer", l, err)
			if err := held.Extend(ctx, 0); err != nil {
				t.Fatalf("the holding reader's Extend behind the waiting writer: %v", err)
			}
		}
		// More readers keep arriving, waiting this time.
		const k = 4
		var wg sync.WaitGroup
		rerr := make(chan error, k)
		for i := 0; i < k; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := rw.RLockWait(ctx)
				if err != nil {
					rerr <- err
					return
				}
				record("r")
				rerr <- l.Unlock(context.Background())
			}()
		}
		mustUnlock(t, ctx, held)
		r := <-wch
		if r.err != nil {
			t.Fatalf("writer: %v", r.err)
		}
		mustUnlock(t, ctx, r.l)
		wg.Wait()
		close(rerr)
		for err := range rerr {
			if err != nil {
				t.Fatalf("waiting reader: %v", err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"w", "r", "r", "r", "r"}; !slices.Equal(order, want) {
			t.Fatalf("grants in order %v, want %v", order, want)
		}
	})
}

// Without the TTL option both sides are extended automatically (the
// writer in the Manager's batches, as a mutex; a reader by a timer of its
// own), and a reader whose share vanished from the instances is told it
// lost the lock.
//
// DefaultTTL 1.5s: an extension may be 583ms late (0.4×TTL less the
// drift) before the lease runs out (388ms with 1s).
func TestRWMutexAutoExtensionAndLoss(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	const (
		ttl = 1500 * time.Millisecond
		two = 2 * ttl * 6 / 10 // two extensions (every 0.6×TTL)
	)
	m := newManager(t, servers, redlock.Config{DefaultTTL: ttl, NodeTimeout: loadedNodeTimeout})
	rw := m.RWMutex("auto")

	// waitPast waits until l's deadline has moved past u (extensions).
	waitPast := func(what string, l *redlock.Lock, u time.Time) {
		t.Helper()
		for !l.Until().After(u) {
			select {
			case <-l.Lost():
				t.Fatalf("%s lost its lock", what)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	w := mustLock(t, "writer", func() (*redlock.Lock, error) { return rw.TryLock(ctx) })
	first := w.Until()
	waitPast("the writer", w, first.Add(two)) // two extensions past its first deadline
	l, err := rw.TryRLock(ctx)
	wantNotAcquired(t, "reader behind the auto-extended writer", l, err)
	mustUnlock(t, ctx, w)

	r := mustLock(t, "reader", func() (*redlock.Lock, error) { return rw.TryRLock(ctx) })
	waitPast("the reader", r, r.Until().Add(two))
	l, err = rw.TryLock(ctx)
	wantNotAcquired(t, "writer behind the auto-extended reader", l, err)
	// The share vanishes everywhere (an operator's DEL): the next
	// extension finds it missing on every instance, and the reader is told.
	for _, s := range servers {
		s.Do(t, "DEL", "{auto}:redlock-readers")
	}
	select {
	case <-r.Lost():
	case <-ctx.Done():
		t.Fatal("the reader was not told that its share vanished")
	}
	if r.Valid() {
		t.Fatal("reader still Valid after its share vanished")
	}
	if err := r.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Extend of the lost share: %v, want ErrNotHeld", err)
	}
}

// Do holds the lock exclusively while fn runs and RDo a share: readers'
// functions run together, and a writer's function excludes them.
func TestRWMutexDo(t *testing.T) {
	ctx := testCtx(t)
	m := newManager(t, redistest.Start(t, 3), redlock.Config{NodeTimeout: loadedNodeTimeout})
	rw := m.RWMutex("do")
	errBoom := errors.New("boom")
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- rw.RDo(ctx, func(ctx context.Context) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	// A second reader's function runs while the first holds; a writer's
	// does not.
	if err := rw.RDo(ctx, func(context.Context) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("RDo beside another reader: %v, want fn's error", err)
	}
	ran := false
	err := rw.Do(ctx, func(context.Context) error { ran = true; return nil }, redlock.TTL(time.Second))
	if !errors.Is(err, redlock.ErrNotAcquired) || ran {
		t.Fatalf("Do while a reader holds: %v (ran %v), want ErrNotAcquired", err, ran)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("RDo: %v", err)
	}
	if err := rw.Do(ctx, func(ctx context.Context) error {
		// The writer holds: a reader is refused.
		l, err := rw.TryRLock(ctx)
		wantNotAcquired(t, "reader inside Do", l, err)
		return nil
	}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if err := rw.Do(ctx, nil); !errors.Is(err, redlock.ErrInvalid) {
		t.Fatalf("Do(nil): %v, want ErrInvalid", err)
	}
	if err := m.RWMutex("").RDo(ctx, func(context.Context) error { return nil }); !errors.Is(err, redlock.ErrInvalid) {
		t.Fatalf("RDo on a bad name: %v, want ErrInvalid", err)
	}
}
