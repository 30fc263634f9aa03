package redlockotel_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/redlockotel"
)

// These tests run Managers against real redis-servers with the otel
// Observer and check that every instrument records what happened.

// loadedNodeTimeout is the NodeTimeout of tests that count an instance
// down or a lock lost: on a loaded machine (a shared 2-core CI runner, a
// -race build) a call to a live local redis-server can take a few hundred
// milliseconds, and one that times out marks its instance down.
const loadedNodeTimeout = 2 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addrs(servers []*redistest.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

func newManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(addrs(servers), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	return m
}

func closeQuietly(t *testing.T, m *redlock.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil && !errors.Is(err, redlock.ErrClosed) && !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("Close: %v", err)
	}
}

// probe is an Observer that forwards every event to the otel Observer
// and then lets the test wait for what it has seen: the events come after
// the fact, on the Manager's goroutines.
type probe struct {
	inner redlock.Observer

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced at every event
	acquired []redlock.AcquireEvent
	extended []redlock.ExtendEvent
	unlocked []redlock.UnlockEvent
	lost     []redlock.LostEvent
	held     int
	waiting  int
	states   []redlock.InstanceStateEvent
}

func newProbe(inner redlock.Observer) *probe {
	return &probe{inner: inner, changed: make(chan struct{})}
}

func (p *probe) note(f func()) {
	p.mu.Lock()
	f()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *probe) Acquired(ctx context.Context, e redlock.AcquireEvent) {
	p.inner.Acquired(ctx, e)
	p.note(func() { p.acquired = append(p.acquired, e) })
}

func (p *probe) Extended(ctx context.Context, e redlock.ExtendEvent) {
	p.inner.Extended(ctx, e)
	p.note(func() { p.extended = append(p.extended, e) })
}

func (p *probe) Unlocked(ctx context.Context, e redlock.UnlockEvent) {
	p.inner.Unlocked(ctx, e)
	p.note(func() { p.unlocked = append(p.unlocked, e) })
}

func (p *probe) Lost(e redlock.LostEvent) {
	p.inner.Lost(e)
	p.note(func() { p.lost = append(p.lost, e) })
}

func (p *probe) Held(d int) {
	p.inner.Held(d)
	p.note(func() { p.held += d })
}

func (p *probe) Waiting(d int) {
	p.inner.Waiting(d)
	p.note(func() { p.waiting += d })
}

func (p *probe) InstanceCall(e redlock.InstanceCallEvent) { p.inner.InstanceCall(e) }

func (p *probe) InstanceState(e redlock.InstanceStateEvent) {
	p.inner.InstanceState(e)
	p.note(func() { p.states = append(p.states, e) })
}

// await blocks until cond (called under the probe's lock) holds, or the
// test's context ends.
func (p *probe) await(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		p.mu.Lock()
		ok, ch := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		}
	}
}

// otelManager returns a Manager over servers observed by a probe around
// an otel Observer on an SDK with an in-memory reader and span recorder.
func otelManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, *telemetry, *probe) {
	t.Helper()
	tm := newTelemetry(t)
	p := newProbe(tm.obs)
	cfg.Observer = p
	return newManager(t, servers, cfg), tm, p
}

// upPoint returns the value of the point of g whose server.address names s.
func upPoint(t *testing.T, g map[string]int64, s *redistest.Server) (int64, bool) {
	t.Helper()
	for k, v := range g {
		addr := strings.TrimPrefix(k, string(redlockotel.AttrServerAddress)+"=")
		if addr == s.Addr() || addr == "redis://"+s.Addr() || strings.HasPrefix(addr, "redis://"+s.Addr()+"/") {
			return v, true
		}
	}
	return 0, false
}

