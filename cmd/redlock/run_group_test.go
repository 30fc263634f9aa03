//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/redlock-go/redlock/internal/redistest"
)

// processGone reports whether pid has ended: no such process, or a zombie
// (an orphan stays a zombie on a machine whose init does not reap it).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// readPid waits until path holds a pid (written to a temporary file and
// renamed, so complete once it exists).
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// killOnFailure SIGKILLs pids at cleanup if the test failed (processes a
// broken run left behind); a passing test checked they are gone, so their
// pids may belong to someone else by then.
func killOnFailure(t *testing.T, pids ...int) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, pid := range pids {
			if !processGone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// grandScript, for "sh -c SCRIPT sh DIR MODE", writes its pid to
// "DIR/gpid" and idles for at most a minute; with MODE ignore-term it
// ignores SIGTERM.
const grandScript = `[ "$2" = ignore-term ] && trap '' TERM
echo $$ > "$1/gpid.tmp"; mv "$1/gpid.tmp" "$1/gpid"
i=0; while [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done`

// leaderScript, for "sh -c SCRIPT sh DIR GRANDSCRIPT MODE", starts
// GRANDSCRIPT in the background (same process group), writes its own pid
// to "DIR/pid" and idles; SIGTERM ends it. The child does not hold the
// command's stdout and stderr (which would keep run waiting for their end).
const leaderScript = sh + `sh -c "$2" sh "$d" "$3" >/dev/null 2>&1 &
echo $$ > "$d/pid.tmp"; mv "$d/pid.tmp" "$d/pid"
spin`

// With stderr on a closed pipe, losing the lock does not kill redlock with
// SIGPIPE when it reports the loss: the command and its child are stopped,
// redlock exits 75, and the command did not inherit SIGPIPE ignored.
func TestRunClosedStderrLostLock(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	p := startBinaryWith(t, func(c *exec.Cmd) { c.Stderr = w }, nil,
		args(a("run", "-n", "--ttl", "1s", "--node-timeout", "200ms"), redisFlags(servers),
			a("job", "--", "sh", "-c", `grep SigIgn /proc/$$/status > "$1/sigign"; `+leaderScript, "sh", dir, grandScript, ""))...)
	w.Close()
	pid, gpid := readPid(t, filepath.Join(dir, "pid")), readPid(t, filepath.Join(dir, "gpid"))
	killOnFailure(t, pid, gpid)

	// The keys vanish from a majority: the next extension is refused.
	flushMajority(t, servers)
	p.wait(t)
	if ps := p.cmd.ProcessState; !ps.Exited() || ps.ExitCode() != exitLost {
		t.Errorf("redlock ended with %v, want exit %d", ps, exitLost)
	}
	if !processGone(pid) || !processGone(gpid) {
		t.Errorf("after redlock ended: command (pid %d) gone %v, its child (pid %d) gone %v",
			pid, processGone(pid), gpid, processGone(gpid))
	}
	b, err := os.ReadFile(filepath.Join(dir, "sigign"))
	if err != nil {
		t.Fatal(err)
	}
	mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(b), "SigIgn:")), 16, 64)
	if err != nil {
		t.Fatalf("SigIgn line %q: %v", b, err)
	}
	if mask&(1<<(syscall.SIGPIPE-1)) != 0 {
		t.Errorf("the command inherited SIGPIPE ignored (SigIgn %x)", mask)
	}
}

// When the lock is lost, the whole process group is killed after
// --kill-grace even though the command itself exited at SIGTERM: its
// child, which ignores SIGTERM, is gone by the time run returns.
func TestRunKillsGroupAfterCommandExits(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "2s", "--node-timeout", "200ms", "--kill-grace", "300ms"), redisFlags(servers),
		a("job", "--", "sh", "-c", leaderScript, "sh", dir, grandScript, "ignore-term"))...)
	pid, gpid := readPid(t, filepath.Join(dir, "pid")), readPid(t, filepath.Join(dir, "gpid"))
	killOnFailure(t, pid, gpid)
	flushMajority(t, servers)
	r := await(t, ch)
	if r.code != exitLost {
		t.Errorf("want exit %d (lost), got %v", exitLost, r)
	}
	if !processGone(pid) || !processGone(gpid) {
		t.Errorf("when run returned: command (pid %d) gone %v, its child that ignores SIGTERM (pid %d) gone %v; %v",
			pid, processGone(pid), gpid, processGone(gpid), r)
	}
}

