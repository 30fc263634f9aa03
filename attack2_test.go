package redlock_test

// Second attack review: the top-up, expiry-timed retries, the waiters, the
// classification of error replies and the Observer. Deterministic
// interleavings against real redis-servers, triggered by script, argument
// and instance (gateClient, lateClient) or by a pause injected at a named
// point (testhooks.AfterReplies), never by timing luck.
//
// Findings (fail until fixed):
//   TestAttack2StaleCleanupReleaseWithToken   two holders
//   TestAttack2TopUpManyNeverRestores          LockMany redundancy never returns
//   TestAttack2ObserverPanicLeaksLock          a held lock nobody can release
//   TestAttack2MisconfIsTransient              a disk outage reported as ErrRejected
//   TestAttack2BatchDeadlineFromShortestTTL    one lock's short TTL loses its batch-mates
//   (TestAttack2TopUpOutlivesQuorum, dropped: a queued top-up outlives the quorum's lease by its wait, at most NodeTimeout, on a minority; docs/design.md, Known limits)
//   TestAttack2WatchdogScheduledFromReturn     extensions scheduled from the wrong moment
//
// Interleavings that held are kept as regression tests (TestAttack2Held...).
//
// Run them with go test -race -count=3 -run TestAttack2 .

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// ---------------------------------------------------------------------------
// Finding A: a failed attempt's clean-up release, with a caller-chosen
// token, deletes the keys of the next attempt.

// TestAttack2StaleCleanupReleaseWithToken: Lock(res, Token("T"), TTL 2s),
// N=3, go-redis (pooled) wire, NodeTimeout 2.5s. Attempt 1 sets the key
// on A, B and C, then the process pauses past the TTL (a GC pause, SIGSTOP;
// injected with testhooks.AfterReplies), so the attempt fails its validity
// check. Its clean-up releases "T" on A, B and C (every instance set a free
// key); the releases to A and B are stuck on stalled connections: they
// give up at their deadline and the clean-up returns. Attempt 2 uses
// the same token (only a token of the Manager's own is renewed per
// attempt), takes A, B and C, and Lock returns a Valid lock. Then the
// stuck releases reach A and B: compare-and-delete finds "T" and deletes
// attempt 2's keys. The handle stays Valid for ~2s with its key on C only,
// and another client takes the lock on A and B: two holders.
//
// No pause is needed: in "fenced", attempt 1 fails because its fence round
// times out on B and C. The same happens across calls: a TryLock with
// Token("T") that fails the same way, followed by the caller's next
// TryLock with Token("T").
//
// Fix: the release of a failed attempt must not be able to delete a later
// attempt's key. With a caller-chosen token, do not release at all when
// another attempt follows (the next attempt refreshes those keys anyway:
// acquire answers 2), and after the last one either leave them to their TTL
// or document that a release may still be in flight (up to the stall of a
// pooled connection) when the call returns; or make the clean-up's
// compare-and-delete attempt-specific (e.g. release only if the key's PTTL
// is at most what attempt 1 can have left, which a later SET exceeds).
func TestAttack2StaleCleanupReleaseWithToken(t *testing.T) {
	t.Parallel()
	// The clean-up's releases carry no release channel (one argument);
	// Unlock's carry it (two).
	cleanupRelease := func(script string, args []string) bool { return script == "release" && len(args) == 1 }

	t.Run("pause", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		// NodeTimeout above the pause's overrun of the attempt's
		// deadline: the clean-up then reads every reply of attempt 1
		// (freshOnly waits until the round's deadline + NodeTimeout).
		m, ls := newLateManager(t, servers, redlock.Config{
			NodeTimeout: 2500 * time.Millisecond, RetryCount: 3,
			RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond,
		})
		const ttl = 2 * time.Second
		var attempts atomic.Int32
		installHooks(t, m, &testhooks.Hooks{AfterReplies: func(string) {
			if attempts.Add(1) == 1 {
				// The process pauses after attempt 1's replies, past the
				// TTL: the attempt fails its validity check (not timing
				// luck: the elapsed time exceeds the TTL whatever the
				// machine does).
				time.Sleep(ttl + 100*time.Millisecond)
			}
		}})
		sA := ls[0].stallCalls(cleanupRelease)
		sB := ls[1].stallCalls(cleanupRelease)

		l, err := m.Lock(ctx, "res", redlock.Token("caller-token"), redlock.TTL(ttl))
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		t.Logf("Lock returned after %d attempts (Until now+%v); clean-up releases stuck on A: %d (gave up %d), on B: %d (gave up %d)",
			attempts.Load(), time.Until(l.Until()).Round(time.Millisecond), sA.stuck.Load(), sA.gaveUp.Load(), sB.stuck.Load(), sB.gaveUp.Load())
		if attempts.Load() != 2 {
			t.Fatalf("setup: want 2 attempts")
		}
		if sA.stuck.Load() == 0 && sB.stuck.Load() == 0 {
			// The fix: an attempt with a caller's token sends no clean-up
			// release, so none can arrive late.
			checkSafety(t, "a failed attempt with a caller's token released nothing", servers, l, "res")
			return
		}
		if sA.gaveUp.Load() != 1 || sB.gaveUp.Load() != 1 {
			t.Fatalf("setup: want one clean-up release given up on A and on B")
		}
		// The stuck releases arrive.
		sA.release()
		sB.release()
		waitFor(t, 3*time.Second, "the stuck releases delivered to A and B", func() bool {
			return sA.delivered.Load() == 1 && sB.delivered.Load() == 1
		})
		checkSafety(t, "after attempt 1's stuck clean-up releases reached A and B", servers, l, "res")
		wantNotAcquiredByOther(t, ctx, servers, "res", l)
	})

	// No pause: a fenced lock whose first fence round (T=1) times out on
	// B and C (stalled connections) fails its attempt; the rest as above.
	t.Run("fenced", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		m, ls := newLateManager(t, servers, redlock.Config{
			NodeTimeout: 500 * time.Millisecond, RetryCount: 3,
			RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond,
		})
		fence1 := onScriptArg("fence", 1, "1")
		fB := ls[1].stallCalls(fence1)
		fC := ls[2].stallCalls(fence1)
		sA := ls[0].stallCalls(cleanupRelease)
		sB := ls[1].stallCalls(cleanupRelease)

		l, err := m.Lock(ctx, "res", redlock.Token("caller-token"), redlock.TTL(3*time.Second), redlock.Fenced())
		if err != nil {
			t.Fatalf("Lock: %v", err)
		}
		t.Logf("Lock returned (fence %d, Until now+%v); fence T=1 given up on B: %d, C: %d; clean-up releases given up on A: %d, B: %d",
			l.Fence(), time.Until(l.Until()).Round(time.Millisecond), fB.gaveUp.Load(), fC.gaveUp.Load(), sA.gaveUp.Load(), sB.gaveUp.Load())
		// (Attempt 2 may propose T=1 again, when its quorum's counters were
		// read on B and C: that round is stuck too, and the next one
		// proposes 2.)
		if fB.gaveUp.Load() < 1 || fC.gaveUp.Load() < 1 {
			t.Fatalf("setup: want attempt 1's fence given up on B and C")
		}
		if sA.stuck.Load() == 0 && sB.stuck.Load() == 0 {
			// The fix: no clean-up release with a caller's token.
			for _, st := range []*stall{fB, fC} {
				st.release()
			}
			checkSafety(t, "a failed fenced attempt with a caller's token released nothing", servers, l, "res")
			wantNotAcquiredByOther(t, ctx, servers, "res", l)
			return
		}
		if sA.gaveUp.Load() != 1 || sB.gaveUp.Load() != 1 {
			t.Fatalf("setup: want attempt 1's clean-up releases given up on A and B")
		}
		for _, st := range []*stall{fB, fC, sA, sB} {
			st.release()
		}
		waitFor(t, 3*time.Second, "the stuck calls delivered", func() bool {
			return sA.delivered.Load() == 1 && sB.delivered.Load() == 1 &&
				fB.delivered.Load() == fB.stuck.Load() && fC.delivered.Load() == fC.stuck.Load()
		})
		checkSafety(t, "after attempt 1's stuck clean-up releases reached A and B", servers, l, "res")
		wantNotAcquiredByOther(t, ctx, servers, "res", l)
	})
}