// A contended TryLock records not_acquired with one attempt and an Error
// span; the holder's Lock records acquired.
func TestContendedTryLock(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	holder := newManager(t, servers, redlock.Config{})
	if _, err := holder.Lock(ctx, "contended", redlock.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	m, tm, _ := otelManager(t, servers, redlock.Config{})
	_, err := m.TryLock(ctx, "contended")
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryLock: %v, want ErrNotAcquired", err)
	}
	ms := tm.collect(t)
	key := kvs(redlockotel.AttrMethod.String("TryLock"), redlockotel.AttrOutcome.String("not_acquired"))
	dur := hist(t, ms, "redlock.acquire.duration")
	if len(dur) != 1 || dur[key].Count != 1 || dur[key].Sum <= 0 {
		t.Errorf("acquire.duration = %v, want one point {%s} count 1", dur, key)
	}
	if p := hist(t, ms, "redlock.acquire.attempts")[key]; p.Count != 1 || p.Sum != 1 {
		t.Errorf("acquire.attempts{%s} = %+v, want one call of 1 attempt", key, p)
	}
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 0 {
		t.Errorf("locks.held = %d, want 0", n)
	}
	s := one(t, tm, "redlock.TryLock")
	if s.Status().Code != codes.Error || s.Status().Description != err.Error() {
		t.Errorf("span status %+v, want Error %q", s.Status(), err.Error())
	}
	wantAttrs(t, s, map[attribute.Key]string{"redlock.resource": "contended", "redlock.outcome": "not_acquired", "redlock.attempts": "1", "redlock.quorum": "2"})
	if ev := s.Events(); len(ev) != 1 {
		t.Errorf("span events %v, want one attempt", ev)
	} else if v, _ := eventAttr(ev[0], redlockotel.AttrVotes); countOf(v.AsStringSlice(), "refused") < 2 {
		t.Errorf("attempt votes %v, want a quorum of refusals", v.AsStringSlice())
	}
	// Every instance answered (refused) the acquisition.
	inst := hist(t, ms, "redlock.instance.duration")
	refused := 0
	for k, p := range inst {
		if strings.Contains(k, "redlock.outcome=refused") {
			refused += int(p.Count)
		}
	}
	if refused < 2 {
		t.Errorf("instance.duration: %d refused calls, want at least 2: %v", refused, inst)
	}
}

func countOf(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

// scriptSHA is the SHA1 of one of the library's scripts (as EVALSHA names it).
func scriptSHA(t *testing.T, name string) (sha, src string) {
	t.Helper()
	b, err := os.ReadFile("../scripts/" + name + ".lua")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:]), string(b)
}

// secondAttemptGate holds the acquisition calls of every attempt after the
// first (told apart by their token: each attempt has a fresh one) until
// open is closed; started is closed when the first of them arrives.
type secondAttemptGate struct {
	sha, src string

	mu      sync.Mutex
	first   string // the first attempt's token
	started chan struct{}
	open    chan struct{}
}

