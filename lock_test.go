package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// TestFixedTTLExpires: a lock with a fixed lease turns invalid after its
// validity, Lost closes, and the handle refuses Extend and Unlock.
func TestFixedTTLExpires(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})
		const ttl = 300 * time.Millisecond
		l, err := m.Lock(ctx, "fixed", redlock.TTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		waitClosed(t, l.Lost(), 10*time.Second, "Lost of an expiring fixed-TTL lock")
		if l.Valid() {
			t.Error("Valid after Lost closed")
		}
		if now := time.Now(); now.Before(l.Until()) {
			t.Errorf("Lost closed at %v, before Until %v", now, l.Until())
		}
		if got := m.Locks(); len(got) != 0 {
			t.Errorf("Locks() lists an expired lock: %v", got)
		}
		if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Extend after expiry: %v, want ErrNotHeld", err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Unlock after expiry: %v, want ErrNotHeld", err)
		}
		// Extend never re-created the key; once Redis expired it, anyone
		// can take the resource.
		waitFor(t, 10*time.Second, "the keys to expire", func() bool {
			for _, s := range servers {
				if get(t, s, "fixed") != "(nil)" {
					return false
				}
			}
			return true
		})
		l2, err := m.TryLock(ctx, "fixed", redlock.TTL(ttl))
		if err != nil {
			t.Fatalf("TryLock after expiry: %v", err)
		}
		_ = l2.Unlock(ctx)
	})
}

// TestAutoExtendHolds keeps 2s-TTL locks (one per N) held for 3 TTLs by
// the watchdog: other managers are refused throughout, and the keys keep
// a TTL.
//
// The watchdog extends every 0.6×TTL, so an extension may be 0.4×TTL less
// the drift late before the lock runs out: 780ms here. (With TTL 1s it was
// 388ms, and the locks were taken one by one while the next N's servers
// started: a loaded -race run lost N=1's lock before the first probe.) The
// extensions' calls get loadedNodeTimeout: cut at the default 500ms, a run
// beside heavy load lost N=1's lock after 41 probes.
func TestAutoExtendHolds(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	const (
		ttl  = 2 * time.Second
		hold = 3 * ttl
		res  = "auto"
	)
	type setup struct {
		n       int
		servers []*redistest.Server
		m       *redlock.Manager
		other   *redlock.Manager
		l       *redlock.Lock
	}
	var all []setup
	// Every server first: the locks are taken together, just before the
	// probes start.
	for _, n := range sizes {
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{DefaultTTL: ttl, NodeTimeout: loadedNodeTimeout})
		other := newManager(t, servers, redlock.Config{RetryCount: 1})
		all = append(all, setup{n: n, servers: servers, m: m, other: other})
	}
	for i := range all {
		l, err := all[i].m.Lock(ctx, res)
		if err != nil {
			t.Fatalf("N=%d: Lock: %v", all[i].n, err)
		}
		all[i].l = l
	}
	deadline := time.Now().Add(hold)
	probes, unavailable := 0, 0
	for time.Now().Before(deadline) {
		for _, s := range all {
			// Refused; or, if the machine stalls past NodeTimeout, too few
			// answers: either way never acquired.
			l, err := s.other.TryLock(ctx, res)
			switch {
			case l != nil:
				t.Fatalf("N=%d after %d probes: another manager acquired the auto-extended lock (ours Valid %v, Lost closed %v)",
					s.n, probes, s.l.Valid(), isClosed(s.l.Lost()))
			case errors.Is(err, redlock.ErrUnavailable):
				unavailable++
			case !errors.Is(err, redlock.ErrNotAcquired):
				t.Fatalf("N=%d after %d probes: another manager's TryLock: %v, want ErrNotAcquired", s.n, probes, err)
			}
			if !s.l.Valid() || isClosed(s.l.Lost()) {
				t.Fatalf("N=%d: lock lost after %d probes", s.n, probes)
			}
		}
		probes++
		select {
		case <-all[0].l.Lost():
		case <-all[len(all)-1].l.Lost():
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, s := range all {
		// 3 TTLs after taking the lease, the keys are still ours with a
		// TTL of at most one lease: the watchdog renewed them.
		wantKeyEverywhere(t, s.servers, res, s.l.Token(), ttl)
		if err := s.l.Unlock(ctx); err != nil {
			t.Errorf("N=%d: Unlock: %v", s.n, err)
		}
		wantNoKeys(t, s.servers)
	}
	t.Logf("%d probes per N in %v (%d unavailable)", probes, hold, unavailable)
	if unavailable > probes*len(all)/2 {
		t.Errorf("%d of %d probes unavailable: the probes checked little", unavailable, probes*len(all))
	}
}

// TestAutoExtendLost kills a majority under an auto-extended lock: Lost
// closes within about one TTL, and Do's ctx is cancelled with ErrLost.
func TestAutoExtendLost(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		const ttl = time.Second
		servers := redistest.Start(t, n)
		cfg := redlock.Config{DefaultTTL: ttl, NodeTimeout: 200 * time.Millisecond}
		m := newManager(t, servers, cfg)
		down := servers[:majority(n)]

		l, err := m.Lock(ctx, "lost")
		if err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		for _, s := range down {
			s.Kill(t)
		}
		waitClosed(t, l.Lost(), 10*ttl, "Lost after killing a majority")
		t.Logf("N=%d: Lost closed %v after the kill (TTL %v)", n, time.Since(killed), ttl)
		if l.Valid() {
			t.Error("Valid after Lost closed")
		}
		if got := m.Locks(); len(got) != 0 {
			t.Errorf("Locks() lists a lost lock: %v", got)
		}

		for _, s := range down {
			s.Restart(t)
		}
		ran := false
		err = m.Do(ctx, "do-lost", func(fctx context.Context) error {
			ran = true
			for _, s := range down {
				s.Kill(t)
			}
			select {
			case <-fctx.Done():
				return context.Cause(fctx)
			case <-time.After(10 * ttl):
				return errors.New("fn's ctx was not cancelled after the lock was lost")
			}
		})
		if !ran || !errors.Is(err, redlock.ErrLost) {
			t.Errorf("Do: ran %v, err %v; want fn's ctx cancelled with cause ErrLost", ran, err)
		}
	})
}

