package redlockotel

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/redlock-go/redlock"
)

// ScopeName is the instrumentation scope of the meter and the tracer.
const ScopeName = "github.com/redlock-go/redlock/redlockotel"

// Attribute keys.
const (
	AttrMethod        = attribute.Key("redlock.method")
	AttrOutcome       = attribute.Key("redlock.outcome")
	AttrAuto          = attribute.Key("redlock.auto")
	AttrReason        = attribute.Key("redlock.reason")
	AttrResource      = attribute.Key("redlock.resource")
	AttrServerAddress = attribute.Key("server.address")

	// Span and span-event attributes only.
	AttrAttempts        = attribute.Key("redlock.attempts")
	AttrQuorum          = attribute.Key("redlock.quorum")
	AttrFence           = attribute.Key("redlock.fence")
	AttrTTL             = attribute.Key("redlock.ttl")
	AttrYes             = attribute.Key("redlock.yes")
	AttrAttempt         = attribute.Key("redlock.attempt")
	AttrVotes           = attribute.Key("redlock.votes")
	AttrAttemptDuration = attribute.Key("redlock.attempt.duration")
)

// Bucket boundaries (advice to the SDK; a View can override them).
var (
	// callBuckets suit a whole call: a few milliseconds to the retries of a
	// Lock or a long LockWait.
	callBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}
	// instanceBuckets suit one round trip, bounded by Config.NodeTimeout.
	instanceBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	// attemptBuckets: a bucket per attempt up to 5, then coarser.
	attemptBuckets = []float64{1, 2, 3, 4, 5, 7, 10, 20, 50, 100}
)

// Option configures NewObserver.
type Option func(*config)

type config struct {
	mp       metric.MeterProvider
	tp       trace.TracerProvider
	resource func(string) string
}

// WithMeterProvider sets the meter provider. Default: otel.GetMeterProvider()
// at the time NewObserver is called (which delegates to the global provider
// set later, if none was set yet).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider sets the tracer provider. Default:
// otel.GetTracerProvider() at the time NewObserver is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithResourceAttribute adds the attribute redlock.resource, normalise(r)
// for the resource r, to the measurements of redlock.acquire.duration,
// redlock.acquire.attempts, redlock.extend.duration, redlock.unlock.duration
// and redlock.lock.lost. normalise should map the unbounded set of resource
// names to a few values (every distinct value is a time series of each of
// these instruments), e.g. the part before the first ':'. For a lock on
// several resources the value is the distinct normalised names joined with
// ","; a normalise that returns "" for every resource leaves the attribute
// out. normalise must be safe for concurrent use. Without this option
// resource names are on spans only.
func WithResourceAttribute(normalise func(resource string) string) Option {
	return func(c *config) { c.resource = normalise }
}

// NewObserver returns a redlock.Observer that records the Manager's events
// as the metrics and spans described in the package documentation. An
// error creating an instrument is handed to otel.Handle (the instrument
// then records nothing, as the OpenTelemetry API returns a no-op one).
func NewObserver(opts ...Option) redlock.Observer {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &observer{
		tracer:    c.tp.Tracer(ScopeName),
		resource:  c.resource,
		instances: make(map[string]bool),
	}
	meter := c.mp.Meter(ScopeName)
	var err error
	check := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	o.acquireDur, err = meter.Float64Histogram("redlock.acquire.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of Lock, TryLock, LockWait, LockMany and the acquisition of Do, with all their attempts."),
		metric.WithExplicitBucketBoundaries(callBuckets...))
	var e error
	o.acquireAttempts, e = meter.Int64Histogram("redlock.acquire.attempts",
		metric.WithUnit("{attempt}"),
		metric.WithDescription("Number of attempts an acquisition call made."),
		metric.WithExplicitBucketBoundaries(attemptBuckets...))
	check(e)
	o.held, e = meter.Int64UpDownCounter("redlock.locks.held",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Number of locks the Managers hold."))
	check(e)
	o.waiters, e = meter.Int64UpDownCounter("redlock.waiters",
		metric.WithUnit("{waiter}"),
		metric.WithDescription("Number of calls waiting for a lock to be released."))
	check(e)
	o.extendDur, e = meter.Float64Histogram("redlock.extend.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of lock extensions, manual and automatic."),
		metric.WithExplicitBucketBoundaries(callBuckets...))
	check(e)
	o.unlockDur, e = meter.Float64Histogram("redlock.unlock.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of lock releases."),
		metric.WithExplicitBucketBoundaries(callBuckets...))
	check(e)
	o.lost, e = meter.Int64Counter("redlock.lock.lost",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks lost while held."))
	check(e)
	o.instanceDur, e = meter.Float64Histogram("redlock.instance.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of one call to one Redis instance."),
		metric.WithExplicitBucketBoundaries(instanceBuckets...))
	check(e)
	_, e = meter.Int64ObservableGauge("redlock.instance.up",
		metric.WithUnit("1"),
		metric.WithDescription("Whether a Redis instance answers (1) or stopped answering (0)."),
		metric.WithInt64Callback(o.observeUp))
	check(e)
	if err != nil {
		otel.Handle(fmt.Errorf("redlockotel: creating instruments: %w", err))
	}
	return o
}