func (g *secondAttemptGate) hold(ctx context.Context, isAcquire bool, args []string) error {
	if !isAcquire || len(args) == 0 {
		return nil
	}
	g.mu.Lock()
	if g.first == "" {
		g.first = args[0]
	}
	later := args[0] != g.first
	if later {
		select {
		case <-g.started:
		default:
			close(g.started)
		}
	}
	g.mu.Unlock()
	if !later {
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedClient is a go-redis adapter whose acquisitions pass the gate
// (its other methods, String, LoadScripts and Subscribe, are the
// adapter's).
type gatedClient struct {
	*goredis.Client
	g *secondAttemptGate
}

func (c gatedClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	if err := c.g.hold(ctx, sha == c.g.sha, args); err != nil {
		return nil, err
	}
	return c.Client.EvalSha(ctx, sha, keys, args)
}

func (c gatedClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	if err := c.g.hold(ctx, src == c.g.src, args); err != nil {
		return nil, err
	}
	return c.Client.Eval(ctx, src, keys, args)
}

// A Lock that needed two attempts records 2: the holder unlocks once the
// second attempt has started (its calls wait until then), so the first
// attempt is refused and the second succeeds.
func TestLockTwoAttempts(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	holder := newManager(t, servers, redlock.Config{})
	held, err := holder.Lock(ctx, "two", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	sha, src := scriptSHA(t, "acquire")
	g := &secondAttemptGate{sha: sha, src: src, started: make(chan struct{}), open: make(chan struct{})}
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rc.Close() })
		clients[i] = gatedClient{Client: goredis.New(rc), g: g}
	}
	tm := newTelemetry(t)
	p := newProbe(tm.obs)
	// A NodeTimeout well above what the gate holds a call.
	m, err := redlock.NewFromClients(clients, redlock.Config{Observer: p, RetryCount: 3, NodeTimeout: 20 * time.Second,
		RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })

	unlocked := make(chan error, 1)
	go func() {
		select {
		case <-g.started:
		case <-ctx.Done():
			unlocked <- ctx.Err()
			return
		}
		err := held.Unlock(ctx)
		close(g.open)
		unlocked <- err
	}()
	parentCtx, parent := tm.tp.Tracer("test").Start(ctx, "caller")
	l, err := m.Lock(parentCtx, "two", redlock.TTL(time.Minute))
	parent.End()
	if uerr := <-unlocked; uerr != nil {
		t.Fatalf("holder's Unlock: %v", uerr)
	}
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}

	ms := tm.collect(t)
	key := kvs(redlockotel.AttrMethod.String("Lock"), redlockotel.AttrOutcome.String("acquired"))
	if p := hist(t, ms, "redlock.acquire.attempts")[key]; p.Count != 1 || p.Sum != 2 {
		t.Errorf("acquire.attempts{%s} = %+v, want one call of 2 attempts; all %v", key, p, hist(t, ms, "redlock.acquire.attempts"))
	}
	if p := hist(t, ms, "redlock.acquire.duration")[key]; p.Count != 1 {
		t.Errorf("acquire.duration{%s} = %+v, want one call", key, p)
	}
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 1 {
		t.Errorf("locks.held = %d, want 1", n)
	}
	// It waited once (between the attempts) and stopped waiting.
	if n, ok := sums(t, ms, "redlock.waiters")[""]; n != 0 || !ok {
		t.Errorf("waiters = %d (recorded %v), want 0 after a wait", n, ok)
	}
	s := one(t, tm, "redlock.Lock")
	if s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("redlock.Lock parent %v, want the caller's span", s.Parent())
	}
	wantAttrs(t, s, map[attribute.Key]string{"redlock.outcome": "acquired", "redlock.attempts": "2", "redlock.resource": "two"})
	ev := s.Events()
	if len(ev) != 2 {
		t.Fatalf("redlock.Lock events %v, want 2 attempts", ev)
	}
	y1, _ := eventAttr(ev[0], redlockotel.AttrYes)
	y2, _ := eventAttr(ev[1], redlockotel.AttrYes)
	if y1.AsInt64() >= 2 || y2.AsInt64() < 2 {
		t.Errorf("attempt yes votes %d then %d, want below then at least the quorum 2", y1.AsInt64(), y2.AsInt64())
	}
	if !ev[0].Time.Before(ev[1].Time) || ev[0].Time.Before(s.StartTime()) || ev[1].Time.After(s.EndTime()) {
		t.Errorf("attempts at %v and %v in a span %v..%v", ev[0].Time, ev[1].Time, s.StartTime(), s.EndTime())
	}

	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ms = tm.collect(t)
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 0 {
		t.Errorf("locks.held after Unlock = %d, want 0", n)
	}
	if p := hist(t, ms, "redlock.unlock.duration")[kvs(redlockotel.AttrOutcome.String("ok"))]; p.Count != 1 {
		t.Errorf("unlock.duration{ok} = %+v, want 1", p)
	}
	if u := one(t, tm, "redlock.Unlock"); u.Parent().IsValid() {
		t.Errorf("redlock.Unlock has parent %v; its ctx had no span", u.Parent())
	}
	// Instance calls: one endpoint per server, as the clients name them.
	for k := range hist(t, ms, "redlock.instance.duration") {
		found := false
		for _, srv := range servers {
			if strings.Contains(k, srv.Addr()) {
				found = true
			}
		}
		if !found {
			t.Errorf("instance.duration point %s names no server", k)
		}
	}
}

