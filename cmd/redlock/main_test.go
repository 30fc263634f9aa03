package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// binDir holds the redlock binary built once per test binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "redlock-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary returns the path of the redlock binary, building it on first use.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "redlock")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// deadline is the generous bound on every wait for an event.
const deadline = 30 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
	t.Cleanup(cancel)
	return ctx
}

// result is the outcome of one in-process run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the command in-process.
func cli(ctx context.Context, args ...string) result {
	var out, errb bytes.Buffer
	code := run(ctx, args, nil, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// cliAsync runs the command in-process on its own goroutine.
func cliAsync(ctx context.Context, args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- cli(ctx, args...) }()
	return ch
}

// await waits for an asynchronous run.
func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(deadline):
		t.Fatalf("redlock did not return within %v", deadline)
	}
	return result{}
}

// redisFlags returns --redis flags for servers.
func redisFlags(servers []*redistest.Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, "--redis", s.URL())
	}
	return out
}

// patientFlags is redisFlags with --node-timeout 10s, for tests that
// measure no timeout: on a loaded machine (-race, two cores, the root
// package's tests alongside) an instance can take longer than the default
// 500ms to answer, and a run or status call then fails for want of a
// quorum.
func patientFlags(servers []*redistest.Server) []string {
	return append(redisFlags(servers), "--node-timeout", "10s")
}

func urls(servers []*redistest.Server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.URL())
	}
	return out
}

// args concatenates argument lists.
func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func a(s ...string) []string { return s }

// manager returns a library Manager over servers, closed at cleanup.
func manager(t *testing.T, servers []*redistest.Server) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(urls(servers), redlock.Config{NodeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// lockEverywhere takes resource with a fixed one-minute lease and waits
// until every server holds its key: Lock returns once a quorum answered,
// and the last instance's key may land a moment later.
func lockEverywhere(t *testing.T, m *redlock.Manager, servers []*redistest.Server, resource string) *redlock.Lock {
	t.Helper()
	l, err := m.Lock(testCtx(t), resource, redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		waitFor(t, s.String()+" to hold the key", func() bool { return s.Do(t, "GET", resource) == l.Token() })
	}
	return l
}

// keyEverywhere waits until every server holds key: run returns from
// Lock once a quorum answered (and starts the command), and the last
// instance's key may land a moment later.
func keyEverywhere(t *testing.T, servers []*redistest.Server, key string) {
	t.Helper()
	for _, s := range servers {
		waitFor(t, s.String()+" to hold "+key, func() bool { return s.Do(t, "EXISTS", key) == "1" })
	}
}

// flushMajority takes every key away from servers[0] and servers[1] (a
// majority of three) until the test ends: it flushes both, then
// again every 50ms. Flushing them once each is not enough: the run's next
// extension must find the key missing on both, but one that runs between
// the two FLUSHALLs finds it on servers[1] and servers[2], succeeds, and
// tops servers[0] up; and an acquisition that reached an instance late
// may set the key after its flush. Either way the lock would never be
// lost. Flushing again well within an extension interval removes that.
func flushMajority(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	flush := func() {
		for _, s := range servers[:2] {
			if _, err := s.TryDo(5*time.Second, "FLUSHALL"); err != nil {
				t.Errorf("FLUSHALL on %s: %v", s, err)
			}
		}
	}
	flush()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				flush()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// pttl is the PTTL of key on s.
func pttl(t *testing.T, s *redistest.Server, key string) time.Duration {
	t.Helper()
	ms, err := strconv.Atoi(s.Do(t, "PTTL", key))
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// waitFor polls cond until it holds, failing the test after deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// scriptCalls is the number of EVAL/EVALSHA/GET/SET/DEL commands the server
// has run since its start or the last CONFIG RESETSTAT.
func scriptCalls(t *testing.T, s *redistest.Server) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(s.Do(t, "INFO", "commandstats"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		switch strings.TrimPrefix(name, "cmdstat_") {
		case "eval", "evalsha", "get", "set", "del", "pexpire":
		default:
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				c, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("commandstats line %q: %v", line, err)
				}
				n += c
			}
		}
	}
	return n
}

// proc is a redlock binary running as a child of the test.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	code   int
	stderr bytes.Buffer
}

// startBinary starts the built binary with args and env added to the
// test's environment; it is killed at cleanup if still running.
func startBinary(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startBinaryWith(t, nil, env, args...)
}

// startBinaryWith is startBinary with setup applied to the command before
// it starts (e.g. to give it another stderr).
func startBinaryWith(t *testing.T, setup func(*exec.Cmd), env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary(t), args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	p.cmd.WaitDelay = 2 * time.Second // a command left behind may hold the pipe
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		// Still running after a failure: SIGTERM, which redlock forwards to
		// its command, then SIGKILL.
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the binary to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(deadline):
		t.Fatalf("redlock %v did not exit within %v", p.cmd.Args[1:], deadline)
	}
	return 0
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
