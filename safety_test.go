package redlock_test

// Safety regression tests: deterministic interleavings in which a handle
// reports Valid while no quorum of the instances holds its key (under its
// token) until its Until. A gateClient wraps the go-redis adapter of one
// instance and holds that instance's calls, chosen by script and argument,
// before they reach the server or after the server ran them (the reply
// held); the gates are released on events (a call returned, a reply
// arrived, a call was made), never on timing luck. Where a fixed Manager
// may legitimately never produce the event a buggy one does (a call it
// sequences behind a held one), a short fallback decides when to release;
// the final assertions hold whatever that timing is.
//
// Run them together with go test -race -count=5 -run TestSafety .

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// ---------------------------------------------------------------------------
// Scripts by name.

// embeddedScripts reads scripts/*.lua, the files the package embeds (the
// tests run in the package directory): name → source.
var embeddedScripts = sync.OnceValues(func() (map[string]string, error) {
	files, err := filepath.Glob("scripts/*.lua")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(filepath.Base(f), ".lua")] = string(b)
	}
	return out, nil
})

func sha1Hex(src string) string {
	sum := sha1.Sum([]byte(src))
	return hex.EncodeToString(sum[:])
}

// scriptNamesBySHA maps the SHA1 of every embedded script to its name.
var scriptNamesBySHA = sync.OnceValue(func() map[string]string {
	scripts, err := embeddedScripts()
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(scripts))
	for name, src := range scripts {
		out[sha1Hex(src)] = name
	}
	return out
})

// scriptName names the script whose SHA1 is sha ("sha:1234abcd" if unknown).
func scriptName(sha string) string {
	if n, ok := scriptNamesBySHA()[sha]; ok {
		return n
	}
	return "sha:" + sha[:min(8, len(sha))]
}

// ---------------------------------------------------------------------------
// gateClient: one instance whose calls the test can hold.

// hold keeps the matching calls of one gateClient until release. With
// after set, the call runs on the server first and its reply is held;
// otherwise the call is held before it reaches the server. A held call
// also ends when its context does (a caller that stopped waiting gets the
// context's error, as from a slow server).
type hold struct {
	after bool
	match func(script string, args []string) bool

	open   chan struct{}
	once   sync.Once
	held   atomic.Int32 // calls that reached the hold
	passed atomic.Int32 // held calls that went on (released, or their ctx ended)
}

func (h *hold) release() { h.once.Do(func() { close(h.open) }) }

func (h *hold) wait(ctx context.Context) error {
	h.held.Add(1)
	defer h.passed.Add(1)
	select {
	case <-h.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onScript matches every call of the named script.
func onScript(name string) func(string, []string) bool {
	return func(script string, _ []string) bool { return script == name }
}

// onScriptArg matches the calls of the named script whose argument i is v
// (for acquire, extend and extend_many, argument 1 is the TTL in ms).
func onScriptArg(name string, i int, v string) func(string, []string) bool {
	return func(script string, args []string) bool {
		return script == name && len(args) > i && args[i] == v
	}
}

// gateClient wraps a Client: it applies the installed holds and records
// every call (when made) and every reply (when returned to the Manager),
// per script.
type gateClient struct {
	inner redlock.Client
	name  string

	mu      sync.Mutex
	holds   []*hold
	calls   map[string]int // calls made, per script
	replies map[string]int // calls answered, per script
	log     []string       // the answered calls, in order: "script(ttl)=reply"
}

func (c *gateClient) String() string { return c.name }

// holdCalls installs a hold on c's calls that match.
func (c *gateClient) holdCalls(after bool, match func(script string, args []string) bool) *hold {
	h := &hold{after: after, match: match, open: make(chan struct{})}
	c.mu.Lock()
	c.holds = append(c.holds, h)
	c.mu.Unlock()
	return h
}

// releaseAll opens every hold (t.Cleanup, before the Manager closes).
func (c *gateClient) releaseAll() {
	c.mu.Lock()
	hs := slices.Clone(c.holds)
	c.mu.Unlock()
	for _, h := range hs {
		h.release()
	}
}

func (c *gateClient) callCount(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[script]
}

func (c *gateClient) replyCount(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replies[script]
}

func (c *gateClient) replyLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// begin counts a call and returns the first hold that matches it.
func (c *gateClient) begin(script string, args []string) *hold {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = make(map[string]int)
		c.replies = make(map[string]int)
	}
	c.calls[script]++
	for _, h := range c.holds {
		if h.match(script, args) {
			return h
		}
	}
	return nil
}

func (c *gateClient) end(script string, args []string, v any, err error) {
	ttl := ""
	if len(args) > 1 {
		ttl = args[1]
	}
	entry := fmt.Sprintf("%s(%s)=%v", script, ttl, v)
	if err != nil {
		entry = fmt.Sprintf("%s(%s)=error %v", script, ttl, err)
	}
	c.mu.Lock()
	c.replies[script]++
	c.log = append(c.log, entry)
	c.mu.Unlock()
}

func (c *gateClient) run(ctx context.Context, sha string, keys, args []string, do func() (any, error)) (any, error) {
	script := scriptName(sha)
	h := c.begin(script, args)
	if h != nil && !h.after {
		if err := h.wait(ctx); err != nil {
			c.end(script, args, nil, err)
			return nil, err
		}
	}
	v, err := do()
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		// The Manager falls back to EVAL, which comes through here again.
		// (Not expected: newGateManager loads every script first.)
		return v, err
	}
	if h != nil && h.after {
		if werr := h.wait(ctx); werr != nil {
			c.end(script, args, nil, werr)
			return nil, werr
		}
	}
	c.end(script, args, v, err)
	return v, err
}

