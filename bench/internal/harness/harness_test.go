package harness

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// goImpls is every implementation but node-redlock, which has its own
// tests (impl_node_test.go) and needs node and npm.
func goImpls() []*Impl {
	var out []*Impl
	for _, im := range Impls() {
		if im.Key != nodeKey {
			out = append(out, im)
		}
	}
	return out
}

// isOurs reports whether im is this project's library (on either wire).
func isOurs(im *Impl) bool { return im.Key == "redlock" || im.Key == "redlock-goredis" }

// TestRunShort runs every in-process implementation through every workload
// in a very short mode and checks that the report has every row, no errors,
// and a chart line per implementation.
func TestRunShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := Options{
		Impls:         goImpls(),
		Ns:            []int{1, 3},
		Cs:            []int{1, 4},
		Waiters:       4,
		HandoffTrials: 2,
		Rounds:        1,
		Cell:          200 * time.Millisecond,
		ContendedCell: 500 * time.Millisecond,
		Warmup:        50 * time.Millisecond,
		Command:       "test",
	}
	rep, text := runMarkdown(t, ctx, opts)
	wantRows, errRows := 0, 0
	for _, n := range []int{1, 3} {
		for _, w := range []Workload{{C: 1}, {C: 4}, {Contended: true, C: 4}, {Handoff: HandoffExpiry, C: 1}, {Handoff: HandoffRelease, C: 1}} {
			for _, im := range goImpls() {
				applies := !(im.SingleOnly && n != 1) && !(im.Floor && (w.Contended || w.Handoff != "")) &&
					!(im.OwnKeyFormat && w.Handoff == HandoffRelease)
				row := rep.Row(n, w, im.Key)
				if !applies {
					if row != nil {
						t.Errorf("N=%d %s %s: unexpected row", n, w.Name(), im.Key)
					}
					continue
				}
				wantRows++
				if row == nil {
					t.Errorf("N=%d %s %s: no row", n, w.Name(), im.Key)
					continue
				}
				if len(row.Rounds) != 1 {
					t.Errorf("N=%d %s %s: %d rounds, want 1", n, w.Name(), im.Key, len(row.Rounds))
				}
				// A peer that misses a wake-up under load is a measurement the
				// report shows (its Errors section), not a harness defect:
				// rueidislock's waiter, which waits for an invalidation with
				// no fallback, once timed out after an expiry on a loaded CI
				// machine. Our implementations and every uncontended cell
				// must have none.
				peerWait := !isOurs(im) && (w.Contended || w.Handoff != "")
				if row.Median.Errors != 0 && peerWait {
					t.Logf("N=%d %s %s: %d errors (a peer's, reported), first: %s", n, w.Name(), im.Key, row.Median.Errors, row.Median.FirstErr)
					errRows++
				} else if row.Median.Errors != 0 {
					t.Errorf("N=%d %s %s: %d errors, first: %s", n, w.Name(), im.Key, row.Median.Errors, row.Median.FirstErr)
					errRows++
				}
				// Every caller completes at least one cycle, however slow the machine.
				if !w.Contended && row.Rounds[0].Ops < int64(w.C) {
					t.Errorf("N=%d %s %s: %d ops, want ≥ %d", n, w.Name(), im.Key, row.Rounds[0].Ops, w.C)
				}
				// A contended holder keeps the lock at least the hold, and
				// the report says how long it really did.
				if w.Contended && row.Rounds[0].Ops > 0 && row.Median.Hold < rep.Opts.Hold {
					t.Errorf("N=%d %s %s: measured hold %v, want ≥ %v", n, w.Name(), im.Key, row.Median.Hold, rep.Opts.Hold)
				}
				// Every waiter holds at least once (a waiter that never
				// did would show as min 0), and min ≤ max.
				if w.Contended && (row.Median.AcqMax < 1 || row.Median.AcqMin > row.Median.AcqMax) {
					t.Errorf("N=%d %s %s: acquisitions per waiter %d–%d", n, w.Name(), im.Key, row.Median.AcqMin, row.Median.AcqMax)
				}
				// Every handoff trial ends with the waiter holding the lock.
				if w.Handoff != "" && (row.Median.Trials+int(row.Median.Errors) != 2 || (row.Median.Trials != 2 && !peerWait) || row.Median.P99 < row.Median.P50 || row.Median.MaxWait < row.Median.P99) {
					t.Errorf("N=%d %s %s: %d trials (want 2), p50 %v p99 %v max %v", n, w.Name(), im.Key,
						row.Median.Trials, row.Median.P50, row.Median.P99, row.Median.MaxWait)
				}
				line := fmt.Sprintf("| %d | %s | %s | ", n, w.Name(), im.Key)
				if !strings.Contains(text, line) {
					t.Errorf("markdown lacks the row %q", line)
				}
			}
		}
	}
	if len(rep.Rows) != wantRows {
		t.Errorf("%d rows, want %d", len(rep.Rows), wantRows)
	}
	for _, s := range []string{"## N=1", "## N=3", "### Targets of issue 7 (N=3)", "### Targets of issue 16 at N=1", "### Targets of issue 16 at N=3",
		"### Handoffs to one waiter (N=1)", "hold-bound ceiling", "| rueidislock | ", "not measured here", "GOMAXPROCS=", "Measured hold"} {
		if !strings.Contains(text, s) {
			t.Errorf("markdown lacks %q", s)
		}
	}
	// The Errors section lists exactly the rows with errors.
	if got := strings.Count(text, " errors, first: "); got != errRows || (errRows == 0) == strings.Contains(text, "### Errors") {
		t.Errorf("markdown's Errors section has %d lines, want %d:\n%s", got, errRows, text)
	}

	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	polylines := 0
	dec := xml.NewDecoder(bytes.NewReader(svg.Bytes()))
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if want := len(rep.implsAt(1)) + len(rep.implsAt(3)); polylines != want {
		t.Errorf("chart has %d lines, want %d (one per implementation and N)", polylines, want)
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if diff := got - c.want; diff < -c.want/50 || diff > c.want/50 {
			t.Errorf("quantile(%v) = %v, want %v ± 2%%", c.q, got, c.want)
		}
	}
	var empty hist
	if got := empty.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
	for _, v := range []uint64{0, 1, 127, 128, 129, 1 << 20, 1<<63 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		mid := histValue(i)
		if v >= histExact && (mid < v-v/50 || mid > v+v/50) {
			t.Errorf("bucket of %d has middle %d, over 2%% away", v, mid)
		}
	}
}

func TestQuantile(t *testing.T) {
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	var ds []time.Duration
	for i := 10; i >= 1; i-- {
		ds = append(ds, ms(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, ms(5)}, {0.99, ms(10)}, {1, ms(10)}, {0, ms(1)}} {
		if got := quantile(ds, c.q); got != c.want {
			t.Errorf("quantile(1..10 ms, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if ds[0] != ms(10) {
		t.Error("quantile sorted its argument")
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v, want 0", got)
	}
}

func TestFmtInt(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4591: "-4,591"} {
		if got := fmtInt(v); got != want {
			t.Errorf("fmtInt(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{{Ns: []int{0}}, {Cs: []int{0}}, {Waiters: 1}, {Rounds: -1}, {HandoffTrials: -1}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) succeeded, want an error", o)
		}
	}
}

// runMarkdown runs opts and returns the report and its markdown.
func runMarkdown(t *testing.T, ctx context.Context, opts Options) (*Report, string) {
	t.Helper()
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	return rep, md.String()
}
