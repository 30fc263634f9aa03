package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestLockBasics(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})
		other := newManager(t, servers, redlock.Config{RetryCount: 1})
		const res = "basics"

		if locked, err := m.IsLocked(ctx, res); err != nil || locked {
			t.Fatalf("IsLocked before: %v, %v", locked, err)
		}
		before := time.Now()
		l, err := m.Lock(ctx, res, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		if l.Resource() != res || !uuidV4.MatchString(l.Token()) {
			t.Errorf("Resource %q Token %q", l.Resource(), l.Token())
		}
		if !l.Valid() || isClosed(l.Lost()) {
			t.Fatal("new lock not valid")
		}
		if u := l.Until(); !u.After(time.Now()) || u.After(before.Add(10*time.Second)) {
			t.Errorf("Until %v not in (now, start+TTL]", u)
		}
		wantKeyEverywhere(t, servers, res, l.Token(), 10*time.Second)

		for name, mm := range map[string]*redlock.Manager{"holder": m, "other": other} {
			if locked, err := mm.IsLocked(ctx, res); err != nil || !locked {
				t.Errorf("%s IsLocked: %v, %v", name, locked, err)
			}
		}
		if locked, err := l.IsLocked(ctx); err != nil || !locked {
			t.Errorf("Lock.IsLocked: %v, %v", locked, err)
		}
		if d, err := l.TTL(ctx); err != nil || d <= 0 || d > 10*time.Second {
			t.Errorf("TTL: %v, %v", d, err)
		}
		if got := m.Locks(); len(got) != 1 || got[0] != l {
			t.Errorf("Locks() = %v", got)
		}
		if _, err := other.TryLock(ctx, res); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Errorf("TryLock by other: %v, want ErrNotAcquired", err)
		}

		oldUntil := l.Until()
		if err := l.Extend(ctx, 30*time.Second); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if !l.Until().After(oldUntil) {
			t.Errorf("Extend did not move Until (%v -> %v)", oldUntil, l.Until())
		}
		waitPTTLAbove(t, servers, res, 10000)
		wantKeyEverywhere(t, servers, res, l.Token(), 30*time.Second)
		for _, s := range servers {
			s.Do(t, "PEXPIRE", res, "5000")
		}
		if err := l.Extend(ctx, 0); err != nil { // the lock's TTL is 30s now
			t.Fatalf("Extend(0): %v", err)
		}
		waitPTTLAbove(t, servers, res, 10000) // the last TTL (30s), not the first

		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
		wantNoKeys(t, servers)
		if l.Valid() || !isClosed(l.Lost()) {
			t.Error("lock valid after Unlock")
		}
		if locked, err := m.IsLocked(ctx, res); err != nil || locked {
			t.Errorf("IsLocked after Unlock: %v, %v", locked, err)
		}
		if locked, err := l.IsLocked(ctx); err != nil || locked {
			t.Errorf("Lock.IsLocked after Unlock: %v, %v", locked, err)
		}
		if _, err := l.TTL(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("TTL after Unlock: %v, want ErrNotHeld", err)
		}
		if got := m.Locks(); len(got) != 0 {
			t.Errorf("Locks() after Unlock = %v", got)
		}
		l2, err := other.TryLock(ctx, res)
		if err != nil {
			t.Fatalf("TryLock after Unlock: %v", err)
		}
		if l2.Token() == l.Token() {
			t.Error("two locks got the same token")
		}
		if err := l2.Unlock(ctx); err != nil {
			t.Errorf("Unlock: %v", err)
		}
	})
}

// TestContention checks TryLock (one attempt) against Lock (RetryCount
// attempts) on a resource held elsewhere, and the per-instance causes.
func TestContention(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		// 5 s NodeTimeout, here and for m: a call that times out on a
		// loaded machine leaves the holder's key off an instance, or
		// makes a vote a failure (the test counts refusals, not deadlines).
		holder := newManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
		const res = "contended"
		held, err := holder.Lock(ctx, res, redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, res, held.Token(), time.Minute)
		for _, retries := range []int{1, 3, 5} {
			m, cs := newCountingManager(t, servers, redlock.Config{
				RetryCount: retries, RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond, NodeTimeout: 5 * time.Second,
			})
			for _, tc := range []struct {
				name     string
				attempts int
				call     func(context.Context, string, ...redlock.LockOption) (*redlock.Lock, error)
			}{
				{"TryLock", 1, m.TryLock},
				{"Lock", retries, m.Lock},
			} {
				before := cs.calls("acquire")
				l, err := tc.call(ctx, res)
				if l != nil || !errors.Is(err, redlock.ErrNotAcquired) || errors.Is(err, redlock.ErrUnavailable) {
					t.Fatalf("RetryCount %d %s: %v, %v; want ErrNotAcquired", retries, tc.name, l, err)
				}
				qe := quorumError(t, err)
				if qe.Attempts != tc.attempts || qe.Votes != 0 || qe.Quorum != n/2+1 || qe.N != n || qe.Op != "lock" || qe.Resource != res {
					t.Errorf("RetryCount %d %s: %+v", retries, tc.name, qe)
				}
				// An attempt returns once the refusals decide it: its
				// calls to the other instances may not have been made
				// yet. Wait for them (the count must not fall short),
				// then count (nor exceed).
				waitFor(t, 10*time.Second, "every attempt's call to every instance", func() bool { return cs.calls("acquire")-before >= tc.attempts*n })
				if got := cs.calls("acquire") - before; got != tc.attempts*n {
					t.Errorf("RetryCount %d %s: %d acquire calls, want %d attempts × %d", retries, tc.name, got, tc.attempts, n)
				}
				// Per-instance causes: every instance that answered names
				// itself and says another token holds the key.
				ies := instanceErrors(err)
				if len(ies) < n-n/2 {
					t.Errorf("%d instance errors, want at least %d", len(ies), n-n/2)
				}
				for _, ie := range ies {
					if !errors.Is(ie, redlock.ErrHeldByOther) || endpointOf(ie.Endpoint, servers) == nil {
						t.Errorf("instance error %q: %v", ie.Endpoint, ie.Err)
					}
				}
				var ie *redlock.InstanceError
				if !errors.As(err, &ie) || !errors.Is(ie.Err, redlock.ErrHeldByOther) {
					t.Errorf("errors.As found no *InstanceError in %v", err)
				}
			}
		}
	})
}

