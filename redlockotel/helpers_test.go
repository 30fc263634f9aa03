package redlockotel_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/redlockotel"
)

// telemetry is an Observer on SDK providers whose output the test reads:
// metrics through a manual reader, spans through a recorder.
type telemetry struct {
	obs    redlock.Observer
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newTelemetry(t *testing.T, opts ...redlockotel.Option) *telemetry {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	opts = append([]redlockotel.Option{redlockotel.WithMeterProvider(mp), redlockotel.WithTracerProvider(tp)}, opts...)
	return &telemetry{obs: redlockotel.NewObserver(opts...), reader: reader, spans: rec, tp: tp}
}

// collect reads every metric, by name.
func (tm *telemetry) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != redlockotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, redlockotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// attrs renders a set as "k=v,k=v" (sorted) for messages and matching.
func attrs(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// kvs renders key=value pairs as attrs does.
func kvs(kv ...attribute.KeyValue) string { return attrs(attribute.NewSet(kv...)) }

// histPoint is a histogram data point in plain numbers.
type histPoint struct {
	Count uint64
	Sum   float64
	Min   float64
	Max   float64
}

// hist returns the points of histogram name by attribute set ("k=v,...").
func hist(t *testing.T, ms map[string]metricdata.Metrics, name string) map[string]histPoint {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Fatalf("no metric %q (have %s)", name, names(ms))
	}
	out := make(map[string]histPoint)
	switch d := m.Data.(type) {
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			hp := histPoint{Count: p.Count, Sum: p.Sum}
			if v, ok := p.Min.Value(); ok {
				hp.Min = v
			}
			if v, ok := p.Max.Value(); ok {
				hp.Max = v
			}
			out[attrs(p.Attributes)] = hp
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			hp := histPoint{Count: p.Count, Sum: float64(p.Sum)}
			if v, ok := p.Min.Value(); ok {
				hp.Min = float64(v)
			}
			if v, ok := p.Max.Value(); ok {
				hp.Max = float64(v)
			}
			out[attrs(p.Attributes)] = hp
		}
	default:
		t.Fatalf("%s is %T, not a histogram", name, m.Data)
	}
	return out
}

// sums returns the points of the int64 sum (counter or up-down counter)
// name by attribute set; absent metrics give an empty map.
func sums(t *testing.T, ms map[string]metricdata.Metrics, name string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	m, ok := ms[name]
	if !ok {
		return out
	}
	d, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, not an int64 sum", name, m.Data)
	}
	for _, p := range d.DataPoints {
		out[attrs(p.Attributes)] = p.Value
	}
	return out
}

// gauges returns the points of the int64 gauge name by attribute set.
func gauges(t *testing.T, ms map[string]metricdata.Metrics, name string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	m, ok := ms[name]
	if !ok {
		return out
	}
	d, ok := m.Data.(metricdata.Gauge[int64])
	if !ok {
		t.Fatalf("%s is %T, not an int64 gauge", name, m.Data)
	}
	for _, p := range d.DataPoints {
		out[attrs(p.Attributes)] = p.Value
	}
	return out
}

func names(ms map[string]metricdata.Metrics) string {
	var n []string
	for k := range ms {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, " ")
}

// spanAttr returns a span's attribute by key.
func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func eventAttr(e sdktrace.Event, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range e.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// spansNamed returns the ended spans with the given name.
func (tm *telemetry) spansNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	var n []string
	for _, s := range spans {
		n = append(n, fmt.Sprintf("%s(%v)", s.Name(), s.Attributes()))
	}
	return strings.Join(n, "; ")
}
