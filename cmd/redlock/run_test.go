package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// lockKeys returns the keys on s but the fencing counters
// ("...:redlock-fence"), which run leaves on purpose: they never expire.
func lockKeys(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	var out []string
	for _, k := range s.Keys(t) {
		if !strings.HasSuffix(k, ":redlock-fence") {
			out = append(out, k)
		}
	}
	return out
}

// sh is the prelude of the test commands ("sh -c SCRIPT sh DIR ..."): d is
// DIR (traps run inside functions, where $1 is another), and bounded waits,
// so that a command left behind by a failed test ends within a minute.
//
//	waitfile F   wait until F exists
//	spin         idle
const sh = `d="$1"
waitfile() { i=0; while [ ! -e "$1" ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; }
spin() { i=0; while [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done; }
`

// holdScript marks "$d/started.$2", then runs until "$d/release" exists.
const holdScript = sh + `touch "$d/started.$2"; waitfile "$d/release"; touch "$d/done.$2"`

// Two binaries race for one resource with -n: exactly one runs its
// command, the other exits with the conflict code without running it.
func TestRunNonblockOneOfTwo(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	start := func(name string) *proc {
		return startBinary(t, nil, args(a("run", "-n", "--ttl", "5s"), redisFlags(servers),
			a("nightly", "--", "sh", "-c", holdScript, "sh", dir, name))...)
	}
	procs := map[string]*proc{"a": start("a"), "b": start("b")}

	var loser, winner string
	waitFor(t, "one of the two to exit", func() bool {
		for name, p := range procs {
			if p.exited() {
				loser = name
				return true
			}
		}
		return false
	})
	winner = map[string]string{"a": "b", "b": "a"}[loser]
	if code := procs[loser].wait(t); code != exitConflict {
		t.Fatalf("loser %s exited %d, want %d (conflict); stderr:\n%s", loser, code, exitConflict, procs[loser].stderr.String())
	}
	waitFor(t, "the winner's command to start", func() bool { return exists(filepath.Join(dir, "started."+winner)) })
	if exists(filepath.Join(dir, "started."+loser)) {
		t.Fatalf("both commands ran")
	}
	m := manager(t, servers)
	if locked, err := m.IsLocked(testCtx(t), "nightly"); err != nil || !locked {
		t.Fatalf("IsLocked while the winner runs = %v, %v; want true", locked, err)
	}
	touch(t, filepath.Join(dir, "release"))
	if code := procs[winner].wait(t); code != 0 {
		t.Fatalf("winner exited %d; stderr:\n%s", code, procs[winner].stderr.String())
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) != 0 {
			t.Fatalf("%s still has keys %v after the winner exited", s, keys)
		}
	}
}

// -w waits while another redlock holds the lock, and runs the command
// once the holder's command finished.
func TestRunWaitAcquiresAfterHolderExits(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	holder := startBinary(t, nil, args(a("run", "-n", "--ttl", "60s"), redisFlags(servers),
		a("job", "--", "sh", "-c", holdScript, "sh", dir, "holder"))...)
	waitFor(t, "the holder's command to start", func() bool { return exists(filepath.Join(dir, "started.holder")) })

	before := scriptCalls(t, servers[0])
	waiter := startBinary(t, nil, args(a("run", "-w", "60s", "--retry-delay", "10ms-50ms"), redisFlags(servers),
		a("job", "--", "sh", "-c", `test -e "$1/done.holder" && touch "$1/waiter-ran"`, "sh", dir))...)
	waitFor(t, "the waiter to try the lock", func() bool { return scriptCalls(t, servers[0]) > before })
	if waiter.exited() {
		t.Fatalf("the waiter exited (%d) while the lock was held; stderr:\n%s", waiter.code, waiter.stderr.String())
	}

	touch(t, filepath.Join(dir, "release"))
	if code := holder.wait(t); code != 0 {
		t.Fatalf("holder exited %d; stderr:\n%s", code, holder.stderr.String())
	}
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("waiter exited %d; stderr:\n%s", code, waiter.stderr.String())
	}
	if !exists(filepath.Join(dir, "waiter-ran")) {
		t.Fatal("the waiter's command did not run after the holder's command finished")
	}
}

