package harness

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// nodeRedlockC1 is node-redlock 5β's single-caller figure in
// shared/reference/peer-benchmarks.md (cycles/s by N), measured elsewhere:
// the targets use it only when node-redlock did not run in this run.
var nodeRedlockC1 = map[int]float64{3: 4591, 5: 2970}

// Issue 7 targets (N=3).
const (
	goalVsRedsync64   = 2.5
	goalVsFloor64     = 0.9
	goalVsNodeC1      = 1.0
	goalHandoffs      = 10.0
	goalHandoffP50    = time.Millisecond
	goalAllocs        = 20.0
	goalN5OverN3P50C1 = 1.3
)

// ours are the rows the targets are about: this library, dialed and over
// the go-redis adapter.
var ours = []string{"redlock", "redlock-goredis"}

// WriteMarkdown writes the report: set-up, one summary table and the
// targets per N, then every cell.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	o := r.Opts
	fmt.Fprintf(&b, "# redlock benchmark\n\n")
	fmt.Fprintf(&b, "Command: `%s` · %s · took %s\n\n", o.Command, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "GOMAXPROCS=%d (%d CPUs) · %s · redis-server %s (`--save '' --appendonly no`) on loopback, started by the harness · "+
		"medians of %d round(s) of %s cells (contended %s), %s warm-up per cell, implementations alternated cell by cell · "+
		"every lock has a fixed %s TTL (no auto-extension) · contended: a holder keeps the lock %s, unlocks, then waits until another waiter has acquired · "+
		"go-redis clients with default options · allocations: runtime.MemStats.Mallocs over the cell / ops (whole process).\n\n",
		r.GOMAXPROCS, r.NumCPU, r.GoVersion, r.RedisVersion,
		o.Rounds, o.Cell, o.ContendedCell, o.Warmup, o.TTL, o.Hold)
	for _, note := range r.Notes {
		b.WriteString(note + "\n\n")
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "%s: not run: %s\n\n", s.Key, s.Reason)
	}
	if o.QuietWait > 0 {
		fmt.Fprintf(&b, "Each cell first waited up to %s for other processes to use under %.1f cores. ", o.QuietWait, otherCoresWarn)
	}
	b.WriteString("Absolute numbers drift ±20% between runs on a shared machine: compare within one run.")
	if worst := r.worstOtherCores(); worst >= otherCoresWarn {
		fmt.Fprintf(&b, " **Other processes kept up to %s cores busy during a cell of this run** (column \"other CPU\"): the figures are disturbed; rerun on a quiet machine.", fmtCores(worst))
	}
	b.WriteString("\n\n")

	for _, n := range o.Ns {
		impls := r.implsAt(n)
		fmt.Fprintf(&b, "## N=%d\n\n", n)
		b.WriteString("| N=" + strconv.Itoa(n))
		for _, im := range impls {
			b.WriteString(" | " + im.Label)
		}
		b.WriteString(" |\n|---")
		for range impls {
			b.WriteString("|---")
		}
		b.WriteString("|\n")
		for _, wl := range o.Workloads() {
			switch {
			case wl.Handoff == HandoffExpiry:
				fmt.Fprintf(&b, "| handoff after a %s lease expires (holder vanished): p50 / p99 ms after the expiry", fmtDur(HandoffLease))
			case wl.Handoff == HandoffRelease:
				b.WriteString("| handoff after a redsync holder's unlock: p50 / p99 ms after Unlock returned")
			case wl.Contended:
				fmt.Fprintf(&b, "| %d waiters on 1 resource: handoffs/s (p50 µs; max wait ms)", wl.C)
			default:
				fmt.Fprintf(&b, "| C=%d ops/s (p50 µs)", wl.C)
			}
			for _, im := range impls {
				row := r.Row(n, wl, im.Key)
				switch {
				case row == nil:
					b.WriteString(" | —")
				case wl.Handoff != "" && row.Median.Trials == 0:
					b.WriteString(" | —")
				case wl.Handoff != "":
					fmt.Fprintf(&b, " | %s / %s", fmtDelay(row.Median.P50), fmtDelay(row.Median.P99))
				case wl.Contended:
					fmt.Fprintf(&b, " | %s (%s; %s)", fmtInt(row.Median.OpsPerSec), fmtMicros(row.Median.P50), fmtMillis(row.Median.MaxWait))
				default:
					fmt.Fprintf(&b, " | %s (%s)", fmtInt(row.Median.OpsPerSec), fmtMicros(row.Median.P50))
				}
			}
			b.WriteString(" |\n")
		}
		for _, c := range []int{o.Cs[0], o.Cs[len(o.Cs)-1]} {
			fmt.Fprintf(&b, "| allocations per cycle (C=%d)", c)
			for _, im := range impls {
				if row := r.Row(n, Workload{C: c}, im.Key); row != nil {
					b.WriteString(" | " + fmtAllocs(row.Median.Allocs, 0))
				} else {
					b.WriteString(" | —")
				}
			}
			b.WriteString(" |\n")
			if len(o.Cs) == 1 {
				break
			}
		}
		b.WriteString("\n")
		r.writeContended(&b, n)
		r.writeHandoffs(&b, n)
		r.writeTargets(&b, n)
		r.writeTargets16(&b, n)
	}
	r.writeCrossN(&b)

	b.WriteString("## Every cell\n\n")
	b.WriteString("| N | workload | implementation | ops/s | p50 µs | p99 µs | allocs/op | max wait ms | errors | ops/s by round | other CPU (cores) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		m := row.Median
		wait := "—"
		switch {
		case row.Workload.Handoff != "" && m.Trials > 0:
			wait = fmtDelay(m.MaxWait)
		case row.Workload.Contended || row.Workload.Handoff != "":
			wait = fmtMillis(m.MaxWait)
		}
		opsps := fmtInt(m.OpsPerSec)
		var per, other []string
		for _, res := range row.Rounds {
			if row.Workload.Handoff != "" {
				per = append(per, fmt.Sprintf("%d trials", len(res.Delays)))
			} else {
				per = append(per, fmtInt(res.OpsPerSec()))
			}
			other = append(other, fmtCores(res.OtherCores))
		}
		p50, p99 := fmtMicros(m.P50), fmtMicros(m.P99)
		if row.Workload.Handoff != "" {
			opsps = fmt.Sprintf("— (%d trials)", m.Trials)
			if m.Trials > 0 {
				p50, p99 = fmtInt(float64(m.P50)/float64(time.Microsecond)), fmtInt(float64(m.P99)/float64(time.Microsecond))
			}
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n",
			row.N, row.Workload.Name(), row.Impl.Key, opsps, p50, p99,
			fmtAllocs(m.Allocs, 1), wait, m.Errors, strings.Join(per, " · "), strings.Join(other, " · "))
	}
	b.WriteString("\nContended rows count handoffs (an acquisition after another holder's release); their latency runs from the previous holder starting Unlock to the next holder's Lock returning. " +
		"Max wait is the longest single Lock call of any waiter, including calls still waiting when the cell ended. " +
		"Handoff rows (after expiry, after redsync unlock) count trials; their p50/p99/max wait are the delays pooled over every round's trials. " +
		"Other CPU: cores kept busy, on average over the cell, by processes other than the harness and its redis-servers (and a node-redlock cell's node process) (from /proc; by round).\n")
	var holds []string
	for _, row := range r.Rows {
		if row.Workload.Contended && row.Median.Hold > 0 {
			holds = append(holds, fmt.Sprintf("N=%d %s %.2f ms", row.N, row.Impl.Key, float64(row.Median.Hold)/float64(time.Millisecond)))
		}
	}
	if len(holds) > 0 {
		fmt.Fprintf(&b, "\nMeasured hold (mean time a holder kept the lock before unlocking; configured %s; Go holds sleep with nanosleep(2), node with setTimeout): %s.\n", r.Opts.Hold, strings.Join(holds, " · "))
	}
	var errs []string
	for _, row := range r.Rows {
		if row.Median.Errors > 0 {
			errs = append(errs, fmt.Sprintf("- N=%d %s %s: %d errors, first: %s", row.N, row.Workload.Name(), row.Impl.Key, row.Median.Errors, row.Median.FirstErr))
		}
	}
	if len(errs) > 0 {
		b.WriteString("\n### Errors\n\n" + strings.Join(errs, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// otherCoresWarn is the other-process load (cores) above which the report
// warns that its figures are disturbed.
const otherCoresWarn = 0.2

// worstOtherCores is the largest other-process load of any cell (-1: unknown).
func (r *Report) worstOtherCores() float64 {
	worst := -1.0
	for _, row := range r.Rows {
		worst = max(worst, row.Median.OtherCores)
	}
	return worst
}

// implsAt returns the implementations that have a row at n, in table order.
func (r *Report) implsAt(n int) []*Impl {
	var out []*Impl
	for _, im := range r.Opts.Impls {
		for _, row := range r.Rows {
			if row.N == n && row.Impl == im {
				out = append(out, im)
				break
			}
		}
	}
	return out
}

// target is one line of a targets table.
type target struct {
	name  string
	goal  string
	value func(key string) (float64, bool) // the measure for one of ours
	show  func(v float64) string
	met   func(v float64) bool // nil: no goal at this N
}

func (r *Report) writeTargets(b *strings.Builder, n int) {
	o := r.Opts
	hi := Workload{C: o.Cs[len(o.Cs)-1]}
	one := Workload{C: o.Cs[0]}
	contended := Workload{Contended: true, C: o.Waiters}
	ops := func(w Workload, key string) (float64, bool) {
		row := r.Row(n, w, key)
		if row == nil {
			return 0, false
		}
		return row.Median.OpsPerSec, true
	}
	ratio := func(w Workload, key, peer string) (float64, bool) {
		a, ok1 := ops(w, key)
		p, ok2 := ops(w, peer)
		if !ok1 || !ok2 || p == 0 {
			return 0, false
		}
		return a / p, true
	}
	times := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	atLeast := func(g float64) func(float64) bool {
		if n != 3 {
			return nil
		}
		return func(v float64) bool { return v >= g }
	}
	atMost := func(g float64) func(float64) bool {
		if n != 3 {
			return nil
		}
		return func(v float64) bool { return v <= g }
	}

	var ts []target
	hiName := fmt.Sprintf("%d callers", hi.C)
	if r.Row(n, hi, "redsync") != nil {
		ts = append(ts, target{
			name: hiName + ": ops/s vs redsync", goal: "≥ 2.5×",
			value: func(k string) (float64, bool) { return ratio(hi, k, "redsync") }, show: times, met: atLeast(goalVsRedsync64),
		})
	}
	floorName, floorKey := "", ""
	var floorOps float64
	for _, k := range []string{"goredis-floor", "rueidis-floor"} {
		if v, ok := ops(hi, k); ok && v > floorOps {
			floorOps, floorKey = v, k
		}
	}
	if floorKey != "" {
		floorName = fmt.Sprintf("%s: ops/s vs the best raw floor (%s, %s/s)", hiName, floorKey, fmtInt(floorOps))
		ts = append(ts, target{
			name: floorName, goal: "≥ 0.9×",
			value: func(k string) (float64, bool) { return ratio(hi, k, floorKey) }, show: times, met: atLeast(goalVsFloor64),
		})
	}
	if one.C == 1 {
		node, measured := ops(one, nodeKey)
		ref, haveRef := nodeRedlockC1[n]
		switch {
		case measured && node > 0:
			ts = append(ts, target{
				name:  fmt.Sprintf("1 caller: ops/s vs node-redlock (measured in this run, %s/s)", fmtInt(node)),
				goal:  "≥ 1.0×",
				value: func(k string) (float64, bool) { return ratio(one, k, nodeKey) },
				show:  times, met: atLeast(goalVsNodeC1),
			})
		case haveRef:
			why := "not measured here"
			if measured {
				why = "node-redlock failed in this run"
			}
			ts = append(ts, target{
				name: fmt.Sprintf("1 caller: ops/s vs node-redlock's %s/s (reference figure from peer-benchmarks.md, %s)", fmtInt(ref), why),
				goal: "≥ 1.0×",
				value: func(k string) (float64, bool) {
					v, ok := ops(one, k)
					return v / ref, ok
				},
				show: times, met: atLeast(goalVsNodeC1),
			})
		}
	}
	if r.Row(n, one, "redislock") != nil {
		ts = append(ts, target{
			name: fmt.Sprintf("%s: ops/s vs bsm/redislock", one.Name()), goal: "—",
			value: func(k string) (float64, bool) { return ratio(one, k, "redislock") }, show: times,
		})
	}
	if o.Waiters > 0 {
		if r.Row(n, contended, "redsync") != nil {
			ts = append(ts, target{
				name: fmt.Sprintf("%d waiters: handoffs/s vs redsync", o.Waiters), goal: "≥ 10×",
				value: func(k string) (float64, bool) { return ratio(contended, k, "redsync") }, show: times, met: atLeast(goalHandoffs),
			})
		}
		ts = append(ts, target{
			name: fmt.Sprintf("%d waiters: handoff p50", o.Waiters), goal: "≤ 1 ms",
			value: func(k string) (float64, bool) {
				row := r.Row(n, contended, k)
				if row == nil || row.Median.OpsPerSec == 0 {
					return 0, false
				}
				return float64(row.Median.P50), true
			},
			show: func(v float64) string { return fmtMillis(time.Duration(v)) + " ms" },
			met:  atMost(float64(goalHandoffP50)),
		}, target{
			name: fmt.Sprintf("%d waiters: max wait across waiters (starvation check)", o.Waiters), goal: "reported",
			value: func(k string) (float64, bool) {
				row := r.Row(n, contended, k)
				if row == nil {
					return 0, false
				}
				return float64(row.Median.MaxWait), true
			},
			show: func(v float64) string { return fmtMillis(time.Duration(v)) + " ms" },
		})
	}
	for _, w := range []Workload{one, hi} {
		ts = append(ts, target{
			name: fmt.Sprintf("allocations per cycle (%s)", w.Name()), goal: "≤ 20",
			value: func(k string) (float64, bool) {
				row := r.Row(n, w, k)
				if row == nil {
					return 0, false
				}
				return row.Median.Allocs, true
			},
			show: func(v float64) string { return fmt.Sprintf("%.0f", v) },
			met:  atMost(goalAllocs),
		})
		if one == hi {
			break
		}
	}

	if n == 3 {
		b.WriteString("### Targets of issue 7 (N=3)\n\n")
	} else {
		fmt.Fprintf(b, "### Ratios at N=%d (issue 7's goals are for N=3: shown for information)\n\n", n)
	}
	b.WriteString("| measure | goal")
	var keys []string
	for _, k := range ours {
		for _, im := range r.implsAt(n) {
			if im.Key == k {
				keys = append(keys, k)
				b.WriteString(" | " + im.Label)
			}
		}
	}
	b.WriteString(" |\n|---|---")
	for range keys {
		b.WriteString("|---")
	}
	b.WriteString("|\n")
	for _, t := range ts {
		fmt.Fprintf(b, "| %s | %s", t.name, t.goal)
		for _, k := range keys {
			v, ok := t.value(k)
			switch {
			case !ok || math.IsNaN(v) || math.IsInf(v, 0):
				b.WriteString(" | —")
			case t.met == nil:
				b.WriteString(" | " + t.show(v))
			case t.met(v):
				b.WriteString(" | " + t.show(v) + " ✓")
			default:
				b.WriteString(" | " + t.show(v) + " ✗")
			}
		}
		b.WriteString(" |\n")
	}
	b.WriteString("\n")
}

// writeCrossN compares N=5 with N=3 latency when both ran.
func (r *Report) writeCrossN(b *strings.Builder) {
	one := Workload{C: r.Opts.Cs[0]}
	if one.C != 1 {
		return
	}
	var lines []string
	for _, k := range ours {
		r3, r5 := r.Row(3, one, k), r.Row(5, one, k)
		if r3 == nil || r5 == nil || r3.Median.P50 == 0 {
			continue
		}
		v := float64(r5.Median.P50) / float64(r3.Median.P50)
		mark := "✓"
		if v > goalN5OverN3P50C1 {
			mark = "✗"
		}
		lines = append(lines, fmt.Sprintf("| %s | %s µs | %s µs | %.2f× %s |", r3.Impl.Label, fmtMicros(r3.Median.P50), fmtMicros(r5.Median.P50), v, mark))
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("## N=5 vs N=3 (1 caller, p50 latency; goal ≤ 1.3×)\n\n| implementation | N=3 p50 | N=5 p50 | ratio |\n|---|---|---|---|\n")
	b.WriteString(strings.Join(lines, "\n") + "\n\n")
}

// fmtInt formats v rounded, with thousands separators.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func fmtMicros(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return fmtInt(float64(d) / float64(time.Microsecond))
}

// fmtDelay formats a measured handoff delay in ms: unlike fmtMillis, 0
// (the waiter held the lock before the release call returned) is "0", not
// "—", which means "not measured".
func fmtDelay(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return fmtMillis(d)
}

func fmtMillis(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64)
	}
	return fmtInt(ms)
}

// fmtAllocs formats allocations per op with prec decimals; "—" for NaN
// (not applicable).
func fmtAllocs(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func fmtCores(v float64) string {
	if v < 0 {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// fmtDur formats d compactly ("500ms").
func fmtDur(d time.Duration) string { return d.String() }

// writeContended writes the contended cells' fairness and ceiling: the
// measured hold bounds the handoff rate at 1/hold (one holder at a time,
// each keeping the lock that long), so the share of that ceiling is what
// the lock's handoff costs.
func (r *Report) writeContended(b *strings.Builder, n int) {
	w := Workload{Contended: true, C: r.Opts.Waiters}
	var lines []string
	for _, im := range r.implsAt(n) {
		row := r.Row(n, w, im.Key)
		if row == nil {
			continue
		}
		m := row.Median
		ceiling, share := "—", "—"
		if m.Hold > 0 {
			c := float64(time.Second) / float64(m.Hold)
			ceiling = fmtInt(c)
			share = fmt.Sprintf("%.2f", m.OpsPerSec/c)
		}
		acq := "—"
		if m.AcqMax > 0 {
			acq = fmt.Sprintf("%d–%d", m.AcqMin, m.AcqMax)
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s |", im.Label, fmtInt(m.OpsPerSec),
			fmtMillis(m.Hold), ceiling, share, fmtMicros(m.P50), acq, fmtMillis(m.MaxWait)))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### %d waiters, one resource, %s hold (N=%d)\n\n", w.C, r.Opts.Hold, n)
	b.WriteString("| implementation | handoffs/s | measured hold ms | hold-bound ceiling 1/hold (/s) | share of the ceiling | handoff p50 µs | acquisitions per waiter (min–max over rounds) | longest wait ms |\n|---|---|---|---|---|---|---|---|\n")
	b.WriteString(strings.Join(lines, "\n") + "\n\n")
}

// writeHandoffs writes the two handoff workloads side by side.
func (r *Report) writeHandoffs(b *strings.Builder, n int) {
	ex, rel := Workload{Handoff: HandoffExpiry, C: 1}, Workload{Handoff: HandoffRelease, C: 1}
	cell := func(row *Row) string {
		if row == nil || row.Median.Trials == 0 {
			return "—"
		}
		m := row.Median
		return fmt.Sprintf("%s / %s / %s (%d)", fmtDelay(m.P50), fmtDelay(m.P99), fmtDelay(m.MaxWait), m.Trials)
	}
	var lines []string
	for _, im := range r.implsAt(n) {
		a, c := r.Row(n, ex, im.Key), r.Row(n, rel, im.Key)
		if a == nil && c == nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s |", im.Label, cell(a), cell(c)))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### Handoffs to one waiter (N=%d): p50 / p99 / max ms (trials)\n\n", n)
	fmt.Fprintf(b, "| implementation | after a %s lease expires (the holder, same implementation, vanished; from the expiry) | after a redsync holder's unlock (from Unlock returning) |\n|---|---|---|\n", fmtDur(HandoffLease))
	b.WriteString(strings.Join(lines, "\n") + "\n\n")
	b.WriteString("The expiry is taken as the start of the holder's lock call + the lease (an upper bound on the delay by at most one round trip). " +
		"\"—\" after a redsync unlock: the implementation's keys are not the resource name (rueidislock), or it runs in another process (node-redlock).\n\n")
}

// Issue 16 goals.
const (
	goal16VsBSMC1       = 1.0
	goal16VsRueidisC1   = 1.0
	goal16VsRueidisHi   = 1.2
	goal16VsRueidisWait = 1.0
	goal16VsBSMWait     = 5.0
	goal16Share         = 0.85
	goal16ExpiryP50     = 5 * time.Millisecond
	goal16ReleaseP50    = 2 * time.Millisecond
)

// writeTargets16 writes issue 16's targets that apply at n (N=1: ratios
// against rueidislock and bsm/redislock; N=3: the share of the hold-bound
// ceiling and the handoff delays).
func (r *Report) writeTargets16(b *strings.Builder, n int) {
	o := r.Opts
	one, hi := Workload{C: o.Cs[0]}, Workload{C: o.Cs[len(o.Cs)-1]}
	cont := Workload{Contended: true, C: o.Waiters}
	ex, rel := Workload{Handoff: HandoffExpiry, C: 1}, Workload{Handoff: HandoffRelease, C: 1}
	ratio := func(w Workload, k, peer string) (float64, bool) {
		a, p := r.Row(n, w, k), r.Row(n, w, peer)
		if a == nil || p == nil || p.Median.OpsPerSec == 0 {
			return 0, false
		}
		return a.Median.OpsPerSec / p.Median.OpsPerSec, true
	}
	times := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	delay := func(v float64) string { return fmtDelay(time.Duration(v)) + " ms" }
	ge := func(g float64) func(float64) bool { return func(v float64) bool { return v >= g } }
	le := func(g time.Duration) func(float64) bool { return func(v float64) bool { return v <= float64(g) } }
	var ts []target
	addRatio := func(w Workload, peer, label string, goal float64) {
		if r.Row(n, w, peer) == nil {
			return
		}
		ts = append(ts, target{
			name: fmt.Sprintf("%s: vs %s", w.Name(), label), goal: fmt.Sprintf("≥ %.1f×", goal),
			value: func(k string) (float64, bool) { return ratio(w, k, peer) }, show: times, met: ge(goal),
		})
	}
	if n == 1 {
		if one.C == 1 {
			addRatio(one, "redislock", "bsm/redislock", goal16VsBSMC1)
			addRatio(one, "rueidislock", "rueidislock", goal16VsRueidisC1)
		}
		if hi.C == 64 {
			addRatio(hi, "rueidislock", "rueidislock", goal16VsRueidisHi)
		}
		if o.Waiters == 16 {
			addRatio(cont, "rueidislock", "rueidislock", goal16VsRueidisWait)
			addRatio(cont, "redislock", "bsm/redislock", goal16VsBSMWait)
		}
	}
	if n == 3 && o.Waiters == 16 {
		ts = append(ts, target{
			name: fmt.Sprintf("%s: share of the hold-bound ceiling", cont.Name()), goal: fmt.Sprintf("≥ %.2f", goal16Share),
			value: func(k string) (float64, bool) {
				row := r.Row(n, cont, k)
				if row == nil || row.Median.Hold <= 0 {
					return 0, false
				}
				return row.Median.OpsPerSec * row.Median.Hold.Seconds(), true
			},
			show: func(v float64) string { return fmt.Sprintf("%.2f", v) }, met: ge(goal16Share),
		})
	}
	p50 := func(w Workload) func(string) (float64, bool) {
		return func(k string) (float64, bool) {
			row := r.Row(n, w, k)
			if row == nil || row.Median.Trials == 0 {
				return 0, false
			}
			return float64(row.Median.P50), true
		}
	}
	if n == 3 {
		ts = append(ts,
			target{name: "handoff after expiry: p50", goal: "≤ 5 ms", value: p50(ex), show: delay, met: le(goal16ExpiryP50)},
			target{name: "handoff after a redsync unlock: p50", goal: "≤ 2 ms", value: p50(rel), show: delay, met: le(goal16ReleaseP50)})
	}
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(b, "### Targets of issue 16 at N=%d\n\n| measure | goal", n)
	var keys []string
	for _, k := range ours {
		for _, im := range r.implsAt(n) {
			if im.Key == k {
				keys = append(keys, k)
				b.WriteString(" | " + im.Label)
			}
		}
	}
	b.WriteString(" |\n|---|---")
	for range keys {
		b.WriteString("|---")
	}
	b.WriteString("|\n")
	for _, t := range ts {
		fmt.Fprintf(b, "| %s | %s", t.name, t.goal)
		for _, k := range keys {
			v, ok := t.value(k)
			switch {
			case !ok || math.IsNaN(v) || math.IsInf(v, 0):
				b.WriteString(" | —")
			case t.met(v):
				b.WriteString(" | " + t.show(v) + " ✓")
			default:
				b.WriteString(" | " + t.show(v) + " ✗")
			}
		}
		b.WriteString(" |\n")
	}
	b.WriteString("\n")
}
