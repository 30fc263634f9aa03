package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redlock-go/redlock/internal/redistest"
)

// Three runs with --permits 2 and -n: exactly two run their command, the
// third exits with the conflict code without running it; status --permits
// shows 2/2 held while they run and 0/2 after, and a run with fewer
// permits than the holders use is told of the mismatch.
func TestRunPermitsTwoOfThree(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	dir := t.TempDir()
	start := func(name string) *proc {
		return startBinary(t, nil, args(a("run", "-n", "--permits", "2", "--ttl", "5s"), redisFlags(servers),
			a("pool", "--", "sh", "-c", holdScript+`; echo "$REDLOCK_RESOURCE" > "$d/res.$2"`, "sh", dir, name))...)
	}
	procs := map[string]*proc{"a": start("a"), "b": start("b"), "c": start("c")}
	var loser string
	waitFor(t, "one of the three to exit", func() bool {
		for name, p := range procs {
			if p.exited() {
				loser = name
				return true
			}
		}
		return false
	})
	if code := procs[loser].wait(t); code != exitConflict {
		t.Fatalf("loser %s exited %d, want %d; stderr:\n%s", loser, code, exitConflict, procs[loser].stderr.String())
	}
	delete(procs, loser)
	for name := range procs {
		waitFor(t, name+"'s command to start", func() bool { return exists(filepath.Join(dir, "started."+name)) })
	}
	if exists(filepath.Join(dir, "started."+loser)) {
		t.Fatalf("three commands ran with 2 permits")
	}

	r := cli(ctx, args(a("status", "--permits", "2"), redisFlags(servers), a("pool"))...)
	if r.code != 0 || !strings.Contains(r.stdout, `"pool": semaphore, 2/2 permits held`) || !strings.Contains(r.stdout, "{pool}:redlock-slot:") {
		t.Errorf("status --permits 2 while two run: %v", r)
	}
	r = cli(ctx, args(a("status", "--permits", "1", "--json"), redisFlags(servers), a("pool"))...)
	var doc semaphoresJSON
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Semaphores) != 1 {
		t.Fatalf("status --permits 1 --json: %v (%v)", r, err)
	}
	if s := doc.Semaphores[0]; s.Held != 1 || s.Permits != 1 || !s.Beyond || len(s.Slots) != 1 || s.Slots[0].Holder == "" {
		t.Errorf("status --permits 1 --json while two run: %+v", s)
	}
	// A run that says 1 permit finds its slot and slot 1 held: a mismatch.
	r = cli(ctx, args(a("run", "-n", "--permits", "1"), redisFlags(servers), a("pool", "--", "true"))...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "permits mismatch") {
		t.Errorf("run --permits 1 beside holders of 2: %v", r)
	}

	touch(t, filepath.Join(dir, "release"))
	for name, p := range procs {
		if code := p.wait(t); code != 0 {
			t.Errorf("%s exited %d; stderr:\n%s", name, code, p.stderr.String())
		}
		if b, err := readFile(filepath.Join(dir, "res."+name)); err != nil || !strings.HasPrefix(b, "{pool}:redlock-slot:") {
			t.Errorf("%s: REDLOCK_RESOURCE %q (%v), want its slot", name, b, err)
		}
	}
	r = cli(ctx, args(a("status", "--permits", "2"), redisFlags(servers), a("pool"))...)
	if r.code != 0 || !strings.Contains(r.stdout, `"pool": semaphore, 0/2 permits held`) {
		t.Errorf("status --permits 2 after: %v", r)
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) != 0 {
			t.Errorf("%s: keys left: %v", s, keys)
		}
	}
}

// --permits outside 1..MaxPermits is a usage error, for run and status.
func TestPermitsUsage(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, argv := range [][]string{
		a("run", "--redis", "localhost:1", "--permits", "0", "r", "--", "true"),
		a("run", "--redis", "localhost:1", "--permits", "-1", "r", "--", "true"),
		a("run", "--redis", "localhost:1", "--permits", "100000", "r", "--", "true"),
		a("status", "--redis", "localhost:1", "--permits", "-2", "r"),
	} {
		if r := cli(ctx, argv...); r.code != exitUsage || !strings.Contains(r.stderr, "--permits") {
			t.Errorf("%q: %v", argv, r)
		}
	}
}

// readFile returns the content of path without surrounding white space.
func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