// Two of three instances killed while a lock is held: the lock is lost
// (redlock.lock.lost 1), the dead instances are down (redlock.instance.up
// 0), the live one up, and nothing is held.
//
// Every instance must be up until the kill, and one call that times out
// marks its instance down: NodeTimeout is loadedNodeTimeout, not a short
// one, so that only a dead instance (whose calls fail at once, refused)
// is down. The lease is 2s, extended every 1.2s: an extension may be
// 780ms late before the lock runs out, and the test needs one to succeed.
func TestLockLostWhenInstancesDie(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, tm, p := otelManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: loadedNodeTimeout})
	l, err := m.Lock(ctx, "doomed") // auto-extended
	if err != nil {
		t.Fatal(err)
	}
	p.await(ctx, t, "an automatic extension", func() bool { return len(p.extended) > 0 })
	ms := tm.collect(t)
	for _, s := range servers {
		if v, ok := upPoint(t, gauges(t, ms, "redlock.instance.up"), s); !ok || v != 1 {
			t.Errorf("instance.up for %s = %d (reported %v) before the kill, want 1", s.Addr(), v, ok)
		}
	}
	servers[0].Kill(t)
	servers[1].Kill(t)
	select {
	case <-l.Lost():
	case <-ctx.Done():
		t.Fatal("the lock was never lost")
	}
	p.await(ctx, t, "the loss event", func() bool { return len(p.lost) == 1 })
	// The failed extensions found the dead instances down; a TryLock
	// makes sure every instance was called since the kill (on a machine
	// that stalled past the lock's deadline, no extension may have run).
	if _, err := m.TryLock(ctx, "after"); !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("TryLock with 2 of 3 instances dead: %v, want ErrUnavailable", err)
	}
	p.await(ctx, t, "both dead instances down", func() bool {
		down := map[string]bool{}
		for _, e := range p.states {
			down[e.Endpoint] = !e.Up
		}
		n := 0
		for _, d := range down {
			if d {
				n++
			}
		}
		return n == 2
	})

	ms = tm.collect(t)
	lost := sums(t, ms, "redlock.lock.lost")
	t.Logf("lock.lost %v; instance.up %v", lost, gauges(t, ms, "redlock.instance.up"))
	total := int64(0)
	for k, v := range lost {
		total += v
		if k != kvs(redlockotel.AttrReason.String(redlock.LostExpired)) && k != kvs(redlockotel.AttrReason.String(redlock.LostExtendFailed)) {
			t.Errorf("lock.lost point {%s}", k)
		}
	}
	if total != 1 {
		t.Errorf("lock.lost = %v, want 1 in all", lost)
	}
	up := gauges(t, ms, "redlock.instance.up")
	for i, s := range servers {
		want := int64(0)
		if i == 2 {
			want = 1
		}
		if v, ok := upPoint(t, up, s); !ok || v != want {
			t.Errorf("instance.up for %s = %d (reported %v), want %d; all %v", s.Addr(), v, ok, want, up)
		}
	}
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 0 {
		t.Errorf("locks.held = %d after the loss, want 0", n)
	}
	key := kvs(redlockotel.AttrMethod.String("TryLock"), redlockotel.AttrOutcome.String("unavailable"))
	if p := hist(t, ms, "redlock.acquire.duration")[key]; p.Count != 1 {
		t.Errorf("acquire.duration{%s} = %+v, want 1", key, p)
	}
	ext := hist(t, ms, "redlock.extend.duration")
	if p := ext[kvs(redlockotel.AttrOutcome.String("ok"), redlockotel.AttrAuto.Bool(true))]; p.Count == 0 {
		t.Errorf("extend.duration: no ok automatic extension: %v", ext)
	}
	for k := range ext {
		if strings.Contains(k, "redlock.auto=false") {
			t.Errorf("extend.duration has a manual extension: %s", k)
		}
	}
	for _, s := range tm.spansNamed("redlock.Extend") {
		if v, _ := spanAttr(s, redlockotel.AttrAuto); !v.AsBool() {
			t.Errorf("redlock.Extend span without redlock.auto: %v", s.Attributes())
		}
	}
	// Calls to the dead instances failed (an error or a timeout).
	failed := 0
	for k, p := range hist(t, ms, "redlock.instance.duration") {
		if strings.Contains(k, "redlock.outcome=error") || strings.Contains(k, "redlock.outcome=timeout") {
			failed += int(p.Count)
		}
	}
	if failed == 0 {
		t.Error("instance.duration: no failed call to a dead instance")
	}
}