// ---------------------------------------------------------------------------
// Finding B: the top-up of a multi-key lock restores one key while the
// other expires, forever.

// TestAttack2TopUpManyNeverRestores: LockMany(k1, k2), auto-extended
// (DefaultTTL 1s: an extension every 600ms), N=3. C loses k2 (DEL, an
// eviction). Each extend_many answers 0 on C (a key missing) and, all or
// none, extends nothing there; the top-up then sets the missing key with
// the extension's lease, but leaves the key that is present with its old,
// shorter lease. That key expires before the next extension, which finds
// it missing and tops it up while the other one (not extended) expires in
// turn: C alternates between {k1} and {k2}, answers 0 to every extension,
// and never counts again. The lock runs without redundancy for as long as
// it is held (one more instance failure loses it), and C holds part of the
// set between extensions (which LockMany's doc says never happens).
//
// Fix: topup.lua should make every key of the set hold the token with at
// least the lease it sets (PEXPIRE the keys that hold the token when their
// PTTL is below ARGV[2]), so that a topped-up instance holds the whole set
// until the quorum's lease ends; or extend_many should extend the present
// keys even when it reports 0.
//
// The lock must stay held on A and B throughout: DefaultTTL 1.5s (an
// extension every 0.9s) and NodeTimeout 2s (loadedNodeTimeout), so that an
// extension may be 583ms late (0.4×TTL less the drift), uncut, before the
// lease runs out (388ms with 1s and a 500ms NodeTimeout).
func TestAttack2TopUpManyNeverRestores(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	const ttl = 1500 * time.Millisecond
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: ttl, NodeTimeout: loadedNodeTimeout})
	l, err := m.LockMany(ctx, []string{"k1", "k2"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	wantKeyEverywhere(t, servers, "k1", l.Token(), ttl)
	wantKeyEverywhere(t, servers, "k2", l.Token(), ttl)
	from := len(gs[2].replyLog())
	servers[2].Do(t, "DEL", "k2")
	n0 := gs[2].replyCount("extend_many")
	// Four extensions after the loss (about 3.6s); the first finds k2
	// missing and tops it up, so every later one should find both keys.
	waitFor(t, 15*time.Second, "four extensions on C after the loss", func() bool {
		return gs[2].replyCount("extend_many") >= n0+4
	})
	var ext []string
	for _, e := range gs[2].replyLog()[from:] {
		if strings.HasPrefix(e, "extend_many(") {
			ext = append(ext, e)
		}
	}
	yes := 0
	for _, e := range ext[1:] {
		if strings.HasSuffix(e, "=1") {
			yes++
		}
	}
	t.Logf("C's replies since it lost k2: %v", gs[2].replyLog()[from:])
	if !l.Valid() {
		t.Fatalf("the lock was lost (A and B answered every extension)")
	}
	if yes == 0 {
		t.Errorf("C never held the whole set again: its %d extend_many replies after the first top-up were all 0 (%v): "+
			"each top-up restored the missing key but left the other with its old lease, which expired before the next extension",
			len(ext)-1, ext[1:])
	}
}

// ---------------------------------------------------------------------------
// Finding C: a panicking Observer.

// panicObserver panics in Acquired once the lock was taken (when armed);
// every other event is ignored.
type panicObserver struct{ armed atomic.Bool }

func (o *panicObserver) Acquired(_ context.Context, e redlock.AcquireEvent) {
	if o.armed.Load() && e.Outcome == redlock.OutcomeAcquired {
		panic("observer bug")
	}
}
func (*panicObserver) Extended(context.Context, redlock.ExtendEvent) {}
func (*panicObserver) Unlocked(context.Context, redlock.UnlockEvent) {}
func (*panicObserver) Lost(redlock.LostEvent)                        {}
func (*panicObserver) Held(int)                                      {}
func (*panicObserver) Waiting(int)                                   {}
func (*panicObserver) InstanceCall(redlock.InstanceCallEvent)        {}
func (*panicObserver) InstanceState(redlock.InstanceStateEvent)      {}

// TestAttack2ObserverPanicLeaksLock: an Observer whose Acquired panics
// after a successful acquisition (a metrics bug). The panic reaches the
// caller, which recovers it (net/http recovers a handler's panic), with no
// handle to unlock. The Manager holds the lock and its watchdog extends
// it: the resource stays locked until Close, far longer than its TTL
// (500ms here), and no other client can take it. (A panic in any event
// reported on a background goroutine, InstanceCall, InstanceState,
// Extended, Lost, Held from a timer, crashes the process: see
// TestAttack2ObserverPanicCrashes.)
//
// Fix: recover around the Observer's calls (log the panic once), or at
// least call Acquired in a way that releases the lock if it panics; and
// say in the Observer doc that its methods must not panic.
func TestAttack2ObserverPanicLeaksLock(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	obs := &panicObserver{}
	obs.armed.Store(true)
	m := newManager(t, servers, redlock.Config{DefaultTTL: 500 * time.Millisecond, Observer: obs})
	var rec any
	func() {
		defer func() { rec = recover() }()
		_, _ = m.Lock(ctx, "res")
	}()
	t.Logf("Lock panicked: %v", rec)
	if rec == nil {
		// The fix: the Manager recovers the Observer's panic (and logs
		// it); the caller got its handle and nothing leaks.
		if n := len(m.Locks()); n != 1 {
			t.Errorf("after an Observer panic in Acquired, the Manager holds %d locks, want the caller's 1", n)
		}
		return
	}
	// Six TTLs later the resource must be free: nobody holds a handle.
	time.Sleep(3 * time.Second)
	other := newManager(t, servers, redlock.Config{})
	l2, err := other.TryLock(ctx, "res", redlock.TTL(time.Second))
	if err != nil {
		t.Errorf("3s (6 TTLs) after a Lock whose Observer panicked, the resource is still locked (Manager.Locks: %d): %v",
			len(m.Locks()), err)
		return
	}
	_ = l2.Unlock(ctx)
}

// TestAttack2ObserverPanicCrashes: a panic in an event reported on a
// background goroutine (here InstanceCall, on a call worker) used to end
// the process; the Manager now recovers and logs it. It runs itself in a
// child process.
func TestAttack2ObserverPanicCrashes(t *testing.T) {
	if os.Getenv("ATTACK2_OBSERVER_CHILD") == "1" {
		servers := redistest.Start(t, 1)
		m := newManager(t, servers, redlock.Config{Observer: &callPanicObserver{}})
		_, _ = m.TryLock(context.Background(), "res")
		time.Sleep(time.Second)
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAttack2ObserverPanicCrashes$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ATTACK2_OBSERVER_CHILD=1")
	out, err := cmd.CombinedOutput()
	// The Manager recovers an Observer's panics (and logs them): the child
	// runs to its end.
	if err != nil || strings.Contains(string(out), "panic: observer bug in InstanceCall") {
		t.Errorf("child: %v, output:\n%s", err, out)
	}
}

type callPanicObserver struct{ panicObserver }

func (*callPanicObserver) InstanceCall(redlock.InstanceCallEvent) {
	panic("observer bug in InstanceCall")
}

// ---------------------------------------------------------------------------
// Finding D: MISCONF (a failed background save: disk full, unwritable) is
// an outage that clears by itself, reported as a misconfiguration.

// TestAttack2MisconfIsTransient: with a save point configured and
// stop-writes-on-bgsave-error yes (Redis's defaults), an instance whose
// last background save failed refuses writes with MISCONF until a save
// succeeds, which Redis retries by itself every 5s once the disk is back.
// Like OOM (which the last review reclassified), it is a transient outage,
// not a configuration that no retry fixes. Here the save fails because its
// target path is a directory; the test removes the obstacle and saves as
// soon as the first attempt is refused (as the automatic retry would).
// LockWait with a 5s ctx should then take the lock; it returns
// ErrRejected at once (and the CLI exits 78, "configuration error").
//
// Fix: classify MISCONF as unavailability (retried), like OOM; keep
// WRONGTYPE, NOPERM, WRONGPASS/NOAUTH and script errors as rejections.
func TestAttack2MisconfIsTransient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	s := redistest.StartWith(t, redistest.Options{Args: []string{"--dir", dir, "--save", "3600 1"}})
	obstacle := filepath.Join(dir, "dump.rdb")
	if err := os.MkdirAll(filepath.Join(obstacle, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Do(t, "BGSAVE")
	waitFor(t, 5*time.Second, "the failed background save", func() bool {
		return strings.Contains(s.Do(t, "INFO", "persistence"), "rdb_last_bgsave_status:err")
	})
	if got := s.Do(t, "SET", "probe", "x"); !strings.HasPrefix(got, "MISCONF") {
		t.Fatalf("setup: SET answered %q, want MISCONF", got)
	}
	refused := make(chan struct{}, 1)
	obs := &callHook{onCall: func(e redlock.InstanceCallEvent) {
		if e.Outcome == redlock.OutcomeError {
			select {
			case refused <- struct{}{}:
			default:
			}
		}
	}}
	m := newManager(t, []*redistest.Server{s}, redlock.Config{Observer: obs, RetryDelayMin: 50 * time.Millisecond, RetryDelayMax: 50 * time.Millisecond})
	fixed := make(chan struct{})
	go func() {
		defer close(fixed)
		select {
		case <-refused:
		case <-time.After(10 * time.Second):
			return
		}
		// The disk is back: the next save succeeds.
		_ = os.RemoveAll(obstacle)
		_, _ = s.TryDo(time.Second, "BGSAVE")
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	l, err := m.LockWait(wctx, "res", redlock.TTL(5*time.Second))
	<-fixed
	t.Logf("LockWait after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		if errors.Is(err, redlock.ErrRejected) {
			t.Errorf("LockWait gave up at once with ErrRejected on MISCONF, which cleared %v later when a save succeeded: %v",
				time.Since(start).Round(time.Millisecond), err)
		} else {
			t.Errorf("LockWait: %v", err)
		}
		return
	}
	_ = l.Unlock(ctx)
}

// callHook is an Observer that reports each instance call to onCall.
type callHook struct {
	panicObserver
	onCall func(redlock.InstanceCallEvent)
}

func (h *callHook) InstanceCall(e redlock.InstanceCallEvent) { h.onCall(e) }

// ---------------------------------------------------------------------------
// Interleavings that held (regression tests).

// TestAttack2HeldTopUpBeforeUnlock: a lock (TTL 5s) whose key C lost; an
// Extend succeeds on A and B and sends C a top-up, which is held before it
// reaches C. Unlock then returns at quorum; its release to C must follow
// the top-up (not overtake it and leave C's restored key behind).
func TestAttack2HeldTopUpBeforeUnlock(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, "res", l.Token(), 5*time.Second)
	servers[2].Do(t, "DEL", "res")
	hC := gs[2].holdCalls(false, onScript("topup"))
	if err := l.Extend(ctx, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "C's top-up held", func() bool { return hC.held.Load() == 1 })
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	early := eventually(200*time.Millisecond, func() bool { return gs[2].callCount("release") > 0 })
	hC.release()
	waitFor(t, 3*time.Second, "C's release", func() bool { return gs[2].replyCount("release") > 0 })
	if early {
		t.Errorf("the release reached C before the top-up it should follow")
	}
	if v := get(t, servers[2], "res"); v != "(nil)" {
		t.Errorf("C holds the key after Unlock (%q, PTTL %d): the top-up landed after the release; C: %v",
			v, pttl(t, servers[2], "res"), gs[2].replyLog())
	}
}

// TestAttack2HeldNoTopUpAfterExpiry: a lock (TTL 2s) whose key C lost;
// Extend(5s) runs on A and B but their replies are held until the lock's
// deadline has passed: the extension succeeded on a quorum, too late. The
// lock is lost, Extend says ErrNotHeld, and no top-up re-creates C's key.
// (A's and B's keys do keep the 5s lease of that extension: a caller that
// does not Unlock after ErrNotHeld leaves them for 5s, the lease it asked
// for.) The lease is 2s, not shorter: the set-up between Lock and Extend
// (C's key read, DEL, each on a fresh connection) must finish while the
// lock is still valid, or Extend fails at once and no reply is ever held
// (it used to be 400ms). NodeTimeout 10s: the held replies' deadline,
// min(NodeTimeout, 5s), must not pass before the lock's deadline does.
func TestAttack2HeldNoTopUpAfterExpiry(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 10 * time.Second})
	l, err := m.Lock(ctx, "res", redlock.TTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "C's key", func() bool { return get(t, servers[2], "res") == l.Token() })
	servers[2].Do(t, "DEL", "res")
	until := l.Until()
	hA := gs[0].holdCalls(true, onScriptArg("extend", 1, "5000"))
	hB := gs[1].holdCalls(true, onScriptArg("extend", 1, "5000"))
	ext := goErr(func() error { return l.Extend(ctx, 5*time.Second) })
	waitFor(t, 3*time.Second, "A's and B's replies held", func() bool { return hA.held.Load() == 1 && hB.held.Load() == 1 })
	waitFor(t, 5*time.Second, "the lock's deadline to pass", func() bool { return time.Now().After(until.Add(10 * time.Millisecond)) })
	hA.release()
	hB.release()
	err = recv(t, ext, 3*time.Second, "Extend")
	t.Logf("Extend, replies after the deadline: %v", err)
	if !errors.Is(err, redlock.ErrNotHeld) {
		t.Errorf("Extend: %v, want ErrNotHeld", err)
	}
	if eventually(300*time.Millisecond, func() bool { return gs[2].callCount("topup") > 0 }) {
		t.Errorf("a top-up was sent for a lock that expired: C: %v", gs[2].replyLog())
	}
	if l.Valid() {
		t.Errorf("the lock is Valid after its deadline")
	}
}

