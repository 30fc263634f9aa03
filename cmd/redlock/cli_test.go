package main

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

func TestParseArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		max       int
		pos, tail []string
		dash      bool
		n         bool
		token     string
	}{
		{args: a("-n", "res", "--", "cmd", "-x"), max: 1, pos: a("res"), tail: a("cmd", "-x"), dash: true, n: true},
		{args: a("res", "-n", "--", "cmd"), max: 1, pos: a("res"), tail: a("cmd"), dash: true, n: true},
		{args: a("res", "cmd", "-n"), max: 1, pos: a("res"), tail: a("cmd", "-n")},
		{args: a("res", "--", "--", "x"), max: 1, pos: a("res"), tail: a("--", "x"), dash: true},
		{args: a("-n", "--", "res"), max: 1, tail: a("res"), dash: true, n: true},
		{args: a("--token", "--", "res"), max: 1, pos: a("res"), token: "--"},
		{args: a("--token=--", "--", "res"), max: 1, tail: a("res"), dash: true, token: "--"},
		{args: a("-n", "--", "res"), max: 1, tail: a("res"), dash: true, n: true},
		{args: a("a", "-n", "b", "--token", "t", "c"), max: -1, pos: a("a", "b", "c"), n: true, token: "t"},
		{args: a("a", "--", "-n"), max: -1, pos: a("a"), tail: a("-n"), dash: true},
		{args: nil, max: -1},
	} {
		fs := newFlagSet("test")
		n := fs.Bool("n", false, "")
		token := fs.String("token", "", "")
		pos, tail, dash, err := parseArgs(fs, tc.args, tc.max)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !slices.Equal(pos, tc.pos) || !slices.Equal(tail, tc.tail) || dash != tc.dash || *n != tc.n || *token != tc.token {
			t.Errorf("%q (max %d): pos %q tail %q dash %v n %v token %q; want %q %q %v %v %q",
				tc.args, tc.max, pos, tail, dash, *n, *token, tc.pos, tc.tail, tc.dash, tc.n, tc.token)
		}
	}
	fs := newFlagSet("test")
	if _, _, _, err := parseArgs(fs, a("-h"), -1); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestRetryDelayAndSecondsFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		min, max time.Duration
		bad      bool
	}{
		{in: "100ms", min: 100 * time.Millisecond, max: 100 * time.Millisecond},
		{in: "100ms-300ms", min: 100 * time.Millisecond, max: 300 * time.Millisecond},
		{in: "1s-1s", min: time.Second, max: time.Second},
		{in: "3s-1s", bad: true},
		{in: "0s", bad: true},
		{in: "-1s", bad: true},
		{in: "abc", bad: true},
		{in: "1s-", bad: true},
		{in: "", bad: true},
	} {
		var r retryDelay
		err := r.Set(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (r.min != tc.min || r.max != tc.max)) {
			t.Errorf("--retry-delay %q: %v, %v, %v", tc.in, r.min, r.max, err)
		}
	}
	for _, tc := range []struct {
		in  string
		d   time.Duration
		bad bool
	}{
		{in: "5", d: 5 * time.Second},
		{in: "0.5", d: 500 * time.Millisecond},
		{in: "2m", d: 2 * time.Minute},
		{in: "-1", bad: true},
		{in: "x", bad: true},
	} {
		var d time.Duration
		err := seconds{&d}.Set(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && d != tc.d) {
			t.Errorf("-w %q: %v, %v", tc.in, d, err)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	held := func(tok string, ms int) redlock.InstanceState {
		return redlock.InstanceState{Token: tok, TTL: time.Duration(ms) * time.Millisecond}
	}
	free := redlock.InstanceState{}
	failed := redlock.InstanceState{Err: errors.New("down")}
	wrongType := redlock.InstanceState{Err: errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")}
	for _, tc := range []struct {
		name    string
		states  []redlock.InstanceState
		verdict string
		locked  bool
		holder  string
		ttl     time.Duration
	}{
		{"all held", []redlock.InstanceState{held("a", 900), held("a", 800), held("a", 950)}, verdictHeld, true, "a", 800 * time.Millisecond},
		{"quorum held", []redlock.InstanceState{held("a", 900), failed, held("a", 700)}, verdictHeld, true, "a", 700 * time.Millisecond},
		{"all free", []redlock.InstanceState{free, free, free}, verdictFree, false, "", 0},
		{"free with one down", []redlock.InstanceState{free, failed, free}, verdictFree, false, "", 0},
		{"minority key", []redlock.InstanceState{held("a", 5), free, free}, verdictFree, false, "", 0},
		{"split", []redlock.InstanceState{held("a", 5), held("b", 5), held("c", 5)}, verdictContended, true, "", 0},
		{"unknown", []redlock.InstanceState{held("a", 5), failed, failed}, verdictUnavailable, false, "", 0},
		{"unknown free", []redlock.InstanceState{free, failed, failed}, verdictUnavailable, false, "", 0},
		{"even N free", []redlock.InstanceState{free, free, held("a", 5), held("a", 5)}, verdictFree, false, "", 0},
		{"even N held", []redlock.InstanceState{held("a", 5), free, held("a", 4), held("a", 6)}, verdictHeld, true, "a", 4 * time.Millisecond},
		{"no expiry", []redlock.InstanceState{held("a", -1), held("a", -1), free}, verdictHeld, true, "a", -1},
		{"rejected", []redlock.InstanceState{wrongType, wrongType, free}, verdictRejected, false, "", 0},
		{"rejected and down", []redlock.InstanceState{wrongType, failed, free}, verdictUnavailable, false, "", 0},
		{"rejected minority", []redlock.InstanceState{wrongType, free, free}, verdictFree, false, "", 0},
		{"rejected everywhere", []redlock.InstanceState{wrongType, wrongType, wrongType}, verdictRejected, false, "", 0},
	} {
		s := summarize(tc.states, len(tc.states)/2+1)
		if s.Verdict != tc.verdict || s.Locked != tc.locked || s.Holder != tc.holder || (tc.holder != "" && s.TTL != tc.ttl) {
			t.Errorf("%s: %+v", tc.name, s)
		}
	}
}

// Each flag of each subcommand appears in its help text.
func TestHelpNamesEveryFlag(t *testing.T) {
	t.Parallel()
	runFS, _ := newRunFlags()
	statusFS, _, _ := newStatusFlags()
	releaseFS, _ := newReleaseFlags()
	demoFS, _ := newDemoFlags()
	for sub, fs := range map[string]*flag.FlagSet{"run": runFS, "status": statusFS, "release": releaseFS, "demo": demoFS} {
		fs.VisitAll(func(f *flag.Flag) {
			name := "--" + f.Name
			if len(f.Name) == 1 {
				name = "-" + f.Name
			}
			if !regexp.MustCompile(`(^|[\s,])` + regexp.QuoteMeta(name) + `([\s,=]|$)`).MatchString(subHelp[sub]) {
				t.Errorf("redlock help %s does not mention %s", sub, name)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, argv := range [][]string{
		a("--help"), a("-h"), a("help"), a("help", "run"), a("help", "status"), a("help", "release"),
		a("help", "demo"), a("help", "version"), a("run", "--help"), a("run", "-h"), a("status", "-h"),
		a("release", "--help"), a("demo", "-h"),
	} {
		r := cli(ctx, argv...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("%q: %v", argv, r)
		}
	}
	if r := cli(ctx, "--help"); !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "*/5 * * * * redlock run -n nightly-report -- ./report.sh") {
		t.Errorf("redlock --help lacks the exit codes or the cron example:\n%s", r.stdout)
	}
	r := cli(ctx, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "redlock ") {
		t.Errorf("version: %v", r)
	}
}

// The built binary answers version and help too.
func TestBinaryVersion(t *testing.T) {
	t.Parallel()
	p := startBinary(t, nil, "version")
	if code := p.wait(t); code != 0 {
		t.Fatalf("redlock version exited %d: %s", code, p.stderr.String())
	}
	p = startBinary(t, nil, "no-such-subcommand")
	if code := p.wait(t); code != exitUsage {
		t.Fatalf("redlock no-such-subcommand exited %d, want %d", code, exitUsage)
	}
}

// Bad flags, arguments and endpoints are usage errors (exit 2), and
// nothing reaches the instances.
func TestUsageErrorsSendNothing(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		s.Do(t, "SET", "existing", "value")
		s.Do(t, "CONFIG", "RESETSTAT")
	}
	good := redisFlags(servers)
	cmd := a("--", "true")
	for _, argv := range [][]string{
		nil,
		a("no-such-subcommand"),
		a("help", "no-such-subcommand"),
		a("run"),
		args(a("run"), good, a("res")),
		args(a("run"), good, a("--", "true")),
		args(a("run", ""), good, cmd),
		args(a("run", "-x"), good, a("res"), cmd),
		args(a("run", "--ttl", "abc"), good, a("res"), cmd),
		args(a("run", "--ttl", "0"), good, a("res"), cmd),
		args(a("run", "--ttl", "-1s"), good, a("res"), cmd),
		args(a("run", "--ttl", "1us"), good, a("res"), cmd),
		args(a("run", "--retry-count", "0"), good, a("res"), cmd),
		args(a("run", "--retry-delay", "3s-1s"), good, a("res"), cmd),
		args(a("run", "-n", "-w", "5s"), good, a("res"), cmd),
		args(a("run", "-w", "5s", "--retry-count", "2"), good, a("res"), cmd),
		args(a("run", "-n", "--retry-count", "2"), good, a("res"), cmd),
		args(a("run", "-E", "256"), good, a("res"), cmd),
		args(a("run", "-w", "-1s"), good, a("res"), cmd),
		args(a("run", "--kill-grace", "-1s"), good, a("res"), cmd),
		args(a("run", "--kill-grace", "20s"), good, a("res"), cmd), // over the default --ttl 10s
		args(a("run", "--ttl", "1s", "--kill-grace", "1s"), good, a("res"), cmd),
		args(a("run", "--ttl", "1s", "--kill-grace", "900ms"), good, a("res"), cmd), // TTL less drift and margin: 888ms
		args(a("run", "--drift-factor", "0.7"), good, a("res"), cmd),
		args(a("run", "--node-timeout", "0"), good, a("res"), cmd),
		args(a("run", "--redis", "bogus://127.0.0.1:6379"), good, a("res"), cmd),
		args(a("run", "--redis", "127.0.0.1:notaport"), good, a("res"), cmd),
		args(a("run", "--redis", "redis://user:sekret@127.0.0.1:99999"), good, a("res"), cmd),
		args(a("run", "--redis", servers[0].URL()), good, a("res"), cmd), // the same instance twice
		args(a("status"), good),
		args(a("status", "--json=maybe"), good, a("res")),
		args(a("status", "--redis", ""), good, a("res")),
		args(a("release"), good, a("res")),
		args(a("release", "--token", "t", "--force"), good, a("res")),
		args(a("release", "--token", ""), good, a("res")),
		args(a("release", "--token", "t"), good, a("res", "other")),
		args(a("release", "--token-base64", "!!!"), good, a("res")),
		args(a("release", "--token-base64", ""), good, a("res")),
		args(a("release", "--token", "t", "--token-base64", "dA=="), good, a("res")),
		args(a("release", "--force", "--token-base64", "dA=="), good, a("res")),
		args(a("release", "--force", "--redis", "localhost"), good, a("res")),
		a("demo", "--workers", "0"),
		a("demo", "--instances", "99"),
		a("demo", "--duration", "1ms"),
		a("demo", "--ttl", "0s"),
		a("demo", "extra"),
	} {
		r := cli(testCtx(t), argv...)
		if r.code != exitUsage || r.stderr == "" {
			t.Errorf("%q: want exit %d and a message, got %v", argv, exitUsage, r)
		}
		if strings.Contains(r.stderr+r.stdout, "sekret") {
			t.Errorf("%q: the password was printed: %v", argv, r)
		}
	}
	for _, s := range servers {
		if n := scriptCalls(t, s); n != 0 {
			t.Errorf("%s ran %d data commands during the usage errors", s, n)
		}
		if keys := s.Keys(t); !slices.Equal(keys, a("existing")) {
			t.Errorf("%s has keys %v, want [existing]", s, keys)
		}
	}
}

// REDLOCK_URLS names the instances when no --redis is given.
func TestRedlockURLsEnv(t *testing.T) {
	servers := redistest.Start(t, 3)
	t.Setenv(envURLs, " "+strings.Join(urls(servers), " , ")+",")
	r := cli(testCtx(t), "run", "-n", "env-res", "--", "true")
	if r.code != 0 {
		t.Fatalf("run with %s: %v", envURLs, r)
	}
	for _, s := range servers {
		if scriptCalls(t, s) == 0 {
			t.Fatalf("%s was not used", s)
		}
	}
	t.Setenv(envURLs, " , ")
	if r := cli(testCtx(t), "run", "-n", "env-res", "--", "true"); r.code != exitUsage {
		t.Fatalf("run with an empty %s: %v", envURLs, r)
	}
}

// The demo as "redlock demo --workers 4" sets it up, driven by
// acquisitions instead of the clock (demoEvents), so that a slow machine
// only makes it slower: the instance goes down after 5 acquisitions, 5
// are made while it is down, 5 after it is back; no overlap. A TTL of 10s:
// a starved process (-race, a loaded machine) can take longer than the
// default 1s for an attempt, and every attempt then fails.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	d, code := newDemo(testCtx(t), a("--workers", "4", "--ttl", "10"), &out, &out)
	if d == nil {
		t.Fatalf("demo --workers 4: exit %d\n%s", code, out.String())
	}
	d.events = &demoEvents{down: 5, during: 5, after: 5}
	if code := d.run(testCtx(t)); code != 0 {
		t.Fatalf("demo: exit %d\n%s", code, out.String())
	}
	stdout := out.String()
	for _, want := range []string{"worker 4 ", "instance 3 ", "X", "#", "back at"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^overlaps:\s+0 `).MatchString(stdout) {
		t.Errorf("demo does not report 0 overlaps:\n%s", stdout)
	}
	if m := regexp.MustCompile(`(?m)^acquisitions:.* \(total ([0-9]+)\)$`).FindStringSubmatch(stdout); m == nil || len(m[1]) < 2 {
		t.Errorf("demo reports fewer than 15 acquisitions:\n%s", stdout)
	}
	if !regexp.MustCompile(`(?m)^outage: .*; ([5-9]|[1-9][0-9]+) acquisitions meanwhile`).MatchString(stdout) {
		t.Errorf("demo reports fewer than 5 acquisitions during the outage:\n%s", stdout)
	}
}

// The demo's checker finds overlaps within validity (exit 1), and reports
// holdings that outlived their validity apart.
func TestDemoReportFindsOverlaps(t *testing.T) {
	t.Parallel()
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		name     string
		held     []interval
		code     int
		overlaps string
		late     bool
	}{
		{"disjoint", []interval{{0, ms(10), ms(20), ms(900), false}, {1, ms(25), ms(40), ms(900), false}}, 0, "0", false},
		{"overlap", []interval{{0, ms(10), ms(30), ms(900), false}, {1, ms(20), ms(40), ms(900), false}}, exitConflict, "1", false},
		{"after validity", []interval{{0, ms(10), ms(1500), ms(900), true}, {1, ms(1000), ms(1100), ms(1900), false}}, 0, "0", true},
		{"none", nil, exitConflict, "0", false},
	} {
		var out bytes.Buffer
		d := &demo{o: &demoOpts{workers: 2, instances: 5, duration: 2 * time.Second}, out: &out, errw: &out, held: tc.held, victim: 2}
		if code := d.report(3); code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, out.String())
		}
		if !regexp.MustCompile(`(?m)^overlaps:\s+` + tc.overlaps + ` `).MatchString(out.String()) {
			t.Errorf("%s: want %s overlaps:\n%s", tc.name, tc.overlaps, out.String())
		}
		if strings.Contains(out.String(), "late releases:") != tc.late {
			t.Errorf("%s: late releases reported = %v, want %v:\n%s", tc.name, !tc.late, tc.late, out.String())
		}
	}
}

// Negative control through the real library: with a quorum of 1
// (testhooks), workers lock different instances at once and the demo says
// so. The run ends at the first overlap (testCtx bounds it): how long that
// takes does not matter. (A TTL of 10s, as in TestDemo.)
func TestDemoCatchesBrokenQuorum(t *testing.T) {
	if testhooks.Install == nil {
		t.Skip("needs the test hooks: go test -tags redlock_controls")
	}
	t.Parallel()
	var out bytes.Buffer
	d := &demo{
		o:   &demoOpts{workers: 5, instances: 5, duration: time.Second, ttl: 10 * time.Second},
		cfg: redlock.Config{DefaultTTL: 10 * time.Second, RetryDelayMin: 5 * time.Millisecond, RetryDelayMax: 25 * time.Millisecond, NodeTimeout: 200 * time.Millisecond},
		out: &out, errw: &out,
		setup: func(m *redlock.Manager) {
			testhooks.Install(m, &testhooks.Hooks{Quorum: func(int) int { return 1 }})
		},
		events: &demoEvents{down: math.MaxInt, stopOnOverlap: true},
	}
	if code := d.run(testCtx(t)); code != exitConflict {
		t.Fatalf("demo with a quorum of 1: exit %d, want %d\n%s", code, exitConflict, out.String())
	}
	if regexp.MustCompile(`(?m)^overlaps:\s+0 `).MatchString(out.String()) {
		t.Fatalf("demo with a quorum of 1 found no overlap:\n%s", out.String())
	}
}

// The SIGTERM and SIGKILL points fit in the TTL: the default grace leaves
// room for extensions before the SIGTERM point, whatever the TTL and drift.
func TestKillTiming(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		ttl            time.Duration
		df             float64
		margin, max, d time.Duration
	}{
		{10 * time.Second, 0.01, 250 * ms, 10*time.Second - 102*ms - 250*ms, 10 * time.Second / 3},
		{time.Second, 0.01, 100 * ms, 888 * ms, time.Second / 3},
		{time.Minute, 0.01, 250 * ms, time.Minute - 602*ms - 250*ms, 20 * time.Second},
	} {
		if m, x, d := killMargin(tc.ttl), maxKillGrace(tc.ttl, tc.df), defaultKillGrace(tc.ttl, tc.df); m != tc.margin || x != tc.max || d != tc.d {
			t.Errorf("--ttl %v: margin %v, max grace %v, default grace %v; want %v, %v, %v", tc.ttl, m, x, d, tc.margin, tc.max, tc.d)
		}
	}
	for _, df := range []float64{0.001, 0.01, 0.1, 0.3, 0.49} {
		for ttl := redlock.MinTTL; ttl <= time.Hour; ttl = ttl*3/2 + time.Millisecond {
			if drift := time.Duration(float64(ttl)*df) + 2*ms; ttl <= 2*drift {
				continue // the library refuses it (redlock.MinTTL)
			}
			m, x, d := killMargin(ttl), maxKillGrace(ttl, df), defaultKillGrace(ttl, df)
			if m <= 0 || x <= 0 || d <= 0 || d >= x {
				t.Errorf("--ttl %v --drift-factor %v: margin %v, max grace %v, default grace %v", ttl, df, m, x, d)
			}
		}
	}
}

// A flag in an error message is spelled as it was typed (the flag package
// writes -NAME, also for --NAME).
func TestUsageEchoesFlagsAsTyped(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{a("run", "--bogus", "res", "--", "true"), "redlock run: flag provided but not defined: --bogus\n"},
		{a("run", "-bogus", "res", "--", "true"), "redlock run: flag provided but not defined: -bogus\n"},
		{a("run", "--bogus=1", "res", "--", "true"), "redlock run: flag provided but not defined: --bogus\n"},
		{a("run", "--ttl", "abc", "res", "--", "true"), `redlock run: invalid value "abc" for flag --ttl: `},
		{a("run", "-ttl=abc", "res", "--", "true"), `redlock run: invalid value "abc" for flag -ttl: `},
		{a("run", "-ttl=1s", "res", "--ttl", "x", "--", "true"), `redlock run: invalid value "x" for flag --ttl: `},
		{a("run", "res", "--kill-grace"), "redlock run: flag needs an argument: --kill-grace\n"},
		{a("status", "--json=maybe", "res"), `redlock status: invalid boolean value "maybe" for --json: `},
		{a("release", "res", "--token"), "redlock release: flag needs an argument: --token\n"},
		{a("demo", "--workers", "x"), `redlock demo: invalid value "x" for flag --workers: `},
		{a("run", "--wait", "-1s", "res", "--", "true"), "redlock run: --wait -1s is negative\n"},
		{a("run", "-w=-1s", "res", "--", "true"), "redlock run: -w -1s is negative\n"},
		{a("run", "--conflict-exit-code", "300", "res", "--", "true"), "redlock run: --conflict-exit-code 300 is outside 0..255\n"},
	} {
		r := cli(ctx, tc.argv...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("%q: want exit %d and a message starting %q, got %v", tc.argv, exitUsage, tc.want, r)
		}
	}
}

// redlock without a subcommand says so before the help, on stderr.
func TestMissingSubcommand(t *testing.T) {
	t.Parallel()
	r := cli(testCtx(t))
	if r.code != exitUsage || !strings.HasPrefix(r.stderr, "redlock: missing subcommand\n") || !strings.Contains(r.stderr, "Usage:") || r.stdout != "" {
		t.Fatalf("redlock with no arguments: %v", r)
	}
}

// An even number of instances works, with a warning on stderr (-q silences
// it in run); an odd number gets none.
func TestEvenInstancesWarning(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	const warning = "redlock: warning: 2 instances, an even number"
	two := redisFlags(servers[:2])
	for _, tc := range []struct {
		argv []string
		warn bool
	}{
		{args(a("run", "-n"), two, a("even", "--", "true")), true},
		{args(a("run", "-n", "-q"), two, a("even", "--", "true")), false},
		{args(a("status", "--json"), two, a("even")), true},
		{args(a("run", "-n"), redisFlags(servers), a("odd", "--", "true")), false},
	} {
		r := cli(ctx, tc.argv...)
		if r.code != 0 || strings.Contains(r.stderr, warning) != tc.warn || (tc.warn != strings.Contains(r.stderr, "warning")) {
			t.Errorf("%q: want exit 0, warning %v; got %v", tc.argv, tc.warn, r)
		}
	}
}