// locks.held and waiters go back to 0 after Close, which releases a held
// lock and ends a waiting LockWait.
func TestHeldAndWaitersZeroAfterClose(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	holder := newManager(t, servers, redlock.Config{})
	if _, err := holder.Lock(ctx, "busy", redlock.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	m, tm, p := otelManager(t, servers, redlock.Config{RetryDelayMin: 50 * time.Millisecond, RetryDelayMax: 100 * time.Millisecond})
	if _, err := m.Lock(ctx, "mine", redlock.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(ctx, "mine-auto"); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() {
		_, err := m.LockWait(ctx, "busy")
		waitErr <- err
	}()
	p.await(ctx, t, "the LockWait to wait", func() bool { return p.waiting == 1 })
	ms := tm.collect(t)
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 2 {
		t.Errorf("locks.held = %d, want 2", n)
	}
	if n := sums(t, ms, "redlock.waiters")[""]; n != 1 {
		t.Errorf("waiters = %d, want 1", n)
	}

	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-waitErr; !errors.Is(err, redlock.ErrClosed) {
		t.Errorf("LockWait: %v, want ErrClosed", err)
	}
	ms = tm.collect(t)
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 0 {
		t.Errorf("locks.held after Close = %d, want 0", n)
	}
	if n := sums(t, ms, "redlock.waiters")[""]; n != 0 {
		t.Errorf("waiters after Close = %d, want 0", n)
	}
	if p := hist(t, ms, "redlock.unlock.duration")[kvs(redlockotel.AttrOutcome.String("ok"))]; p.Count != 2 {
		t.Errorf("unlock.duration{ok} = %+v, want Close's 2 releases", p)
	}
	key := kvs(redlockotel.AttrMethod.String("LockWait"), redlockotel.AttrOutcome.String("canceled"))
	if p := hist(t, ms, "redlock.acquire.duration")[key]; p.Count != 1 {
		t.Errorf("acquire.duration{%s} = %+v, want the LockWait that Close ended; all %v", key, p, hist(t, ms, "redlock.acquire.duration"))
	}
	if s := one(t, tm, "redlock.LockWait"); s.Status().Code != codes.Error {
		t.Errorf("redlock.LockWait status %+v, want Error", s.Status())
	}
}

// Extend, Do and LockMany: their spans and measurements.
func TestExtendDoLockMany(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, tm, _ := otelManager(t, servers, redlock.Config{})
	l, err := m.Lock(ctx, "ext", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Extend(ctx, time.Second); !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("Extend after Unlock: %v, want ErrNotHeld", err)
	}
	ran := false
	if err := m.Do(ctx, "job", func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Do: %v (ran %v)", err, ran)
	}
	many, err := m.LockMany(ctx, []string{"a", "b"}, redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := many.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	ms := tm.collect(t)
	ext := hist(t, ms, "redlock.extend.duration")
	if p := ext[kvs(redlockotel.AttrOutcome.String("ok"), redlockotel.AttrAuto.Bool(false))]; p.Count != 1 {
		t.Errorf("extend.duration{ok,manual} = %+v; all %v", p, ext)
	}
	if p := ext[kvs(redlockotel.AttrOutcome.String("failed"), redlockotel.AttrAuto.Bool(false))]; p.Count != 1 {
		t.Errorf("extend.duration{failed,manual} = %+v; all %v", p, ext)
	}
	dur := hist(t, ms, "redlock.acquire.duration")
	for _, method := range []string{"Lock", "Do", "LockMany"} {
		key := kvs(redlockotel.AttrMethod.String(method), redlockotel.AttrOutcome.String("acquired"))
		if dur[key].Count != 1 {
			t.Errorf("acquire.duration{%s} = %+v; all %v", key, dur[key], dur)
		}
	}
	if p := hist(t, ms, "redlock.unlock.duration")[kvs(redlockotel.AttrOutcome.String("ok"))]; p.Count != 3 {
		t.Errorf("unlock.duration{ok} = %+v, want 3 (Lock, Do, LockMany)", p)
	}
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 0 {
		t.Errorf("locks.held = %d, want 0", n)
	}
	exts := tm.spansNamed("redlock.Extend")
	if len(exts) != 2 {
		t.Fatalf("redlock.Extend spans: %s", spanNames(exts))
	}
	wantAttrs(t, exts[0], map[attribute.Key]string{"redlock.outcome": "ok", "redlock.auto": "false", "redlock.ttl": "20", "redlock.quorum": "2"})
	// Yes counts the votes in when the call returned: at least the quorum
	// (the third instance may answer later).
	if v, _ := spanAttr(exts[0], redlockotel.AttrYes); v.AsInt64() < 2 {
		t.Errorf("Extend span redlock.yes = %d, want at least 2", v.AsInt64())
	}
	if exts[1].Status().Code != codes.Error {
		t.Errorf("failed Extend span status %+v", exts[1].Status())
	}
	one(t, tm, "redlock.Do")
	lm := one(t, tm, "redlock.LockMany")
	if v, _ := spanAttr(lm, redlockotel.AttrResource); strings.Join(v.AsStringSlice(), ",") != "a,b" {
		t.Errorf("redlock.LockMany resource %s", v.Emit())
	}
	if n := len(tm.spansNamed("redlock.Unlock")); n != 3 {
		t.Errorf("%d redlock.Unlock spans, want 3", n)
	}
}