// Killing the instances while the command runs loses the lock: the command
// gets SIGTERM and redlock exits with the lost code. The signal goes to the
// command's process group: the shell can run its trap only once its
// foreground "sleep 60" got SIGTERM too. A TTL of 4s: its default grace
// (1.3s) leaves room for a process starved on a loaded machine (with 1s,
// the grace of 333ms had passed by the time run acted, and it sent SIGKILL
// at once).
func TestRunLostLockTerminatesCommand(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	script := sh + `trap 'touch "$d/term"; exit 0' TERM; touch "$d/started"; sleep 60`
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "4s", "--node-timeout", "200ms"), redisFlags(servers),
		a("job", "--", "sh", "-c", script, "sh", dir))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
	for _, s := range servers {
		s.Kill(t)
	}
	r := await(t, ch)
	if r.code != exitLost {
		t.Fatalf("want exit %d (lost), got %v", exitLost, r)
	}
	if !exists(filepath.Join(dir, "term")) {
		t.Fatalf("the command did not get SIGTERM; %v", r)
	}
}

// A command that ignores SIGTERM is killed after --kill-grace.
func TestRunLostLockKillsAfterGrace(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	script := sh + `trap '' TERM; echo $$ > "$d/pid"; spin`
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "1s", "--node-timeout", "200ms", "--kill-grace", "300ms"),
		redisFlags(servers), a("job", "--", "sh", "-c", script, "sh", dir))...)
	var pid int
	waitFor(t, "the command to start", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	servers[0].Kill(t)
	servers[1].Kill(t)
	r := await(t, ch)
	if r.code != exitLost {
		t.Fatalf("want exit %d (lost), got %v", exitLost, r)
	}
	// run reaped the command: it is gone although it ignored SIGTERM.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the command (pid %d) still exists: kill -0 gave %v", pid, err)
	}
}

// SIGTERM and SIGINT sent to redlock reach the command (which runs in its
// own process group, so only forwarding can deliver them); the lock is held
// until the command exits, then released; redlock exits with the
// command's status.
func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			servers := redistest.Start(t, 3)
			dir := t.TempDir()
			script := sh + `trap 'touch "$d/got"; waitfile "$d/finish"; exit 3' TERM INT
touch "$d/started"
spin`
			p := startBinary(t, nil, args(a("run", "-n", "--ttl", "2s"), redisFlags(servers),
				a("job", "--", "sh", "-c", script, "sh", dir))...)
			waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the command to get the signal", func() bool { return exists(filepath.Join(dir, "got")) })
			m := manager(t, servers)
			ctx := testCtx(t)
			if locked, err := m.IsLocked(ctx, "job"); err != nil || !locked {
				t.Fatalf("IsLocked while the command handles the signal = %v, %v; want true", locked, err)
			}
			touch(t, filepath.Join(dir, "finish"))
			if code := p.wait(t); code != 3 {
				t.Fatalf("exit %d, want the command's 3; stderr:\n%s", code, p.stderr.String())
			}
			if locked, err := m.IsLocked(ctx, "job"); err != nil || locked {
				t.Fatalf("IsLocked after exit = %v, %v; want false", locked, err)
			}
		})
	}
}

