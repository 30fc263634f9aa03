package redlock_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// scriptFile reads an embedded script's source from the package directory.
func scriptFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("scripts", name+".lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// managerScriptSHAs returns the SHA1 of every script the Manager runs (all
// of scripts/*.lua; the negative controls' live in scripts/controls/).
func managerScriptSHAs(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("scripts", "*.lua"))
	if err != nil || len(files) == 0 {
		t.Fatalf("scripts/*.lua: %v, %d files", err, len(files))
	}
	out := make(map[string]string)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".lua")
		sum := sha1.Sum([]byte(scriptFile(t, name)))
		out[name] = hex.EncodeToString(sum[:])
	}
	return out
}

// missingScripts lists the Manager's scripts that s does not have cached.
func missingScripts(t *testing.T, s *redistest.Server, shas map[string]string) []string {
	t.Helper()
	var missing []string
	for name, sha := range shas {
		if got := s.Do(t, "SCRIPT", "EXISTS", sha); got != "1" {
			missing = append(missing, name)
		}
	}
	return missing
}

// TestQueuedReleaseFindsItsScript: calls to paused instances stay queued
// on their connection after the caller stopped waiting; when the instances
// resume, the queued release must find its script (a NOSCRIPT there gets
// no EVAL fallback and leaves the key for a whole TTL).
//
// A fresh Manager connects (IsLocked: no lock is ever taken before the
// pause); then the script caches are flushed and the acquisition script
// alone is cached again, as another process's acquisition would leave
// them; a call meets NOSCRIPT (the Manager must load again). A majority is
// paused and Lock (LockMany) fails: its acquisitions queue, then the
// releases of the failed attempt. The instances resume and run them: the
// releases must remove the keys well before the 30 s TTL. With every
// script loaded before the first EVALSHA, the load queues ahead of them on
// the same connection.
func TestQueuedReleaseFindsItsScript(t *testing.T) {
	for _, many := range []bool{false, true} {
		name, acquire := "Lock", "acquire"
		if many {
			name, acquire = "LockMany", "acquire_many"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			servers := redistest.Start(t, 3)
			const ttl = 30 * time.Second
			m := newManager(t, servers, redlock.Config{NodeTimeout: 250 * time.Millisecond, RetryCount: 1})
			if _, err := m.IsLocked(ctx, "warm-up"); err != nil {
				t.Fatal(err)
			}
			src := scriptFile(t, acquire)
			for _, s := range servers {
				waitFor(t, 5*time.Second, s.String()+" to answer", func() bool { return commandCalls(t, s, "evalsha") >= 1 })
				s.Do(t, "SCRIPT", "FLUSH")
				s.Do(t, "SCRIPT", "LOAD", src)
			}
			if _, err := m.IsLocked(ctx, "warm-up"); err != nil {
				t.Fatal(err)
			}
			paused := servers[1:]
			before := make([]int, len(paused))
			for i, s := range paused {
				waitFor(t, 5*time.Second, s.String()+" to fall back to EVAL", func() bool { return commandCalls(t, s, "eval") >= 1 })
				before[i] = commandCalls(t, s, "evalsha")
				s.Pause(t)
			}
			keys := []string{"queued-a", "queued-b"}
			short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
			var err error
			if many {
				_, err = m.LockMany(short, keys, redlock.TTL(ttl))
			} else {
				keys = keys[:1]
				_, err = m.Lock(short, keys[0], redlock.TTL(ttl))
			}
			cancel()
			if !errors.Is(err, redlock.ErrUnavailable) {
				t.Fatalf("with a majority paused: %v, want ErrUnavailable", err)
			}
			// Let the failed attempt's releases queue too (they follow the
			// acquisitions' deadline).
			time.Sleep(time.Second)
			// The queued acquisition and release ran (then the keys must
			// be gone), or the connection dropped them (then the test
			// shows nothing: fail).
			resumeAndWantDrained(t, servers, paused, before, 2, keys...)
		})
	}
}