func (c *gateClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	return c.run(ctx, sha, keys, args, func() (any, error) { return c.inner.EvalSha(ctx, sha, keys, args) })
}

func (c *gateClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	return c.run(ctx, sha1Hex(src), keys, args, func() (any, error) { return c.inner.Eval(ctx, src, keys, args) })
}

// newGateManager builds a Manager with NewFromClients over go-redis clients
// wrapped in gateClients (as newCountingManager does). Every embedded
// script is loaded on the servers first, so that no call takes the
// NOSCRIPT/EVAL path. Cleanups: the holds open, then the Manager closes,
// then the go-redis clients close.
func newGateManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, []*gateClient) {
	t.Helper()
	scripts, err := embeddedScripts()
	if err != nil || len(scripts) == 0 {
		t.Fatalf("reading scripts/*.lua: %v (%d scripts)", err, len(scripts))
	}
	for _, name := range []string{"acquire", "extend", "release"} {
		if got, want := sha1Hex(scripts[name]), redlock.ScriptSHA(name); got != want {
			t.Fatalf("SHA1 of scripts/%s.lua = %s, the package runs %s", name, got, want)
		}
	}
	for _, s := range servers {
		for name, src := range scripts {
			if got := s.Do(t, "SCRIPT", "LOAD", src); got != sha1Hex(src) {
				t.Fatalf("%s: SCRIPT LOAD %s: %q", s, name, got)
			}
		}
	}
	gs := make([]*gateClient, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		gs[i] = &gateClient{inner: goredis.New(newGoRedis(t, s.Addr())), name: s.Addr()}
		clients[i] = gs[i]
	}
	m, err := redlock.NewFromClients(clients, cfg)
	if err != nil {
		t.Fatalf("NewFromClients: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	t.Cleanup(func() {
		for _, g := range gs {
			g.releaseAll()
		}
	})
	return m, gs
}

// ---------------------------------------------------------------------------
// The safety invariant.

// instanceNames labels the instances of the N=3 tests.
var instanceNames = []string{"A", "B", "C", "D", "E"}