type observer struct {
	tracer   trace.Tracer
	resource func(string) string

	acquireDur      metric.Float64Histogram
	acquireAttempts metric.Int64Histogram
	held            metric.Int64UpDownCounter
	waiters         metric.Int64UpDownCounter
	extendDur       metric.Float64Histogram
	unlockDur       metric.Float64Histogram
	lost            metric.Int64Counter
	instanceDur     metric.Float64Histogram

	// attrs caches the measurement options of attribute combinations.
	attrs attrCache

	// instances holds each endpoint seen and whether it is up.
	mu        sync.Mutex
	instances map[string]bool
}

var _ redlock.Observer = (*observer)(nil)

// recoverTo ends a method: a panic inside it (an SDK, an exporter, the
// resource function) goes to otel.Handle instead of the Manager's caller.
func recoverTo(method string) {
	if p := recover(); p != nil {
		otel.Handle(fmt.Errorf("redlockotel: panic in %s: %v", method, p))
	}
}

// spanNames are the span names by method, prebuilt.
var spanNames = map[string]string{
	"Lock":     "redlock.Lock",
	"TryLock":  "redlock.TryLock",
	"LockWait": "redlock.LockWait",
	"LockMany": "redlock.LockMany",
	"Do":       "redlock.Do",
}

func spanName(method string) string {
	if n, ok := spanNames[method]; ok {
		return n
	}
	return "redlock." + method
}

// times returns an event's start and end, falling back to now minus its
// duration when the start is missing.
func times(start time.Time, d time.Duration) (time.Time, time.Time) {
	if start.IsZero() {
		end := time.Now()
		return end.Add(-d), end
	}
	return start, start.Add(d)
}

func resourceAttr(resources []string) attribute.KeyValue {
	if len(resources) == 1 {
		return AttrResource.String(resources[0])
	}
	return AttrResource.StringSlice(resources)
}