func TestExtendNeverRecreates(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})

		// The keys expire in Redis while the handle still looks valid.
		l, err := m.Lock(ctx, "expired", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, "expired", l.Token(), time.Minute)
		for _, s := range servers {
			s.Do(t, "PEXPIRE", "expired", "1")
		}
		waitFor(t, 10*time.Second, "the keys to expire", func() bool {
			for _, s := range servers {
				if get(t, s, "expired") != "(nil)" {
					return false
				}
			}
			return true
		})
		if err := l.Extend(ctx, time.Minute); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Extend of expired keys: %v, want ErrNotHeld", err)
		}
		wantNoKeys(t, servers)
		if l.Valid() || !isClosed(l.Lost()) {
			t.Error("lock still valid after an extension found it gone")
		}

		if n < 3 {
			return
		}
		// One instance lost the key while a quorum holds it: Extend succeeds
		// on the others and puts it back there (the top-up, see
		// TestTopUpRestoresRedundancy), with no more lease than they have.
		l, err = m.Lock(ctx, "partly", redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, "partly", l.Token(), 10*time.Second)
		servers[0].Do(t, "DEL", "partly")
		if err := l.Extend(ctx, time.Minute); err != nil {
			t.Fatalf("Extend with one key missing: %v", err)
		}
		waitPTTLAbove(t, servers[1:], "partly", 10000)
		waitFor(t, 5*time.Second, "the key restored on "+servers[0].String(), func() bool {
			return get(t, servers[0], "partly") == l.Token()
		})
		if p := pttl(t, servers[0], "partly"); p <= 0 || p > 60000 {
			t.Errorf("restored key's PTTL %d, want in (0, 60000]", p)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRelockSameToken: locking again with the token of a held lock
// refreshes its lease (aioredlock re-acquire). The test checks every
// instance's key (set everywhere, then gone after Unlock), and a call
// returns once a quorum answered: each check waits until every instance's
// call has returned (answered), so that a loaded machine's slow instance
// cannot fail it, and a long NodeTimeout keeps such an instance's call from
// timing out (its key would then stay until the TTL, which the algorithm
// allows); no timeout is measured here.
func TestRelockSameToken(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		cfg := redlock.Config{NodeTimeout: 10 * time.Second}
		m1, cs1 := newCountingManager(t, servers, cfg)
		m2, cs2 := newCountingManager(t, servers, cfg)
		token := "shared-token-" + strconv.Itoa(n)
		none := make([]int, n)
		l1, err := m1.TryLock(ctx, "relock", redlock.Token(token), redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		waitAnswered(t, cs1, "acquire", none)
		wantKeyEverywhere(t, servers, "relock", token, 5*time.Second)
		l2, err := m2.TryLock(ctx, "relock", redlock.Token(token), redlock.TTL(time.Minute))
		if err != nil {
			t.Fatalf("re-lock with the same token: %v", err)
		}
		waitAnswered(t, cs2, "acquire", none)
		waitPTTLAbove(t, servers, "relock", 5000) // the refreshed lease (1m)
		// Refused by a quorum, TryLock returns before the last instance
		// answered; that call could still set "another" there once the
		// Unlock below deleted the key (a caller-chosen token has no
		// clean-up: its keys expire with their TTL). It is waited for.
		tried := callsEach(cs2, "acquire")
		if _, err := m2.TryLock(ctx, "relock", redlock.Token("another")); !errors.Is(err, redlock.ErrNotAcquired) {
			t.Errorf("another token: %v, want ErrNotAcquired", err)
		}
		waitAnswered(t, cs2, "acquire", tried)
		released := callsEach(cs2, "release")
		if err := l2.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		waitAnswered(t, cs2, "release", released)
		wantNoKeysNow(t, servers)
		_ = l1.Unlock(ctx)
	})
}

