package harness

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

func TestParseNodeResult(t *testing.T) {
	r, err := parseNodeResult([]byte(`{"ops":1234,"elapsed_ns":1000000000,"p50_ns":250000,"p99_ns":900000,"max_wait_ns":0,"errors":2,"first_error":"lock: ExecutionError: no quorum","extra":1}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != 1234 || r.Elapsed != time.Second || r.P50 != 250*time.Microsecond || r.P99 != 900*time.Microsecond ||
		r.Errors != 2 || r.FirstErr != "lock: ExecutionError: no quorum" || r.MaxWait != 0 {
		t.Errorf("parseNodeResult = %+v", r)
	}
	if !math.IsNaN(r.Allocs) || r.OtherCores != -1 {
		t.Errorf("Allocs = %v, OtherCores = %v; want NaN (not applicable) and -1 (for the caller)", r.Allocs, r.OtherCores)
	}
	if got := r.OpsPerSec(); got != 1234 {
		t.Errorf("OpsPerSec = %v, want 1234", got)
	}
	r, err = parseNodeResult([]byte(`{"ops":0,"elapsed_ns":5,"max_wait_ns":7}`))
	if err != nil || r.Ops != 0 || r.MaxWait != 7 || r.P50 != 0 {
		t.Errorf("parseNodeResult(zero ops) = %+v, %v", r, err)
	}
	for _, bad := range []string{
		``,
		`not json`,
		`{"ready":true}`,
		`{"ops":1}`,
		`{"elapsed_ns":1}`,
		`{"ops":1,"elapsed_ns":0}`,
		`{"ops":-1,"elapsed_ns":1}`,
		`{"ops":1,"elapsed_ns":1,"p50_ns":5,"p99_ns":4}`,
		`{"ops":1,"elapsed_ns":1,"errors":-1}`,
		`{"ops":1.5,"elapsed_ns":1}`,
		`{"ops":"1","elapsed_ns":1}`,
	} {
		if r, err := parseNodeResult([]byte(bad)); err == nil {
			t.Errorf("parseNodeResult(%q) = %+v, want an error", bad, r)
		}
	}
}

// TestNodeProtocol drives the cell protocol with a shell script standing in
// for node: the ready line, "go" on stdin, the result line, exit when stdin
// closes; and a script that breaks it, which yields a failed call, not an
// error.
func TestNodeProtocol(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.sh", `
[ "$1" = run ] || exit 3
case "$2" in *'"prefix":"p:1"'*) ;; *) exit 4 ;; esac
echo '{"ready":true}'
read line
[ "$line" = go ] || exit 5
echo '{"ops":10,"elapsed_ns":200000000,"p50_ns":1000,"p99_ns":2000,"max_wait_ns":0,"errors":0,"first_error":""}'
while read line; do :; done
`)
	cfg := cellConfig{duration: 200 * time.Millisecond, maxOps: 10, prefix: "p:1"}
	ctx := context.Background()
	nr := &nodeRunner{node: sh, script: good}
	r, err := nr.runCell(ctx, []string{"127.0.0.1:1"}, Workload{C: 1}, cfg, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != 10 || r.Errors != 0 || r.OpsPerSec() != 50 {
		t.Errorf("result = %+v", r)
	}
	if runtime.GOOS == "linux" && r.OtherCores < 0 {
		t.Errorf("OtherCores = %v, want it measured on linux", r.OtherCores)
	}

	for name, body := range map[string]string{
		"noready.sh": `echo hello; exit 0`,
		"crash.sh":   `echo '{"ready":true}'; echo boom >&2; exit 2`,
		"garbage.sh": `echo '{"ready":true}'; read line; echo '{"ops":1}'; cat >/dev/null`,
	} {
		nr := &nodeRunner{node: sh, script: write(name, body)}
		r, err := nr.runCell(ctx, []string{"127.0.0.1:1"}, Workload{C: 1}, cfg, time.Second)
		if err != nil {
			t.Errorf("%s: runCell error %v, want a failed call in the result", name, err)
			continue
		}
		if r.Errors != 1 || !strings.HasPrefix(r.FirstErr, "node: bench.js: ") || r.Ops != 0 || !math.IsNaN(r.Allocs) {
			t.Errorf("%s: result = %+v, want one failed call", name, r)
		}
		if name == "crash.sh" && !strings.Contains(r.FirstErr, "boom") {
			t.Errorf("%s: first error %q lacks the stderr", name, r.FirstErr)
		}
	}

	// An interrupted cell is an error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := nr.runCell(cctx, []string{"127.0.0.1:1"}, Workload{C: 1}, cfg, time.Second); err == nil {
		t.Error("runCell with a cancelled ctx succeeded, want an error")
	}
}

// prepareNode prepares node-redlock or skips the test, saying why.
func prepareNode(t *testing.T) *Impl {
	t.Helper()
	im := implNodeRedlock()
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout+nodeVersionTimeout)
	defer cancel()
	note, err := im.Prepare(ctx)
	if err != nil {
		t.Skipf("node-redlock not available, skipping: %v", err)
	}
	t.Logf("%s", note)
	return im
}

// TestNodeCell runs short node-redlock cells on three servers: uncontended
// and contended.
func TestNodeCell(t *testing.T) {
	im := prepareNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var addrs []string
	var pids []int
	for _, s := range redistest.Start(t, 3) {
		addrs = append(addrs, s.Addr())
		pids = append(pids, s.Pid())
	}
	cfg := cellConfig{
		duration: 200 * time.Millisecond,
		warmup:   50 * time.Millisecond,
		hold:     time.Millisecond,
		maxOps:   DefaultMaxOps,
		prefix:   "redlock-bench-test:node:1",
		pids:     pids,
	}

	r, err := runCell(ctx, im, addrs, Workload{C: 1}, cfg, DefaultTTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("C=1: %+v (%.0f ops/s)", r, r.OpsPerSec())
	if r.Errors != 0 || r.Ops < 1 || r.P50 <= 0 || r.P99 < r.P50 || r.Elapsed < cfg.duration || !math.IsNaN(r.Allocs) {
		t.Errorf("C=1: result = %+v, want ops, latencies, no errors, NaN allocs", r)
	}
	if runtime.GOOS == "linux" && r.OtherCores < 0 {
		t.Errorf("C=1: OtherCores = %v, want it measured on linux", r.OtherCores)
	}

	// With node-redlock's 200±100 ms retry delay, 4 waiters hand off every
	// ~50 ms: a 1 s cell has a few handoffs.
	cfg.duration, cfg.prefix = time.Second, "redlock-bench-test:node:2"
	r, err = runCell(ctx, im, addrs, Workload{Contended: true, C: 4}, cfg, DefaultTTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("4 waiters: %+v (%.0f handoffs/s)", r, r.OpsPerSec())
	if r.Errors != 0 || r.Ops < 1 || r.P50 <= 0 || r.MaxWait <= 0 {
		t.Errorf("4 waiters: result = %+v, want handoffs and a max wait, no errors", r)
	}
}

// TestRunNodeMeasured runs this library and node-redlock side by side and
// checks that the single-caller target uses the measured figure.
func TestRunNodeMeasured(t *testing.T) {
	prepareNode(t) // skips when unavailable; Run prepares its own
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	impls, err := SelectImpls("redlock,node-redlock")
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, text := runMarkdown(t, ctx, Options{
		Ns: []int{3}, Cs: []int{1}, Rounds: 1, Cell: 200 * time.Millisecond, Warmup: 50 * time.Millisecond,
		Impls: impls, Progress: &progress, Command: "test",
	})
	for _, s := range []string{
		"node-redlock: node v",
		"| 1 caller: ops/s vs node-redlock (measured in this run, ",
		"| 3 | C=1 | node-redlock | ",
		"| allocations per cycle (C=1) | ",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("markdown lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "reference figure") {
		t.Errorf("markdown uses the reference figure although node-redlock ran:\n%s", text)
	}
	row := rep.Row(3, Workload{C: 1}, nodeKey)
	if row == nil || row.Median.Errors != 0 || row.Median.OpsPerSec <= 0 || !math.IsNaN(row.Median.Allocs) {
		t.Fatalf("node-redlock row = %+v", row)
	}
	if !strings.Contains(progress.String(), "node-redlock: node v") {
		t.Errorf("progress lacks node-redlock's note:\n%s", progress.String())
	}
}

// TestRunNodeMissing runs with node absent from $PATH: node-redlock is
// skipped with a note, the rest runs, and the target falls back to the
// reference figure.
func TestRunNodeMissing(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("no redis-server: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	impls, err := SelectImpls("redlock,node-redlock")
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, text := runMarkdown(t, ctx, Options{
		Ns: []int{3}, Cs: []int{1}, Rounds: 1, Cell: 50 * time.Millisecond,
		Impls: impls, RedisServer: server, Progress: &progress, Command: "test",
	})
	if len(rep.Skipped) != 1 || rep.Skipped[0].Key != nodeKey || !strings.Contains(rep.Skipped[0].Reason, "node not found") {
		t.Errorf("Skipped = %+v, want node-redlock: node not found", rep.Skipped)
	}
	if rep.Row(3, Workload{C: 1}, nodeKey) != nil || rep.Row(3, Workload{C: 1}, "redlock") == nil {
		t.Errorf("rows: want redlock's and no node-redlock's")
	}
	if !strings.Contains(progress.String(), "node-redlock: not run: node not found in $PATH") {
		t.Errorf("progress lacks the skip line:\n%s", progress.String())
	}
	for _, s := range []string{
		"node-redlock: not run: node not found in $PATH",
		"1 caller: ops/s vs node-redlock's 4,591/s (reference figure from peer-benchmarks.md, not measured here)",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("markdown lacks %q:\n%s", s, text)
		}
	}
}

// TestTargetsNodeFigure checks the single-caller target's three cases on a
// hand-made report: measured, failed (no ops), not run.
func TestTargetsNodeFigure(t *testing.T) {
	ours, node := &Impl{Key: "redlock", Label: "redlock (this)"}, &Impl{Key: nodeKey, Label: "node-redlock"}
	one := Workload{C: 1}
	mk := func(nodeOps float64, withNode bool) string {
		rep := &Report{Opts: Options{Ns: []int{3}, Cs: []int{1}, Rounds: 1, Impls: []*Impl{ours, node}}}
		rep.Rows = append(rep.Rows, &Row{N: 3, Workload: one, Impl: ours, Median: Summary{OpsPerSec: 4000, Allocs: 18, OtherCores: -1}})
		if withNode {
			rep.Rows = append(rep.Rows, &Row{N: 3, Workload: one, Impl: node, Median: Summary{OpsPerSec: nodeOps, Allocs: math.NaN(), OtherCores: -1}})
		}
		var b bytes.Buffer
		if err := rep.WriteMarkdown(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, c := range []struct {
		name string
		text string
		want string
	}{
		{"measured", mk(2000, true), "| 1 caller: ops/s vs node-redlock (measured in this run, 2,000/s) | ≥ 1.0× | 2.00× ✓ |"},
		{"measured, slower", mk(8000, true), "| 1 caller: ops/s vs node-redlock (measured in this run, 8,000/s) | ≥ 1.0× | 0.50× ✗ |"},
		{"failed", mk(0, true), "(reference figure from peer-benchmarks.md, node-redlock failed in this run) | ≥ 1.0× | 0.87× ✗ |"},
		{"not run", mk(0, false), "(reference figure from peer-benchmarks.md, not measured here) | ≥ 1.0× | 0.87× ✗ |"},
	} {
		if !strings.Contains(c.text, c.want) {
			t.Errorf("%s: markdown lacks %q:\n%s", c.name, c.want, c.text)
		}
	}
	if text := mk(2000, true); !strings.Contains(text, "| allocations per cycle (C=1) | 18 | — |") || !strings.Contains(text, "| 3 | C=1 | node-redlock | 2,000 | — | — | — |") {
		t.Errorf("allocations of node-redlock not rendered as —:\n%s", text)
	}
}

// TestHandoffZeroDelayShown: a handoff whose waiter held the lock before
// the release call returned has a delay of 0, which the report prints as
// "0" (measured), never as "—" (not measured).
func TestHandoffZeroDelayShown(t *testing.T) {
	ours := &Impl{Key: "redlock", Label: "redlock (this)"}
	rel := Workload{Handoff: HandoffRelease, C: 1}
	rep := &Report{Opts: Options{Ns: []int{3}, Cs: []int{1}, Rounds: 1, Impls: []*Impl{ours}}}
	rep.Rows = append(rep.Rows, &Row{N: 3, Workload: rel, Impl: ours,
		Median: Summary{P50: 0, P99: 120 * time.Microsecond, MaxWait: 120 * time.Microsecond, Trials: 2, Allocs: math.NaN(), OtherCores: -1}})
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"| handoff after a redsync unlock: p50 | ≤ 2 ms | 0 ms ✓ |",
		"| 0 / 0.12 / 0.12 (2) |",
		"| 3 | after redsync unlock | redlock | — (2 trials) | 0 | 120 | — | 0.12 |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q:\n%s", want, text)
		}
	}
}
