package main

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// Instances that do not answer at all (paused: black-holed) are named as
// such in the report. (The one that answers may be named too, on a
// machine so loaded that it did not answer within --node-timeout once.)
func TestRunReportsTimeouts(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers[1:] {
		s.Pause(t)
	}
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := cliWatched(ctx, &stderr, args(a("run", "--unavailable-timeout", "0", "--node-timeout", "500ms"), redisFlags(servers), a("bh", "--", "true"))...)
	waitFor(t, "the report", func() bool {
		s := stderr.String()
		return strings.Contains(s, `redlock: no quorum for "bh" yet (`) &&
			strings.Contains(s, servers[1].URL()+": no answer within --node-timeout") &&
			strings.Contains(s, servers[2].URL()+": no answer within --node-timeout")
	})
	cancel()
	if r := await(t, ch); r.code != exitSignalBase+int(syscall.SIGTERM) {
		t.Fatalf("want exit %d, got %v\n%s", exitSignalBase+int(syscall.SIGTERM), r, stderr.String())
	}
}

// No instance answers (their ports are closed, as with a typo in
// REDLOCK_URLS): run says so on stderr, off a terminal and without -v,
// naming each instance and its error, and keeps trying (with
// --unavailable-timeout 0) until it is stopped; the command never runs.
func TestRunReportsNoQuorum(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		s.Kill(t)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	ch := cliWatched(ctx, &stderr, args(a("run", "--unavailable-timeout", "0"), redisFlags(servers), a("typo", "--", "touch", marker))...)
	want := `redlock: no quorum for "typo" yet (0/3 answered, quorum 2): ` + servers[0].URL() + ": "
	waitFor(t, "the report naming every instance", func() bool {
		s := stderr.String()
		return strings.Contains(s, want) && strings.Contains(s, servers[1].URL()+": ") &&
			strings.Contains(s, servers[2].URL()+": ") && strings.Contains(s, "connection refused")
	})
	cancel()
	r := await(t, ch)
	if r.code != exitSignalBase+int(syscall.SIGTERM) || exists(marker) {
		t.Fatalf("want exit %d and no command run, got %v (command ran: %v)\n%s", exitSignalBase+int(syscall.SIGTERM), r, exists(marker), stderr.String())
	}
}

// With a majority down, run gives up after --unavailable-timeout: exit 69,
// the instances and their errors on stderr, the command not run. Meanwhile
// it sent the instance that is up one acquisition and one clean-up per
// attempt, and attempts are at least --retry-delay's minimum apart: at
// most 1 + 1.5s/100ms of them (a slow machine makes fewer), plus the
// inspections of the report and the final message. (The backoff makes it
// about 5: TestRetryWait.)
func TestRunUnavailableTimeout(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	servers[1].Kill(t)
	servers[2].Kill(t)
	servers[0].Do(t, "CONFIG", "RESETSTAT")
	marker := filepath.Join(t.TempDir(), "ran")
	r := cli(testCtx(t), args(a("run", "--unavailable-timeout", "1500ms"), redisFlags(servers), a("down", "--", "touch", marker))...)
	if r.code != exitUnavailable || exists(marker) {
		t.Fatalf("want exit %d and no command run, got %v", exitUnavailable, r)
	}
	for _, want := range []string{"--unavailable-timeout", servers[1].URL() + ": ", servers[2].URL() + ": ", "connection refused", "1/3 answered"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %v", want, r)
		}
	}
	if strings.Contains(r.stderr, servers[0].URL()+": ") {
		t.Errorf("stderr names the instance that answers: %v", r)
	}
	if n := evalCalls(t, servers[0]); n > 2*16+2 {
		t.Errorf("the instance that is up ran %d scripts in 1.5s: more than one attempt per 100ms", n)
	}
}