// endSpan sets err's status on span and ends it at end.
func endSpan(span trace.Span, err error, end time.Time) {
	if !span.IsRecording() {
		span.End() // a no-op tracer, or not sampled: spare the options
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// Acquired implements redlock.Observer.
func (o *observer) Acquired(ctx context.Context, e redlock.AcquireEvent) {
	defer recoverTo("Acquired")
	ctx = orBackground(ctx)
	start, end := times(e.Start, e.Duration)
	sctx, span := o.tracer.Start(ctx, spanName(e.Method), trace.WithTimestamp(start))
	if span.IsRecording() {
		attrs := []attribute.KeyValue{
			resourceAttr(e.Resources),
			AttrOutcome.String(e.Outcome),
			AttrAttempts.Int(len(e.Attempts)),
			AttrQuorum.Int(e.Quorum),
		}
		if e.Fence != 0 {
			attrs = append(attrs, AttrFence.Int64(int64(e.Fence)))
		}
		span.SetAttributes(attrs...)
		for i, a := range e.Attempts {
			span.AddEvent("attempt", trace.WithTimestamp(a.Start), trace.WithAttributes(
				AttrAttempt.Int(i+1),
				AttrYes.Int(a.Yes),
				AttrVotes.StringSlice(a.Votes),
				AttrAttemptDuration.Float64(a.Duration.Seconds()),
			))
		}
	}
	endSpan(span, e.Err, end)

	opt := o.attrs.get(attrKey{kind: kindAcquire, a: e.Method, b: e.Outcome}, o.resource, e.Resources)
	o.acquireDur.Record(sctx, e.Duration.Seconds(), opt.rec...)
	o.acquireAttempts.Record(sctx, int64(len(e.Attempts)), opt.rec...)
}

// Extended implements redlock.Observer.
func (o *observer) Extended(ctx context.Context, e redlock.ExtendEvent) {
	defer recoverTo("Extended")
	ctx = orBackground(ctx)
	start, end := times(e.Start, e.Duration)
	sctx, span := o.tracer.Start(ctx, "redlock.Extend", trace.WithTimestamp(start))
	if span.IsRecording() {
		span.SetAttributes(
			resourceAttr(e.Resources),
			AttrOutcome.String(e.Outcome),
			AttrAuto.Bool(e.Auto),
			AttrQuorum.Int(e.Quorum),
			AttrYes.Int(e.Yes),
			AttrTTL.Float64(e.TTL.Seconds()),
		)
	}
	endSpan(span, e.Err, end)

	auto := "false"
	if e.Auto {
		auto = "true"
	}
	opt := o.attrs.get(attrKey{kind: kindExtend, a: e.Outcome, b: auto}, o.resource, e.Resources)
	o.extendDur.Record(sctx, e.Duration.Seconds(), opt.rec...)
}

// Unlocked implements redlock.Observer.
func (o *observer) Unlocked(ctx context.Context, e redlock.UnlockEvent) {
	defer recoverTo("Unlocked")
	ctx = orBackground(ctx)
	start, end := times(e.Start, e.Duration)
	sctx, span := o.tracer.Start(ctx, "redlock.Unlock", trace.WithTimestamp(start))
	if span.IsRecording() {
		span.SetAttributes(
			resourceAttr(e.Resources),
			AttrOutcome.String(e.Outcome),
			AttrQuorum.Int(e.Quorum),
		)
	}
	endSpan(span, e.Err, end)

	opt := o.attrs.get(attrKey{kind: kindUnlock, a: e.Outcome}, o.resource, e.Resources)
	o.unlockDur.Record(sctx, e.Duration.Seconds(), opt.rec...)
}

// Lost implements redlock.Observer.
func (o *observer) Lost(e redlock.LostEvent) {
	defer recoverTo("Lost")
	opt := o.attrs.get(attrKey{kind: kindLost, a: e.Reason}, o.resource, e.Resources)
	o.lost.Add(context.Background(), 1, opt.add...)
}

// Held implements redlock.Observer.
func (o *observer) Held(delta int) {
	defer recoverTo("Held")
	o.held.Add(context.Background(), int64(delta))
}

// Waiting implements redlock.Observer.
func (o *observer) Waiting(delta int) {
	defer recoverTo("Waiting")
	o.waiters.Add(context.Background(), int64(delta))
}

// InstanceCall implements redlock.Observer.
func (o *observer) InstanceCall(e redlock.InstanceCallEvent) {
	defer recoverTo("InstanceCall")
	o.seen(e.Endpoint)
	opt := o.attrs.get(attrKey{kind: kindInstance, a: e.Endpoint, b: e.Outcome}, nil, nil)
	o.instanceDur.Record(context.Background(), e.Duration.Seconds(), opt.rec...)
}

// InstanceState implements redlock.Observer.
func (o *observer) InstanceState(e redlock.InstanceStateEvent) {
	defer recoverTo("InstanceState")
	o.mu.Lock()
	o.instances[e.Endpoint] = e.Up
	o.mu.Unlock()
}

// seen registers endpoint as up unless it is known already.
func (o *observer) seen(endpoint string) {
	o.mu.Lock()
	if _, ok := o.instances[endpoint]; !ok {
		o.instances[endpoint] = true
	}
	o.mu.Unlock()
}

// observeUp is redlock.instance.up's callback.
func (o *observer) observeUp(_ context.Context, obs metric.Int64Observer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("redlockotel: panic observing redlock.instance.up: %v", p)
		}
	}()
	o.mu.Lock()
	defer o.mu.Unlock()
	for ep, up := range o.instances {
		v := int64(0)
		if up {
			v = 1
		}
		obs.Observe(v, o.attrs.get(attrKey{kind: kindUp, a: ep}, nil, nil).obs...)
	}
	return nil
}
