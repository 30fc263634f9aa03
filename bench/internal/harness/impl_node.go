package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	nodefiles "github.com/redlock-go/redlock/bench/node"
)

// node-redlock runs in node, so it cannot go through the per-call Worker
// interface without a round trip to another process per call: it runs whole
// cells instead (Impl.RunCell), one `node bench.js run <config>` process per
// cell (../../node/bench.js describes the protocol and what it measures).
// Its dependencies (package.json and package-lock.json next to bench.js,
// embedded in this binary) are installed by npm ci into a cache directory
// outside the source tree, once per lock file.

// nodeKey is node-redlock's implementation key.
const nodeKey = "node-redlock"

const (
	// npmTimeout bounds npm ci: 11 small packages pinned by integrity
	// hashes, ~1 s from a warm npm cache (--prefer-offline), else fetched
	// from the npm registry.
	npmTimeout = 90 * time.Second
	// nodeVersionTimeout bounds `node bench.js version`.
	nodeVersionTimeout = 30 * time.Second
	// nodeSlack bounds a cell's node process beyond its warm-up and measured
	// time: start-up, connecting, the calls in flight at the deadline.
	nodeSlack = 30 * time.Second
	// nodeStampFile marks an install directory whose npm ci completed.
	nodeStampFile = ".redlock-bench-installed"
	// nodeHint tells how to get node and npm when they are missing.
	nodeHint = "apt-get install -y nodejs npm, brew install node, or https://nodejs.org"
)

// implNodeRedlock is node-redlock 5.0.0-beta.2 over ioredis 5.11.1 clients
// with default options, in a node process per cell. Uncontended:
// retryCount 0; contended: retryCount -1 (unlimited) with its default
// retryDelay 200 ms and retryJitter 100 ms.
func implNodeRedlock() *Impl {
	nr := &nodeRunner{}
	return &Impl{
		Key:     nodeKey,
		Label:   "node-redlock 5β (ioredis)",
		Prepare: nr.prepare,
		RunCell: nr.runCell,
	}
}

// nodeRunner runs bench.js; prepare sets its fields.
type nodeRunner struct {
	node   string // the node binary
	script string // bench.js in the install directory
}

// prepare finds node and npm, installs the dependencies and checks that
// bench.js loads them. It returns the note for the report.
func (nr *nodeRunner) prepare(ctx context.Context) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("node not found in $PATH (install it: %s)", nodeHint)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("npm not found in $PATH (install it: %s)", nodeHint)
	}
	dir, err := installNodeDeps(ctx, npm)
	if err != nil {
		return "", err
	}
	script, err := writeNodeScript(dir)
	if err != nil {
		return "", err
	}
	v, err := nodeVersions(ctx, node, script)
	if err != nil {
		return "", err
	}
	nr.node, nr.script = node, script
	return fmt.Sprintf("node %s, redlock %s over ioredis %s (default options; dependencies installed by npm ci in %s). "+
		"One node process per cell runs the callers as async loops and measures ops and latencies itself (bench/node/bench.js); "+
		"its CPU counts as the harness's; allocations per op do not apply (—).",
		v.Node, v.Redlock, v.Ioredis, homeRelative(dir)), nil
}

// homeRelative shows path under the home directory as ~/….
func homeRelative(path string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return path
	}
	if rel, err := filepath.Rel(home, path); err == nil && filepath.IsLocal(rel) {
		return filepath.Join("~", rel)
	}
	return path
}

// nodeCacheRoot is where install directories go: <user cache>/redlock-bench/node,
// else <temp>/redlock-bench-node.
func nodeCacheRoot() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "redlock-bench", "node")
	}
	return filepath.Join(os.TempDir(), "redlock-bench-node")
}

// installNodeDeps returns a directory holding package.json,
// package-lock.json and the node_modules npm ci installed from them. The
// directory is named by the hash of the two files and reused while they do
// not change; a new one is installed in a temporary directory then renamed
// into place, so concurrent runs never see a partial install.
func installNodeDeps(ctx context.Context, npm string) (string, error) {
	files := map[string][]byte{}
	sum := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := nodefiles.Files.ReadFile(name)
		if err != nil {
			return "", fmt.Errorf("read embedded %s: %w", name, err)
		}
		files[name] = b
		sum.Write(b)
		sum.Write([]byte{0})
	}
	root := nodeCacheRoot()
	dir := filepath.Join(root, "deps-"+hex.EncodeToString(sum.Sum(nil))[:16])
	if fileExists(filepath.Join(dir, nodeStampFile)) {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("node cache directory: %w", err)
	}
	tmp, err := os.MkdirTemp(root, "tmp-")
	if err != nil {
		return "", fmt.Errorf("node cache directory: %w", err)
	}
	defer os.RemoveAll(tmp) // nothing left after the rename
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return "", fmt.Errorf("npm ci (needs the npm registry or a warm npm cache; bounded by %v): %w: %s", npmTimeout, err, tail(out, 300))
	}
	if err := os.WriteFile(filepath.Join(tmp, nodeStampFile), nil, 0o644); err != nil {
		return "", fmt.Errorf("node cache directory: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if fileExists(filepath.Join(dir, nodeStampFile)) {
			return dir, nil // another run installed it meanwhile
		}
		// A directory without the stamp is left over from an interrupted
		// clean-up: replace it.
		if err2 := os.RemoveAll(dir); err2 != nil {
			return "", fmt.Errorf("node cache directory: %w", err2)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return "", fmt.Errorf("node cache directory: %w", err)
		}
	}
	return dir, nil
}