// TestAttack2HeldTopUpNeverOverAcquisition: the holder's key on C is gone
// and another client's acquisition of C is in flight (its SET has run;
// its reply is held) while the holder extends: the extension finds C held
// by another token (no top-up), and the other client, refused on A and B,
// releases C. Then the same with the holder's extension reaching C first
// (C answers missing): its top-up runs after the other client's SET and
// finds it (-1), and sets nothing. NodeTimeout is long: a call held at a
// gate while the test does the next step must not reach its round's
// deadline (a clean-up release not sent behind a held acquisition leaves
// C's key, seen on a loaded CI run: "C free again" timed out).
func TestAttack2HeldTopUpNeverOverAcquisition(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 10 * time.Second})
	l, err := m.Lock(ctx, "res", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, "res", l.Token(), 10*time.Second)
	other, ogs := newGateManager(t, servers, redlock.Config{NodeTimeout: 10 * time.Second, RetryCount: 1})

	// 1. The other client's SET on C first.
	servers[2].Do(t, "DEL", "res")
	hO := ogs[2].holdCalls(true, onScriptArg("acquire", 1, "10000"))
	try := goErr(func() error { _, err := other.TryLock(ctx, "res", redlock.TTL(10*time.Second)); return err })
	waitFor(t, 3*time.Second, "the other client's SET on C", func() bool { return hO.held.Load() == 1 })
	if err := l.Extend(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	hO.release()
	if err := recv(t, try, 5*time.Second, "the other TryLock"); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Errorf("other TryLock: %v, want ErrNotAcquired", err)
	}
	if n := gs[2].callCount("topup"); n != 0 {
		t.Errorf("a top-up was sent to C, which another token held: C: %v", gs[2].replyLog())
	}

	// 2. The holder's extension reaches C first; its top-up is held
	// until the other client's SET has run on C.
	waitFor(t, 3*time.Second, "C free again", func() bool { return get(t, servers[2], "res") == "(nil)" })
	hT := gs[2].holdCalls(false, onScript("topup"))
	if err := l.Extend(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the top-up held before C", func() bool { return hT.held.Load() == 1 })
	hO2 := ogs[2].holdCalls(true, onScriptArg("acquire", 1, "9000"))
	try = goErr(func() error { _, err := other.TryLock(ctx, "res", redlock.TTL(9*time.Second)); return err })
	waitFor(t, 3*time.Second, "the other client's SET on C", func() bool { return hO2.held.Load() == 1 })
	hT.release()
	waitFor(t, 3*time.Second, "C's top-up answered", func() bool { return gs[2].replyCount("topup") == 1 })
	if v := get(t, servers[2], "res"); v == l.Token() {
		t.Errorf("the top-up overwrote the other client's key on C")
	}
	hO2.release()
	if err := recv(t, try, 5*time.Second, "the other TryLock"); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Errorf("other TryLock: %v, want ErrNotAcquired", err)
	}
	t.Logf("C: %v", gs[2].replyLog())
	checkSafety(t, "after two top-ups racing another client's acquisition", servers, l, "res")
	wantNotAcquiredByOther(t, ctx, servers, "res", l)
}