// TestContentionMinorityDown: a resource held elsewhere is ErrNotAcquired
// also while a minority of the instances is down, whatever order the
// refusals and the failures arrive in.
func TestContentionMinorityDown(t *testing.T) {
	for _, n := range []int{3, 5} { // N=1 has no minority to lose
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			t.Parallel()
			testContentionMinorityDown(t, n)
		})
	}
}

func testContentionMinorityDown(t *testing.T, n int) {
	ctx := testCtx(t)
	servers := redistest.Start(t, n)
	holder := newManager(t, servers, redlock.Config{})
	const res = "contended-degraded"
	l, err := holder.Lock(ctx, res, redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, res, l.Token(), time.Minute)
	down := servers[:majority(n)-1]
	for _, s := range down {
		s.Kill(t)
	}
	m := newManager(t, servers, redlock.Config{RetryCount: 1})
	for i := 0; i < 20; i++ {
		if _, err := m.TryLock(ctx, res); !errors.Is(err, redlock.ErrNotAcquired) || errors.Is(err, redlock.ErrUnavailable) {
			t.Fatalf("try %d with %d of %d down: %v, want ErrNotAcquired", i, len(down), n, err)
		}
	}
}

func TestLockWait(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		holder := newManager(t, servers, redlock.Config{})
		waiter, cs := newCountingManager(t, servers, redlock.Config{RetryDelayMin: 5 * time.Millisecond, RetryDelayMax: 20 * time.Millisecond})
		const res = "wait"

		held, err := holder.Lock(ctx, res)
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			l   *redlock.Lock
			err error
		}
		done := make(chan result, 1)
		go func() {
			l, err := waiter.LockWait(ctx, res)
			done <- result{l, err}
		}()
		// The waiter has been refused at least once (and is still waiting)
		// before the holder lets go.
		waitFor(t, 10*time.Second, "a refused attempt", func() bool { return cs.calls("acquire") >= 2*n })
		select {
		case r := <-done:
			t.Fatalf("LockWait returned while the lock was held: %v, %v", r.l, r.err)
		default:
		}
		if err := held.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("LockWait did not acquire after the holder unlocked")
		}
		if r.err != nil || !r.l.Valid() {
			t.Fatalf("LockWait: %v, %v", r.l, r.err)
		}
		// The holder's release may still be landing on a minority, which
		// then refused the waiter: a quorum is what counts.
		wantKeyOnQuorum(t, servers, res, r.l.Token())

		// Held: LockWait gives up when ctx ends, with ctx's error.
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		l, err := holder.LockWait(short, res)
		if l != nil || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, redlock.ErrNotAcquired) {
			t.Fatalf("LockWait with ctx ending: %v, %v; want DeadlineExceeded and ErrNotAcquired", l, err)
		}
		if err := r.l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// majority returns how many instances must fail to lose the quorum.
func majority(n int) int { return n - n/2 }