// writeNodeScript writes bench.js into dir, named by its hash so that runs
// of different harness versions sharing dir never overwrite each other's
// script, and returns its path.
func writeNodeScript(dir string) (string, error) {
	b, err := nodefiles.Files.ReadFile("bench.js")
	if err != nil {
		return "", fmt.Errorf("read embedded bench.js: %w", err)
	}
	sum := sha256.Sum256(b)
	path := filepath.Join(dir, "bench-"+hex.EncodeToString(sum[:])[:12]+".js")
	if got, err := os.ReadFile(path); err == nil && bytes.Equal(got, b) {
		return path, nil
	}
	f, err := os.CreateTemp(dir, "bench-*.tmp")
	if err != nil {
		return "", fmt.Errorf("write bench.js: %w", err)
	}
	_, err = f.Write(b)
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("write bench.js: %w", err)
	}
	return path, nil
}

// nodeVersionInfo is what `node bench.js version` prints.
type nodeVersionInfo struct {
	Node    string `json:"node"`
	Redlock string `json:"redlock"`
	Ioredis string `json:"ioredis"`
}

// nodeVersions runs `node bench.js version`, which loads redlock and ioredis.
func nodeVersions(ctx context.Context, node, script string) (nodeVersionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, nodeVersionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "version")
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nodeVersionInfo{}, fmt.Errorf("node %s version: %w: %s", filepath.Base(script), err, stderr.tail(300))
	}
	var v nodeVersionInfo
	if err := json.Unmarshal(out, &v); err != nil || v.Node == "" || v.Redlock == "" || v.Ioredis == "" {
		return nodeVersionInfo{}, fmt.Errorf("node %s version: unexpected output %q (%v)", filepath.Base(script), tail(out, 300), err)
	}
	return v, nil
}

// nodeConfig is the JSON configuration of `node bench.js run`.
type nodeConfig struct {
	Addrs      []string `json:"addrs"`
	Contended  bool     `json:"contended"`
	C          int      `json:"c"`
	WarmupMS   float64  `json:"warmup_ms"`
	DurationMS float64  `json:"duration_ms"`
	HoldMS     float64  `json:"hold_ms"`
	TTLMS      int64    `json:"ttl_ms"`
	MaxOps     int64    `json:"max_ops"`
	Prefix     string   `json:"prefix"`
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runCell runs one cell in a node process. A failure of the process (it
// crashed, printed something unexpected, timed out) is reported as a
// failed call in the result rather than as an error, so that the rest of
// the run goes on; only an interruption (ctx) returns an error.
func (nr *nodeRunner) runCell(ctx context.Context, addrs []string, w Workload, cfg cellConfig, ttl time.Duration) (Result, error) {
	r, err := nr.run(ctx, addrs, w, cfg, ttl)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: %w", nodeKey, err)
		}
		return Result{Allocs: math.NaN(), OtherCores: -1, Errors: 1, FirstErr: "node: " + err.Error()}, nil
	}
	return r, nil
}