// checkSafety checks the safety invariant for l, whose Redis keys are keys:
// while l reports Valid, a quorum of the instances must hold every key
// under l's token for at least until l.Until(). It reads GET, PTTL and GET
// of every key on every server between t0 and t1; an instance counts for
// the smallest PTTL of its keys if every key holds the token, else 0; q is
// the quorum-th largest of those. It reports a violation when l is Valid
// and Until is after t1 + q + 5ms. Valid and Until are read both before t0
// and after t1, and the earlier of the two Untils counts (an extension that
// ends meanwhile may have set some keys after they were read); a concurrent
// shortening of the lease is taken into account the same way.
func checkSafety(t *testing.T, what string, servers []*redistest.Server, l *redlock.Lock, keys ...string) {
	t.Helper()
	quorum := len(servers)/2 + 1
	valid0, until0 := l.Valid(), l.Until()
	t0 := time.Now()
	held := make([]int64, len(servers))
	per := make([]string, len(servers))
	for i, s := range servers {
		least := int64(-1)
		var parts []string
		for _, k := range keys {
			v1 := get(t, s, k)
			p := pttl(t, s, k)
			v2 := get(t, s, k)
			ms := p
			switch {
			case v1 != l.Token() || v2 != l.Token() || p == -2:
				ms = 0
			case p == -1: // no TTL: held for good
				ms = 1 << 40
			}
			if least < 0 || ms < least {
				least = ms
			}
			val := v1
			if v1 == l.Token() {
				val = "token"
			}
			parts = append(parts, fmt.Sprintf("%s=%s/PTTL %d", k, val, p))
		}
		held[i] = max(least, 0)
		per[i] = instanceNames[min(i, len(instanceNames)-1)] + ": " + strings.Join(parts, ", ")
	}
	t1 := time.Now()
	valid1, until1 := l.Valid(), l.Until()
	sorted := slices.Clone(held)
	slices.Sort(sorted)
	slices.Reverse(sorted)
	q := time.Duration(sorted[quorum-1]) * time.Millisecond
	until := until0
	if until1.Before(until) {
		until = until1
	}
	if valid0 && valid1 && until.After(t1.Add(q+5*time.Millisecond)) {
		t.Errorf("safety invariant violated (%s): the lock reports Valid with Until = now+%v, "+
			"but a quorum (%d of %d) holds its keys under its token for only %v (read in %v); per instance: %s",
			what, until.Sub(t1).Round(time.Millisecond), quorum, len(servers), q,
			t1.Sub(t0).Round(time.Millisecond), strings.Join(per, "; "))
	}
}

// ---------------------------------------------------------------------------
// Small helpers.

// eventually polls cond every millisecond for at most d; it reports
// whether cond held. A fallback, never an assertion.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// goErr runs f on its own goroutine; its error arrives on the channel.
func goErr(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// recv waits for the result of goErr, failing the test after d.
func recv(t *testing.T, ch <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

// recvOr waits for the result of goErr for at most d: ok is false when it
// has not arrived (the caller then decides on a fallback).
func recvOr(ch <-chan error, d time.Duration) (err error, ok bool) {
	select {
	case err := <-ch:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// wantNotAcquiredByOther checks that another Manager cannot take resource
// while l (on the same instances) reports Valid: two holders otherwise.
func wantNotAcquiredByOther(t *testing.T, ctx context.Context, servers []*redistest.Server, resource string, l *redlock.Lock) {
	t.Helper()
	other := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	l2, err := other.TryLock(ctx, resource, redlock.TTL(5*time.Second))
	if err == nil {
		if l.Valid() {
			t.Errorf("two holders: another Manager's TryLock(%q) succeeded (Until now+%v) while the first lock is Valid (Until now+%v)",
				resource, time.Until(l2.Until()).Round(time.Millisecond), time.Until(l.Until()).Round(time.Millisecond))
		}
		return
	}
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Errorf("another Manager's TryLock(%q): %v, want ErrNotAcquired", resource, err)
	}
}

// wantHeldWhileValid checks that every key of l holds l's token on a
// quorum of the servers, if l is Valid before and after they are read (a
// lock that ended, e.g. its auto-extension starved on a loaded machine,
// need not be held).
func wantHeldWhileValid(t *testing.T, servers []*redistest.Server, l *redlock.Lock, keys ...string) {
	t.Helper()
	valid0 := l.Valid()
	held := make(map[string]int, len(keys))
	for _, k := range keys {
		for _, s := range servers {
			if get(t, s, k) == l.Token() {
				held[k]++
			}
		}
	}
	if !valid0 || !l.Valid() {
		t.Logf("the lock is no longer Valid: not checking its keys")
		return
	}
	for _, k := range keys {
		if held[k] < len(servers)/2+1 {
			t.Errorf("%q holds the token on %d of %d instances while the lock is Valid, want a quorum", k, held[k], len(servers))
		}
	}
}

// ---------------------------------------------------------------------------
// 1. A watchdog extension that completes late overrides a shorter manual
// Extend.

// TestSafetyWatchdogBatchAfterShorterExtend: an auto-extended lock
// (DefaultTTL 2s). Its first batched extension (extend_batch, PEXPIRE 2000)
// runs on A, B and C, but C's reply is held, so the batch completes only
// after the owner's Extend(300ms) returned at quorum (A and B applied 2000,
// then 300). Then C's reply is released: the batch's result (start + 2s)
// must not become the validity deadline, since the keys now hold 300ms.
// (Holding C's batch before it reaches C reproduces it too: C then holds
// 2000, A and B 300, and the quorum-th largest is still 300.)
func TestSafetyWatchdogBatchAfterShorterExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: 2 * time.Second})
	hC := gs[2].holdCalls(true, onScript("extend_batch"))

	l, err := m.Lock(ctx, "res")
	if err != nil {
		t.Fatal(err)
	}
	// The watchdog's first batch, at 0.6×TTL: C ran it, its reply is held;
	// A and B answered.
	waitFor(t, 5*time.Second, "the first extend_batch on C", func() bool { return hC.held.Load() >= 1 })
	waitFor(t, 3*time.Second, "A's and B's replies to the first extend_batch", func() bool {
		return gs[0].replyCount("extend_batch") >= 1 && gs[1].replyCount("extend_batch") >= 1
	})

	ext := goErr(func() error { return l.Extend(ctx, 300*time.Millisecond) })
	// Release C once Extend returned. A fixed Manager may sequence the
	// extension behind the batch in flight (then it cannot return while C
	// is held): release after a short wait then.
	extErr, returned := recvOr(ext, 500*time.Millisecond)
	untilAfterExtend := l.Until()
	batchCalls := gs[0].callCount("extend_batch") + gs[1].callCount("extend_batch") + gs[2].callCount("extend_batch")
	hC.release()
	if !returned {
		t.Logf("Extend(300ms) had not returned 500ms after it started: held replies released")
		extErr = recv(t, ext, 5*time.Second, "Extend(300ms)")
		untilAfterExtend = l.Until()
	}
	// An error (its calls' 300ms deadline can pass on a loaded machine) is
	// no excuse either: the invariant below decides.
	t.Logf("Extend(300ms): %v", extErr)
	// The batch completes once C's reply is through; wait until its outcome
	// was applied: the deadline moved, or the next batch was sent (the
	// extender schedules it when it applies the outcome); at most 1s.
	waitFor(t, 3*time.Second, "C's reply to the held extend_batch", func() bool { return hC.passed.Load() >= 1 })
	eventually(time.Second, func() bool {
		n := gs[0].callCount("extend_batch") + gs[1].callCount("extend_batch") + gs[2].callCount("extend_batch")
		return !l.Until().Equal(untilAfterExtend) || n > batchCalls
	})

	checkSafety(t, "after a late watchdog batch and Extend(300ms)", servers, l, "res")
	wantHeldWhileValid(t, servers, l, "res")
	_ = l.Unlock(ctx)
}