// TestAttack2HeldExpiryWaitNoStorm: the expiry-timed retry never makes a
// waiter retry faster than its delay when the refusals do not tell when
// the holder's keys expire, and never acquires while the holder is valid.
// (1) keys without a TTL (acquire answers -1): the waiter polls at its
// delay. (2) a holder whose keys keep being refreshed (auto-extended,
// DefaultTTL 1.5s): the waiter retries at most about once per expiry it
// was told of, and never takes the lock. (3) a holder that extends after
// the refusal: the timed retry is refused again.
//
// The holders must keep their locks: in (2) an extension may be 583ms late
// (0.4×TTL less the drift) before the lease runs out (388ms with 1s); in
// (3) the holder's fixed 1s lease leaves ~980ms from the waiter's first
// refusal to its Extend (~390ms with 400ms), and the waiter's attempts
// (RetryCount 10, every 200ms) outlast that lease, so that an Extend that
// did not move the keys' expiry would let it in.
func TestAttack2HeldExpiryWaitNoStorm(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	rec := &recorder{}
	m, cs := newCountingManager(t, servers, redlock.Config{Observer: rec, RetryDelayMin: 200 * time.Millisecond, RetryDelayMax: 200 * time.Millisecond})

	t.Run("no TTL", func(t *testing.T) {
		for _, s := range servers {
			s.Do(t, "SET", "forever", "someone")
		}
		n0 := cs.calls("acquire")
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := m.LockWait(wctx, "forever")
		calls := cs.calls("acquire") - n0
		t.Logf("LockWait 1s on keys without TTL: %v; %d acquire calls", err, calls)
		if calls > 3*7 {
			t.Errorf("%d acquire calls in 1s with a 200ms retry delay: want at most %d", calls, 3*7)
		}
	})

	t.Run("refreshed", func(t *testing.T) {
		hrec := &recorder{}
		// DefaultTTL 1.5s, not shorter: see TestAttack2WatchdogScheduledFromReturn.
		holder := newManager(t, servers, redlock.Config{DefaultTTL: 1500 * time.Millisecond, Observer: hrec})
		h, err := holder.Lock(ctx, "hot")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Unlock(ctx)
		n0 := cs.calls("acquire")
		// Longer than a lease: a holder whose keys were not refreshed in
		// time would let the waiter in.
		const window = 2500 * time.Millisecond
		wctx, cancel := context.WithTimeout(ctx, window)
		defer cancel()
		l, err := m.LockWait(wctx, "hot")
		calls := cs.calls("acquire") - n0
		t.Logf("LockWait %v behind a lock extended every 900ms: %v; %d acquire calls", window, err, calls)
		if err == nil {
			snap := hrec.snapshot()
			var ext []string
			for _, e := range snap.extended {
				ext = append(ext, fmt.Sprintf("%v+%v yes=%d err=%v", e.Start.Format("05.000"), e.Duration.Round(time.Millisecond), e.Yes, e.Err))
			}
			t.Errorf("acquired (at %v) while the holder is Valid: %v; holder lost: %+v; extensions: %v", time.Now().Format("05.000"), h.Valid(), snap.lost, ext)
			_ = l.Unlock(ctx)
		}
		// At least 600ms (0.4 TTL) left at each refusal, a 200ms delay: at
		// most ~13 attempts.
		if bound := 3 * (int(window/(200*time.Millisecond)) + 3); calls > bound {
			t.Errorf("%d acquire calls in %v: a retry storm (bound %d)", calls, window, bound)
		}
	})

	t.Run("extended after the refusal", func(t *testing.T) {
		holder, hgs := newGateManager(t, servers, redlock.Config{})
		h, err := holder.Lock(ctx, "ext", redlock.TTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// A waiter whose attempts outlast the holder's first lease.
		m, cs := newCountingManager(t, servers, redlock.Config{RetryCount: 10, RetryDelayMin: 200 * time.Millisecond, RetryDelayMax: 200 * time.Millisecond})
		n0 := cs.calls("acquire")
		res := goErr(func() error {
			l, err := m.Lock(ctx, "ext")
			if err == nil {
				if h.Valid() {
					t.Errorf("acquired while the holder is Valid")
				}
				_ = l.Unlock(ctx)
			}
			return err
		})
		waitFor(t, 3*time.Second, "the waiter refused", func() bool { return cs.calls("acquire") >= n0+3 })
		if err := h.Extend(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		_ = hgs
		err = recv(t, res, 10*time.Second, "the waiter's Lock")
		t.Logf("waiter: %v", err)
		if !errors.Is(err, redlock.ErrNotAcquired) {
			t.Errorf("waiter: %v, want ErrNotAcquired", err)
		}
		_ = h.Unlock(ctx)
	})
}

// TestAttack2HeldMaxClientsIsTransient: an instance at maxclients answers a
// new connection with "ERR max number of clients reached": unavailability,
// retried (not ErrRejected). LockWait takes the lock once a connection is
// free (freed when the first attempt failed).
func TestAttack2HeldMaxClientsIsTransient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := redistest.Start(t, 1)[0]
	s.Do(t, "CONFIG", "SET", "maxclients", "2")
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "+PONG") {
			t.Fatalf("PING: %q %v", buf[:n], err)
		}
		conns = append(conns, c)
	}
	failed := make(chan string, 1)
	obs := &callHook{onCall: func(e redlock.InstanceCallEvent) {
		if e.Outcome != redlock.OutcomeOK {
			select {
			case failed <- e.Outcome:
			default:
			}
		}
	}}
	m := newManager(t, []*redistest.Server{s}, redlock.Config{Observer: obs, RetryDelayMin: 50 * time.Millisecond, RetryDelayMax: 50 * time.Millisecond})
	freed := make(chan struct{})
	go func() {
		defer close(freed)
		select {
		case <-failed:
		case <-time.After(10 * time.Second):
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	start := time.Now()
	l, err := m.LockWait(wctx, "res", redlock.TTL(5*time.Second))
	<-freed
	t.Logf("LockWait at maxclients after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		t.Errorf("LockWait: %v", err)
		return
	}
	_ = l.Unlock(ctx)
}

// reentryObserver calls back into the Manager (Locks, which takes the
// Manager's lock and each lock's) from every event, on a goroutine it
// waits for: if an event is reported while the Manager holds one of those
// locks, the call does not return in time.
type reentryObserver struct {
	m       atomic.Pointer[redlock.Manager]
	blocked atomic.Int32
	events  atomic.Int32
	where   atomic.Value // string: the first event that was blocked
}

func (o *reentryObserver) probe(what string) {
	m := o.m.Load()
	if m == nil {
		return
	}
	o.events.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Locks()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		o.blocked.Add(1)
		o.where.CompareAndSwap(nil, what)
	}
}