// Error replies that no retry fixes end run at once with exit 78, each
// instance's reply on stderr; the command does not run, and one attempt
// was made: at most 3 scripts per instance (the acquisition, its clean-up,
// and the inspection that names every instance's reply).
func TestRunRejected(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		s.Do(t, "HSET", "hash", "field", "value")
		s.Do(t, "CONFIG", "RESETSTAT")
	}
	marker := filepath.Join(t.TempDir(), "ran")
	r := cli(testCtx(t), args(a("run"), redisFlags(servers), a("hash", "--", "touch", marker))...)
	if r.code != exitConfig || exists(marker) {
		t.Fatalf("want exit %d and no command run, got %v", exitConfig, r)
	}
	for _, s := range servers {
		if !strings.Contains(r.stderr, s.URL()+": WRONGTYPE") {
			t.Errorf("stderr does not give %s's reply: %v", s, r)
		}
		if n := evalCalls(t, s); n > 3 {
			t.Errorf("%s ran %d scripts, want one attempt (at most 3)", s, n)
		}
	}
}

// evalCalls is the number of EVAL and EVALSHA commands s has run since its
// start or the last CONFIG RESETSTAT.
func evalCalls(t *testing.T, s *redistest.Server) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(s.Do(t, "INFO", "commandstats"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_eval" && name != "cmdstat_evalsha") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		c, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		n += c
	}
	return n
}

// The schedule of the reports and of --unavailable-timeout, on made-up
// times: the first report a second into a streak of attempts without a
// quorum (within 5s of its first attempt), the next ones 30s apart at the
// least; the timeout counts from the last time a quorum answered.
func TestHealthSchedule(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	qe := &redlock.QuorumError{Op: "lock", N: 3, Quorum: 2, Err: redlock.ErrUnavailable,
		Instances: []*redlock.InstanceError{{Endpoint: "a", Err: errors.New("refused")}, {Endpoint: "b", Err: redlock.ErrHeldByOther}}}
	h := newHealth(t0, time.Minute)
	if _, ok := h.reportAt(); ok {
		t.Fatal("a report is due before any attempt")
	}
	h.failed(at(10), qe)
	if r, ok := h.reportAt(); !ok || r.Before(at(10)) || r.After(at(15)) {
		t.Fatalf("first report at %v, want within 5s of the first failed attempt at %v", r, at(10))
	}
	if g, ok := h.giveUpAt(); !ok || !g.Equal(at(60)) {
		t.Fatalf("giving up at %v, want a minute after the start (no quorum ever answered)", g)
	}
	h.report(at(11))
	h.failed(at(12), qe)
	if r, _ := h.reportAt(); r.Before(at(41)) {
		t.Fatalf("second report at %v, want 30s after the first at %v", r, at(11))
	}
	if cs := h.failing([]string{"a", "b", "c"}, []redlock.InstanceState{{}, {}, {Endpoint: "c", Err: errors.New("timeout")}}); len(cs) != 2 || cs[0].endpoint != "a" || cs[1].endpoint != "c" {
		t.Fatalf("failing: %v, want a (from the attempt) and c (from the inspection), not b (held by another token: an answer)", cs)
	}
	// Without an inspection, every failure seen in the streak; with one, an
	// instance it found answering is named only if the last attempt does.
	h.failed(at(13), &redlock.QuorumError{N: 3, Quorum: 2, Err: redlock.ErrUnavailable,
		Instances: []*redlock.InstanceError{{Endpoint: "c", Err: errors.New("timeout")}}})
	if cs := h.failing([]string{"a", "b", "c"}, nil); len(cs) != 2 || cs[0].endpoint != "a" || cs[1].endpoint != "c" {
		t.Fatalf("failing without states: %v, want a and c", cs)
	}
	if cs := h.failing([]string{"a", "b", "c"}, make([]redlock.InstanceState, 3)); len(cs) != 1 || cs[0].endpoint != "c" {
		t.Fatalf("failing with every instance answering the inspection: %v, want c (the last attempt)", cs)
	}
	// A quorum answers at 50s (the lock is held by someone else): the
	// streak, which was reported, ends, and the clock restarts.
	if !h.answered(at(50)) {
		t.Fatal("the end of a reported streak was not signalled")
	}
	if _, ok := h.reportAt(); ok {
		t.Fatal("a report is due while a quorum answers")
	}
	h.failed(at(55), qe)
	if g, _ := h.giveUpAt(); !g.Equal(at(110)) {
		t.Fatalf("giving up at %v, want a minute after the quorum answered at %v", g, at(50))
	}
	if r, _ := h.reportAt(); r.Before(at(41)) || r.After(at(60)) {
		t.Fatalf("report of the new streak at %v, want 30s after the last report (%v) and within 5s of the streak (%v)", r, at(11), at(55))
	}
	if h.answered(at(58)) {
		t.Fatal("the end of a streak that was not reported was signalled")
	}
	h2 := newHealth(t0, 0)
	h2.failed(at(1), qe)
	if _, ok := h2.giveUpAt(); ok {
		t.Fatal("--unavailable-timeout 0 gives up")
	}
}