// TestSafetyWatchdogManyAfterShorterExtend is the multi-key variant: a
// LockMany lock is auto-extended by a round of its own (the extend_many
// script, collected at quorum). Its extension to 2000 ms runs on every instance,
// but B's and C's replies are held (one held instance would not delay it:
// it returns at quorum), so it completes only after the owner's
// Extend(300ms) returned. Its result must not become the deadline.
func TestSafetyWatchdogManyAfterShorterExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: 2 * time.Second})
	hB := gs[1].holdCalls(true, onScriptArg("extend_many", 1, "2000"))
	hC := gs[2].holdCalls(true, onScriptArg("extend_many", 1, "2000"))

	l, err := m.LockMany(ctx, []string{"r1", "r2"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the auto-extension's extend_many on B and C", func() bool {
		return hB.held.Load() >= 1 && hC.held.Load() >= 1
	})
	waitFor(t, 3*time.Second, "A's reply to the auto-extension", func() bool { return gs[0].replyCount("extend_many") >= 1 })

	ext := goErr(func() error { return l.Extend(ctx, 300*time.Millisecond) })
	extErr, returned := recvOr(ext, 500*time.Millisecond) // see TestSafetyWatchdogBatchAfterShorterExtend
	untilAfterExtend := l.Until()
	calls := gs[0].callCount("extend_many") + gs[1].callCount("extend_many") + gs[2].callCount("extend_many")
	hB.release()
	hC.release()
	if !returned {
		t.Logf("Extend(300ms) had not returned 500ms after it started: held replies released")
		extErr = recv(t, ext, 5*time.Second, "Extend(300ms)")
		untilAfterExtend = l.Until()
	}
	// An error (its calls' 300ms deadline can pass on a loaded machine) is
	// no excuse either: the invariant below decides.
	t.Logf("Extend(300ms): %v", extErr)
	waitFor(t, 3*time.Second, "B's and C's replies to the held extend_many", func() bool {
		return hB.passed.Load() >= 1 && hC.passed.Load() >= 1
	})
	// Applied: the deadline moved, or the next auto-extension was sent.
	eventually(time.Second, func() bool {
		n := gs[0].callCount("extend_many") + gs[1].callCount("extend_many") + gs[2].callCount("extend_many")
		return !l.Until().Equal(untilAfterExtend) || n > calls
	})

	checkSafety(t, "after a late auto-extension and Extend(300ms)", servers, l, "r1", "r2")
	wantHeldWhileValid(t, servers, l, "r1", "r2")
	_ = l.Unlock(ctx)
}