// TestDirectCallTimeoutEndsDirectCalls: at N=1 a lock's calls run on the
// caller's goroutine, synchronously on their own connection (directClient).
// A synchronous call that times out closes its connection and is dropped;
// after the first one, every call is pipelined, so a release that times out
// against a paused instance still reaches it when it resumes (the key does
// not stay for its 30 s TTL).
func TestDirectCallTimeoutEndsDirectCalls(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	m := newManager(t, servers, redlock.Config{NodeTimeout: 200 * time.Millisecond, RetryCount: 1})
	l, err := m.Lock(ctx, "a", redlock.TTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if on := redlock.DirectCallsOn(m); !on[0] {
		t.Fatalf("direct calls on = %v after a lock, want [true]", on)
	}
	// The first call went to the pipelined connection while the one of
	// the direct calls was made (see connGate).
	waitFor(t, 10*time.Second, "the direct calls' connection", func() bool { return redlock.DirectConnected(m)[0] })
	s.Pause(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = m.Lock(short, "b", redlock.TTL(time.Second))
	cancel()
	if err == nil {
		t.Fatal("Lock with the only instance paused succeeded")
	}
	if on := redlock.DirectCallsOn(m); on[0] {
		t.Fatalf("direct calls on = %v after a timed-out direct call, want [false]", on)
	}
	s.Resume(t)
	// One answered call, so that the instance is no longer known down and
	// the next call runs on the caller's goroutine again.
	if ok, err := m.IsLocked(ctx, "a"); err != nil || !ok {
		t.Fatalf("IsLocked(a) = (%v, %v), want (true, nil)", ok, err)
	}
	before := commandCalls(t, s, "evalsha")
	s.Pause(t)
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	err = l.Unlock(short)
	cancel()
	if err == nil {
		t.Fatal("Unlock with the only instance paused succeeded")
	}
	resumeAndWantDrained(t, servers, servers, []int{before}, 1, "a")
}

// TestDirectCallNotPastCallersDeadline: a direct call is bounded by its
// round's deadline, not by the caller's ctx, so a caller whose ctx ends
// earlier is served by a worker (its collect returns at the ctx's
// deadline): against a paused instance the synchronous connection is not
// the one that times out, and direct calls stay on.
func TestDirectCallNotPastCallersDeadline(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second, RetryCount: 1})
	if ok, err := m.IsLocked(ctx, "a"); err != nil || ok {
		t.Fatalf("IsLocked(a) = (%v, %v), want (false, nil)", ok, err)
	}
	servers[0].Pause(t)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err := m.Lock(short, "a", redlock.TTL(10*time.Second))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with the only instance paused: %v, want context.DeadlineExceeded", err)
	}
	if on := redlock.DirectCallsOn(m); !on[0] {
		t.Fatalf("direct calls on = %v after a caller's deadline, want [true] (the call went direct)", on)
	}
	servers[0].Resume(t)
}

// TestQueuedUnlockAfterNoScript: a held lock, then the script caches are
// flushed and a call meets NOSCRIPT (the Manager must load again); with a
// majority paused, Unlock gives up while its releases queue. The load on
// the paused instances does not answer either: the call must not spend its
// whole deadline waiting for it, or its release would never be sent and
// the key would stay for the whole TTL.
func TestQueuedUnlockAfterNoScript(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 250 * time.Millisecond, RetryCount: 1})
	l, err := m.Lock(ctx, "held", redlock.TTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantKeyEverywhere(t, servers, "held", l.Token(), 30*time.Second)
	for _, s := range servers {
		s.Do(t, "SCRIPT", "FLUSH")
	}
	if ok, err := m.IsLocked(ctx, "held"); err != nil || !ok {
		t.Fatalf("IsLocked = (%v, %v), want (true, nil)", ok, err)
	}
	paused := servers[1:]
	before := make([]int, len(paused))
	for i, s := range paused {
		waitFor(t, 5*time.Second, s.String()+" to fall back to EVAL", func() bool { return commandCalls(t, s, "eval") >= 1 })
		before[i] = commandCalls(t, s, "evalsha")
		s.Pause(t)
	}
	short, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	err = l.Unlock(short)
	cancel()
	if err == nil {
		t.Fatal("Unlock with a majority paused succeeded")
	}
	time.Sleep(500 * time.Millisecond)
	resumeAndWantDrained(t, servers, paused, before, 1, "held")
}