// retryWait follows the library's backoff: [min, max] at first, the upper
// bound doubling per attempt without a quorum, up to 2s or the TTL.
func TestRetryWait(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		unavailable int
		ttl, hi     time.Duration
	}{
		{0, 10 * time.Second, 300 * ms},
		{1, 10 * time.Second, 300 * ms},
		{2, 10 * time.Second, 600 * ms},
		{3, 10 * time.Second, 1200 * ms},
		{4, 10 * time.Second, 2000 * ms},
		{40, 10 * time.Second, 2000 * ms},
		{40, time.Second, time.Second},
		{40, 100 * ms, 300 * ms},
	} {
		for range 200 {
			if d := retryWait(100*ms, 300*ms, tc.ttl, tc.unavailable); d < 100*ms || d > tc.hi {
				t.Fatalf("retryWait(100ms, 300ms, %v, %d) = %v, want in [100ms, %v]", tc.ttl, tc.unavailable, d, tc.hi)
			}
		}
	}
}

// The rows of the README's "When things go wrong" table that the other
// tests do not cover: what run prints and its exit code when a minority
// of the instances is down, the password is wrong, an ACL denies the
// scripts, or a majority of the instances are read-only replicas.
func TestRunWhenThingsGoWrong(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	minority := redistest.Start(t, 3)
	minority[2].Kill(t)
	var pass []*redistest.Server
	for range 3 {
		pass = append(pass, redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "right"}}))
	}
	var wrongPass []string
	for _, s := range pass {
		wrongPass = append(wrongPass, "--redis", strings.Replace(s.URL(), "redis://", "redis://:wrong@", 1))
	}
	acl := redistest.Start(t, 3)
	for _, s := range acl {
		s.Do(t, "ACL", "SETUSER", "default", "-@scripting")
	}
	replicas := redistest.Start(t, 3)
	for _, s := range replicas[1:] {
		s.Do(t, "REPLICAOF", "127.0.0.1", strconv.Itoa(replicas[0].Port()))
	}
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  []string // in stderr; none: stderr empty
	}{
		{"minority down", redisFlags(minority), 0, nil},
		{"wrong password", wrongPass, exitConfig, a(`"r" rejected by the instances`, pass[0].Addr()+": WRONGPASS", pass[1].Addr()+": WRONGPASS", pass[2].Addr()+": WRONGPASS")},
		{"ACL denies the scripts", redisFlags(acl), exitConfig, a(`"r" rejected by the instances`, acl[0].URL()+": NOPERM", acl[1].URL()+": NOPERM", acl[2].URL()+": NOPERM")},
		{"read-only replicas", redisFlags(replicas), exitConfig, a(`"r" rejected by the instances`, replicas[1].URL()+": READONLY", replicas[2].URL()+": READONLY")},
	} {
		marker := filepath.Join(t.TempDir(), "ran")
		r := cli(ctx, args(a("run", "--node-timeout", "500ms"), tc.flags, a("r", "--", "touch", marker))...)
		if r.code != tc.code || exists(marker) != (tc.code == 0) {
			t.Errorf("%s: want exit %d (command run: %v), got %v", tc.name, tc.code, tc.code == 0, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q: %v", tc.name, w, r)
			}
		}
		if tc.want == nil && r.stderr != "" {
			t.Errorf("%s: unexpected stderr: %v", tc.name, r)
		}
		if strings.Contains(r.stderr, "wrong@") {
			t.Errorf("%s: the password was printed: %v", tc.name, r)
		}
	}
}
