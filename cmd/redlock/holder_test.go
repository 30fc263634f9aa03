package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// status shows who holds a lock that "redlock run" took in another
// process: its host, pid, command (the program's name, not its
// arguments), start time and age, and the fence; per instance the
// metadata, the fencing counter and the round-trip time. The metadata goes
// with the lock.
func TestStatusShowsRunHolder(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ctx := testCtx(t)
	before := time.Now()
	p := startBinary(t, nil, args(a("run", "-n", "--ttl", "60s"), redisFlags(servers),
		a("nightly", "--", "sh", "-c", holdScript+" # secret-argument", "sh", dir, "a"))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started.a")) })
	for _, s := range servers { // run returned from Lock at quorum: the last key may lag
		waitFor(t, s.String()+" to hold the metadata", func() bool { return s.Do(t, "GET", "{nightly}:redlock-meta") != "(nil)" })
	}
	// So may the fence round's counter, which follows the acquisition and
	// returns at quorum too: wait until every instance holds one value.
	waitFor(t, "the fencing counter on every instance", func() bool {
		v := servers[0].Do(t, "GET", "{nightly}:redlock-fence")
		for _, s := range servers[1:] {
			if s.Do(t, "GET", "{nightly}:redlock-fence") != v {
				return false
			}
		}
		return v != "(nil)"
	})

	r := cli(ctx, args(a("status", "--json"), redisFlags(servers), a("nightly"))...)
	if r.code != 0 {
		t.Fatalf("status: %v", r)
	}
	rs := statusJSONOf(t, r).Resources[0]
	host, _ := os.Hostname()
	h := rs.HolderInfo
	if rs.Verdict != verdictHeld || h == nil {
		t.Fatalf("status --json: %+v; want held, with holder_info\n%v", rs, r)
	}
	started, err := time.Parse(time.RFC3339Nano, h.Started)
	if h.Host != host || h.PID != p.cmd.Process.Pid || h.Command != "sh" || err != nil ||
		started.Before(before.Truncate(time.Second)) || started.After(time.Now()) || h.AgeMillis < 0 {
		t.Errorf("holder_info %+v; want host %q, pid %d, command sh, started after %v (%v)", h, host, p.cmd.Process.Pid, before, err)
	}
	if strings.Contains(rs.Metadata, "secret-argument") {
		t.Errorf("the metadata carries the command's arguments: %q", rs.Metadata)
	}
	counter, _ := strconv.ParseUint(servers[0].Do(t, "GET", "{nightly}:redlock-fence"), 10, 64)
	if rs.Fence == 0 || rs.Fence != counter {
		t.Errorf("fence %d, the counter is %d", rs.Fence, counter)
	}
	for i, is := range rs.Instances {
		if is.Metadata != rs.Metadata || is.Fence != rs.Fence || is.RTTMicros <= 0 {
			t.Errorf("instance %d: %+v; want the holder's metadata and fence, and an RTT", i, is)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(rs.Metadata), &raw); err != nil || len(raw) != 4 {
		t.Errorf("metadata %q: want a JSON object of 4 fields (%v)", rs.Metadata, err)
	}

	r = cli(ctx, args(a("status"), redisFlags(servers), a("nightly"))...)
	want := fmt.Sprintf("holder: host %s, pid %d, command sh, started %s (", quoteIfOdd(host), p.cmd.Process.Pid, h.Started)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, fmt.Sprintf("fence %d", counter)) ||
		strings.Count(r.stdout, "rtt ") != 3 {
		t.Errorf("status: want %q, the fence and each instance's rtt:\n%v", want, r)
	}

	touch(t, filepath.Join(dir, "release"))
	if code := p.wait(t); code != 0 {
		t.Fatalf("run exited %d; stderr:\n%s", code, p.stderr.String())
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) != 0 {
			t.Errorf("%s: keys left after run: %v", s, keys)
		}
	}
}