// TestInstancesDown kills a minority (still locks), then a majority
// (ErrUnavailable, with per-instance causes).
func TestInstancesDown(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{NodeTimeout: 300 * time.Millisecond, RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
		minority := majority(n) - 1
		for _, s := range servers[:minority] {
			s.Kill(t)
		}
		alive := servers[minority:]
		if minority > 0 {
			l, err := m.TryLock(ctx, "minority", redlock.TTL(10*time.Second))
			if err != nil {
				t.Fatalf("%d of %d down: TryLock: %v", minority, n, err)
			}
			wantKeyEverywhere(t, alive, "minority", l.Token(), 10*time.Second)
			if locked, err := m.IsLocked(ctx, "minority"); err != nil || !locked {
				t.Errorf("IsLocked: %v, %v", locked, err)
			}
			if err := l.Extend(ctx, 0); err != nil {
				t.Errorf("Extend: %v", err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Errorf("Unlock: %v", err)
			}
			wantNoKeys(t, alive)
		}

		servers[minority].Kill(t)
		down := servers[:minority+1]
		alive = servers[minority+1:]
		for _, tc := range []struct {
			name     string
			attempts int
			call     func(context.Context, string, ...redlock.LockOption) (*redlock.Lock, error)
		}{
			{"TryLock", 1, m.TryLock},
			{"Lock", 3, m.Lock},
		} {
			l, err := tc.call(ctx, "majority", redlock.TTL(10*time.Second))
			if l != nil || !errors.Is(err, redlock.ErrUnavailable) || errors.Is(err, redlock.ErrNotAcquired) {
				t.Fatalf("%d of %d down: %s: %v, %v; want ErrUnavailable", len(down), n, tc.name, l, err)
			}
			qe := quorumError(t, err)
			if qe.Attempts != tc.attempts || qe.Votes >= qe.Quorum {
				t.Errorf("%s: %+v", tc.name, qe)
			}
			wantDownCauses(t, err, down, n)
		}
		wantNoKeysNow(t, alive) // the failed attempts released what they set
		if _, err := m.IsLocked(ctx, "majority"); !errors.Is(err, redlock.ErrUnavailable) {
			t.Errorf("IsLocked: %v, want ErrUnavailable", err)
		}
	})
}

