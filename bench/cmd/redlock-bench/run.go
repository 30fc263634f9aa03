package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/redlock-go/redlock/bench/internal/harness"
)

// benchModule is the module path of this harness, used to find its folder.
const benchModule = "github.com/redlock-go/redlock/bench"

// run parses args, runs the benchmark and writes the results; it returns
// the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("redlock-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ns        = fs.String("n", "3", "comma-separated instance counts (1 adds bsm/redislock and rueidislock)")
		cs        = fs.String("c", "1,16,64", "comma-separated numbers of callers on their own resources")
		waiters   = fs.Int("waiters", harness.DefaultWaiters, "waiters contending for one resource (0 skips the contended workload)")
		trials    = fs.Int("handoff-trials", harness.DefaultHandoffTrials, "trials per cell of each handoff workload (after a 500ms lease expires, after a redsync unlock; 0 skips them)")
		rounds    = fs.Int("rounds", harness.DefaultRounds, "rounds; results are medians over rounds")
		cell      = fs.Duration("cell", harness.DefaultCell, "measured duration of an uncontended cell")
		contended = fs.Duration("contended-cell", harness.DefaultContendedCell, "measured duration of a contended cell")
		warmup    = fs.Duration("warmup", harness.DefaultWarmup, "unmeasured warm-up before each cell")
		hold      = fs.Duration("hold", harness.DefaultHold, "how long a contended holder keeps the lock")
		ttl       = fs.Duration("ttl", harness.DefaultTTL, "fixed TTL of every lock")
		procs     = fs.Int("procs", 0, "GOMAXPROCS for the run (0: Go's default, the number of CPUs)")
		impls     = fs.String("impls", "", "comma-separated implementations (default all: redlock, redlock-goredis, redsync, redislock, rueidislock, node-redlock, goredis-floor, rueidis-floor; node-redlock is skipped with a note when node or npm is missing or npm ci fails)")
		quick     = fs.Bool("quick", false, "about a minute: 2 rounds of 1s cells (contended 2s), 200ms warm-up, unless those flags are given")
		out       = fs.String("out", "", "markdown output (default <bench>/results/latest.md; \"-\" for none)")
		chart     = fs.String("chart", "", "SVG chart output (default <bench>/results/chart.svg; \"-\" for none)")
		server    = fs.String("redis-server", "redis-server", "redis-server binary (7.x)")
		progress  = fs.Bool("progress", true, "print one line per cell on stderr")
		quiet     = fs.Duration("quiet", 0, "before each cell, wait up to this long for other processes to use under 0.2 cores (shared machines; 0: no wait)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "redlock-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["rounds"] {
			*rounds = 2
		}
		if !set["cell"] {
			*cell = time.Second
		}
		if !set["contended-cell"] {
			*contended = 2 * time.Second
		}
		if !set["warmup"] {
			*warmup = 200 * time.Millisecond
		}
		if !set["handoff-trials"] {
			*trials = 4
		}
	}
	opts := harness.Options{
		Waiters:       *waiters,
		HandoffTrials: *trials,
		Rounds:        *rounds,
		Cell:          *cell,
		ContendedCell: *contended,
		Warmup:        *warmup,
		Hold:          *hold,
		TTL:           *ttl,
		Procs:         *procs,
		RedisServer:   *server,
		QuietWait:     *quiet,
		Command:       "go -C bench run ./cmd/redlock-bench " + strings.Join(args, " "),
	}
	var err error
	if opts.Ns, err = parseInts(*ns); err != nil {
		fmt.Fprintf(stderr, "redlock-bench: -n: %v\n", err)
		return 2
	}
	if opts.Cs, err = parseInts(*cs); err != nil {
		fmt.Fprintf(stderr, "redlock-bench: -c: %v\n", err)
		return 2
	}
	if opts.Impls, err = harness.SelectImpls(*impls); err != nil {
		fmt.Fprintf(stderr, "redlock-bench: -impls: %v\n", err)
		return 2
	}
	if *progress {
		opts.Progress = stderr
	}
	if *out == "" || *chart == "" {
		dir := resultsDir()
		if *out == "" {
			*out = filepath.Join(dir, "latest.md")
		}
		if *chart == "" {
			*chart = filepath.Join(dir, "chart.svg")
		}
	}

	procsNow := runtime.GOMAXPROCS(0)
	if *procs > 0 {
		procsNow = *procs
	}
	fmt.Fprintf(stderr, "redlock-bench: GOMAXPROCS=%d, N=%s, C=%s, waiters=%d, %d round(s) of %s cells (contended %s)\n",
		procsNow, *ns, *cs, *waiters, *rounds, *cell, *contended)
	rep, err := harness.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "redlock-bench: %v\n", err)
		return 1
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		fmt.Fprintf(stderr, "redlock-bench: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(md.Bytes()); err != nil {
		return 1
	}
	if *out != "-" {
		if err := writeFile(*out, md.Bytes()); err != nil {
			fmt.Fprintf(stderr, "redlock-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "redlock-bench: wrote %s\n", *out)
	}
	if *chart != "-" {
		var svg bytes.Buffer
		if err := rep.WriteSVG(&svg); err != nil {
			fmt.Fprintf(stderr, "redlock-bench: %v\n", err)
			return 1
		}
		if err := writeFile(*chart, svg.Bytes()); err != nil {
			fmt.Fprintf(stderr, "redlock-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "redlock-bench: wrote %s\n", *chart)
	}
	if n := rep.Errors(); n > 0 {
		fmt.Fprintf(stderr, "redlock-bench: %d calls failed (see the Errors section)\n", n)
		return 1
	}
	return 0
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// resultsDir is <bench>/results, where <bench> is the folder of this
// module found from the working directory (the bench folder itself, or a
// repository root holding bench/), else ./results.
func resultsDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "results"
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, cand := range []string{dir, filepath.Join(dir, "bench")} {
			if isBenchModule(filepath.Join(cand, "go.mod")) {
				return filepath.Join(cand, "results")
			}
		}
		if filepath.Dir(dir) == dir {
			return "results"
		}
	}
}

func isBenchModule(gomod string) bool {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == benchModule {
			return true
		}
	}
	return false
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
