package redlockotel_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/redlockotel"
)

// These tests feed events to the Observer directly, as a Manager would.

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// feedAll sends one event of every kind.
func feedAll(obs redlock.Observer) {
	ctx := context.Background()
	obs.Acquired(ctx, redlock.AcquireEvent{Method: "Lock", Resources: []string{"r"}, Outcome: redlock.OutcomeAcquired,
		Start: t0, Duration: 3 * time.Millisecond, Quorum: 2,
		Attempts: []redlock.AttemptEvent{{Start: t0, Duration: 3 * time.Millisecond, Yes: 3, Votes: []string{"ok", "ok", "ok"}}}})
	obs.Extended(ctx, redlock.ExtendEvent{Resources: []string{"r"}, Outcome: redlock.OutcomeOK, TTL: time.Second, Start: t0, Duration: time.Millisecond, Yes: 3, Quorum: 2})
	obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"r"}, Outcome: redlock.OutcomeOK, Start: t0, Duration: time.Millisecond, Quorum: 2})
	obs.Lost(redlock.LostEvent{Resources: []string{"r"}, Reason: redlock.LostExpired, Held: time.Second})
	obs.Held(1)
	obs.Waiting(1)
	obs.InstanceCall(redlock.InstanceCallEvent{Endpoint: "redis://a:1", Outcome: redlock.OutcomeOK, Duration: time.Millisecond})
	obs.InstanceState(redlock.InstanceStateEvent{Endpoint: "redis://b:2", Up: false, Err: errors.New("dial tcp: refused")})
}

// TestInstruments checks the name, kind and unit of every instrument.
func TestInstruments(t *testing.T) {
	tm := newTelemetry(t)
	feedAll(tm.obs)
	ms := tm.collect(t)
	want := []struct {
		name, unit, kind string
	}{
		{"redlock.acquire.duration", "s", "histogram[float64]"},
		{"redlock.acquire.attempts", "{attempt}", "histogram[int64]"},
		{"redlock.locks.held", "{lock}", "updowncounter[int64]"},
		{"redlock.waiters", "{waiter}", "updowncounter[int64]"},
		{"redlock.extend.duration", "s", "histogram[float64]"},
		{"redlock.unlock.duration", "s", "histogram[float64]"},
		{"redlock.lock.lost", "{lock}", "counter[int64]"},
		{"redlock.instance.duration", "s", "histogram[float64]"},
		{"redlock.instance.up", "1", "gauge[int64]"},
	}
	if len(ms) != len(want) {
		t.Errorf("metrics: %s; want %d", names(ms), len(want))
	}
	for _, w := range want {
		m, ok := ms[w.name]
		if !ok {
			t.Errorf("no metric %q", w.name)
			continue
		}
		if m.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", w.name, m.Unit, w.unit)
		}
		if m.Description == "" {
			t.Errorf("%s: no description", w.name)
		}
		var kind string
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			kind = "histogram[float64]"
		case metricdata.Histogram[int64]:
			kind = "histogram[int64]"
		case metricdata.Sum[int64]:
			kind = "updowncounter[int64]"
			if d.IsMonotonic {
				kind = "counter[int64]"
			}
		case metricdata.Gauge[int64]:
			kind = "gauge[int64]"
		default:
			kind = "other"
		}
		if kind != w.kind {
			t.Errorf("%s: %T (%s), want %s", w.name, m.Data, kind, w.kind)
		}
	}
}