// wantDownCauses checks the per-instance causes of an ErrUnavailable: each
// names an instance that is down, is not a refusal, and enough of them are
// there to explain the missing quorum.
func wantDownCauses(t *testing.T, err error, down []*redistest.Server, n int) {
	t.Helper()
	ies := instanceErrors(err)
	if len(ies) < n-(n/2+1)+1 {
		t.Errorf("%d instance errors, want at least %d: %v", len(ies), n-(n/2+1)+1, err)
	}
	for _, ie := range ies {
		if endpointOf(ie.Endpoint, down) == nil {
			t.Errorf("cause from %q, which is not one of the instances down: %v", ie.Endpoint, ie.Err)
		}
		if ie.Err == nil || errors.Is(ie, redlock.ErrHeldByOther) {
			t.Errorf("cause from %q: %v", ie.Endpoint, ie.Err)
		}
	}
	var ie *redlock.InstanceError
	if !errors.As(err, &ie) {
		t.Errorf("errors.As found no *InstanceError in %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// TestInstancesPaused is TestInstancesDown with a black-holed majority
// (SIGSTOP): the call is bounded by NodeTimeout and the causes are timeouts.
func TestInstancesPaused(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		const nodeTimeout = 300 * time.Millisecond
		m := newManager(t, servers, redlock.Config{NodeTimeout: nodeTimeout})
		down := servers[:majority(n)]
		for _, s := range down {
			s.Pause(t)
		}
		start := time.Now()
		_, err := m.TryLock(ctx, "paused", redlock.TTL(10*time.Second))
		t.Logf("N=%d, %d paused: TryLock returned after %v (NodeTimeout %v)", n, len(down), time.Since(start), nodeTimeout)
		if !errors.Is(err, redlock.ErrUnavailable) {
			t.Fatalf("TryLock: %v, want ErrUnavailable", err)
		}
		wantDownCauses(t, err, down, n)
		for _, ie := range instanceErrors(err) {
			if !isTimeout(ie.Err) {
				t.Errorf("cause from paused %q is not a timeout: %v", ie.Endpoint, ie.Err)
			}
		}
		for _, s := range down {
			s.Resume(t)
		}
	})
}

// TestEverySubsetN5 pauses every subset of 5 instances: a lock succeeds iff
// at least 3 are up.
//
// The 32 subsets run in two shards, each on its own 5 servers, in parallel.
func TestEverySubsetN5(t *testing.T) {
	const shards = 2
	for shard := 0; shard < shards; shard++ {
		t.Run(fmt.Sprintf("shard=%d", shard), func(t *testing.T) {
			t.Parallel()
			everySubset(t, shard, shards)
		})
	}
}

// subsetNodeTimeout keeps the 16 subsets with a paused majority cheap (each
// waits it out twice: the attempt and its clean-up). The subsets that must
// lock use a Manager with loadedNodeTimeout: at 250 ms a loaded CI machine
// made live instances time out too ("1/5 votes" with 3 up), and they wait
// for no paused instance (the round returns at quorum).
const subsetNodeTimeout = 250 * time.Millisecond

func everySubset(t *testing.T, shard, shards int) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 5)
	fast := newManager(t, servers, redlock.Config{NodeTimeout: subsetNodeTimeout, RetryCount: 1})
	sure := newManager(t, servers, redlock.Config{NodeTimeout: loadedNodeTimeout, RetryCount: 1})
	for mask := shard; mask < 1<<5; mask += shards {
		var down, alive []*redistest.Server
		for i, s := range servers {
			if mask&(1<<i) != 0 {
				down = append(down, s)
			} else {
				alive = append(alive, s)
			}
		}
		m := fast
		if len(alive) >= 3 {
			m = sure
		}
		res := fmt.Sprintf("subset-%02d", mask)
		for _, s := range down {
			s.Pause(t)
		}
		l, err := m.TryLock(ctx, res, redlock.TTL(time.Minute))
		if want := len(alive) >= 3; (err == nil) != want {
			t.Errorf("down %05b (%d up): TryLock err = %v, want success %v (servers %v)", mask, len(alive), err, want, servers)
		}
		if err != nil && !errors.Is(err, redlock.ErrUnavailable) {
			t.Errorf("down %05b: %v, want ErrUnavailable", mask, err)
		}
		if err == nil {
			wantKeyEverywhere(t, alive, res, l.Token(), time.Minute)
			if err := l.Unlock(ctx); err != nil {
				t.Errorf("down %05b: Unlock: %v", mask, err)
			}
		}
		// Only this subset's key: an instance that was paused runs the
		// queued acquire when it resumes, while the release, which needs a
		// new connection, timed out; that key stays until its TTL.
		if err != nil && m == sure {
			for _, s := range alive { // the failed attempt released what it set
				if got := get(t, s, res); got != "(nil)" {
					t.Errorf("down %05b: %s holds %q after the failed attempt", mask, s, got)
				}
			}
		} else if err != nil {
			// At 250 ms a live instance's acquire and release may both
			// have timed out, still queued on its connection, in order.
			for _, s := range alive {
				waitFor(t, 5*time.Second, fmt.Sprintf("down %05b: the failed attempt's release on %s", mask, s), func() bool { return get(t, s, res) == "(nil)" })
			}
		} else {
			for _, s := range alive {
				waitFor(t, 5*time.Second, fmt.Sprintf("down %05b: release on %s", mask, s), func() bool { return get(t, s, res) == "(nil)" })
			}
		}
		for _, s := range down {
			s.Resume(t)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	if shard != 0 || !controlsBuilt() { // the control needs -tags redlock_controls
		return
	}
	// Negative control: a manager whose quorum is N/2 (2 of 5) locks with
	// only 2 up, which the loop above would have reported.
	broken := newManager(t, servers, redlock.Config{NodeTimeout: loadedNodeTimeout, RetryCount: 1})
	testhooks.Install(broken, &testhooks.Hooks{Quorum: func(n int) int { return n / 2 }})
	for _, s := range servers[:3] {
		s.Pause(t)
	}
	l, err := broken.TryLock(ctx, "subset-control", redlock.TTL(time.Minute))
	for _, s := range servers[:3] {
		s.Resume(t)
	}
	if err != nil {
		t.Errorf("negative control: quorum N/2 with 2 of 5 up: %v, want a (wrong) lock", err)
	} else {
		_ = l.Unlock(ctx)
	}
}

// TestScriptFlush empties the script cache before every call: EVALSHA gets
// NOSCRIPT and the call falls back to EVAL.
func TestScriptFlush(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m, cs := newCountingManager(t, servers, redlock.Config{})
		m2, cs2 := newCountingManager(t, servers, redlock.Config{})
		const res = "flush"
		var (
			l, a *redlock.Lock
			err  error
		)
		steps := []struct {
			name string
			cs   counters
			run  func() error
		}{
			{"Lock", cs, func() error { l, err = m.Lock(ctx, res, redlock.TTL(10*time.Second)); return err }},
			{"IsLocked", cs, func() error { return wantBool(m.IsLocked(ctx, res)) }},
			{"Lock.IsLocked", cs, func() error { return wantBool(l.IsLocked(ctx)) }},
			{"Lock.TTL", cs, func() error { _, err := l.TTL(ctx); return err }},
			{"Extend", cs, func() error { return l.Extend(ctx, 20*time.Second) }},
			{"Attach", cs2, func() error { a, err = m2.Attach(ctx, res, l.Token()); return err }},
			{"attached Extend", cs2, func() error { return a.Extend(ctx, 30*time.Second) }},
			{"attached Unlock", cs2, func() error { return a.Unlock(ctx) }},
			{"IsLocked after Unlock", cs, func() error { return nilIfFalse(m.IsLocked(ctx, res)) }},
			{"Lock again", cs, func() error { l, err = m.Lock(ctx, res); return err }},
			{"Unlock", cs, func() error { return l.Unlock(ctx) }},
		}
		for _, st := range steps {
			for _, s := range servers {
				if got := s.Do(t, "SCRIPT", "FLUSH"); got != "OK" {
					t.Fatalf("SCRIPT FLUSH: %q", got)
				}
			}
			before := st.cs.evals()
			if err := st.run(); err != nil {
				t.Fatalf("%s after SCRIPT FLUSH: %v", st.name, err)
			}
			if st.cs.evals() == before {
				t.Errorf("%s: no EVAL fallback after SCRIPT FLUSH", st.name)
			}
		}
		wantNoKeys(t, servers)
	})
}

