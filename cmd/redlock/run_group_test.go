//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	servers[0].Do(t, "FLUSHALL")
	servers[1].Do(t, "FLUSHALL")
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
	servers[0].Do(t, "FLUSHALL")
	servers[1].Do(t, "FLUSHALL")
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
// ends: by the time the key has expired on any instance (which happens
// after the client-side deadline, Until), the command and its child that
// ignores SIGTERM are gone.
func TestRunStopsWithinValidity(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	leader := sh + `trap 'touch "$d/term"; exit 0' TERM
sh -c "$2" sh "$d" "$3" >/dev/null 2>&1 &
echo $$ > "$d/pid.tmp"; mv "$d/pid.tmp" "$d/pid"
spin`
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "1500ms", "--node-timeout", "200ms", "--kill-grace", "400ms"), redisFlags(servers),
		a("job", "--", "sh", "-c", leader, "sh", dir, grandScript, "ignore-term"))...)
	pid, gpid := readPid(t, filepath.Join(dir, "pid")), readPid(t, filepath.Join(dir, "gpid"))
	killOnFailure(t, pid, gpid)
	for _, s := range servers {
		if got := s.Do(t, "ACL", "SETUSER", "default", "-@scripting"); got != "OK" {
			t.Fatalf("ACL SETUSER on %s: %s", s, got)
		}
	}
	waitFor(t, "the key to expire on an instance", func() bool {
		for _, s := range servers {
			if s.Do(t, "EXISTS", "job") == "0" {
				return true
			}
		}
		return false
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