func TestAcquireMetrics(t *testing.T) {
	tm := newTelemetry(t)
	ctx := context.Background()
	two := []redlock.AttemptEvent{
		{Start: t0, Duration: time.Millisecond, Yes: 0, Votes: []string{"refused", "refused", "refused"}},
		{Start: t0.Add(150 * time.Millisecond), Duration: time.Millisecond, Yes: 3, Votes: []string{"ok", "ok", "ok"}},
	}
	tm.obs.Acquired(ctx, redlock.AcquireEvent{Method: "Lock", Resources: []string{"orders:1"}, Outcome: redlock.OutcomeAcquired,
		Start: t0, Duration: 151 * time.Millisecond, Quorum: 2, Attempts: two})
	tm.obs.Acquired(ctx, redlock.AcquireEvent{Method: "TryLock", Resources: []string{"orders:2"}, Outcome: redlock.OutcomeNotAcquired,
		Err: redlock.ErrNotAcquired, Start: t0, Duration: 2 * time.Millisecond, Quorum: 2, Attempts: two[:1]})
	tm.obs.Acquired(ctx, redlock.AcquireEvent{Method: "TryLock", Resources: []string{"orders:3"}, Outcome: redlock.OutcomeNotAcquired,
		Err: redlock.ErrNotAcquired, Start: t0, Duration: 4 * time.Millisecond, Quorum: 2, Attempts: two[:1]})
	ms := tm.collect(t)

	dur := hist(t, ms, "redlock.acquire.duration")
	lockOK := kvs(redlockotel.AttrMethod.String("Lock"), redlockotel.AttrOutcome.String("acquired"))
	tryNo := kvs(redlockotel.AttrMethod.String("TryLock"), redlockotel.AttrOutcome.String("not_acquired"))
	if len(dur) != 2 {
		t.Errorf("acquire.duration points %v, want 2 (no resource attribute by default)", dur)
	}
	if p := dur[lockOK]; p.Count != 1 || p.Sum != 0.151 {
		t.Errorf("acquire.duration{%s} = %+v, want count 1 sum 0.151", lockOK, p)
	}
	if p := dur[tryNo]; p.Count != 2 || p.Min != 0.002 || p.Max != 0.004 {
		t.Errorf("acquire.duration{%s} = %+v, want count 2 in [0.002, 0.004]", tryNo, p)
	}
	att := hist(t, ms, "redlock.acquire.attempts")
	if p := att[lockOK]; p.Count != 1 || p.Sum != 2 {
		t.Errorf("acquire.attempts{%s} = %+v, want one call with 2", lockOK, p)
	}
	if p := att[tryNo]; p.Count != 2 || p.Sum != 2 {
		t.Errorf("acquire.attempts{%s} = %+v, want two calls with 1", tryNo, p)
	}
}

func TestExtendUnlockLostMetrics(t *testing.T) {
	tm := newTelemetry(t)
	ctx := context.Background()
	tm.obs.Extended(ctx, redlock.ExtendEvent{Resources: []string{"r"}, Auto: true, Outcome: redlock.OutcomeOK, Start: t0, Duration: time.Millisecond, Yes: 3, Quorum: 2})
	tm.obs.Extended(ctx, redlock.ExtendEvent{Resources: []string{"r"}, Auto: false, Outcome: redlock.OutcomeFailed, Err: redlock.ErrNotHeld, Start: t0, Duration: 2 * time.Millisecond, Quorum: 2})
	tm.obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"r"}, Outcome: redlock.OutcomeOK, Start: t0, Duration: time.Millisecond, Quorum: 2})
	tm.obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"r"}, Outcome: redlock.OutcomeNotHeld, Err: redlock.ErrNotHeld, Start: t0, Duration: time.Millisecond, Quorum: 2})
	tm.obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"r"}, Outcome: redlock.OutcomeUnavailable, Err: redlock.ErrUnavailable, Start: t0, Duration: time.Millisecond, Quorum: 2})
	tm.obs.Lost(redlock.LostEvent{Resources: []string{"r"}, Reason: redlock.LostExtendFailed})
	tm.obs.Lost(redlock.LostEvent{Resources: []string{"s"}, Reason: redlock.LostExtendFailed})
	tm.obs.Lost(redlock.LostEvent{Resources: []string{"r"}, Reason: redlock.LostExpired})
	ms := tm.collect(t)

	ext := hist(t, ms, "redlock.extend.duration")
	if p := ext[kvs(redlockotel.AttrOutcome.String("ok"), redlockotel.AttrAuto.Bool(true))]; p.Count != 1 || p.Sum != 0.001 {
		t.Errorf("extend.duration{ok,auto} = %+v; all: %v", p, ext)
	}
	if p := ext[kvs(redlockotel.AttrOutcome.String("failed"), redlockotel.AttrAuto.Bool(false))]; p.Count != 1 || p.Sum != 0.002 {
		t.Errorf("extend.duration{failed,manual} = %+v; all: %v", p, ext)
	}
	un := hist(t, ms, "redlock.unlock.duration")
	for _, o := range []string{"ok", "not_held", "unavailable"} {
		if p := un[kvs(redlockotel.AttrOutcome.String(o))]; p.Count != 1 {
			t.Errorf("unlock.duration{%s} = %+v; all: %v", o, p, un)
		}
	}
	lost := sums(t, ms, "redlock.lock.lost")
	want := map[string]int64{
		kvs(redlockotel.AttrReason.String("extend_failed")): 2,
		kvs(redlockotel.AttrReason.String("expired")):       1,
	}
	if !equalMaps(lost, want) {
		t.Errorf("lock.lost = %v, want %v", lost, want)
	}
}

