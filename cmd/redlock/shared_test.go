package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redlock-go/redlock/internal/redistest"
)

// "run --shared" holders share RESOURCE; a plain (exclusive) run is refused
// while they hold, and refuses them while it holds, as flock -x and -s.
// status shows the readers with their holder description.
func TestRunSharedExcludesExclusive(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	dir := t.TempDir()
	// holdScript with the fence the reader saw.
	const readerScript = sh + `printf '%s' "$REDLOCK_FENCE" > "$d/fence.$2"; touch "$d/started.$2"; waitfile "$d/release"`
	readers := map[string]*proc{}
	for _, name := range []string{"r1", "r2"} {
		readers[name] = startBinary(t, nil, args(a("run", "--shared", "-n", "--ttl", "30s"), patientFlags(servers),
			a("shelf", "--", "sh", "-c", readerScript, "sh", dir, name))...)
	}
	for name, p := range readers {
		waitFor(t, "reader "+name+" to run", func() bool {
			if p.exited() {
				t.Fatalf("reader %s exited %d; stderr:\n%s", name, p.code, p.stderr.String())
			}
			return exists(filepath.Join(dir, "started."+name))
		})
		if b, err := os.ReadFile(filepath.Join(dir, "fence."+name)); err != nil || string(b) != "0" {
			t.Fatalf("reader %s: REDLOCK_FENCE %q (%v), want 0 (readers have no fencing token)", name, b, err)
		}
	}
	if r := cli(ctx, args(a("run", "-n"), patientFlags(servers), a("shelf", "--", "sh", "-c", `touch "$1/writer-ran"`, "sh", dir))...); r.code != exitConflict {
		t.Fatalf("exclusive run while readers hold: %v, want exit %d", r, exitConflict)
	}
	if exists(filepath.Join(dir, "writer-ran")) {
		t.Fatal("the exclusive command ran while readers held")
	}

	r := cli(ctx, args(a("status", "--json"), patientFlags(servers), a("shelf"))...)
	if r.code != 0 {
		t.Fatalf("status: %v", r)
	}
	st := statusJSONOf(t, r)
	rs := st.Resources[0]
	if rs.Verdict != verdictShared || len(rs.Readers) != 2 || rs.Holder != "" {
		t.Fatalf("status while two readers hold: %+v", rs)
	}
	for _, rd := range rs.Readers {
		if rd.Votes < st.Quorum || rd.TTLMillis <= 0 || rd.HolderInfo == nil || rd.HolderInfo.Command != "sh" {
			t.Fatalf("reader in status: %+v", rd)
		}
	}
	if rs.WriterWaiting == 0 {
		t.Fatalf("status after a refused exclusive run: writer_waiting 0, want the mark it left: %+v", rs)
	}
	text := cli(ctx, args(a("status"), patientFlags(servers), a("shelf"))...)
	if text.code != 0 || !strings.Contains(text.stdout, `"shelf": shared by 2 readers`) || strings.Count(text.stdout, "  reader ") != 2 {
		t.Fatalf("status text while two readers hold: %v", text)
	}

	touch(t, filepath.Join(dir, "release"))
	for name, p := range readers {
		if code := p.wait(t); code != 0 {
			t.Fatalf("reader %s exited %d; stderr:\n%s", name, code, p.stderr.String())
		}
	}

	// Now the exclusive side holds; a shared run is refused.
	wdir := t.TempDir()
	writer := startBinary(t, nil, args(a("run", "-n", "--ttl", "30s"), patientFlags(servers),
		a("shelf", "--", "sh", "-c", holdScript, "sh", wdir, "w"))...)
	waitFor(t, "the exclusive command to run", func() bool {
		if writer.exited() {
			t.Fatalf("exclusive run exited %d; stderr:\n%s", writer.code, writer.stderr.String())
		}
		return exists(filepath.Join(wdir, "started.w"))
	})
	if r := cli(ctx, args(a("run", "-s", "-n"), patientFlags(servers), a("shelf", "--", "sh", "-c", `touch "$1/reader-ran"`, "sh", wdir))...); r.code != exitConflict {
		t.Fatalf("shared run while the exclusive one holds: %v, want exit %d", r, exitConflict)
	}
	if exists(filepath.Join(wdir, "reader-ran")) {
		t.Fatal("the shared command ran while the exclusive one held")
	}
	if r := cli(ctx, args(a("status", "--json"), patientFlags(servers), a("shelf"))...); r.code != 0 || statusJSONOf(t, r).Resources[0].Verdict != verdictHeld {
		t.Fatalf("status while the exclusive run holds: %v", r)
	}
	touch(t, filepath.Join(wdir, "release"))
	if code := writer.wait(t); code != 0 {
		t.Fatalf("exclusive run exited %d; stderr:\n%s", code, writer.stderr.String())
	}
	for _, s := range servers {
		if keys := lockKeys(t, s); len(keys) > 1 || (len(keys) == 1 && !strings.HasSuffix(keys[0], ":redlock-wwait")) {
			t.Fatalf("%s keeps %q", s, keys)
		}
	}
}

// A resource whose key cannot carry companion keys ('}' without a hash
// tag) has no read-write lock: --shared is a usage error, a plain run
// still works (the mutex).
func TestRunSharedOddKey(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 1)
	ctx := testCtx(t)
	if r := cli(ctx, args(a("run", "--shared", "-n", "--metadata", ""), redisFlags(servers), a("a}b", "--", "true"))...); r.code != exitUsage {
		t.Fatalf("run --shared a}b: %v, want exit %d", r, exitUsage)
	}
	if r := cli(ctx, args(a("run", "-n"), redisFlags(servers), a("a}b", "--", "true"))...); r.code != 0 {
		t.Fatalf("run a}b: %v", r)
	}
}