func (o *reentryObserver) Acquired(context.Context, redlock.AcquireEvent) { o.probe("Acquired") }
func (o *reentryObserver) Extended(_ context.Context, e redlock.ExtendEvent) {
	o.probe(fmt.Sprintf("Extended(auto=%v)", e.Auto))
}
func (o *reentryObserver) Unlocked(context.Context, redlock.UnlockEvent) { o.probe("Unlocked") }
func (o *reentryObserver) Lost(e redlock.LostEvent)                      { o.probe("Lost " + e.Reason) }
func (o *reentryObserver) Held(int)                                      { o.probe("Held") }
func (o *reentryObserver) Waiting(int)                                   { o.probe("Waiting") }
func (o *reentryObserver) InstanceCall(redlock.InstanceCallEvent)        { o.probe("InstanceCall") }
func (o *reentryObserver) InstanceState(redlock.InstanceStateEvent)      { o.probe("InstanceState") }

// TestAttack2HeldObserverNotUnderLock: every event (acquisitions with
// waits, manual and batched and multi-key extensions with a top-up,
// unlocks, a loss by expiry and one by refusal, instance state changes,
// Close) is reported while the Manager holds none of its locks.
//
// The auto-extended lock "auto" must still be held when it is extended by
// hand, after the other two acquisitions: DefaultTTL 1.5s leaves ~1.48s for
// that (~390ms with 400ms), and NodeTimeout 2s (loadedNodeTimeout) does
// not cut a slow call of that extension. The fixed 300ms lock still
// expires, and the multi-key lock is still lost by refusal, after one
// successful automatic extension.
func TestAttack2HeldObserverNotUnderLock(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	obs := &reentryObserver{}
	m, err := redlock.New(addrs(servers), redlock.Config{Observer: obs, DefaultTTL: 1500 * time.Millisecond,
		NodeTimeout: loadedNodeTimeout, RetryDelayMin: 20 * time.Millisecond, RetryDelayMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	obs.m.Store(m)
	auto, err := m.Lock(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	many, err := m.LockMany(ctx, []string{"m1", "m2"})
	if err != nil {
		t.Fatal(err)
	}
	manyUntil := many.Until()
	fixed, err := m.Lock(ctx, "fixed", redlock.TTL(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_ = fixed.Lost()
	servers[2].Do(t, "DEL", "auto")
	if err := auto.Extend(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// A waiter behind the fixed lock, which expires.
	w, err := m.LockWait(ctx, "fixed")
	if err != nil {
		t.Fatal(err)
	}
	// A loss by refusal: the keys of "many" deleted everywhere, once the
	// watchdog extended it (a multi-key extension, reported).
	waitFor(t, 10*time.Second, "an automatic extension of the multi-key lock", func() bool {
		return many.Until().After(manyUntil) || isClosed(many.Lost())
	})
	if !many.Until().After(manyUntil) {
		t.Errorf("the multi-key lock was lost before its first automatic extension")
	}
	for _, s := range servers {
		s.Do(t, "DEL", "m1", "m2")
	}
	waitClosed(t, many.Lost(), 5*time.Second, "the multi-key lock lost")
	// An instance down and back.
	servers[1].Pause(t)
	_, _ = m.TryLock(ctx, "probe", redlock.TTL(time.Second))
	servers[1].Resume(t)
	time.Sleep(time.Second) // watchdog batches meanwhile
	_ = w.Unlock(ctx)
	if err := m.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("%d events probed", obs.events.Load())
	if n := obs.blocked.Load(); n > 0 {
		t.Errorf("%d events were reported while the Manager held a lock (first: %v)", n, obs.where.Load())
	}
}

// ---------------------------------------------------------------------------
// Finding E: one lock's short TTL bounds the watchdog batch of every lock.

// latencyClient adds a fixed latency to the calls of one script: a network
// or a loaded server that answers them in d (well within NodeTimeout).
type latencyClient struct {
	inner  redlock.Client
	script string
	d      time.Duration
	calls  atomic.Int32
}

func (c *latencyClient) wait(ctx context.Context, sha string) error {
	if scriptName(sha) != c.script {
		return nil
	}
	c.calls.Add(1)
	select {
	case <-time.After(c.d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *latencyClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	if err := c.wait(ctx, sha); err != nil {
		return nil, err
	}
	return c.inner.EvalSha(ctx, sha, keys, args)
}

func (c *latencyClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	if err := c.wait(ctx, sha1Hex(src)); err != nil {
		return nil, err
	}
	return c.inner.Eval(ctx, src, keys, args)
}

// TestAttack2BatchDeadlineFromShortestTTL: two auto-extended locks S and M
// (DefaultTTL 2s, NodeTimeout 2s), taken together, so one watchdog batch
// extends both. Every instance answers extend_batch in 20ms. The owner of
// M calls M.Extend(10ms): leases are never shortened, so nothing changes
// on the instances and M's Until stays, but M's TTL becomes 10ms, and the
// batch's deadline is min(NodeTimeout, the shortest TTL in the batch):
// 10ms for S as well. Every batch times out; S and M are retried together
// (both at min(RetryDelayMin, left/4)) in the same batch, until S's
// deadline passes: S is lost though every instance answers its extension
// in 20ms, 1/100 of NodeTimeout. (With a 512-lock batch on a busy server
// the same holds for every lock batched with the short one.)
//
// S must stay held with a correct Manager: its first batch may be 768ms
// late (0.4×TTL less the drift and the 20ms latency) before its lease runs
// out (368ms with 1s).
//
// Fix: bound each lock's part of the batch by its own TTL (one call per
// deadline class, or the batch at NodeTimeout and each lock's outcome
// judged by validity(ttl, elapsed), which afterAutoExtend already does);
// or keep the TTL of an auto-extended lock at DefaultTTL (a shorter manual
// Extend "changes nothing", as its doc says).
func TestAttack2BatchDeadlineFromShortestTTL(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	loadScripts(t, servers)
	clients := make([]redlock.Client, len(servers))
	lcs := make([]*latencyClient, len(servers))
	for i, s := range servers {
		lcs[i] = &latencyClient{inner: goredis.New(newGoRedis(t, s.Addr())), script: "extend_batch", d: 20 * time.Millisecond}
		clients[i] = lcs[i]
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: loadedNodeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	s, err := m.Lock(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	mm, err := m.Lock(ctx, "M")
	if err != nil {
		t.Fatal(err)
	}
	sDeadline := s.Until()
	if err := mm.Extend(ctx, 10*time.Millisecond); err != nil {
		t.Fatalf("M.Extend(10ms): %v", err)
	}
	t.Logf("after M.Extend(10ms): M Until now+%v (unchanged), S Until now+%v",
		time.Until(mm.Until()).Round(time.Millisecond), time.Until(sDeadline).Round(time.Millisecond))
	select {
	case <-s.Lost():
	case <-time.After(time.Until(sDeadline) + 500*time.Millisecond):
	}
	if !s.Valid() {
		t.Errorf("S lost at its first deadline after %d extend_batch calls answered in 20ms each (NodeTimeout 2s): "+
			"the batch's deadline was M's 10ms TTL", lcs[0].calls.Load())
	}
}

// TestAttack2HeldLateTopUp: the round-end path of the top-up (an Extend
// that returned at quorum before C answered that the key is missing).
// (1) C's reply arrives after Extend returned: C gets the key back, with
// no more than the extension's lease. (2) The lock is unlocked before C's
// reply arrives: no top-up, and C holds nothing after its release.
// NodeTimeout is long: C's reply is held while the test goes on (Unlock in
// (2)), and a reply dropped at its deadline would send no top-up in (1).
func TestAttack2HeldLateTopUp(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 10 * time.Second})
	for _, unlock := range []bool{false, true} {
		res := fmt.Sprintf("late-%v", unlock)
		l, err := m.Lock(ctx, res, redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wantKeyEverywhere(t, servers, res, l.Token(), 5*time.Second)
		servers[2].Do(t, "DEL", res)
		ttlArg := "4000"
		if unlock {
			ttlArg = "4500"
		}
		h := gs[2].holdCalls(true, onScriptArg("extend", 1, ttlArg))
		ms, _ := time.ParseDuration(ttlArg + "ms")
		if err := l.Extend(ctx, ms); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, "C's reply held", func() bool { return h.held.Load() == 1 })
		topups := gs[2].callCount("topup")
		if unlock {
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		h.release()
		if !unlock {
			waitFor(t, 3*time.Second, "the late top-up on C", func() bool { return get(t, servers[2], res) == l.Token() })
			if p := pttl(t, servers[2], res); p <= 0 || p > ms.Milliseconds() {
				t.Errorf("restored key's PTTL %d, want in (0, %d]", p, ms.Milliseconds())
			}
			_ = l.Unlock(ctx)
			continue
		}
		waitFor(t, 3*time.Second, "C's release", func() bool { return gs[2].replyCount("release") >= 2 })
		if eventually(200*time.Millisecond, func() bool { return gs[2].callCount("topup") > topups }) {
			t.Errorf("a top-up was sent after Unlock")
		}
		if v := get(t, servers[2], res); v != "(nil)" {
			t.Errorf("C holds %q after Unlock; C: %v", v, gs[2].replyLog())
		}
	}
}

// errorsClient records the error replies of its calls, by prefix.
type errorsClient struct {
	inner redlock.Client
	seen  sync.Map // prefix → count (*atomic.Int32)
}

func (c *errorsClient) note(err error) {
	if err == nil {
		return
	}
	p, _, _ := strings.Cut(err.Error(), " ")
	v, _ := c.seen.LoadOrStore(p, new(atomic.Int32))
	v.(*atomic.Int32).Add(1)
}

func (c *errorsClient) count(prefix string) int32 {
	if v, ok := c.seen.Load(prefix); ok {
		return v.(*atomic.Int32).Load()
	}
	return 0
}

func (c *errorsClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	v, err := c.inner.EvalSha(ctx, sha, keys, args)
	c.note(err)
	return v, err
}

func (c *errorsClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	v, err := c.inner.Eval(ctx, src, keys, args)
	c.note(err)
	return v, err
}

// TestAttack2HeldLoadingIsTransient: an instance restarting with a dataset
// to load answers LOADING (here for about a second: 10,000 keys at
// key-load-delay 100µs, events processed every KiB loaded):
// unavailability, retried. A LockWait made while it
// is down takes the lock once it has loaded, and saw LOADING meanwhile.
func TestAttack2HeldLoadingIsTransient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := redistest.StartWith(t, redistest.Options{Args: []string{"--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"}})
	s.Do(t, "EVAL", "for i = 1, 10000 do redis.call('SET', 'filler:' .. i, 'x') end", "0")
	s.Do(t, "SAVE")
	ec := &errorsClient{inner: goredis.New(newGoRedis(t, s.Addr()))}
	m, err := redlock.NewFromClients([]redlock.Client{ec}, redlock.Config{RetryDelayMin: 20 * time.Millisecond, RetryDelayMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	s.Kill(t)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		l, err := m.LockWait(wctx, "res", redlock.TTL(5*time.Second))
		if err == nil {
			_ = l.Unlock(ctx)
		}
		res <- err
	}()
	s.Restart(t) // returns once loaded
	err = recv(t, res, 20*time.Second, "LockWait")
	var seen []string
	ec.seen.Range(func(k, v any) bool { seen = append(seen, fmt.Sprint(k, "×", v.(*atomic.Int32).Load())); return true })
	t.Logf("LockWait across a restart with loading: %v; error replies and errors seen: %v", err, seen)
	if err != nil {
		t.Errorf("LockWait: %v", err)
	}
	if ec.count("LOADING") == 0 {
		t.Errorf("setup: no LOADING reply seen")
	}
}

// TestAttack2HeldBatchSkipsPendingThenClose: an auto-extended lock
// (DefaultTTL 3s) whose manual Extend is held before C (pending until its
// deadline, min(NodeTimeout, TTL) = 3s) when the watchdog batch runs
// (0.6×TTL after the Extend's start): the batch extends it on A and B
// without waiting (C skipped), and waits for C's pending call off its
// path. Close during that wait returns once the held call ends, releases
// the lock, and leaves no goroutine behind (TestMain's goleak check).
// The batch must come before the held call's deadline: 0.4×TTL apart, so
// the TTL is 3s (1.2s of slack); with 600ms (240ms of slack) a batch
// delayed on a loaded machine came after C's call had ended and was sent
// to C ("the batch reached C"), and Lock to Extend had to fit in 600ms.
func TestAttack2HeldBatchSkipsPendingThenClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: 3 * time.Second, NodeTimeout: 10 * time.Second})
	l, err := m.Lock(ctx, "res")
	if err != nil {
		t.Fatal(err)
	}
	first := l.Until()
	h := gs[2].holdCalls(false, func(script string, args []string) bool {
		return script == "extend" && len(args) > 0 && args[0] == l.Token()
	})
	if err := l.Extend(ctx, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the Extend held before C", func() bool { return h.held.Load() == 1 })
	waitFor(t, 3*time.Second, "a batch on A and B", func() bool {
		return gs[0].replyCount("extend_batch") > 0 && gs[1].replyCount("extend_batch") > 0
	})
	if n := gs[2].callCount("extend_batch"); n != 0 {
		t.Errorf("the batch reached C (%d calls) before the lock's pending call there", n)
	}
	if !l.Valid() || !l.Until().After(first) {
		t.Errorf("the batch did not extend the lock on A and B (Valid %v, Until moved %v)", l.Valid(), l.Until().Sub(first))
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := m.Close(cctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	t.Logf("Close with C's call held: %v", time.Since(start).Round(time.Millisecond))
	for _, s := range servers[:2] {
		if v := get(t, s, "res"); v != "(nil)" {
			t.Errorf("%s holds %q after Close", s, v)
		}
	}
	h.release()
}

// ---------------------------------------------------------------------------
// Finding F: a top-up queued behind a pending call outlives the quorum.

// ---------------------------------------------------------------------------
// Finding G: the watchdog counts 0.6×TTL from the wrong moment.

// TestAttack2WatchdogScheduledFromReturn: a lock's validity counts from the
// start of its acquisition (or extension), but the watchdog's first
// extension of a single-key lock is scheduled 0.6×TTL after the lock was
// created (newLock: now + refreshDelay), and every extension of a
// multi-key lock 0.6×TTL after the previous one returned (autoExtend:
// refresh.Reset(refreshDelay) after extend). An acquisition or extension
// that took more than ~0.4×TTL therefore leaves the lock to expire before
// its next extension, though every instance answers. DefaultTTL 2s,
// NodeTimeout 2s:
//
//	acquisition: the process pauses 1s after the replies
//	(testhooks.AfterReplies; or a fenced lock whose two rounds take
//	500ms each): Lock returns a lock valid until start+1.98s whose first
//	extension was due at start+2.2s.
//	multi-key: every extend_many is answered in 520ms: extension k
//	proves start_k+1.98s, the next started at start_k+1.72s and
//	returned at start_k+2.24s.
//
// The figures leave the scheduling from the start a wide margin (an
// extension may take 780ms, 260ms beyond the injected 520ms, before the
// lock runs out; with TTL 1s and 300ms it was 90ms, which a loaded -race
// run overran), and the scheduling from the return none.
//
// (This also loses short-TTL locks on a loaded machine: with DefaultTTL
// 300ms under -race, Lock takes >120ms often enough that the holder of
// TestAttack2HeldExpiryWaitNoStorm was lost at its first deadline.)
//
// Fix: schedule from the start: newLock → schedule(l, start+refreshDelay)
// (or until − 0.4×TTL), autoExtend → Reset(start+refreshDelay−now), as
// afterAutoExtend already does for the batch.
func TestAttack2WatchdogScheduledFromReturn(t *testing.T) {
	t.Parallel()
	t.Run("acquisition", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		m := newManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: 2 * time.Second})
		var n atomic.Int32
		installHooks(t, m, &testhooks.Hooks{AfterReplies: func(string) {
			if n.Add(1) == 1 {
				time.Sleep(time.Second)
			}
		}})
		l, err := m.Lock(ctx, "res")
		if err != nil {
			t.Fatal(err)
		}
		first := l.Until()
		t.Logf("Lock returned; valid for %v more", time.Until(first).Round(time.Millisecond))
		select {
		case <-l.Lost():
		case <-time.After(time.Until(first) + time.Second):
		}
		if !l.Valid() {
			t.Errorf("the lock was lost at its first deadline (Lost closed %v): its first extension was due 1.2s after Lock returned, after that deadline",
				isClosed(l.Lost()))
		}
		_ = l.Unlock(ctx)
	})
	t.Run("multi-key", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		loadScripts(t, servers)
		clients := make([]redlock.Client, len(servers))
		for i, s := range servers {
			clients[i] = &latencyClient{inner: goredis.New(newGoRedis(t, s.Addr())), script: "extend_many", d: 520 * time.Millisecond}
		}
		m, err := redlock.NewFromClients(clients, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeQuietly(t, m) })
		l, err := m.LockMany(ctx, []string{"k1", "k2"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.Lost():
		case <-time.After(5 * time.Second):
		}
		if !l.Valid() {
			t.Errorf("the multi-key lock was lost (Lost closed %v) though every extension succeeded in 520ms (NodeTimeout 2s, TTL 2s): "+
				"the next one was due 1.2s after the previous returned", isClosed(l.Lost()))
		}
		_ = l.Unlock(ctx)
	})
}