// ---------------------------------------------------------------------------
// 2. Concurrent Extends of one handle: the last reply must not win.

// TestSafetyConcurrentExtendsLastReplyWins: a fixed-lease lock (5s).
// Extend(3s) runs on every instance but its replies are held; then
// Extend(300ms) on the same handle runs after it and returns first; then
// the 3s replies are released. The keys hold 300ms: the deadline must not
// be the 3s extension's.
func TestSafetyConcurrentExtendsLastReplyWins(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})

	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var hs []*hold
	for _, g := range gs {
		hs = append(hs, g.holdCalls(true, onScriptArg("extend", 1, "3000")))
	}
	long := goErr(func() error { return l.Extend(ctx, 3*time.Second) })
	waitFor(t, 3*time.Second, "Extend(3s) applied on every instance, replies held", func() bool {
		for _, h := range hs {
			if h.held.Load() < 1 {
				return false
			}
		}
		return true
	})
	short := goErr(func() error { return l.Extend(ctx, 300*time.Millisecond) })
	// A fixed Manager may sequence the 300ms calls behind the held ones:
	// then release after a short wait.
	shortErr, returned := recvOr(short, 500*time.Millisecond)
	for _, h := range hs {
		h.release()
	}
	if !returned {
		t.Logf("Extend(300ms) had not returned 500ms after it started: the 3s replies released")
		shortErr = recv(t, short, 5*time.Second, "Extend(300ms)")
	}
	longErr := recv(t, long, 5*time.Second, "Extend(3s)")
	// Errors (the 300ms calls' deadline can pass on a loaded machine) are
	// no excuse: the invariant below decides.
	t.Logf("Extend(3s): %v; Extend(300ms): %v", longErr, shortErr)

	checkSafety(t, "after Extend(3s) and Extend(300ms) both returned", servers, l, "res")
	wantHeldWhileValid(t, servers, l, "res")
	_ = l.Unlock(ctx)
}

// TestSafetyFailedShorterExtend (not among the brief's interleavings; same
// invariant): Extend(300ms) of a 5s lock is applied on every instance, but
// B's and C's replies are held until the calls' own deadline
// (min(NodeTimeout, 300ms)) ends them: Extend fails with ErrUnavailable.
// The keys now expire in 300ms, so the lock must not stay Valid until its
// old deadline.
func TestSafetyFailedShorterExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})

	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	hB := gs[1].holdCalls(true, onScriptArg("extend", 1, "300"))
	hC := gs[2].holdCalls(true, onScriptArg("extend", 1, "300"))
	err = l.Extend(ctx, 300*time.Millisecond)
	t.Logf("Extend(300ms) with B's and C's replies held: %v", err)
	if hB.held.Load() < 1 || hC.held.Load() < 1 {
		t.Fatalf("the extension did not reach B and C (held: %d, %d)", hB.held.Load(), hC.held.Load())
	}
	checkSafety(t, "after a failed Extend(300ms) that every instance applied", servers, l, "res")
}

// ---------------------------------------------------------------------------
// 3. A re-lock with the Token of a held lock.