// callsEach returns, per instance, how many calls of the named script cs
// made.
func callsEach(cs counters, script string) []int {
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = c.calls(script)
	}
	return out
}

// waitAnswered waits until every instance has been sent the named script
// more times than before[i] (callsEach before the operation), and every
// call made through cs has returned: the instances that were not needed for
// the quorum have answered too (or their calls failed; NodeTimeout bounds
// them).
func waitAnswered(t *testing.T, cs counters, script string, before []int) {
	t.Helper()
	waitFor(t, 30*time.Second, "every instance's "+script+" call to return", func() bool {
		for i, c := range cs {
			if c.calls(script) <= before[i] || c.returned.Load() != c.evalsha.Load() || c.evalDone.Load() != c.eval.Load() {
				return false
			}
		}
		return true
	})
}

// TestUnlockOnlyOurs: Unlock deletes a key only where it holds our token.
func TestUnlockOnlyOurs(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})

		// Taken over everywhere: Unlock says ErrNotHeld and deletes nothing.
		l, err := m.Lock(ctx, "taken", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, "taken", l.Token(), time.Minute)
		for _, s := range servers {
			s.Do(t, "SET", "taken", "other", "PX", "60000")
		}
		if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Unlock of a taken-over lock: %v, want ErrNotHeld", err)
		}
		for _, s := range servers {
			if got := get(t, s, "taken"); got != "other" {
				t.Errorf("%s: Unlock deleted another token's key (now %q)", s, got)
			}
		}
		if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("second Unlock: %v, want ErrNotHeld", err)
		}

		// Double Unlock of a lock we held.
		l, err = m.Lock(ctx, "twice", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("double Unlock: %v, want ErrNotHeld", err)
		}
		if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
			t.Errorf("Extend after Unlock: %v, want ErrNotHeld", err)
		}

		if n < 3 {
			return
		}
		// A minority holds another token: we lock on the rest, and Unlock
		// leaves the other token alone. The negative control (a manager
		// that unlocks with a plain DEL) shows that this check can fail.
		for _, tc := range []struct {
			name       string
			hooks      *testhooks.Hooks
			wantIntact bool
		}{
			{"compare-and-delete", nil, true},
			{"negative control: plain DEL", &testhooks.Hooks{PlainDelete: true}, false},
		} {
			if tc.hooks != nil && !controlsBuilt() {
				continue // needs -tags redlock_controls
			}
			mm := newManager(t, servers, redlock.Config{})
			if tc.hooks != nil {
				testhooks.Install(mm, tc.hooks)
			}
			res := "minority-" + strconv.FormatBool(tc.wantIntact)
			servers[0].Do(t, "SET", res, "other", "PX", "60000")
			l, err := mm.Lock(ctx, res, redlock.TTL(time.Minute))
			if err != nil {
				t.Fatalf("%s: Lock with a minority held elsewhere: %v", tc.name, err)
			}
			wantKeyEverywhere(t, servers[1:], res, l.Token(), time.Minute)
			if err := l.Unlock(ctx); err != nil {
				t.Fatalf("%s: Unlock: %v", tc.name, err)
			}
			// Unlock returns at quorum; Close waits until the release has
			// reached every instance.
			if err := mm.Close(ctx); err != nil {
				t.Fatalf("%s: Close: %v", tc.name, err)
			}
			if intact := get(t, servers[0], res) == "other"; intact != tc.wantIntact {
				t.Errorf("%s: other token intact = %v, want %v", tc.name, intact, tc.wantIntact)
			}
			for _, s := range servers[1:] {
				if got := get(t, s, res); got != "(nil)" {
					t.Errorf("%s: %s still holds %q", tc.name, s, got)
				}
			}
		}
	})
}