// When the lock cannot be extended (every instance refuses the scripts:
// no extension succeeds anywhere, and no key is refreshed), the command
// gets SIGTERM and its process group SIGKILL before the lock's validity
// ends: by the time the key has expired on a majority of the instances,
// the command and its child that ignores SIGTERM are gone. (The last
// successful extension set the key on a majority, to expire after the
// client-side deadline, Until; any majority includes one of those. A single
// instance may have been denied a round earlier than the others, and its
// key may expire before Until.) A grace of 1s: the shell must run its
// trap within it (400ms was too short on a loaded machine).
//
// --drift-factor 0.1: the SIGKILL point is the 250ms kill margin before
// Until, which is the drift allowance (302ms) before a majority's keys
// expire, so run may be 550ms late killing the group before the test sees
// the keys gone. With the default 0.01 (32ms) it was 280ms, which a
// scheduling stall of a loaded -race run can exceed.
func TestRunStopsWithinValidity(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	leader := sh + `trap 'touch "$d/term"; exit 0' TERM
sh -c "$2" sh "$d" "$3" >/dev/null 2>&1 &
echo $$ > "$d/pid.tmp"; mv "$d/pid.tmp" "$d/pid"
spin`
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "3s", "--drift-factor", "0.1", "--node-timeout", "200ms", "--kill-grace", "1s"), redisFlags(servers),
		a("job", "--", "sh", "-c", leader, "sh", dir, grandScript, "ignore-term"))...)
	pid, gpid := readPid(t, filepath.Join(dir, "pid")), readPid(t, filepath.Join(dir, "gpid"))
	killOnFailure(t, pid, gpid)
	for _, s := range servers {
		if got := s.Do(t, "ACL", "SETUSER", "default", "-@scripting"); got != "OK" {
			t.Fatalf("ACL SETUSER on %s: %s", s, got)
		}
	}
	waitFor(t, "the key to expire on a majority", func() bool {
		gone := 0
		for _, s := range servers {
			if s.Do(t, "EXISTS", "job") == "0" {
				gone++
			}
		}
		return gone >= 2
	})
	// The key is gone: the lock's validity has ended. So have the processes.
	pidGone, gpidGone := processGone(pid), processGone(gpid)
	r := await(t, ch)
	if !pidGone || !gpidGone {
		t.Errorf("when the key expired: command (pid %d) gone %v, its child that ignores SIGTERM (pid %d) gone %v; %v",
			pid, pidGone, gpid, gpidGone, r)
	}
	if !exists(filepath.Join(dir, "term")) {
		t.Errorf("the command did not get SIGTERM first; %v", r)
	}
	if r.code != exitLost {
		t.Errorf("want exit %d (lost), got %v", exitLost, r)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cliWatched runs the command in-process on its own goroutine, with a
// stderr the test can read while it runs (result.stderr stays empty).
func cliWatched(ctx context.Context, stderr *lockedBuffer, args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		code := run(ctx, args, nil, &out, stderr)
		ch <- result{code: code, stdout: out.String()}
	}()
	return ch
}

// bgScript, for "sh -c SCRIPT sh DIR", leaves a child in the background
// (in its process group, holding its stdout) that runs until
// "DIR/bg-release" exists, then writes "bg-out" to stdout; the command
// itself writes its token and pid and exits at once.
const bgScript = sh + `( touch "$d/bg-started"; waitfile "$d/bg-release"; echo bg-out; touch "$d/bg-done" ) &
waitfile "$d/bg-started"
printf '%s' "$REDLOCK_TOKEN" > "$d/token.tmp"; mv "$d/token.tmp" "$d/token"
echo $$ > "$d/pid.tmp"; mv "$d/pid.tmp" "$d/pid"`