var errWrongAnswer = errors.New("wrong answer")

// wantBool turns (true, nil) into nil.
func wantBool(ok bool, err error) error {
	if err != nil {
		return err
	}
	if !ok {
		return errWrongAnswer
	}
	return nil
}

// nilIfFalse turns (false, nil) into nil.
func nilIfFalse(ok bool, err error) error {
	if err != nil {
		return err
	}
	if ok {
		return errWrongAnswer
	}
	return nil
}

func TestAttach(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m1 := newManager(t, servers, redlock.Config{})
		m2 := newManager(t, servers, redlock.Config{})
		const res = "attach"
		l, err := m1.Lock(ctx, res, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, res, l.Token(), 10*time.Second)

		a, err := m2.Attach(ctx, res, l.Token())
		if err != nil {
			t.Fatalf("Attach: %v", err)
		}
		if a.Resource() != res || a.Token() != l.Token() || !a.Valid() {
			t.Errorf("attached %v: token %q valid %v", a, a.Token(), a.Valid())
		}
		if a.Until().After(time.Now().Add(10 * time.Second)) {
			t.Errorf("attached Until %v beyond the key's TTL", a.Until())
		}
		if got := m2.Locks(); len(got) != 1 || got[0] != a {
			t.Errorf("m2.Locks() = %v", got)
		}
		if locked, err := a.IsLocked(ctx); err != nil || !locked {
			t.Errorf("attached IsLocked: %v, %v", locked, err)
		}
		if err := a.Extend(ctx, 30*time.Second); err != nil {
			t.Fatalf("attached Extend: %v", err)
		}
		waitPTTLAbove(t, servers, res, 10000)
		wantKeyEverywhere(t, servers, res, l.Token(), 30*time.Second)
		if err := a.Unlock(ctx); err != nil {
			t.Fatalf("attached Unlock: %v", err)
		}
		wantNoKeys(t, servers)
		if locked, err := l.IsLocked(ctx); err != nil || locked {
			t.Errorf("original IsLocked after attached Unlock: %v, %v", locked, err)
		}

		// A wrong token, a free resource, a key held by someone else.
		l2, err := m1.Lock(ctx, res, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ resource, token string }{
			{res, "not-the-token"},
			{"free", l2.Token()},
		} {
			if a, err := m2.Attach(ctx, tc.resource, tc.token); a != nil || !errors.Is(err, redlock.ErrNotHeld) {
				t.Errorf("Attach(%q, %q): %v, %v; want ErrNotHeld", tc.resource, tc.token, a, err)
			}
		}
		wantKeyEverywhere(t, servers, res, l2.Token(), 10*time.Second)
		if err := l2.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClose(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})
		auto, err := m.Lock(ctx, "auto")
		if err != nil {
			t.Fatal(err)
		}
		fixed, err := m.Lock(ctx, "fixed", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wantNoKeysNow(t, servers)
		for _, l := range []*redlock.Lock{auto, fixed} {
			if l.Valid() || !isClosed(l.Lost()) {
				t.Errorf("%v valid after Close", l)
			}
		}
		if got := m.Locks(); len(got) != 0 {
			t.Errorf("Locks() after Close = %v", got)
		}
		wantClosed(t, ctx, m, fixed)
	})
}