// TestConcurrentExtendUnlock races Extend calls against Unlock on one lock:
// each Extend succeeds or says ErrNotHeld, and no key survives the Unlock.
func TestConcurrentExtendUnlock(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})
		for round := 0; round < 3; round++ {
			res := fmt.Sprintf("race-%d", round)
			l, err := m.Lock(ctx, res, redlock.TTL(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			const extenders, perExtender = 6, 20
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make(chan error, extenders*perExtender+1)
			for i := 0; i < extenders; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for j := 0; j < perExtender; j++ {
						err := l.Extend(ctx, time.Minute)
						if errors.Is(err, redlock.ErrNotHeld) {
							return
						}
						if err != nil {
							errs <- fmt.Errorf("Extend: %w", err)
							return
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := l.Unlock(ctx); err != nil {
					errs <- fmt.Errorf("Unlock: %w", err)
				}
			}()
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if l.Valid() || !isClosed(l.Lost()) {
				t.Error("lock valid after Unlock")
			}
			if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
				t.Errorf("Extend after the race: %v, want ErrNotHeld", err)
			}
			wantNoKeys(t, servers)
		}
	})
}

// TestDo: fn runs while the lock is held, its error comes back, and the lock
// is released afterwards, also when fn panics.
func TestDo(t *testing.T) {
	forEachN(t, func(t *testing.T, n int) {
		ctx := testCtx(t)
		servers := redistest.Start(t, n)
		m := newManager(t, servers, redlock.Config{})
		other := newManager(t, servers, redlock.Config{RetryCount: 1})
		errFn := errors.New("fn failed")

		err := m.Do(ctx, "do", func(fctx context.Context) error {
			if _, err := other.TryLock(fctx, "do"); !errors.Is(err, redlock.ErrNotAcquired) {
				t.Errorf("TryLock inside Do: %v, want ErrNotAcquired", err)
			}
			if locked, err := other.IsLocked(fctx, "do"); err != nil || !locked {
				t.Errorf("IsLocked inside Do: %v, %v", locked, err)
			}
			if len(m.Locks()) != 1 {
				t.Errorf("Locks() inside Do: %v", m.Locks())
			}
			return errFn
		})
		if !errors.Is(err, errFn) {
			t.Errorf("Do: %v, want fn's error", err)
		}
		wantNoKeys(t, servers)

		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("recovered %v, want the panic to continue", p)
				}
			}()
			_ = m.Do(ctx, "do-panic", func(context.Context) error { panic("boom") })
		}()
		wantNoKeys(t, servers)

		// Held elsewhere: fn does not run.
		held, err := other.Lock(ctx, "do-held", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		err = m.Do(ctx, "do-held", func(context.Context) error {
			t.Error("fn ran without the lock")
			return nil
		}, redlock.TTL(time.Second))
		if !errors.Is(err, redlock.ErrNotAcquired) {
			t.Errorf("Do on a held resource: %v, want ErrNotAcquired", err)
		}
		_ = held.Unlock(ctx)
	})
}