// relockFails runs a re-lock of the held lock's token that fails: its
// acquisition runs on every instance, A answers at once but B's and C's
// replies are held past the re-lock's 50ms ctx. They are released once the
// clean-up's release reached A (then the attempt has failed), or, for a
// Manager that sends none, 200ms after the ctx ended. acquireScript and
// releaseScript name the scripts of the re-lock (single or multi-key).
func relockFails(t *testing.T, ctx context.Context, gs []*gateClient, acquireScript, releaseScript string, relock func(ctx context.Context) error) {
	t.Helper()
	hB := gs[1].holdCalls(true, onScript(acquireScript))
	hC := gs[2].holdCalls(true, onScript(acquireScript))
	ended := make(chan struct{}) // the re-lock's ctx ended
	done := goErr(func() error {
		ctx50, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		context.AfterFunc(ctx50, func() { close(ended) })
		return relock(ctx50)
	})
	waitFor(t, 3*time.Second, "the re-lock's acquisition on B and C, replies held", func() bool {
		return hB.held.Load() >= 1 && hC.held.Load() >= 1
	})
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the re-lock's 50ms ctx did not end")
	}
	if eventually(200*time.Millisecond, func() bool { return gs[0].callCount(releaseScript) > 0 }) {
		t.Logf("the clean-up's %s reached A: releasing B's and C's replies", releaseScript)
	} else {
		t.Logf("no %s reached A within 200ms of the ctx's end: releasing B's and C's replies", releaseScript)
	}
	hB.release()
	hC.release()
	err := recv(t, done, 5*time.Second, "the re-lock")
	if err == nil {
		t.Logf("the re-lock succeeded (its replies were released before its ctx ended)")
	} else {
		t.Logf("the re-lock failed as intended: %v", err)
	}
}

// TestSafetyFailedRelockWithHeldToken: l1 holds "res" with Token("tok-X")
// (5s). A TryLock with the same token fails (its replies arrive after its
// 50ms ctx ended); its clean-up must not delete l1's keys: l1 stays Valid,
// so a quorum must still hold them, and another Manager must not get the
// lock.
func TestSafetyFailedRelockWithHeldToken(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second, DefaultTTL: 10 * time.Second, RetryCount: 1})

	l1, err := m.Lock(ctx, "res", redlock.Token("tok-X"), redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	relockFails(t, ctx, gs, "acquire", "release", func(ctx context.Context) error {
		_, err := m.TryLock(ctx, "res", redlock.Token("tok-X"))
		return err
	})
	if !l1.Valid() {
		t.Fatal("l1 turned invalid: the test needs it held")
	}
	checkSafety(t, "l1 after a failed TryLock with its token", servers, l1, "res")
	wantHeldWhileValid(t, servers, l1, "res")
	wantNotAcquiredByOther(t, ctx, servers, "res", l1)
}

// TestSafetyFailedRelockManyWithHeldToken is the LockMany variant (the
// acquire_many and release_many scripts): l1 holds r1 and r2 with
// Token("tok-X"); a LockMany of the same set with the same token fails.
func TestSafetyFailedRelockManyWithHeldToken(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second, DefaultTTL: 10 * time.Second, RetryCount: 1})

	l1, err := m.LockMany(ctx, []string{"r1", "r2"}, redlock.Token("tok-X"), redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	relockFails(t, ctx, gs, "acquire_many", "release_many", func(ctx context.Context) error {
		_, err := m.LockMany(ctx, []string{"r1", "r2"}, redlock.Token("tok-X"))
		return err
	})
	if !l1.Valid() {
		t.Fatal("l1 turned invalid: the test needs it held")
	}
	checkSafety(t, "l1 after a failed LockMany with its token", servers, l1, "r1", "r2")
	wantHeldWhileValid(t, servers, l1, "r1", "r2")
	wantNotAcquiredByOther(t, ctx, servers, "r1", l1)
}

// TestSafetyShorterRelockWithHeldToken: l1 holds "res" with Token("tok-X")
// for 5s; a successful re-lock with the same token and TTL(1s) must not
// leave l1 Valid for 5s over keys that expire in 1s (nor l2 Valid longer
// than its keys).
func TestSafetyShorterRelockWithHeldToken(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, _ := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})

	l1, err := m.Lock(ctx, "res", redlock.Token("tok-X"), redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	l2, err := m.Lock(ctx, "res", redlock.Token("tok-X"), redlock.TTL(time.Second))
	t.Logf("re-lock with TTL(1s): %v", err)
	checkSafety(t, "l1 (5s) after a re-lock with its token and TTL(1s)", servers, l1, "res")
	if l2 != nil {
		checkSafety(t, "l2, the re-lock with TTL(1s)", servers, l2, "res")
	}
	wantHeldWhileValid(t, servers, l1, "res")
}