// resumeAndWantDrained resumes the paused servers, waits until each has run
// at least queued more EVALSHA than before[i] (the commands that queued
// while it was paused; a connection that dropped them fails here), then
// until no server holds any of keys (a queued release that failed, or was
// never sent, leaves its key for the whole TTL).
func resumeAndWantDrained(t *testing.T, servers, paused []*redistest.Server, before []int, queued int, keys ...string) {
	t.Helper()
	for _, s := range paused {
		s.Resume(t)
	}
	for i, s := range paused {
		waitFor(t, 5*time.Second, s.String()+" to run the queued calls", func() bool {
			return commandCalls(t, s, "evalsha") >= before[i]+queued
		})
	}
	for _, s := range servers {
		for _, k := range keys {
			waitFor(t, 5*time.Second, s.String()+" to drop "+k+" (a queued release failed or was never sent?)", func() bool {
				return get(t, s, k) == "(nil)"
			})
		}
		t.Logf("%s: %s", s, commandStatsLine(t, s, "evalsha"))
	}
}

// commandStatsLine returns the INFO commandstats line of cmd on s.
func commandStatsLine(t *testing.T, s *redistest.Server, cmd string) string {
	t.Helper()
	for _, line := range strings.Split(s.Do(t, "INFO", "commandstats"), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "cmdstat_"+cmd+":") {
			return line
		}
	}
	return "cmdstat_" + cmd + ": none"
}

// TestScriptsLoadedOnFirstContact: a Manager's first call to an instance
// loads every script there, through either adapter (the rueidis clients of
// New, a go-redis client); after SCRIPT FLUSH, calls still work (EVAL
// fallback) and every script is loaded again.
func TestScriptsLoadedOnFirstContact(t *testing.T) {
	shas := managerScriptSHAs(t)
	for _, wire := range []string{"rueidis", "go-redis"} {
		t.Run(wire, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			servers := redistest.Start(t, 3)
			var m *redlock.Manager
			if wire == "rueidis" {
				m = newManager(t, servers, redlock.Config{})
			} else {
				clients := make([]redlock.Client, len(servers))
				for i, s := range servers {
					rc := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, DisableIdentity: true, MaxRetries: -1})
					t.Cleanup(func() { rc.Close() })
					clients[i] = goredis.New(rc)
				}
				var err error
				m, err = redlock.NewFromClients(clients, redlock.Config{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { closeQuietly(t, m) })
			}
			cycle := func(res string) {
				t.Helper()
				l, err := m.Lock(ctx, res, redlock.TTL(10*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			cycle("first")
			for _, s := range servers {
				waitFor(t, 5*time.Second, s.String()+" to answer the first calls", func() bool { return commandCalls(t, s, "evalsha") >= 2 })
				if missing := missingScripts(t, s, shas); len(missing) > 0 {
					t.Errorf("%s after the first lock: scripts not loaded: %q", s, missing)
				}
				if n := commandCalls(t, s, "eval"); n != 0 {
					t.Errorf("%s: %d EVAL calls, want none (the scripts were loaded first)", s, n)
				}
			}
			loads := commandCalls(t, servers[0], "script|load")
			if loads < len(shas) {
				t.Errorf("%s: %d SCRIPT LOAD calls, want at least %d", servers[0], loads, len(shas))
			}
			// A flushed script cache: the next call falls back to EVAL,
			// the one after reloads everything.
			servers[0].Do(t, "SCRIPT", "FLUSH")
			cycle("after-flush")
			cycle("after-flush-2")
			// Unlock returns at quorum: servers[0] may answer last.
			waitFor(t, 5*time.Second, servers[0].String()+" to load every script again after SCRIPT FLUSH", func() bool {
				return len(missingScripts(t, servers[0], shas)) == 0 &&
					commandCalls(t, servers[0], "script|load") >= loads+len(shas)
			})
			wantNoKeys(t, servers)
		})
	}
}
