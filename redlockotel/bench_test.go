package redlockotel_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/redlockotel"
)

// The cost of the Observer: one lock + unlock cycle (ops = cycles) on 3
// real redis-servers on loopback, without an Observer, with one that
// drops the events (the Manager's share), and with this package's on the
// OpenTelemetry SDK (metrics into an in-memory reader;
// spans sampled and handed to a no-op exporter, or a no-op tracer). Run
//
//	go test -run '^$' -bench BenchmarkLockUnlock -benchmem -count 5 .
//
// and compare the rows of one run only: the servers share the cores.
func BenchmarkLockUnlock(b *testing.B) {
	servers := redistest.Start(b, 3)
	for _, c := range []struct {
		name string
		obs  func(b *testing.B) redlock.Observer
	}{
		{"none", func(*testing.B) redlock.Observer { return nil }},
		// The wiring's own cost: events built and handed to an Observer
		// that drops them.
		{"discard", func(*testing.B) redlock.Observer { return discard{} }},
		{"otel-metrics", func(b *testing.B) redlock.Observer {
			return redlockotel.NewObserver(redlockotel.WithMeterProvider(sdkMeter(b)), redlockotel.WithTracerProvider(tracenoop.NewTracerProvider()))
		}},
		{"otel-metrics+traces", func(b *testing.B) redlock.Observer {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSyncer(tracetest.NewNoopExporter()))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			return redlockotel.NewObserver(redlockotel.WithMeterProvider(sdkMeter(b)), redlockotel.WithTracerProvider(tp))
		}},
	} {
		b.Run(c.name+"/N=3", func(b *testing.B) {
			m, err := redlock.New(addrs(servers), redlock.Config{Observer: c.obs(b)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := m.Close(ctx); err != nil {
					b.Errorf("Close: %v", err)
				}
			})
			ctx := context.Background()
			for range 10 { // connections up, scripts loaded
				if err := cycle(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := cycle(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discard is an Observer that does nothing.
type discard struct{}

func (discard) Acquired(context.Context, redlock.AcquireEvent) {}
func (discard) Extended(context.Context, redlock.ExtendEvent)  {}
func (discard) Unlocked(context.Context, redlock.UnlockEvent)  {}
func (discard) Lost(redlock.LostEvent)                         {}
func (discard) Held(int)                                       {}
func (discard) Waiting(int)                                    {}
func (discard) InstanceCall(redlock.InstanceCallEvent)         {}
func (discard) InstanceState(redlock.InstanceStateEvent)       {}

// sdkMeter is an SDK meter provider with a manual (in-memory) reader,
// collected once at the end so that the aggregation is real.
func sdkMeter(b *testing.B) *sdkmetric.MeterProvider {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
	})
	return mp
}

// cycle is one lock + unlock with a fixed TTL (no watchdog).
func cycle(ctx context.Context, m *redlock.Manager) error {
	l, err := m.Lock(ctx, "bench:otel", redlock.TTL(10*time.Second))
	if err != nil {
		return err
	}
	return l.Unlock(ctx)
}

// BenchmarkObserver is the Observer alone, fed the events of one lock +
// unlock cycle on 3 instances (one acquisition with one attempt, one
// release, 6 instance calls, held ±1), without Redis.
func BenchmarkObserver(b *testing.B) {
	for _, traces := range []bool{false, true} {
		name := "metrics"
		if traces {
			name = "metrics+traces"
		}
		b.Run(name, func(b *testing.B) {
			var opts []redlockotel.Option
			opts = append(opts, redlockotel.WithMeterProvider(sdkMeter(b)))
			if traces {
				tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				opts = append(opts, redlockotel.WithTracerProvider(tp))
			} else {
				opts = append(opts, redlockotel.WithTracerProvider(tracenoop.NewTracerProvider()))
			}
			obs := redlockotel.NewObserver(opts...)
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				// What the Manager hands over (its slices belong to the
				// Observer, so they are made per cycle, as the Manager does).
				obs.Acquired(ctx, redlock.AcquireEvent{Method: "Lock", Resources: []string{"bench:otel"}, Outcome: redlock.OutcomeAcquired,
					Start: now, Duration: 300 * time.Microsecond, Quorum: 2,
					Attempts: []redlock.AttemptEvent{{Start: now, Duration: 300 * time.Microsecond, Yes: 3, Votes: []string{"ok", "ok", "ok"}}}})
				obs.Held(1)
				for _, ep := range benchEndpoints {
					obs.InstanceCall(redlock.InstanceCallEvent{Endpoint: ep, Outcome: redlock.OutcomeOK, Duration: 100 * time.Microsecond})
				}
				obs.Held(-1)
				obs.Unlocked(ctx, redlock.UnlockEvent{Resources: []string{"bench:otel"}, Outcome: redlock.OutcomeOK, Start: now, Duration: 200 * time.Microsecond, Quorum: 2})
				for _, ep := range benchEndpoints {
					obs.InstanceCall(redlock.InstanceCallEvent{Endpoint: ep, Outcome: redlock.OutcomeOK, Duration: 100 * time.Microsecond})
				}
			}
		})
	}
}

var benchEndpoints = []string{"redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"}