// wantClosed checks that every method of a closed Manager and of its lock
// returns ErrClosed.
func wantClosed(t *testing.T, ctx context.Context, m *redlock.Manager, l *redlock.Lock) {
	t.Helper()
	calls := map[string]func() error{
		"Lock":     func() error { _, err := m.Lock(ctx, "x"); return err },
		"TryLock":  func() error { _, err := m.TryLock(ctx, "x"); return err },
		"LockWait": func() error { _, err := m.LockWait(ctx, "x"); return err },
		"IsLocked": func() error { _, err := m.IsLocked(ctx, "x"); return err },
		"Attach":   func() error { _, err := m.Attach(ctx, "x", "token"); return err },
		"Do": func() error {
			return m.Do(ctx, "x", func(context.Context) error { return errors.New("Do ran fn after Close") })
		},
		"Close":         func() error { return m.Close(ctx) },
		"Lock.Extend":   func() error { return l.Extend(ctx, 0) },
		"Lock.Unlock":   func() error { return l.Unlock(ctx) },
		"Lock.IsLocked": func() error { _, err := l.IsLocked(ctx); return err },
		"Lock.TTL":      func() error { _, err := l.TTL(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, redlock.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// TestCloseKeepsCallerClients: NewFromClients does not close the clients.
func TestCloseKeepsCallerClients(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	m, cs := newCountingManager(t, servers, redlock.Config{})
	if _, err := m.Lock(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := cs[0].inner.Eval(ctx, "return 7", nil, nil); err != nil || v != int64(7) {
		t.Errorf("caller's client after Close: %v, %v", v, err)
	}
}

// TestCloseDuringLock closes the Manager while a Lock call is in flight: the
// lock that call takes must not outlive Close.
func TestCloseDuringLock(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
	gate, entered := make(chan struct{}), make(chan struct{}, 3)
	for _, c := range cs {
		c.setGate(gate, entered)
	}
	type result struct {
		l   *redlock.Lock
		err error
	}
	locked := make(chan result, 1)
	go func() {
		l, err := m.Lock(ctx, "racing")
		locked <- result{l, err}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Lock sent nothing")
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close(ctx) }()
	// Close has marked the Manager closed (and taken its list of held
	// locks) once a call fails with ErrClosed; a cancelled ctx keeps the
	// probe from sending anything if it is not closed yet.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	waitFor(t, 10*time.Second, "Close to start", func() bool {
		_, err := m.IsLocked(dead, "probe")
		return errors.Is(err, redlock.ErrClosed)
	})
	for _, c := range cs {
		c.setGate(nil, nil)
	}
	close(gate)
	var r result
	select {
	case r = <-locked:
	case <-time.After(20 * time.Second):
		t.Fatal("Lock did not return")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	if r.l != nil && (r.l.Valid() || !isClosed(r.l.Lost())) {
		t.Errorf("lock taken during Close is still valid after Close")
	}
	wantNoKeysNow(t, servers)
}

func TestWireFormat(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{KeyPrefix: "app:"})
		plain := newManager(t, servers, redlock.Config{RetryCount: 1})

		// key = KeyPrefix + resource, verbatim; value = a UUIDv4 token.
		tokens := map[string]bool{}
		for _, res := range []string{"orders", "a b/ü:*?[x]", "nul\x00byte", strings.Repeat("long", 500)} {
			l, err := m.TryLock(ctx, res, redlock.TTL(10*time.Second))
			if err != nil {
				t.Fatalf("TryLock(%q): %v", res, err)
			}
			if !uuidV4.MatchString(l.Token()) {
				t.Errorf("token %q is not UUIDv4 text", l.Token())
			}
			if tokens[l.Token()] {
				t.Errorf("token %q repeated", l.Token())
			}
			tokens[l.Token()] = true
			wantKeyEverywhere(t, servers, "app:"+res, l.Token(), 10*time.Second)
			for _, s := range servers {
				if keys := s.Keys(t); len(keys) != 1 || keys[0] != "app:"+res {
					t.Errorf("%s: keys %q, want only %q", s, keys, "app:"+res)
				}
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			// Unlock returns at quorum: let the last release land.
			for _, s := range servers {
				waitFor(t, 5*time.Second, s.String()+" to drop "+res, func() bool {
					return len(s.Keys(t)) == 0
				})
			}
		}

		// A caller-chosen token is stored verbatim; no prefix by default.
		l, err := plain.TryLock(ctx, "mine", redlock.Token("my token ✓"), redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() != "my token ✓" {
			t.Errorf("Token() = %q", l.Token())
		}
		wantKeyEverywhere(t, servers, "mine", "my token ✓", 10*time.Second)

		// Ours excludes a plain SET NX (redsync, node-redlock)...
		for _, s := range servers {
			if got := s.Do(t, "SET", "mine", "redsync-value", "NX", "PX", "10000"); got != "(nil)" {
				t.Errorf("%s: SET NX on our lock: %q", s, got)
			}
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// ...and theirs excludes us, on every instance and on a majority.
		for _, s := range servers {
			if got := s.Do(t, "SET", "theirs", "redsync-value", "NX", "PX", "10000"); got != "OK" {
				t.Fatalf("%s: SET NX: %q", s, got)
			}
		}
		for _, s := range servers[:majority(n)] {
			if got := s.Do(t, "SET", "theirs-majority", "redsync-value", "NX", "PX", "10000"); got != "OK" {
				t.Fatalf("%s: SET NX: %q", s, got)
			}
		}
		for _, res := range []string{"theirs", "theirs-majority"} {
			if _, err := plain.TryLock(ctx, res); !errors.Is(err, redlock.ErrNotAcquired) {
				t.Errorf("TryLock(%q) held by a SET NX: %v, want ErrNotAcquired", res, err)
			}
			if locked, err := plain.IsLocked(ctx, res); err != nil || !locked {
				t.Errorf("IsLocked(%q): %v, %v", res, locked, err)
			}
		}
		for _, s := range servers {
			if got := get(t, s, "theirs"); got != "redsync-value" {
				t.Errorf("%s: foreign lock changed to %q", s, got)
			}
		}
	})
}

// TestCtxDoneBeforeCall: a call whose ctx already ended sends nothing.
func TestCtxDoneBeforeCall(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{})
	l, err := m.Lock(ctx, "held", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Lock returns at quorum: let the last instance's call land before
	// counting.
	wantKeyEverywhere(t, servers, "held", l.Token(), time.Minute)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{cancelled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		calls := map[string]func() error{
			"Lock":     func() error { _, err := m.Lock(c.ctx, "r"); return err },
			"TryLock":  func() error { _, err := m.TryLock(c.ctx, "r"); return err },
			"LockWait": func() error { _, err := m.LockWait(c.ctx, "r"); return err },
			"IsLocked": func() error { _, err := m.IsLocked(c.ctx, "r"); return err },
			"Attach":   func() error { _, err := m.Attach(c.ctx, "held", l.Token()); return err },
			"Do": func() error {
				return m.Do(c.ctx, "r", func(context.Context) error { return errors.New("fn ran") })
			},
			"Lock.Extend":   func() error { return l.Extend(c.ctx, 0) },
			"Lock.IsLocked": func() error { _, err := l.IsLocked(c.ctx); return err },
			"Lock.TTL":      func() error { _, err := l.TTL(c.ctx); return err },
		}
		for name, call := range calls {
			before := cs.total()
			if err := call(); !errors.Is(err, c.want) {
				t.Errorf("%s with %v ctx: %v", name, c.want, err)
			}
			if sent := cs.total() - before; sent != 0 {
				t.Errorf("%s with %v ctx sent %d commands", name, c.want, sent)
			}
		}
	}
	if !l.Valid() {
		t.Error("lock invalidated by calls with a dead ctx")
	}
	wantKeyEverywhere(t, servers, "held", l.Token(), time.Minute)
}

// TestCtxEndsMidAttempt: instances that had not answered when the caller
// gave up did not fail, so a refusal seen from another instance still makes
// the error ErrNotAcquired (with ctx's error), not ErrUnavailable.
func TestCtxEndsMidAttempt(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	holder := newManager(t, servers, redlock.Config{})
	const res = "cut-short"
	held, err := holder.Lock(ctx, res, redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, res, held.Token(), time.Minute)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
	// cs[0] answers (a refusal); cs[1] and cs[2] are held at a gate until
	// the ctx is cancelled. The refusal reaches the attempt a moment after
	// the client returns it; a try where the cancel overtook it (no refusal
	// recorded) says nothing, and is repeated.
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("the refusal never reached the attempt before the cancel")
		}
		gate, entered, replied := make(chan struct{}), make(chan struct{}, 2), make(chan struct{}, 1)
		for _, c := range cs[1:] {
			c.setGate(gate, entered)
		}
		cs[0].setReplied(replied)
		actx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- lockErr(m.TryLock(actx, res)) }()
		for _, ch := range []chan struct{}{entered, entered, replied} {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				cancel()
				t.Fatal("the attempt did not reach the instances")
			}
		}
		cs[0].setReplied(nil)
		cancel()
		for _, c := range cs[1:] {
			c.setGate(nil, nil)
		}
		close(gate)
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("TryLock did not return")
		}
		if !errors.Is(err, redlock.ErrHeldByOther) {
			continue
		}
		if !errors.Is(err, redlock.ErrNotAcquired) || !errors.Is(err, context.Canceled) || errors.Is(err, redlock.ErrUnavailable) {
			t.Errorf("TryLock cut short: %v, want ErrNotAcquired and context.Canceled", err)
		}
		break
	}
}