func equalMaps[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestHeldAndWaiters(t *testing.T) {
	tm := newTelemetry(t)
	for range 3 {
		tm.obs.Held(1)
	}
	tm.obs.Held(-1)
	tm.obs.Waiting(1)
	tm.obs.Waiting(1)
	ms := tm.collect(t)
	if got := sums(t, ms, "redlock.locks.held")[""]; got != 2 {
		t.Errorf("locks.held = %d, want 2", got)
	}
	if got := sums(t, ms, "redlock.waiters")[""]; got != 2 {
		t.Errorf("waiters = %d, want 2", got)
	}
	tm.obs.Held(-2)
	tm.obs.Waiting(-2)
	ms = tm.collect(t)
	if got := sums(t, ms, "redlock.locks.held")[""]; got != 0 {
		t.Errorf("locks.held = %d, want 0", got)
	}
	if got := sums(t, ms, "redlock.waiters")[""]; got != 0 {
		t.Errorf("waiters = %d, want 0", got)
	}
}

func TestInstanceMetrics(t *testing.T) {
	tm := newTelemetry(t)
	call := func(ep, outcome string, d time.Duration) {
		tm.obs.InstanceCall(redlock.InstanceCallEvent{Endpoint: ep, Outcome: outcome, Duration: d})
	}
	up := func(ep string) string { return kvs(redlockotel.AttrServerAddress.String(ep)) }
	call("redis://a:1", redlock.OutcomeOK, time.Millisecond)
	call("redis://a:1", redlock.OutcomeRefused, 2*time.Millisecond)
	call("redis://b:2", redlock.OutcomeTimeout, 500*time.Millisecond)
	call("redis://b:2", redlock.OutcomeError, time.Millisecond)

	ms := tm.collect(t)
	d := hist(t, ms, "redlock.instance.duration")
	for _, c := range []struct {
		ep, outcome string
		sum         float64
	}{{"redis://a:1", "ok", 0.001}, {"redis://a:1", "refused", 0.002}, {"redis://b:2", "timeout", 0.5}, {"redis://b:2", "error", 0.001}} {
		k := kvs(redlockotel.AttrServerAddress.String(c.ep), redlockotel.AttrOutcome.String(c.outcome))
		if p := d[k]; p.Count != 1 || p.Sum != c.sum {
			t.Errorf("instance.duration{%s} = %+v, want one of %v", k, p, c.sum)
		}
	}
	// Seen in a call, not reported down: up.
	want := map[string]int64{up("redis://a:1"): 1, up("redis://b:2"): 1}
	if g := gauges(t, ms, "redlock.instance.up"); !equalMaps(g, want) {
		t.Errorf("instance.up = %v, want %v", g, want)
	}

	tm.obs.InstanceState(redlock.InstanceStateEvent{Endpoint: "redis://b:2", Up: false, Err: errors.New("i/o timeout")})
	tm.obs.InstanceState(redlock.InstanceStateEvent{Endpoint: "redis://c:3", Up: false, Err: errors.New("refused")})
	call("redis://b:2", redlock.OutcomeTimeout, time.Millisecond) // a call changes no known state
	want = map[string]int64{up("redis://a:1"): 1, up("redis://b:2"): 0, up("redis://c:3"): 0}
	if g := gauges(t, tm.collect(t), "redlock.instance.up"); !equalMaps(g, want) {
		t.Errorf("instance.up = %v, want %v", g, want)
	}

	tm.obs.InstanceState(redlock.InstanceStateEvent{Endpoint: "redis://b:2", Up: true})
	want[up("redis://b:2")] = 1
	if g := gauges(t, tm.collect(t), "redlock.instance.up"); !equalMaps(g, want) {
		t.Errorf("instance.up = %v, want %v", g, want)
	}
}

func TestResourceAttribute(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	tm := newTelemetry(t, redlockotel.WithResourceAttribute(func(r string) string {
		mu.Lock()
		asked = append(asked, r)
		mu.Unlock()
		kind, _, _ := strings.Cut(r, ":")
		if kind == "secret" {
			return ""
		}
		return kind
	}))
	ctx := context.Background()
	acq := func(outcome string, resources ...string) {
		tm.obs.Acquired(ctx, redlock.AcquireEvent{Method: "LockMany", Resources: resources, Outcome: outcome, Start: t0, Duration: time.Millisecond, Quorum: 2,
			Attempts: []redlock.AttemptEvent{{Start: t0, Duration: time.Millisecond}}})
	}
	acq("acquired", "orders:1")
	acq("acquired", "orders:2")
	acq("acquired", "orders:3", "users:1", "orders:4")
	acq("acquired", "secret:1")
	tm.obs.Extended(ctx, redlock.ExtendEvent{Resources: []string{"orders:1"}, Outcome: "ok", Start: t0, Duration: time.Millisecond})
	tm.obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"orders:1"}, Outcome: "ok", Start: t0, Duration: time.Millisecond})
	tm.obs.Lost(redlock.LostEvent{Resources: []string{"users:9"}, Reason: "expired"})
	tm.obs.InstanceCall(redlock.InstanceCallEvent{Endpoint: "a:1", Outcome: "ok"})
	ms := tm.collect(t)

	method, ok := redlockotel.AttrMethod.String("LockMany"), redlockotel.AttrOutcome.String("acquired")
	res := redlockotel.AttrResource.String
	want := map[string]uint64{
		kvs(method, ok, res("orders")):       2,
		kvs(method, ok, res("orders,users")): 1,
		kvs(method, ok):                      1, // "" leaves the attribute out
	}
	got := map[string]uint64{}
	for k, p := range hist(t, ms, "redlock.acquire.duration") {
		got[k] = p.Count
	}
	if !equalMaps(got, want) {
		t.Errorf("acquire.duration counts %v, want %v", got, want)
	}
	if _, ok := hist(t, ms, "redlock.extend.duration")[kvs(redlockotel.AttrOutcome.String("ok"), redlockotel.AttrAuto.Bool(false), res("orders"))]; !ok {
		t.Errorf("extend.duration without resource: %v", hist(t, ms, "redlock.extend.duration"))
	}
	if _, ok := hist(t, ms, "redlock.unlock.duration")[kvs(redlockotel.AttrOutcome.String("ok"), res("orders"))]; !ok {
		t.Errorf("unlock.duration without resource: %v", hist(t, ms, "redlock.unlock.duration"))
	}
	if n := sums(t, ms, "redlock.lock.lost")[kvs(redlockotel.AttrReason.String("expired"), res("users"))]; n != 1 {
		t.Errorf("lock.lost: %v", sums(t, ms, "redlock.lock.lost"))
	}
	// Instance metrics never carry resources.
	for k := range hist(t, ms, "redlock.instance.duration") {
		if strings.Contains(k, "redlock.resource") {
			t.Errorf("instance.duration has a resource: %s", k)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 {
		t.Error("the normaliser was never called")
	}
}

func TestSpans(t *testing.T) {
	tm := newTelemetry(t)
	parentCtx, parent := tm.tp.Tracer("test").Start(context.Background(), "parent")
	defer parent.End()

	a1 := redlock.AttemptEvent{Start: t0, Duration: 2 * time.Millisecond, Yes: 1, Votes: []string{"refused", "ok", "timeout"}}
	a2 := redlock.AttemptEvent{Start: t0.Add(100 * time.Millisecond), Duration: 3 * time.Millisecond, Yes: 3, Votes: []string{"ok", "ok", "ok"}}
	tm.obs.Acquired(parentCtx, redlock.AcquireEvent{Method: "Lock", Resources: []string{"orders:1"}, Outcome: redlock.OutcomeAcquired,
		Start: t0, Duration: 103 * time.Millisecond, Quorum: 2, Attempts: []redlock.AttemptEvent{a1, a2}, Fence: 7})
	notAcq := &redlock.QuorumError{Op: "lock", Resource: "orders:2", Quorum: 2, N: 3, Err: redlock.ErrNotAcquired}
	tm.obs.Acquired(parentCtx, redlock.AcquireEvent{Method: "TryLock", Resources: []string{"orders:2"}, Outcome: redlock.OutcomeNotAcquired,
		Err: notAcq, Start: t0, Duration: time.Millisecond, Quorum: 2, Attempts: []redlock.AttemptEvent{a1}})
	for _, m := range []string{"LockWait", "LockMany", "Do"} {
		tm.obs.Acquired(parentCtx, redlock.AcquireEvent{Method: m, Resources: []string{"x", "y"}, Outcome: redlock.OutcomeAcquired, Start: t0, Duration: time.Millisecond, Quorum: 2})
	}
	tm.obs.Extended(parentCtx, redlock.ExtendEvent{Resources: []string{"orders:1"}, Outcome: redlock.OutcomeOK, TTL: 2 * time.Second, Start: t0.Add(time.Second), Duration: time.Millisecond, Yes: 3, Quorum: 2})
	tm.obs.Extended(context.Background(), redlock.ExtendEvent{Resources: []string{"orders:1"}, Auto: true, Outcome: redlock.OutcomeFailed, Err: redlock.ErrNotHeld, TTL: 2 * time.Second, Start: t0.Add(2 * time.Second), Duration: time.Millisecond, Yes: 1, Quorum: 2})
	tm.obs.Unlocked(parentCtx, redlock.UnlockEvent{Resources: []string{"orders:1"}, Outcome: redlock.OutcomeOK, Start: t0.Add(3 * time.Second), Duration: 4 * time.Millisecond, Quorum: 2})

	pc := parent.SpanContext()
	lock := one(t, tm, "redlock.Lock")
	if lock.Parent().SpanID() != pc.SpanID() || lock.SpanContext().TraceID() != pc.TraceID() {
		t.Errorf("redlock.Lock parent %v, want %v", lock.Parent(), pc)
	}
	if !lock.StartTime().Equal(t0) || !lock.EndTime().Equal(t0.Add(103*time.Millisecond)) {
		t.Errorf("redlock.Lock %v..%v, want %v..+103ms", lock.StartTime(), lock.EndTime(), t0)
	}
	wantAttrs(t, lock, map[attribute.Key]string{
		redlockotel.AttrResource: "orders:1", redlockotel.AttrOutcome: "acquired",
		redlockotel.AttrAttempts: "2", redlockotel.AttrQuorum: "2", redlockotel.AttrFence: "7",
	})
	if lock.Status().Code != codes.Unset {
		t.Errorf("redlock.Lock status %v", lock.Status())
	}
	ev := lock.Events()
	if len(ev) != 2 {
		t.Fatalf("redlock.Lock events %v, want 2 attempts", ev)
	}
	for i, a := range []redlock.AttemptEvent{a1, a2} {
		e := ev[i]
		if e.Name != "attempt" || !e.Time.Equal(a.Start) {
			t.Errorf("event %d: %q at %v, want attempt at %v", i, e.Name, e.Time, a.Start)
		}
		if v, _ := eventAttr(e, redlockotel.AttrAttempt); v.AsInt64() != int64(i+1) {
			t.Errorf("event %d: redlock.attempt %v", i, v.Emit())
		}
		if v, _ := eventAttr(e, redlockotel.AttrYes); v.AsInt64() != int64(a.Yes) {
			t.Errorf("event %d: redlock.yes %v, want %d", i, v.Emit(), a.Yes)
		}
		if v, _ := eventAttr(e, redlockotel.AttrVotes); strings.Join(v.AsStringSlice(), ",") != strings.Join(a.Votes, ",") {
			t.Errorf("event %d: redlock.votes %v, want %v", i, v.Emit(), a.Votes)
		}
		if v, _ := eventAttr(e, redlockotel.AttrAttemptDuration); v.AsFloat64() != a.Duration.Seconds() {
			t.Errorf("event %d: duration %v, want %v", i, v.Emit(), a.Duration.Seconds())
		}
	}

	try := one(t, tm, "redlock.TryLock")
	if try.Status().Code != codes.Error || try.Status().Description != notAcq.Error() {
		t.Errorf("redlock.TryLock status %+v, want Error %q", try.Status(), notAcq.Error())
	}
	wantAttrs(t, try, map[attribute.Key]string{redlockotel.AttrOutcome: "not_acquired", redlockotel.AttrAttempts: "1"})
	if _, ok := spanAttr(try, redlockotel.AttrFence); ok {
		t.Error("redlock.TryLock has a fence")
	}

	for _, name := range []string{"redlock.LockWait", "redlock.LockMany", "redlock.Do"} {
		s := one(t, tm, name)
		if v, _ := spanAttr(s, redlockotel.AttrResource); strings.Join(v.AsStringSlice(), ",") != "x,y" {
			t.Errorf("%s: redlock.resource %s, want [x y]", name, v.Emit())
		}
	}

	ext := tm.spansNamed("redlock.Extend")
	if len(ext) != 2 {
		t.Fatalf("redlock.Extend spans: %s", spanNames(ext))
	}
	manual, auto := ext[0], ext[1]
	wantAttrs(t, manual, map[attribute.Key]string{redlockotel.AttrAuto: "false", redlockotel.AttrOutcome: "ok", redlockotel.AttrYes: "3", redlockotel.AttrTTL: "2"})
	wantAttrs(t, auto, map[attribute.Key]string{redlockotel.AttrAuto: "true", redlockotel.AttrOutcome: "failed"})
	if manual.Parent().SpanID() != pc.SpanID() {
		t.Error("manual redlock.Extend is not a child of the caller's span")
	}
	if auto.Parent().IsValid() {
		t.Errorf("automatic redlock.Extend has a parent %v", auto.Parent())
	}
	if auto.Status().Code != codes.Error || auto.Status().Description != redlock.ErrNotHeld.Error() {
		t.Errorf("failed redlock.Extend status %+v", auto.Status())
	}

	un := one(t, tm, "redlock.Unlock")
	if !un.StartTime().Equal(t0.Add(3*time.Second)) || un.EndTime().Sub(un.StartTime()) != 4*time.Millisecond {
		t.Errorf("redlock.Unlock %v..%v", un.StartTime(), un.EndTime())
	}
	wantAttrs(t, un, map[attribute.Key]string{redlockotel.AttrOutcome: "ok", redlockotel.AttrResource: "orders:1", redlockotel.AttrQuorum: "2"})
}

func one(t *testing.T, tm *telemetry, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	s := tm.spansNamed(name)
	if len(s) != 1 {
		t.Fatalf("%d spans %q; all: %s", len(s), name, spanNames(tm.spans.Ended()))
	}
	return s[0]
}

func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[attribute.Key]string) {
	t.Helper()
	for k, w := range want {
		v, ok := spanAttr(s, k)
		if !ok || v.Emit() != w {
			t.Errorf("%s: %s = %q (present %v), want %q", s.Name(), k, v.Emit(), ok, w)
		}
	}
}