// The command sees REDLOCK_RESOURCE and REDLOCK_TOKEN, and the token is the
// one in the lock's keys (under --key-prefix).
func TestRunEnvironment(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	script := sh + `printf '%s\n%s\n' "$REDLOCK_RESOURCE" "$REDLOCK_TOKEN" > "$d/env.tmp"; mv "$d/env.tmp" "$d/env"
waitfile "$d/release"`
	ch := cliAsync(testCtx(t), args(a("run", "--key-prefix", "locks:"), redisFlags(servers),
		a("env-res", "--", "sh", "-c", script, "sh", dir))...)
	waitFor(t, "the command to write its environment", func() bool { return exists(filepath.Join(dir, "env")) })
	b, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "env-res" || lines[1] == "" {
		t.Fatalf("environment seen by the command: %q", lines)
	}
	// The lock was taken once a quorum answered: the last instance's key
	// may land a moment after the command started.
	for _, s := range servers {
		waitFor(t, s.String()+" to hold the command's REDLOCK_TOKEN "+lines[1], func() bool {
			return s.Do(t, "GET", "locks:env-res") == lines[1]
		})
	}
	touch(t, filepath.Join(dir, "release"))
	if r := await(t, ch); r.code != 0 {
		t.Fatalf("got %v", r)
	}
}

// The command sees REDLOCK_FENCE, the lock's fencing token: it is the
// counter that a quorum of instances keep for the resource, and it
// increases from one run to the next.
func TestRunFenceIncreases(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ctx := testCtx(t)
	script := `printf '%s' "$REDLOCK_FENCE" > "$1/fence.$2"`
	var fences []uint64
	for i := 0; i < 2; i++ {
		name := strconv.Itoa(i)
		if r := cli(ctx, args(a("run", "-n", "--key-prefix", "locks:"), redisFlags(servers), a("fenced", "--", "sh", "-c", script, "sh", dir, name))...); r.code != 0 {
			t.Fatalf("run %d: %v", i, r)
		}
		b, err := os.ReadFile(filepath.Join(dir, "fence."+name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			t.Fatalf("run %d: REDLOCK_FENCE=%q is not a uint64: %v", i, b, err)
		}
		fences = append(fences, f)
		agree := 0
		for _, s := range servers {
			if s.Do(t, "GET", "{locks:fenced}:redlock-fence") == string(b) {
				agree++
			}
		}
		if agree < 2 {
			t.Fatalf("run %d: REDLOCK_FENCE=%s, but only %d instances hold that counter", i, b, agree)
		}
	}
	if fences[0] == 0 || fences[1] <= fences[0] {
		t.Fatalf("REDLOCK_FENCE of two runs in a row: %v; want positive and increasing", fences)
	}
}

// The exit status of the command is passed on; a command that cannot run
// does not take the lock.
func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for _, tc := range []struct {
		name    string
		command []string
		want    int
		locks   bool // whether the lock is taken at all
	}{
		{"success", a("true"), 0, true},
		{"status", a("sh", "-c", "exit 7"), 7, true},
		{"signal", a("sh", "-c", "kill -KILL $$"), exitSignalBase + 9, true},
		{"not found", a(filepath.Join(dir, "no-such-command")), exitNotFound, false},
		{"not in PATH", a("redlock-no-such-command-in-path"), exitNotFound, false},
		{"not executable", a(notExec), exitCannotExec, false},
	} {
		before := scriptCalls(t, servers[0])
		r := cli(ctx, args(a("run", "-n"), redisFlags(servers), a("res-"+tc.name, "--"), tc.command)...)
		if r.code != tc.want {
			t.Errorf("%s: want exit %d, got %v", tc.name, tc.want, r)
		}
		if calls := scriptCalls(t, servers[0]) - before; (calls > 0) != tc.locks {
			t.Errorf("%s: %d calls reached the instance, want lock taken = %v", tc.name, calls, tc.locks)
		}
		for _, s := range servers {
			if keys := lockKeys(t, s); len(keys) != 0 {
				t.Fatalf("%s: %s has keys %v after run returned", tc.name, s, keys)
			}
		}
	}
}