// TestCtxCancelledMidAcquire cancels an attempt while some instances have
// not answered yet.
//
// Slow instances (DEBUG SLEEP) answer later: the call waits for them and
// releases what they set before it returns, so no key is left anywhere.
//
// Black-holed instances (SIGSTOP) cannot be reached by the release either
// (a new connection's HELLO times out), and on resuming they run the queued
// acquire: that key is left until its TTL. The call still leaves nothing on
// the live instance, and the leftovers expire with the TTL.
func TestCtxCancelledMidAcquire(t *testing.T) {
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := make([]*redistest.Server, 3)
		for i := range servers {
			servers[i] = redistest.StartWith(t, redistest.Options{Args: []string{"--enable-debug-command", "yes"}})
		}
		m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second, RetryCount: 1})
		warmUp(t, ctx, m, servers...)
		live, slow := servers[0], servers[1:]
		before := make([]int, len(slow))
		slept := make(chan error, len(slow))
		for i, s := range slow {
			before[i] = commandCalls(t, s, "evalsha")
			go func() {
				_, err := s.TryDo(10*time.Second, "DEBUG", "SLEEP", "2")
				slept <- err
			}()
		}
		for _, s := range slow {
			waitFor(t, 5*time.Second, s.String()+" to sleep", func() bool {
				_, err := s.TryDo(20*time.Millisecond, "PING")
				return err != nil
			})
		}
		const res = "cancelled-slow"
		acquires := cs.calls("acquire")
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- lockErr(m.TryLock(actx, res, redlock.TTL(time.Minute))) }()
		waitFor(t, 10*time.Second, "the key on the live instance and the calls to the slow ones", func() bool {
			return cs.calls("acquire") == acquires+3 && get(t, live, res) != "(nil)"
		})
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("TryLock: %v, want context.Canceled", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("TryLock did not return after cancel")
		}
		for range slow {
			if err := <-slept; err != nil {
				t.Fatalf("DEBUG SLEEP: %v", err)
			}
		}
		// The slow instances ran the acquire and then the release (which
		// goes on in the background after the call returned: it waits for
		// the acquire's reply, to reach the instance after it).
		for i, s := range slow {
			waitFor(t, 10*time.Second, s.String()+" to run the acquire and the release", func() bool {
				return commandCalls(t, s, "evalsha") >= before[i]+2
			})
			// At least the two; a clean-up release may be counted twice
			// in rare CI runs (seen once: 3, cause not found, docs/design.md).
			t.Logf("%s ran %d EVALSHA since", s, commandCalls(t, s, "evalsha")-before[i])
		}
		wantNoKeysNow(t, servers)
	})

	t.Run("paused", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		m := newManager(t, servers, redlock.Config{NodeTimeout: time.Second, RetryCount: 1})
		warmUp(t, ctx, m)
		live, paused := servers[0], servers[1:]
		for _, s := range paused {
			s.Pause(t)
		}
		const (
			res = "cancelled-paused"
			ttl = 2 * time.Second
		)
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- lockErr(m.TryLock(actx, res, redlock.TTL(ttl))) }()
		waitFor(t, 10*time.Second, "the key on the live instance", func() bool { return get(t, live, res) != "(nil)" })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("TryLock: %v, want context.Canceled", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("TryLock did not return after cancel")
		}
		// The call waits for the release on the instances whose yes it
		// counted; a yes still on its way when ctx ended is released in
		// the background, at once (the releases to the paused ones wait
		// for their acquisitions).
		returned := time.Now()
		waitFor(t, 5*time.Second, "the live instance's key to be released", func() bool { return get(t, live, res) == "(nil)" })
		t.Logf("live instance released %v after the call returned", time.Since(returned).Round(time.Millisecond))
		for _, s := range paused {
			s.Resume(t)
		}
		for _, s := range paused {
			if p := pttl(t, s, res); p > ttl.Milliseconds() {
				t.Errorf("%s: leftover key with PTTL %d beyond the TTL", s, p)
			}
		}
		waitFor(t, 5*ttl, "leftover keys to expire", func() bool {
			for _, s := range servers {
				if len(s.Keys(t)) != 0 {
					return false
				}
			}
			return true
		})
	})
}

