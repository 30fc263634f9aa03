package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
)

// node-redlock 5.0.0-beta.2 (dist/cjs/index.js) uses the resource name as
// the key verbatim, a random 32-hex-digit value, an acquire script that
// refuses when the key EXISTS and otherwise SET PX, and a release script
// that deletes only keys holding its value. It runs in node, from the
// package pinned in testdata/node (package.json + package-lock.json), one
// operation per process (testdata/node/client.js).

const (
	// npmTimeout bounds "npm ci": a fresh machine downloads 11 small
	// packages (pinned by package-lock.json integrity hashes) from the npm
	// registry; with a warm npm cache (--prefer-offline) it takes ~1-2s.
	npmTimeout = 90 * time.Second
	// nodeTimeout bounds one client.js run.
	nodeTimeout = 20 * time.Second
	// nodeHint tells how to get node and npm when they are missing.
	nodeHint = "apt-get install -y nodejs npm (Debian/Ubuntu), brew install node (macOS), or https://nodejs.org"
)

// nodeRedlock runs testdata/node/client.js from a private copy of the
// package with its dependencies installed by npm ci.
type nodeRedlock struct {
	node   string
	script string
	ports  []string
}

// nodeResult is the JSON line client.js prints.
type nodeResult struct {
	OK      bool     `json:"ok"`
	Value   string   `json:"value"`
	Error   string   `json:"error"`
	Against []string `json:"against"`
}

// installNodeRedlock copies testdata/node into a temporary directory and runs
// npm ci there (the source tree stays untouched). A missing node or npm, or
// an install that fails, fails the test: it never skips.
func installNodeRedlock(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("interop: node not found in $PATH (%v); install it with: %s", err, nodeHint)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("interop: npm not found in $PATH (%v); install it with: %s", err, nodeHint)
	}
	dir := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json", "client.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "node", name))
		if err != nil {
			t.Fatalf("interop: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatalf("interop: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("interop: npm ci in %s (needs the npm registry; bounded by %v): %v\n%s", dir, npmTimeout, err, out)
	}
	t.Logf("npm ci: %v", time.Since(start).Round(time.Millisecond))
	return node, filepath.Join(dir, "client.js")
}

// run runs one client.js operation and decodes its outcome.
func (nr *nodeRedlock) run(t *testing.T, op, resource, arg string) nodeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	args := append([]string{nr.script, op, resource, arg}, nr.ports...)
	cmd := exec.CommandContext(ctx, nr.node, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node client.js %s %q: %v\nstderr:\n%s", op, resource, err, stderr.String())
	}
	var res nodeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("node client.js %s %q: bad output %q: %v", op, resource, stdout.String(), err)
	}
	return res
}

// acquire takes resource with node-redlock and returns its value.
func (nr *nodeRedlock) acquire(t *testing.T, resource string) string {
	t.Helper()
	res := nr.run(t, "acquire", resource, strconv.FormatInt(lease.Milliseconds(), 10))
	if !res.OK || res.Value == "" {
		t.Fatalf("node-redlock acquire %q = %+v, want ok with a value", resource, res)
	}
	return res.Value
}

// requireRefused fails unless res is node-redlock's ExecutionError with at
// least a quorum of the n instances voting against with ResourceLockedError
// (the script found the key held by another value).
func requireRefused(t *testing.T, res nodeResult, n int) {
	t.Helper()
	if res.OK || res.Error != "ExecutionError" {
		t.Fatalf("node-redlock result = %+v, want ExecutionError", res)
	}
	if len(res.Against) < n/2+1 {
		t.Fatalf("node-redlock: %d votes against, want at least %d: %+v", len(res.Against), n/2+1, res)
	}
	for _, name := range res.Against {
		if name != "ResourceLockedError" {
			t.Fatalf("node-redlock vote against = %s, want ResourceLockedError: %+v", name, res)
		}
	}
}

func TestNodeRedlock(t *testing.T) {
	node, script := installNodeRedlock(t)
	for _, vt := range variants {
		n := vt.n
		t.Run(vt.name(), func(t *testing.T) {
			servers := startServers(t, n)
			noMetaLeft(t, servers)
			m := newManager(t, servers)
			nr := &nodeRedlock{node: node, script: script}
			for _, s := range servers {
				_, port, err := net.SplitHostPort(s.addr)
				if err != nil {
					t.Fatalf("interop: %v", err)
				}
				nr.ports = append(nr.ports, port)
			}

			t.Run("ours excludes node-redlock", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:node:a"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				requireRefused(t, nr.run(t, "acquire", res, strconv.FormatInt(lease.Milliseconds(), 10)), n)
				// Its clean-up of the failed attempt left ours alone.
				requireAll(t, servers, res, l.Token())
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
				v := nr.acquire(t, res)
				requireAll(t, servers, res, v)
				if r := nr.run(t, "release", res, v); !r.OK {
					t.Fatalf("node-redlock release = %+v, want ok", r)
				}
				waitNone(t, servers, res)
			})

			t.Run("node-redlock excludes ours", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:node:b"
				v := nr.acquire(t, res)
				requireAll(t, servers, res, v)
				_, err := m.TryLock(ctx, res, vt.opts()...)
				requireNotAcquired(t, err, n)
				requireAll(t, servers, res, v)
				if r := nr.run(t, "release", res, v); !r.OK {
					t.Fatalf("node-redlock release = %+v, want ok", r)
				}
				waitNone(t, servers, res)
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after node-redlock release: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
				waitNone(t, servers, res)
			})

			t.Run("our Unlock keeps node-redlock's key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:node:c"
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				expire(t, servers, res)
				v := nr.acquire(t, res)
				if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
					t.Fatalf("Unlock of our expired lock = %v, want ErrNotHeld", err)
				}
				requireAll(t, servers, res, v)
				if r := nr.run(t, "release", res, v); !r.OK {
					t.Fatalf("node-redlock release = %+v, want ok", r)
				}
			})

			t.Run("node-redlock's release keeps our key", func(t *testing.T) {
				ctx := testCtx(t)
				const res = "interop:node:d"
				v := nr.acquire(t, res)
				expire(t, servers, res)
				l, err := m.TryLock(ctx, res, vt.opts()...)
				if err != nil {
					t.Fatalf("TryLock after node-redlock's key expired: %v", err)
				}
				waitAll(t, servers, res, l.Token())
				vt.requireMeta(t, servers, res, l)
				requireRefused(t, nr.run(t, "release", res, v), n)
				requireAll(t, servers, res, l.Token())
				if err := l.Unlock(ctx); err != nil {
					t.Fatalf("Unlock: %v", err)
				}
			})
		})
	}
}