// TestMissingStart: an event without a start time still makes a span of
// its duration, ending now.
func TestMissingStart(t *testing.T) {
	tm := newTelemetry(t)
	before := time.Now()
	tm.obs.Unlocked(context.Background(), redlock.UnlockEvent{Resources: []string{"r"}, Outcome: "ok", Duration: 5 * time.Millisecond})
	s := one(t, tm, "redlock.Unlock")
	if s.EndTime().Before(before) || s.EndTime().Sub(s.StartTime()) != 5*time.Millisecond {
		t.Errorf("span %v..%v", s.StartTime(), s.EndTime())
	}
}

// TestNilContext: a nil ctx (a bug of the caller) is taken as Background.
func TestNilContext(t *testing.T) {
	tm := newTelemetry(t)
	//nolint:staticcheck // deliberately nil
	tm.obs.Acquired(nil, redlock.AcquireEvent{Method: "Lock", Resources: []string{"r"}, Outcome: "acquired", Start: t0})
	//nolint:staticcheck
	tm.obs.Extended(nil, redlock.ExtendEvent{Resources: []string{"r"}, Outcome: "ok", Start: t0})
	//nolint:staticcheck
	tm.obs.Unlocked(nil, redlock.UnlockEvent{Resources: []string{"r"}, Outcome: "ok", Start: t0})
	if n := len(tm.spans.Ended()); n != 3 {
		t.Errorf("%d spans, want 3", n)
	}
}

