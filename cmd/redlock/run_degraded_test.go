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
	if n := strings.Count(stderr.String(), "no quorum for"); n != 1 {
		t.Errorf("%d reports, want 1 (the next one comes 30s later):\n%s", n, stderr.String())
	}
}

// With a majority down, run gives up after --unavailable-timeout: exit 69,
// the instances and their errors on stderr, the command not run.
func TestRunUnavailableTimeout(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	servers[1].Kill(t)
	servers[2].Kill(t)
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