// Like flock(1), whose lock lasts while any process has the descriptor,
// run holds the lock while a process the command left in the background
// runs, copies its output, and releases the lock once it has ended.
//
// --ttl 3s and --node-timeout 2s: run extends halfway to its SIGTERM point
// (Until − the kill margin − --kill-grace, a third of the TTL), so an
// extension may be 859ms late, uncut, before run stops the group (277ms
// with 1s). The test waits for two renewals while the child runs.
func TestRunHoldsLockWhileBackgroundRuns(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	var stderr lockedBuffer
	ch := cliWatched(testCtx(t), &stderr, args(a("run", "-n", "-v", "--ttl", "3s"), redisFlags(servers), a("--node-timeout", "2s"),
		a("job", "--", "sh", "-c", bgScript, "sh", dir))...)
	pid := readPid(t, filepath.Join(dir, "pid"))
	waitFor(t, "the command to exit", func() bool { return processGone(pid) })
	const waiting = "holding the lock"
	var early *result
	waitFor(t, "run to say it waits for the background process", func() bool {
		select {
		case r := <-ch:
			early = &r
			return true
		default:
			return strings.Contains(stderr.String(), waiting)
		}
	})
	if early != nil {
		touch(t, filepath.Join(dir, "bg-release"))
		t.Fatalf("run returned while the command's background child ran: %v%s", *early, stderr.String())
	}
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	// Two renewals while the background child runs (the key's PTTL on the
	// first instance rises twice), and the lock is still held.
	renewals, last := 0, int64(-1)
	waitFor(t, "two renewals of the lock", func() bool {
		p, err := strconv.ParseInt(servers[0].Do(t, "PTTL", "job"), 10, 64)
		if err != nil || p < 0 {
			t.Fatalf("PTTL job on %s: %d %v, want the held key's", servers[0], p, err)
		}
		if last >= 0 && p > last {
			renewals++
		}
		last = p
		return renewals >= 2
	})
	for _, s := range servers {
		if got := s.Do(t, "GET", "job"); got != string(token) {
			t.Errorf("%s holds %q while the background child runs, want the run's token %q", s, got, token)
		}
	}
	touch(t, filepath.Join(dir, "bg-release"))
	r := await(t, ch)
	if r.code != 0 || !strings.Contains(r.stdout, "bg-out") {
		t.Fatalf("want exit 0 and the background child's output; got %v%s", r, stderr.String())
	}
	if !exists(filepath.Join(dir, "bg-done")) {
		t.Errorf("run returned before the background child ended")
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) != 0 {
			t.Errorf("%s still has keys %v after run returned", s, keys)
		}
	}
}

// --no-wait-group releases the lock when the command exits, leaving its
// background child running.
func TestRunNoWaitGroup(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	script := sh + `( exec >/dev/null 2>&1; touch "$d/bg-started"; waitfile "$d/bg-release"; touch "$d/bg-done" ) &
waitfile "$d/bg-started"`
	r := cli(testCtx(t), args(a("run", "-n", "--no-wait-group"), redisFlags(servers), a("job", "--", "sh", "-c", script, "sh", dir))...)
	done := exists(filepath.Join(dir, "bg-done"))
	touch(t, filepath.Join(dir, "bg-release"))
	if r.code != 0 || done {
		t.Fatalf("want exit 0 while the background child runs; background child done %v, %v", done, r)
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) != 0 {
			t.Errorf("%s still has keys %v after run returned", s, keys)
		}
	}
	waitFor(t, "the background child to end", func() bool { return exists(filepath.Join(dir, "bg-done")) })
}