// errorHandler collects what otel.Handle receives.
type errorHandler struct {
	mu   sync.Mutex
	errs []error
}

func (h *errorHandler) Handle(err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
}

// TestPanicIsRecovered: a panic inside the observer (here the resource
// normaliser) never reaches the Manager; it goes to otel.Handle.
func TestPanicIsRecovered(t *testing.T) {
	h := &errorHandler{}
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(h)
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	tm := newTelemetry(t, redlockotel.WithResourceAttribute(func(string) string { panic("boom") }))
	feedAll(tm.obs)
	h.mu.Lock()
	defer h.mu.Unlock()
	// Acquired, Extended, Unlocked and Lost normalise a resource.
	if len(h.errs) != 4 {
		t.Fatalf("otel.Handle got %d errors, want 4: %v", len(h.errs), h.errs)
	}
	for _, err := range h.errs {
		if !strings.Contains(err.Error(), "boom") {
			t.Errorf("error %v does not carry the panic", err)
		}
	}
	// Held, Waiting and the instance events still recorded.
	ms := tm.collect(t)
	if n := sums(t, ms, "redlock.locks.held")[""]; n != 1 {
		t.Errorf("locks.held %d", n)
	}
}

// TestGlobalProviders: without options, the Observer uses the global
// providers. (One created before they are set gets them too, through the
// OpenTelemetry globals' delegation; that holds once per process only.)
func TestGlobalProviders(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevM, prevT := otel.GetMeterProvider(), otel.GetTracerProvider()
	otel.SetMeterProvider(mp)
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetMeterProvider(prevM)
		otel.SetTracerProvider(prevT)
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	obs := redlockotel.NewObserver()
	obs.Held(1)
	obs.Unlocked(context.Background(), redlock.UnlockEvent{Resources: []string{"r"}, Outcome: "ok", Start: t0})
	tm := &telemetry{reader: reader, spans: rec}
	if n := sums(t, tm.collect(t), "redlock.locks.held")[""]; n != 1 {
		t.Errorf("locks.held through the global provider = %d, want 1", n)
	}
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("%d spans through the global provider, want 1", n)
	}
}

