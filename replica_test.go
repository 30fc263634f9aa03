package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// replicasOf starts n replicas of master and waits until each has synced.
func replicasOf(t *testing.T, master *redistest.Server, n int) []*redistest.Server {
	t.Helper()
	out := make([]*redistest.Server, n)
	for i := range out {
		out[i] = redistest.StartWith(t, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", fmt.Sprint(master.Port())}})
	}
	for _, r := range out {
		waitFor(t, 20*time.Second, r.String()+" in sync with its master", func() bool {
			return strings.Contains(r.Do(t, "INFO", "replication"), "master_link_status:up")
		})
	}
	return out
}

// newMisconfiguredManager is a Manager over master and its replicas (one
// attempt per call), closed in t.Cleanup. It keeps the locks Attach gave
// it, whose release the replicas refuse too: its Close reports that, which
// is not what the tests check, so the error is ignored. Its NodeTimeout
// (5 s, not the default 500 ms) lets every instance answer on a loaded
// machine: a refusal returns only once both replicas' READONLY are in,
// unless a replica's call times out first.
func newMisconfiguredManager(t *testing.T, master *redistest.Server, replicas []*redistest.Server) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(addrs(append([]*redistest.Server{master}, replicas...)), redlock.Config{RetryCount: 1, NodeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// replOffset is the field (master_repl_offset, slave_repl_offset) of s's
// INFO replication.
func replOffset(t *testing.T, s *redistest.Server, field string) int64 {
	t.Helper()
	for _, line := range strings.Split(s.Do(t, "INFO", "replication"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s: INFO replication %s: %v", s, field, err)
			}
			return n
		}
	}
	t.Fatalf("%s: INFO replication has no %s", s, field)
	return 0
}

// TestReplicaNeverVotesYes: a Manager misconfigured over a master and two
// of its replicas must never be granted (or extend) a lock by that one
// master. The replicas hold the lock key with our token once the master's
// write has replicated; every script that finds its own token there and
// would leave the key as it is (a re-lock by token, or an extension, asking
// for no longer a lease than the key has) must still write, so that a
// replica answers READONLY instead of a yes.
//
// Seen failing before the scripts' refresh paths always wrote: every case
// but Extend-longer was granted by the master and its two replicas.
func TestReplicaNeverVotesYes(t *testing.T) {
	ctx := testCtx(t)
	master := redistest.Start(t, 1)[0]
	replicas := replicasOf(t, master, 2)
	// 5 s NodeTimeout: the holds on the master alone must not time out on
	// a loaded machine (the test is about votes, not deadlines).
	one := newManager(t, []*redistest.Server{master}, redlock.Config{RetryCount: 1, NodeTimeout: 5 * time.Second})
	mis := newMisconfiguredManager(t, master, replicas)
	const tok = "replica-test-token-0123456789abcdef"
	long, short := redlock.TTL(30*time.Second), redlock.TTL(10*time.Second)

	// replicated waits until both replicas have every write of the master
	// so far (WAIT would not do: it waits for the calling connection's own
	// writes, and Do's connection wrote nothing).
	replicated := func(t *testing.T) {
		t.Helper()
		want := replOffset(t, master, "master_repl_offset")
		for _, r := range replicas {
			waitFor(t, 20*time.Second, r.String()+" at the master's offset", func() bool {
				return replOffset(t, r, "slave_repl_offset") >= want
			})
		}
	}
	// wantRefused checks that err is a refusal in which both replicas
	// answered READONLY.
	wantRefused := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s over a master and its replicas: granted, want READONLY from both replicas", what)
		}
		readonly := 0
		for _, ie := range instanceErrors(err) {
			if ie.Err != nil && strings.HasPrefix(ie.Err.Error(), "READONLY ") {
				readonly++
			}
		}
		if readonly != 2 {
			t.Errorf("%s: %v; want READONLY from both replicas (%d)", what, err, readonly)
		}
		if !errors.Is(err, redlock.ErrRejected) {
			t.Errorf("%s: %v is not ErrRejected", what, err)
		}
	}

	cases := []struct {
		name string
		hold func(t *testing.T, res string) // on the master alone
		try  func(res string) error         // over the master and its replicas
	}{
		{"Lock", func(t *testing.T, res string) {
			if _, err := one.Lock(ctx, res, redlock.Token(tok), long); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.Lock(ctx, res, redlock.Token(tok), short)
			return err
		}},
		{"Lock-metadata", func(t *testing.T, res string) {
			if _, err := one.Lock(ctx, res, redlock.Token(tok), long, redlock.Metadata("m")); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.Lock(ctx, res, redlock.Token(tok), short, redlock.Metadata("m"))
			return err
		}},
		{"LockMany", func(t *testing.T, res string) {
			if _, err := one.LockMany(ctx, []string{res + "-a", res + "-b"}, redlock.Token(tok), long); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.LockMany(ctx, []string{res + "-a", res + "-b"}, redlock.Token(tok), short)
			return err
		}},
		{"LockMany-fenced", func(t *testing.T, res string) {
			if _, err := one.LockMany(ctx, []string{res + "-a", res + "-b"}, redlock.Token(tok), long, redlock.Fenced()); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.LockMany(ctx, []string{res + "-a", res + "-b"}, redlock.Token(tok), short, redlock.Fenced())
			return err
		}},
		{"Extend-shorter", func(t *testing.T, res string) {
			if _, err := one.Lock(ctx, res, redlock.Token(tok), long); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			l, err := mis.Attach(ctx, res, tok)
			if err != nil {
				return fmt.Errorf("Attach (a read, which replicas answer): %w", err)
			}
			return l.Extend(ctx, 10*time.Second)
		}},
		{"Extend-longer", func(t *testing.T, res string) {
			if _, err := one.Lock(ctx, res, redlock.Token(tok), short); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			l, err := mis.Attach(ctx, res, tok)
			if err != nil {
				return fmt.Errorf("Attach (a read, which replicas answer): %w", err)
			}
			return l.Extend(ctx, 30*time.Second)
		}},
		{"RWMutex.Lock", func(t *testing.T, res string) {
			if _, err := one.RWMutex(res).Lock(ctx, redlock.Token(tok), long); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.RWMutex(res).Lock(ctx, redlock.Token(tok), short)
			return err
		}},
		{"RWMutex.RLock", func(t *testing.T, res string) {
			if _, err := one.RWMutex(res).RLock(ctx, redlock.Token(tok), long); err != nil {
				t.Fatal(err)
			}
		}, func(res string) error {
			_, err := mis.RWMutex(res).RLock(ctx, redlock.Token(tok), short)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := "replica-" + c.name
			c.hold(t, res)
			replicated(t)
			wantRefused(t, c.name, c.try(res))
		})
	}
}

// TestReplicaRefreshKeepsLease: the refresh paths write the key's own
// remaining lease back (they must write, see TestReplicaNeverVotesYes),
// and that write never shortens it: a re-lock or an extension asking for
// less than the key has leaves it at least as long as it was.
func TestReplicaRefreshKeepsLease(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	// 5 s NodeTimeout: the re-lock and the extension must not time out on
	// a loaded machine (the test is about the lease, not deadlines).
	m := newManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
	const tok = "refresh-keeps-lease-token-0123456789"
	l, err := m.Lock(ctx, "keep", redlock.Token(tok), redlock.TTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A re-lock by token for a second, then an extension for a second:
	// the key keeps its hour (a minute of slack for a slow machine).
	if _, err := m.Lock(ctx, "keep", redlock.Token(tok), redlock.TTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, servers[0], "keep"); got < (time.Hour - time.Minute).Milliseconds() {
		t.Errorf("after a re-lock for 1s: PTTL %d ms, want the hour kept", got)
	}
	if err := l.Extend(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := pttl(t, servers[0], "keep"); got < (time.Hour - time.Minute).Milliseconds() {
		t.Errorf("after an extension for 1s: PTTL %d ms, want the hour kept", got)
	}
}
