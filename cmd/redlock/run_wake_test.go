package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// foreignRelease is redsync's (and aioredlock's) release: delete the key
// if it holds the token, publishing nothing.
const foreignRelease = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`

// run -w behind a holder that is not redlock (a redsync-style key, no
// release message) acquires as soon as the holder releases: the retry
// delay (30s) is longer than -w (20s), so the only way to the lock within
// -w is a wake-up from the key watch.
func TestRunWaitWokenByForeignRelease(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	const token = "redsync-token"
	for _, s := range servers {
		s.Do(t, "SET", "job", token, "PX", "60000")
	}
	before := scriptCalls(t, servers[0])
	waiter := startBinary(t, nil, args(a("run", "-w", "20s", "--retry-delay", "30s-30s"), redisFlags(servers),
		a("job", "--", "sh", "-c", `touch "$1/waiter-ran"`, "sh", dir))...)
	waitFor(t, "the waiter to try the lock", func() bool { return scriptCalls(t, servers[0]) > before })
	if waiter.exited() {
		t.Fatalf("the waiter exited (%d) while the lock was held; stderr:\n%s", waiter.code, waiter.stderr.String())
	}
	for _, s := range servers {
		if got := s.Do(t, "EVAL", foreignRelease, "1", "job", token); got != "1" {
			t.Fatalf("foreign release on %v: %q", s, got)
		}
	}
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("waiter exited %d; stderr:\n%s", code, waiter.stderr.String())
	}
	if !exists(filepath.Join(dir, "waiter-ran")) {
		t.Fatal("the waiter's command did not run")
	}
}

// run --permits behind a permit held by a holder that vanished without a
// release message (its slot key deleted, as a redsync-style unlock or an
// operator would): the retry delay (30s) is longer than -w (20s), so the
// only way to the permit within -w is a wake-up from the key watch on the
// slot (Semaphore.AwaitRelease).
func TestRunPermitsWokenByForeignRelease(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	dir := t.TempDir()
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	holder, err := redlock.New(addrs, redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	h, err := holder.Semaphore("job", 1).Acquire(context.Background(), redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	before := scriptCalls(t, servers[0])
	waiter := startBinary(t, nil, args(a("run", "--permits", "1", "-w", "20s", "--retry-delay", "30s-30s"), redisFlags(servers),
		a("job", "--", "sh", "-c", `touch "$1/waiter-ran"`, "sh", dir))...)
	waitFor(t, "the waiter to try the permit", func() bool { return scriptCalls(t, servers[0]) > before+1 })
	if waiter.exited() {
		t.Fatalf("the waiter exited (%d) while the permit was held; stderr:\n%s", waiter.code, waiter.stderr.String())
	}
	for _, s := range servers {
		if got := s.Do(t, "EVAL", foreignRelease, "1", h.Resource(), h.Token()); got != "1" {
			t.Fatalf("foreign release on %v: %q", s, got)
		}
	}
	if code := waiter.wait(t); code != 0 {
		t.Fatalf("waiter exited %d; stderr:\n%s", code, waiter.stderr.String())
	}
	if !exists(filepath.Join(dir, "waiter-ran")) {
		t.Fatal("the waiter's command did not run")
	}
}