// run starts `node bench.js run`, waits for its warm-up to end, samples the
// CPU times around the measured part (counting the node process as ours) and
// returns its result. The process is killed if anything goes wrong, and
// always waited for.
func (nr *nodeRunner) run(ctx context.Context, addrs []string, w Workload, cfg cellConfig, ttl time.Duration) (Result, error) {
	if nr.script == "" {
		return Result{}, errors.New("not prepared")
	}
	conf, err := json.Marshal(nodeConfig{
		Addrs:      addrs,
		Contended:  w.Contended,
		C:          w.C,
		WarmupMS:   millis(cfg.warmup),
		DurationMS: millis(cfg.duration),
		HoldMS:     millis(cfg.hold),
		TTLMS:      max(ttl.Milliseconds(), 1),
		MaxOps:     cfg.maxOps,
		Prefix:     cfg.prefix,
	})
	if err != nil {
		return Result{}, fmt.Errorf("encode the cell's configuration: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.warmup+cfg.duration+nodeSlack)
	defer cancel()
	cmd := exec.CommandContext(pctx, nr.node, nr.script, "run", string(conf))
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = time.Second
	var stderr tailBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Result{}, fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, fmt.Errorf("stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start %s: %w", nr.node, err)
	}
	r, driveErr := driveNodeCell(bufio.NewReader(stdout), stdin, append(slices.Clone(cfg.pids), cmd.Process.Pid))
	if driveErr != nil {
		_ = cmd.Process.Kill()
	}
	_ = stdin.Close() // bench.js exits when its stdin closes
	waitErr := cmd.Wait()
	switch {
	case driveErr != nil && pctx.Err() != nil:
		return Result{}, fmt.Errorf("bench.js: %w (%w); stderr: %s", driveErr, pctx.Err(), stderr.tail(500))
	case driveErr != nil:
		return Result{}, fmt.Errorf("bench.js: %w; exit: %v; stderr: %s", driveErr, waitErr, stderr.tail(500))
	case waitErr != nil:
		return Result{}, fmt.Errorf("bench.js: exit after the result: %w; stderr: %s", waitErr, stderr.tail(500))
	}
	return r, nil
}

// driveNodeCell reads the ready line, samples the CPU times of this process,
// pids (the redis-servers and the node process), starts the measured part,
// reads the result and samples again.
func driveNodeCell(out *bufio.Reader, in io.Writer, pids []int) (Result, error) {
	line, err := out.ReadBytes('\n')
	if err != nil {
		return Result{}, fmt.Errorf("no ready line: %w", err)
	}
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := json.Unmarshal(line, &ready); err != nil || !ready.Ready {
		return Result{}, fmt.Errorf("want the ready line, got %q", tail(line, 300))
	}
	cpu0, start := sampleCPU(pids), time.Now()
	if _, err := io.WriteString(in, "go\n"); err != nil {
		return Result{}, fmt.Errorf("start the measured part: %w", err)
	}
	line, err = out.ReadBytes('\n')
	cpu1, elapsed := sampleCPU(pids), time.Since(start)
	if err != nil {
		return Result{}, fmt.Errorf("no result line: %w", err)
	}
	r, err := parseNodeResult(line)
	if err != nil {
		return Result{}, err
	}
	r.OtherCores = otherCores(cpu0, cpu1, elapsed)
	return r, nil
}

// nodeResult is the result line of `node bench.js run`. Ops and ElapsedNS
// are required.
type nodeResult struct {
	Ops        *int64 `json:"ops"`
	ElapsedNS  *int64 `json:"elapsed_ns"`
	P50NS      int64  `json:"p50_ns"`
	P99NS      int64  `json:"p99_ns"`
	MaxWaitNS  int64  `json:"max_wait_ns"`
	HoldMeanNS int64  `json:"hold_mean_ns"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error"`
}

// parseNodeResult decodes a result line into a Result whose Allocs is NaN
// (not applicable) and OtherCores -1 (for the caller to fill).
func parseNodeResult(line []byte) (Result, error) {
	var nr nodeResult
	if err := json.Unmarshal(line, &nr); err != nil {
		return Result{}, fmt.Errorf("bad result line %q: %w", tail(line, 300), err)
	}
	switch {
	case nr.Ops == nil || nr.ElapsedNS == nil:
		return Result{}, fmt.Errorf("result line %q lacks ops or elapsed_ns", tail(line, 300))
	case *nr.Ops < 0 || *nr.ElapsedNS <= 0 || nr.P50NS < 0 || nr.P99NS < nr.P50NS || nr.MaxWaitNS < 0 || nr.HoldMeanNS < 0 || nr.Errors < 0:
		return Result{}, fmt.Errorf("result line %q has values out of range", tail(line, 300))
	}
	return Result{
		Ops:        *nr.Ops,
		Elapsed:    time.Duration(*nr.ElapsedNS),
		P50:        time.Duration(nr.P50NS),
		P99:        time.Duration(nr.P99NS),
		Allocs:     math.NaN(),
		MaxWait:    time.Duration(nr.MaxWaitNS),
		Hold:       time.Duration(nr.HoldMeanNS),
		Errors:     nr.Errors,
		FirstErr:   nr.FirstError,
		OtherCores: -1,
	}, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// tail returns the last n bytes of b on one line, trimmed.
func tail(b []byte, n int) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > n {
		i := len(s) - n
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		s = "…" + s[i:]
	}
	return s
}

// tailBuffer keeps the last 16 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

const tailBufferMax = 16 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - tailBufferMax; over > 0 {
		t.b = slices.Delete(t.b, 0, over)
	}
	return len(p), nil
}

// tail returns the last n bytes written, on one line.
func (t *tailBuffer) tail(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return tail(t.b, n)
}