// TestStragglersOutliveCallerCtx: Extend and Unlock return once a quorum
// answered, and callers then cancel their ctx (defer cancel()). The calls
// still in flight must reach their instances anyway, or the minority keeps
// a stale TTL (and expires early) or keeps the key after the unlock.
func TestStragglersOutliveCallerCtx(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
	const res = "stragglers"
	l, err := m.Lock(ctx, res, redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, res, l.Token(), 10*time.Second)

	// held runs call with the instance behind cs[0] held at a gate until
	// call has returned and its ctx is cancelled.
	held := func(what string, call func(context.Context) error) {
		t.Helper()
		gate, entered := make(chan struct{}), make(chan struct{}, 1)
		cs[0].setGate(gate, entered)
		cctx, cancel := context.WithCancel(ctx)
		if err := call(cctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing sent to %s", what, servers[0])
		}
		cancel()
		cs[0].setGate(nil, nil)
		close(gate)
	}

	held("Extend", func(ctx context.Context) error { return l.Extend(ctx, time.Minute) })
	waitPTTLAbove(t, servers, res, 10000) // servers[0] too
	held("Unlock", func(ctx context.Context) error { return l.Unlock(ctx) })
	wantNoKeys(t, servers) // servers[0] too
}

// When the lock is lost while fn runs and fn returns its context's error,
// Do's error says so: it matches ErrLost (it used to be "context canceled"
// joined with "lock not held"). Seen failing before the change.
func TestDoReportsLoss(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{DefaultTTL: 600 * time.Millisecond})
	err := m.Do(ctx, "do-lost", func(fctx context.Context) error {
		// Another token takes the key everywhere: the next auto-extension
		// finds it held by another token and the lock is lost.
		for _, s := range servers {
			s.Do(t, "SET", "do-lost", "someone-else", "PX", "60000")
		}
		<-fctx.Done()
		if cause := context.Cause(fctx); !errors.Is(cause, redlock.ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		return fctx.Err()
	})
	if !errors.Is(err, redlock.ErrLost) {
		t.Errorf("Do after a loss: %v, want ErrLost", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do after a loss: %v, want fn's own error too", err)
	}
}

// TestSevenInstances: N=7, above the instance count whose per-instance
// state a round keeps inline (the rounds, outcomes, handoffs and clean-ups
// allocate theirs). Lock, Extend, a local waiter handed the Unlock,
// LockMany, and a quorum of 4 with 3 instances down, and none with 4.
func TestSevenInstances(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 7)
	m := newManager(t, servers, redlock.Config{})
	other := newManager(t, servers, redlock.Config{RetryCount: 1})
	l, err := m.Lock(ctx, "seven", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.TryLock(ctx, "seven"); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Errorf("TryLock of a held lock: %v, want ErrNotAcquired", err)
	}
	if err := l.Extend(ctx, 2*time.Minute); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	waitPTTLAbove(t, servers, "seven", 60000)
	got := lockWaitAsync(t, ctx, m, "LockWait", "seven", redlock.TTL(time.Minute))
	waitFor(t, 5*time.Second, "the waiter queued", func() bool { return redlock.Queued(m, "seven") == 1 })
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	w := <-got
	if w == nil {
		t.FailNow()
	}
	wantKeyEverywhere(t, servers, "seven", w.Token(), time.Minute)
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	many, err := m.LockMany(ctx, []string{"a", "b", "c"}, redlock.TTL(time.Minute))
	if err != nil {
		t.Fatalf("LockMany: %v", err)
	}
	if err := many.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoKeys(t, servers)
	for _, s := range servers[4:] {
		s.Stop(t)
	}
	l, err = m.Lock(ctx, "degraded", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatalf("Lock with 4 of 7 up: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock with 4 of 7 up: %v", err)
	}
	servers[3].Stop(t)
	if _, err := m.TryLock(ctx, "degraded"); !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("TryLock with 3 of 7 up: %v, want ErrUnavailable", err)
	}
}
