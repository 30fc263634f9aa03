package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// keyProblems is the ownership checker: it returns what is wrong with key
// on each server, given that it must hold token with a PTTL in (0, maxTTL].
func keyProblems(t *testing.T, servers []*redistest.Server, key, token string, maxTTL time.Duration) []string {
	t.Helper()
	var out []string
	for i, s := range servers {
		if v := s.Do(t, "GET", key); v != token {
			out = append(out, fmt.Sprintf("server %d: GET %q = %q, want the holder's token", i, key, v))
			continue
		}
		p, err := strconv.ParseInt(s.Do(t, "PTTL", key), 10, 64)
		if err != nil || p <= 0 || time.Duration(p)*time.Millisecond > maxTTL {
			out = append(out, fmt.Sprintf("server %d: PTTL %q = %d (%v), want in (0, %v]", i, key, p, err, maxTTL))
		}
	}
	return out
}

func addrs(servers []*redistest.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

func newManager(t *testing.T, servers []*redistest.Server, h *testhooks.Hooks) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(addrs(servers), redlock.Config{NodeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		testhooks.Install(m, h)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// waitClosed waits for ch to close, failing t after a generous deadline.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed after 10s", what)
	}
}

// waitHeldEverywhere waits until every server holds key under token
// ("(nil)": until no server holds key).
func waitHeldEverywhere(t *testing.T, servers []*redistest.Server, key, token string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, s := range servers {
			if s.Do(t, "GET", key) == token {
				n++
			}
		}
		if n == len(servers) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q held under the token on %d of %d servers after 10s", key, n, len(servers))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockEventually retries TryLock until it succeeds (an earlier holder's
// keys must expire first), failing t after a generous deadline.
func lockEventually(t *testing.T, m *redlock.Manager, res string, opts ...redlock.LockOption) *redlock.Lock {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := m.TryLock(context.Background(), res, opts...)
		if err == nil {
			return l
		}
		if !errors.Is(err, redlock.ErrNotAcquired) || time.Now().After(deadline) {
			t.Fatalf("TryLock %q: %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownershipCase sets up A's stale handle and B's lock on res, then lets A
// act. It returns A's error and the ownership checker's findings for B.
type ownershipCase struct {
	name    string
	amnesia bool // A's handle is still valid: the keys were lost (FLUSHALL), not expired
	act     func(a *redlock.Lock) error
}

var ownershipCases = []ownershipCase{
	{"unlock after expiry", false, func(a *redlock.Lock) error { return a.Unlock(context.Background()) }},
	{"extend after expiry", false, func(a *redlock.Lock) error { return a.Extend(context.Background(), time.Minute) }},
	{"unlock of a valid handle after key loss", true, func(a *redlock.Lock) error { return a.Unlock(context.Background()) }},
	{"extend of a valid handle after key loss", true, func(a *redlock.Lock) error { return a.Extend(context.Background(), time.Minute) }},
}

func runOwnership(t *testing.T, c ownershipCase, servers []*redistest.Server, hooksA *testhooks.Hooks) (errA error, problems []string) {
	t.Helper()
	ctx := context.Background()
	res := "own:" + c.name
	mA, mB := newManager(t, servers, hooksA), newManager(t, servers, nil)
	const ttlB = 5 * time.Second
	var a *redlock.Lock
	if c.amnesia {
		var err error
		if a, err = mA.Lock(ctx, res, redlock.TTL(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		// Lock returns once a quorum agreed; let the others set the key
		// too, so that the flush below really removes it everywhere.
		waitHeldEverywhere(t, servers, res, a.Token())
		for _, s := range servers {
			s.Do(t, "FLUSHALL")
		}
		if !a.Valid() {
			t.Fatal("A's handle is not valid any more")
		}
	} else {
		var err error
		if a, err = mA.Lock(ctx, res, redlock.TTL(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, a.Lost(), "A's Lost() after its deadline")
		// B takes the key on every server only once A's key expired on
		// all of them (a quorum suffices for B's Lock; the check below
		// needs every server).
		waitHeldEverywhere(t, servers, res, "(nil)")
	}
	b := lockEventually(t, mB, res, redlock.TTL(ttlB))
	waitHeldEverywhere(t, servers, res, b.Token())
	errA = c.act(a)
	problems = keyProblems(t, servers, res, b.Token(), ttlB)
	if err := b.Unlock(ctx); err != nil && len(problems) == 0 {
		t.Errorf("B's Unlock: %v", err)
	}
	return errA, problems
}

// TestOwnership: A's lock expires (or its keys are lost), B acquires, A
// unlocks or extends: A gets ErrNotHeld and B's key is intact everywhere.
func TestOwnership(t *testing.T) {
	for _, n := range []int{5, 3} {
		servers := redistest.Start(t, n)
		for _, c := range ownershipCases {
			t.Run(fmt.Sprintf("N=%d/%s", n, c.name), func(t *testing.T) {
				errA, problems := runOwnership(t, c, servers, nil)
				if !errors.Is(errA, redlock.ErrNotHeld) {
					t.Errorf("A: got %v, want ErrNotHeld", errA)
				}
				for _, p := range problems {
					t.Errorf("B's key touched: %s", p)
				}
			})
		}
	}
}

// TestOwnershipControl: with unlock by plain DEL (testhooks.PlainDelete),
// the ownership checker must see B's key deleted.
func TestOwnershipControl(t *testing.T) {
	servers := redistest.Start(t, 5)
	for _, c := range ownershipCases {
		if c.name != "unlock after expiry" && c.name != "unlock of a valid handle after key loss" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			_, problems := runOwnership(t, c, servers, &testhooks.Hooks{PlainDelete: true})
			if len(problems) == 0 {
				t.Fatal("plain-DEL unlock left B's key intact: the ownership checker cannot fail")
			}
			t.Logf("detected: %v", problems[0])
		})
	}
}

// TestKeyChecks: the key checkers see a key without a TTL and a key left
// behind.
func TestKeyChecks(t *testing.T) {
	servers := redistest.Start(t, 2)
	k := StartKeySampler(servers, LockKeys, 10*time.Millisecond)
	k.SampleOnce()
	servers[0].Do(t, "SET", "chaos:ttl", "x", "PX", "60000")
	servers[1].Do(t, "SET", "chaos:forever", "x")
	servers[1].Do(t, "SET", "{chaos:r}:redlock-fence", "7") // a fencing counter: no TTL on purpose
	k.SampleOnce()
	samples, vs := k.Stop()
	if samples == 0 || len(vs) == 0 || vs[0].Kind != "key-without-ttl" {
		t.Fatalf("sampler: %d samples, violations %v: want the key without TTL", samples, vs)
	}
	for _, v := range vs {
		if v.Kind != "key-without-ttl" || !containsAll(v.Detail, "chaos:forever") {
			t.Fatalf("unexpected violation %v", v)
		}
	}
	_, left := WaitNoKeys(servers, LockKeys, time.Now().Add(100*time.Millisecond))
	if len(left) != 2 {
		t.Fatalf("WaitNoKeys left %v, want both keys", left)
	}
	servers[0].Do(t, "PEXPIRE", "chaos:ttl", "50")
	servers[1].Do(t, "DEL", "chaos:forever")
	if took, left := WaitNoKeys(servers, LockKeys, time.Now().Add(10*time.Second)); len(left) != 0 {
		t.Fatalf("WaitNoKeys after %v: %v", took, left)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		found := false
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