// warmUp loads the scripts on every instance with a lock/unlock cycle, so
// that queued EVALSHAs run instead of failing with NOSCRIPT.
func warmUp(t *testing.T, ctx context.Context, m *redlock.Manager, servers ...*redistest.Server) {
	t.Helper()
	l, err := m.Lock(ctx, "warm-up")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Unlock returns at quorum: let the last release land before the
	// caller counts commands.
	for _, s := range servers {
		waitFor(t, 5*time.Second, s.String()+" to drop the warm-up key", func() bool {
			return get(t, s, "warm-up") == "(nil)"
		})
	}
}

// lockErr turns a lock that should not have been taken into an error.
func lockErr(l *redlock.Lock, err error) error {
	if l != nil {
		return errors.New("locked although a majority could not answer")
	}
	return err
}

// TestConcurrentLocking runs many goroutines on distinct and on shared
// resources; the shared one is never held twice at a time.
func TestConcurrentLocking(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		cfg := redlock.Config{RetryDelayMin: time.Millisecond, RetryDelayMax: 10 * time.Millisecond}
		managers := []*redlock.Manager{newManager(t, servers, cfg), newManager(t, servers, cfg)}
		const (
			distinct   = 12
			shared     = 6
			iterations = 3
		)
		var (
			wg     sync.WaitGroup
			inside atomic.Int32
			errs   = make(chan error, (distinct+shared)*iterations*4)
		)
		work := func(m *redlock.Manager, res string, wait bool) {
			defer wg.Done()
			for i := 0; i < iterations; i++ {
				var (
					l   *redlock.Lock
					err error
				)
				if wait {
					l, err = m.LockWait(ctx, res)
				} else {
					l, err = m.Lock(ctx, res, redlock.TTL(10*time.Second))
				}
				if err != nil {
					errs <- fmt.Errorf("lock %q: %w", res, err)
					return
				}
				if wait {
					if k := inside.Add(1); k != 1 {
						errs <- fmt.Errorf("%d holders of %q at once", k, res)
					}
				}
				if err := l.Extend(ctx, 0); err != nil {
					errs <- fmt.Errorf("extend %q: %w", res, err)
				}
				if ok, err := l.IsLocked(ctx); err != nil || !ok {
					errs <- fmt.Errorf("IsLocked %q: %v, %w", res, ok, err)
				}
				if wait {
					inside.Add(-1)
				}
				if err := l.Unlock(ctx); err != nil {
					errs <- fmt.Errorf("unlock %q: %w", res, err)
				}
			}
		}
		for i := 0; i < distinct; i++ {
			wg.Add(1)
			go work(managers[i%2], fmt.Sprintf("distinct-%d", i), false)
		}
		for i := 0; i < shared; i++ {
			wg.Add(1)
			go work(managers[i%2], "shared", true)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		wantNoKeys(t, servers)
	})
}