// With stderr on a pipe that is full and never read, a report blocks on
// its write: it must not hold up stopping the command. The lock is lost;
// the command's child, which ignores SIGTERM, is killed after
// --kill-grace although the report of the loss cannot be written. Once
// the pipe is read, redlock exits 75.
func TestRunStuckStderrStillKills(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	r, w := fullPipe(t)
	// Not -n, and a roomy --node-timeout: on a loaded machine an attempt
	// may fail, and its report must not stop the test either.
	p := startBinaryWith(t, func(c *exec.Cmd) { c.Stderr = w }, nil,
		args(a("run", "--ttl", "3s", "--node-timeout", "1s", "--kill-grace", "300ms"), redisFlags(servers),
			a("job", "--", "sh", "-c", leaderScript, "sh", dir, grandScript, "ignore-term"))...)
	w.Close()
	pid, gpid := readPid(t, filepath.Join(dir, "pid")), readPid(t, filepath.Join(dir, "gpid"))
	killOnFailure(t, pid, gpid)
	flushMajority(t, servers)
	waitFor(t, "the child that ignores SIGTERM to be killed", func() bool { return processGone(gpid) })
	if !processGone(pid) {
		t.Errorf("the command (pid %d) still runs", pid)
	}
	// Read the pipe: redlock can write its reports and exit.
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = out.ReadFrom(r)
	}()
	code := p.wait(t)
	<-copied
	if code != exitLost || !strings.Contains(out.String(), "lost the lock") {
		t.Errorf("redlock exited %d, want %d; its stderr after the filler:\n%s", code, exitLost, bytes.TrimLeft(out.Bytes(), "\x00"))
	}
}

// fullPipe returns a pipe whose buffer is full: a write to w blocks until
// r is read. r is closed at cleanup.
func fullPipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	fd := int(w.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := syscall.Write(fd, buf); err != nil {
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	return r, w
}

// A stuck stderr does not stop run from waiting either: with a majority
// down, its report of the outage cannot be written, yet once the instances
// are back it takes the lock and runs the command.
func TestRunStuckStderrWhileWaiting(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	// The instance that stays up holds the key under another token; its
	// slow log records every command with its arguments, so the report's
	// inspection shows as an EVALSHA of the inspect script.
	servers[0].Do(t, "SET", "job", "other", "PX", "60000")
	servers[0].Do(t, "CONFIG", "SET", "slowlog-log-slower-than", "0")
	servers[0].Do(t, "CONFIG", "SET", "slowlog-max-len", "100000")
	servers[0].Do(t, "SLOWLOG", "RESET")
	src, err := os.ReadFile(filepath.Join("..", "..", "scripts", "inspect.lua"))
	if err != nil {
		t.Fatal(err)
	}
	inspectSHA := fmt.Sprintf("%x", sha1.Sum(src))
	servers[1].Kill(t)
	servers[2].Kill(t)
	r, w := fullPipe(t)
	p := startBinaryWith(t, func(c *exec.Cmd) { c.Stderr = w }, nil,
		args(a("run", "--unavailable-timeout", "0"), redisFlags(servers), a("job", "--", "touch", filepath.Join(dir, "ran")))...)
	w.Close()
	waitFor(t, "the report's inspection", func() bool {
		return strings.Contains(servers[0].Do(t, "SLOWLOG", "GET", "100000"), inspectSHA)
	})
	servers[1].Restart(t)
	servers[2].Restart(t)
	servers[0].Do(t, "DEL", "job")
	waitFor(t, "the command to run", func() bool { return exists(filepath.Join(dir, "ran")) })
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = out.ReadFrom(r)
	}()
	code := p.wait(t)
	<-copied
	if code != 0 || !strings.Contains(out.String(), `no quorum for "job" yet`) {
		t.Errorf("redlock exited %d, want 0 after its report; its stderr after the filler:\n%s", code, bytes.TrimLeft(out.Bytes(), "\x00"))
	}
}