// Not acquiring exits with the conflict code (-E changes it), without
// running the command, in every waiting mode.
func TestRunConflict(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ctx := testCtx(t)
	m := manager(t, servers)
	l, err := m.Lock(ctx, "busy", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "ran")
	for _, tc := range []struct {
		flags []string
		want  int
	}{
		{a("-n"), exitConflict},
		{a("--nonblock", "-E", "42"), 42},
		{a("-n", "--conflict-exit-code=0"), 0},
		{a("-w", "300ms", "--retry-delay", "10ms-30ms"), exitConflict},
		{a("--wait=0"), exitConflict},
		{a("--retry-count", "2", "--retry-delay", "10ms"), exitConflict},
	} {
		r := cli(ctx, args(a("run"), tc.flags, redisFlags(servers), a("busy", "--", "touch", marker))...)
		if r.code != tc.want {
			t.Errorf("%v: want exit %d, got %v", tc.flags, tc.want, r)
		}
		if exists(marker) {
			t.Fatalf("%v: the command ran although the lock is held", tc.flags)
		}
	}
	if ok, err := l.IsLocked(ctx); err != nil || !ok {
		t.Fatalf("the holder's lock after the attempts: %v, %v", ok, err)
	}
}

// Too few instances: exit 69, the command does not run.
func TestRunUnavailable(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	servers[0].Kill(t)
	servers[1].Kill(t)
	marker := filepath.Join(t.TempDir(), "ran")
	r := cli(testCtx(t), args(a("run", "-n", "--node-timeout", "300ms"), redisFlags(servers), a("r", "--", "touch", marker))...)
	if r.code != exitUnavailable {
		t.Fatalf("want exit %d, got %v", exitUnavailable, r)
	}
	if exists(marker) {
		t.Fatal("the command ran without a quorum")
	}
}

// Ending ctx while waiting gives up with 128+SIGTERM; ending it while the
// command runs sends the command SIGTERM, and its status is returned.
func TestRunContextCancel(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	m := manager(t, servers)
	l, err := m.Lock(testCtx(t), "held", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	before := scriptCalls(t, servers[0])
	ctx, cancel := context.WithCancel(testCtx(t))
	ch := cliAsync(ctx, args(a("run", "--retry-delay", "10ms"), redisFlags(servers), a("held", "--", "touch", filepath.Join(dir, "ran")))...)
	waitFor(t, "the waiter to try the lock", func() bool { return scriptCalls(t, servers[0]) > before })
	cancel()
	if r := await(t, ch); r.code != exitSignalBase+int(syscall.SIGTERM) {
		t.Fatalf("want exit %d, got %v", exitSignalBase+int(syscall.SIGTERM), r)
	}
	if exists(filepath.Join(dir, "ran")) {
		t.Fatal("the command ran")
	}
	if err := l.Unlock(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	ctx, cancel = context.WithCancel(testCtx(t))
	defer cancel()
	script := sh + `trap 'exit 5' TERM; touch "$d/started"; spin`
	ch = cliAsync(ctx, args(a("run", "-n"), redisFlags(servers), a("held", "--", "sh", "-c", script, "sh", dir))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started")) })
	cancel()
	if r := await(t, ch); r.code != 5 {
		t.Fatalf("want the command's exit 5, got %v", r)
	}
	if locked, err := m.IsLocked(testCtx(t), "held"); err != nil || locked {
		t.Fatalf("IsLocked after run returned = %v, %v; want false", locked, err)
	}
}

// --ttl takes a plain number of seconds, as -w does.
func TestRunTTLSeconds(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	script := sh + `touch "$d/started"; waitfile "$d/release"`
	ch := cliAsync(testCtx(t), args(a("run", "-n", "--ttl", "5"), redisFlags(servers), a("secs", "--", "sh", "-c", script, "sh", dir))...)
	waitFor(t, "the command to start", func() bool {
		select {
		case r := <-ch:
			t.Fatalf("run --ttl 5: %v", r)
		default:
		}
		return exists(filepath.Join(dir, "started"))
	})
	keyEverywhere(t, servers, "secs") // run returned from Lock at quorum
	if d := pttl(t, servers[0], "secs"); d <= 0 || d > 5*time.Second {
		t.Errorf("the lock's key has PTTL %v, want a 5s lease", d)
	}
	touch(t, filepath.Join(dir, "release"))
	if r := await(t, ch); r.code != 0 {
		t.Fatalf("run --ttl 5: %v", r)
	}
}