// TestSafetyFailedShorterRelockWithHeldToken: as
// TestSafetyFailedRelockWithHeldToken, with a re-lock of TTL(1s) (l1 has
// 5s): neither its clean-up nor its shorter lease may leave l1 Valid over
// keys that are gone or expire sooner.
func TestSafetyFailedShorterRelockWithHeldToken(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second, RetryCount: 1})

	l1, err := m.Lock(ctx, "res", redlock.Token("tok-X"), redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	relockFails(t, ctx, gs, "acquire", "release", func(ctx context.Context) error {
		_, err := m.TryLock(ctx, "res", redlock.Token("tok-X"), redlock.TTL(time.Second))
		return err
	})
	if !l1.Valid() {
		t.Fatal("l1 turned invalid: the test needs it held")
	}
	checkSafety(t, "l1 (5s) after a failed TryLock with its token and TTL(1s)", servers, l1, "res")
	wantHeldWhileValid(t, servers, l1, "res")
	wantNotAcquiredByOther(t, ctx, servers, "res", l1)
}

// ---------------------------------------------------------------------------
// 4. Fencing counters are not lockable resources.

// TestSafetyFenceCounterNotLockable: the fencing counter of resource
// "jobs" is the key "{jobs}:redlock-fence". Locking that key as a resource,
// with the counter's value as Token, makes the acquire script SET the
// counter with a TTL; once it expired, the next fenced holder of "jobs"
// gets a fence that is not larger than the previous one. Locking a resource
// whose key could be a fencing counter must fail at once with ErrInvalid,
// with or without Config.KeyPrefix (then the counter of "{x}" is
// "app:{x}:redlock-fence", the key of the resource "{x}:redlock-fence").
func TestSafetyFenceCounterNotLockable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, prefix, resource, counterResource string
	}{
		{"no prefix", "", "jobs", "{jobs}:redlock-fence"},
		{"no prefix, hash tag", "", "{user}:1", "{user}:1:redlock-fence"},
		{"KeyPrefix app:", "app:", "{x}", "{x}:redlock-fence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			servers := redistest.Start(t, 3)
			m, gs := newGateManager(t, servers, redlock.Config{KeyPrefix: tc.prefix, NodeTimeout: 2 * time.Second})
			counter := tc.prefix + tc.counterResource

			l, err := m.Lock(ctx, tc.resource, redlock.Fenced(), redlock.TTL(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			fence1 := l.Fence()
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			// The fence round returns at quorum: its calls to the other
			// instances finish in the background. Wait for them, so that
			// no counter appears after the snapshot below.
			val := strconv.FormatUint(fence1, 10)
			waitFor(t, 3*time.Second, "the counter on every instance", func() bool {
				for _, s := range servers {
					if get(t, s, counter) != val {
						return false
					}
				}
				return true
			})
			had := make([]bool, len(servers))
			n := 0
			for i, s := range servers {
				switch v := get(t, s, counter); v {
				case val:
					had[i] = true
					n++
				case "(nil)":
				default:
					t.Fatalf("%s: counter %q = %q, want %s", instanceNames[i], counter, v, val)
				}
			}
			if n < len(servers)/2+1 {
				t.Fatalf("counter %q = %s on %d instances only (keys.go counterKey changed?)", counter, val, n)
			}

			callsBefore := 0
			for _, g := range gs {
				callsBefore += g.callCount("acquire") + g.callCount("acquire_many")
			}
			tries := []struct {
				op   string
				lock func() (*redlock.Lock, error)
			}{
				{fmt.Sprintf("Lock(%q)", tc.counterResource), func() (*redlock.Lock, error) {
					return m.Lock(ctx, tc.counterResource, redlock.Token(val), redlock.TTL(100*time.Millisecond))
				}},
				{fmt.Sprintf("TryLock(%q)", tc.counterResource), func() (*redlock.Lock, error) {
					return m.TryLock(ctx, tc.counterResource, redlock.Token(val), redlock.TTL(100*time.Millisecond))
				}},
				{fmt.Sprintf("LockMany(%q, %q)", "other", tc.counterResource), func() (*redlock.Lock, error) {
					return m.LockMany(ctx, []string{"other", tc.counterResource}, redlock.Token(val), redlock.TTL(100*time.Millisecond))
				}},
			}
			taken := false
			for _, try := range tries {
				evil, err := try.lock()
				if !errors.Is(err, redlock.ErrInvalid) {
					t.Errorf("%s (key %q, the fencing counter of %q): err = %v, want ErrInvalid", try.op, counter, tc.resource, err)
				}
				if evil != nil {
					taken = true
				}
			}
			callsAfter := 0
			for _, g := range gs {
				callsAfter += g.callCount("acquire") + g.callCount("acquire_many")
			}
			if callsAfter != callsBefore {
				t.Errorf("the refused locks sent %d acquisition calls, want none (fail at once)", callsAfter-callsBefore)
			}
			for i, s := range servers {
				switch p := pttl(t, s, counter); {
				case had[i] && p != -1:
					t.Errorf("%s: PTTL of the counter %q = %d, want -1 (counters never expire)", instanceNames[i], counter, p)
				case !had[i] && p != -2:
					t.Errorf("%s: the key %q, which had no counter, now exists (PTTL %d): a lock took it", instanceNames[i], counter, p)
				}
			}
			if taken {
				// The consequence: the counter expires and the fence goes back.
				waitFor(t, 3*time.Second, "the counter to expire", func() bool {
					for _, s := range servers {
						if get(t, s, counter) != "(nil)" {
							return false
						}
					}
					return true
				})
			}
			l2, err := m.Lock(ctx, tc.resource, redlock.Fenced(), redlock.TTL(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if l2.Fence() <= fence1 {
				t.Errorf("the next holder of %q got fence %d after %d: not increasing", tc.resource, l2.Fence(), fence1)
			}
			_ = l2.Unlock(ctx)
		})
	}
}

// ---------------------------------------------------------------------------
// 5. An Extend must not overtake the acquisition on an instance.

// TestSafetyExtendOvertakesAcquisition: C's acquisition call is held before
// it reaches C; Lock(TTL(10s)) returns at quorum (A, B), Extend(30s)
// returns at quorum; then C's acquisition goes on. On C the extension must
// take effect after the acquisition (C ends with ~30s), not before it (the
// extension finds no key, then the acquisition's SET PX 10000). The
// acquisition's calls have min(NodeTimeout, TTL) to run, and C's waits at
// the gate through Lock, Extend and the 500ms fallback below: 10s each, so
// that it is not dropped at the gate on a loaded machine (with 2s, a
// 1.5s stall was enough: C then never gets the key, and the test fails).
func TestSafetyExtendOvertakesAcquisition(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 10 * time.Second})
	hC := gs[2].holdCalls(false, onScript("acquire"))

	l, err := m.Lock(ctx, "r", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, 30*time.Second); err != nil {
		t.Fatalf("Extend(30s): %v", err)
	}
	// Extend returned at quorum (A, B); its call to C may still be on its
	// way. Release C's acquisition once C answered the extension, so that
	// the two do not race; a fixed Manager, which holds the extension back
	// until C answered the acquisition, never sends it before: then release
	// after a short wait.
	if eventually(500*time.Millisecond, func() bool { return gs[2].replyCount("extend") >= 1 }) {
		t.Logf("C answered the extension before its acquisition: %s", strings.Join(gs[2].replyLog(), ", "))
	} else {
		t.Logf("C had not answered the extension 500ms after Extend returned: releasing its acquisition")
	}
	hC.release()
	waitFor(t, 3*time.Second, "C's reply to the acquisition", func() bool { return gs[2].replyCount("acquire") >= 1 })
	first := pttl(t, servers[2], "r")

	// Wait (at most 500ms) for C's PTTL to exceed 10000, or for C to answer
	// an extension that found the key (then C's PTTL is final). The order
	// of the replies in C's log is not the order the server ran the calls
	// in (go-redis carries them on different connections); the reply
	// values tell: extend=0 ran before the acquisition's SET.
	extendFoundKey := func() bool {
		return slices.Contains(gs[2].replyLog(), "extend(30000)=1")
	}
	last := first
	deadline := time.Now().Add(500 * time.Millisecond)
	for last <= 10000 && time.Now().Before(deadline) {
		final := extendFoundKey()
		last = pttl(t, servers[2], "r")
		if final {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if last <= 10000 {
		t.Errorf("C: PTTL of the lock key %d right after the acquisition's late reply, %d at the end; want > 10000 "+
			"(Extend(30s) returned nil before; it must take effect on C after the acquisition's SET PX 10000); C's replies, as they returned: %s",
			first, last, strings.Join(gs[2].replyLog(), ", "))
	}
	if get(t, servers[2], "r") != l.Token() {
		t.Errorf("C does not hold the lock key under the token")
	}
	checkSafety(t, "after Lock(10s) and Extend(30s)", servers, l, "r")
	_ = l.Unlock(ctx)
}