// TestNoopProviders: the OpenTelemetry no-op providers record nothing and
// cost nothing but the calls.
func TestNoopProviders(t *testing.T) {
	obs := redlockotel.NewObserver(redlockotel.WithMeterProvider(metricnoop.NewMeterProvider()), redlockotel.WithTracerProvider(tracenoop.NewTracerProvider()))
	feedAll(obs)
}

// TestConcurrent feeds every method from many goroutines (for -race) and
// checks the totals.
func TestConcurrent(t *testing.T) {
	tm := newTelemetry(t, redlockotel.WithResourceAttribute(func(r string) string { return r[:1] }))
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				feedAll(tm.obs)
				tm.obs.InstanceState(redlock.InstanceStateEvent{Endpoint: "redis://b:2", Up: (g+i)%2 == 0})
				if i%50 == 0 {
					tm.collect(t)
				}
			}
		})
	}
	wg.Wait()
	ms := tm.collect(t)
	if n := sums(t, ms, "redlock.locks.held")[""]; n != goroutines*each {
		t.Errorf("locks.held = %d, want %d", n, goroutines*each)
	}
	var calls uint64
	for _, p := range hist(t, ms, "redlock.acquire.duration") {
		calls += p.Count
	}
	if calls != goroutines*each {
		t.Errorf("acquire.duration count %d, want %d", calls, goroutines*each)
	}
	if n := len(tm.spans.Ended()); n != 3*goroutines*each {
		t.Errorf("%d spans, want %d", n, 3*goroutines*each)
	}
}