// --metadata replaces the default: status shows it raw; ” stores none;
// over 4096 bytes it is a usage error and nothing is sent.
func TestRunMetadataFlag(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ctx := testCtx(t)
	ch := cliAsync(ctx, args(a("run", "-n", "--metadata", "deploy by alice"), patientFlags(servers),
		a("deploy", "--", "sh", "-c", holdScript, "sh", dir, "a"))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started.a")) })
	r := cli(ctx, args(a("status", "--json"), patientFlags(servers), a("deploy"))...)
	if rs := statusJSONOf(t, r).Resources[0]; rs.Metadata != "deploy by alice" || rs.HolderInfo != nil || rs.Fence == 0 {
		t.Errorf("status --json: %+v", rs)
	}
	r = cli(ctx, args(a("status"), patientFlags(servers), a("deploy"))...)
	if !strings.Contains(r.stdout, `holder: metadata "deploy by alice", fence `) {
		t.Errorf("status: %v", r)
	}
	touch(t, filepath.Join(dir, "release"))
	if r := await(t, ch); r.code != 0 {
		t.Fatalf("run: %v", r)
	}

	dir = t.TempDir() // a fresh "release" file
	ch = cliAsync(ctx, args(a("run", "-n", "--metadata", ""), patientFlags(servers),
		a("bare", "--", "sh", "-c", holdScript, "sh", dir, "b"))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started.b")) })
	for _, s := range servers {
		if got := s.Do(t, "EXISTS", "{bare}:redlock-meta"); got != "0" {
			t.Errorf("%s: --metadata '' stored metadata", s)
		}
	}
	r = cli(ctx, args(a("status", "--json"), patientFlags(servers), a("bare"))...)
	if rs := statusJSONOf(t, r).Resources[0]; rs.Verdict != verdictHeld || rs.Metadata != "" || rs.HolderInfo != nil {
		t.Errorf("status --json without metadata: %+v", rs)
	}
	if strings.Contains(cli(ctx, args(a("status"), patientFlags(servers), a("bare"))...).stdout, "metadata") {
		t.Errorf("status shows metadata that is not there")
	}
	touch(t, filepath.Join(dir, "release"))
	if r := await(t, ch); r.code != 0 {
		t.Fatalf("run: %v", r)
	}

	calls := scriptCalls(t, servers[0])
	r = cli(ctx, args(a("run", "-n", "--metadata", strings.Repeat("x", 4097)), patientFlags(servers), a("big", "--", "true"))...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--metadata is 4097 bytes") {
		t.Errorf("run with 4097 bytes of metadata: %v", r)
	}
	if scriptCalls(t, servers[0]) != calls {
		t.Errorf("a usage error sent commands")
	}

	// A key with a '}' but no hash tag cannot carry metadata: run stores
	// none by default, and --metadata is a usage error.
	if r := cli(ctx, args(a("run", "-n"), patientFlags(servers), a("odd}name", "--", "true"))...); r.code != 0 {
		t.Errorf("run on odd}name: %v", r)
	}
	if r := cli(ctx, args(a("run", "-n", "--metadata", "x"), patientFlags(servers), a("odd}name", "--", "true"))...); r.code != exitUsage {
		t.Errorf("run --metadata on odd}name: %v", r)
	}
}

// run -v logs how long the acquisition took and after how many attempts,
// and each extension.
func TestRunVerboseLogsAcquisitionAndExtensions(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	ctx := testCtx(t)
	ch := cliAsync(ctx, args(a("run", "-v", "-n", "--ttl", "2s"), redisFlags(servers),
		a("verbose", "--", "sh", "-c", holdScript, "sh", dir, "a"))...)
	waitFor(t, "the command to start", func() bool { return exists(filepath.Join(dir, "started.a")) })
	// The lease only runs down, but for an extension: wait for one. (First
	// for the key on servers[0]: run returned from Lock at quorum, and a
	// PTTL of -2 read before the key lands there would pass for one.)
	waitFor(t, "the key on "+servers[0].String(), func() bool { return pttl(t, servers[0], "verbose") > 0 })
	p0 := pttl(t, servers[0], "verbose")
	waitFor(t, "an extension", func() bool { return pttl(t, servers[0], "verbose") > p0 })
	touch(t, filepath.Join(dir, "release"))
	r := await(t, ch)
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	for _, want := range []string{`redlock: acquired "verbose" in `, " after 1 attempt (fence ", `redlock: extended "verbose" by 2s in `} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("run -v: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// parseHolder takes run's JSON only.
func TestParseHolder(t *testing.T) {
	t.Parallel()
	good := runMetadata("/usr/bin/make", time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC))
	h, started, ok := parseHolder(good)
	if !ok || h.Command != "make" || h.PID != os.Getpid() || !started.Equal(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("parseHolder(%s) = %+v, %v, %v", good, h, started, ok)
	}
	for _, bad := range []string{"", "deploy by alice", `{"host":"h"}`, `{"host":"h","pid":"1","command":"c","started":"2026-01-01T00:00:00Z"}`,
		`{"host":"h","pid":1,"command":"c","started":"yesterday"}`, `[1]`} {
		if _, _, ok := parseHolder(bad); ok {
			t.Errorf("parseHolder(%q) accepted it", bad)
		}
	}
}
