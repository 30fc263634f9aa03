package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// holdEverywhere takes resource with a one-minute lease and waits until
// every server holds key (Lock returns at quorum; the last key may land a
// moment later).
func holdEverywhere(t *testing.T, m *redlock.Manager, servers []*redistest.Server, resource, key string, opts ...redlock.LockOption) *redlock.Lock {
	t.Helper()
	l, err := m.Lock(testCtx(t), resource, append([]redlock.LockOption{redlock.TTL(time.Minute)}, opts...)...)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	for _, s := range servers {
		waitFor(t, 30*time.Second, s.String()+" to hold "+key, func() bool { return s.Do(t, "GET", key) == l.Token() })
	}
	return l
}

// checkEndpoints fails unless states name the instances of m, in order.
func checkEndpoints(t *testing.T, m *redlock.Manager, states []redlock.InstanceState) {
	t.Helper()
	eps := m.Endpoints()
	if len(states) != len(eps) {
		t.Fatalf("%d states for %d instances", len(states), len(eps))
	}
	for i, st := range states {
		if st.Endpoint != eps[i] {
			t.Errorf("state %d names %q, Endpoints()[%d] is %q", i, st.Endpoint, i, eps[i])
		}
	}
}

// Inspect reports each instance's own answer: free, held, partially held
// (with a key without expiry and a key of another type), and an instance
// down; it reads the key under KeyPrefix.
func TestInspect(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{KeyPrefix: "locks:", NodeTimeout: 2 * time.Second})
	ctx := testCtx(t)

	states, err := m.Inspect(ctx, "free")
	if err != nil {
		t.Fatalf("Inspect(free): %v", err)
	}
	checkEndpoints(t, m, states)
	for i, st := range states {
		if st.Token != "" || st.TTL != 0 || st.Err != nil {
			t.Errorf("free, instance %d: %+v; want no key", i, st)
		}
	}

	l := holdEverywhere(t, m, servers, "held", "locks:held")
	before := make([]time.Duration, len(servers))
	for i, s := range servers {
		before[i] = pttlOf(t, s, "locks:held")
	}
	states, err = m.Inspect(ctx, "held")
	if err != nil {
		t.Fatalf("Inspect(held): %v", err)
	}
	checkEndpoints(t, m, states)
	for i, st := range states {
		after := pttlOf(t, servers[i], "locks:held")
		if st.Token != l.Token() || st.Err != nil || st.TTL > before[i] || st.TTL < after {
			t.Errorf("held, instance %d: %+v; want token %q and a TTL in [%v, %v]", i, st, l.Token(), after, before[i])
		}
	}

	// Partially held: another token with a TTL, no key, a key without
	// expiry; then a key of another type.
	servers[0].Do(t, "SET", "locks:partial", "other-token", "PX", "30000")
	servers[2].Do(t, "SET", "locks:partial", "no-expiry")
	states, err = m.Inspect(ctx, "partial")
	if err != nil {
		t.Fatalf("Inspect(partial): %v", err)
	}
	if st := states[0]; st.Token != "other-token" || st.TTL <= 0 || st.TTL > 30*time.Second || st.Err != nil {
		t.Errorf("partial, instance 0: %+v", st)
	}
	if st := states[1]; st.Token != "" || st.TTL != 0 || st.Err != nil {
		t.Errorf("partial, instance 1: %+v; want no key", st)
	}
	if st := states[2]; st.Token != "no-expiry" || st.TTL != -time.Millisecond || st.Err != nil {
		t.Errorf("partial, instance 2: %+v; want TTL -1ms (no expiry)", st)
	}
	servers[1].Do(t, "LPUSH", "locks:partial", "x")
	states, err = m.Inspect(ctx, "partial")
	if err != nil {
		t.Fatalf("Inspect(partial): %v", err)
	}
	if st := states[1]; st.Err == nil || st.Token != "" || st.TTL != 0 {
		t.Errorf("partial, instance 1 holding a list: %+v; want an error (WRONGTYPE)", st)
	}
	if states[0].Token != "other-token" || states[2].Token != "no-expiry" {
		t.Errorf("partial: one instance's error changed the others: %+v", states)
	}

	// An instance down: its Err is set, the others answer as before.
	servers[1].Kill(t)
	states, err = m.Inspect(ctx, "held")
	if err != nil {
		t.Fatalf("Inspect(held) with an instance down: %v", err)
	}
	if st := states[1]; st.Err == nil || st.Token != "" {
		t.Errorf("held, instance 1 down: %+v; want Err set", st)
	}
	for _, i := range []int{0, 2} {
		if st := states[i]; st.Token != l.Token() || st.Err != nil || st.TTL <= 0 {
			t.Errorf("held, instance %d with instance 1 down: %+v", i, st)
		}
	}
}

// Inspect and ForceRelease fail with ErrInvalid, the context's error and
// ErrClosed without contacting an instance.
func TestInspectForceReleaseErrors(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 1)
	m, cs := newCountingManager(t, servers, redlock.Config{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	type op func(context.Context, string) ([]redlock.InstanceState, error)
	for name, f := range map[string]op{"Inspect": m.Inspect, "ForceRelease": m.ForceRelease} {
		if st, err := f(testCtx(t), ""); !errors.Is(err, redlock.ErrInvalid) || st != nil {
			t.Errorf("%s(\"\"): %v, %v; want ErrInvalid", name, st, err)
		}
		if st, err := f(cancelled, "r"); !errors.Is(err, context.Canceled) || st != nil {
			t.Errorf("%s with a cancelled ctx: %v, %v; want context.Canceled", name, st, err)
		}
	}
	if n := cs.total(); n != 0 {
		t.Fatalf("%d calls reached the instance", n)
	}
	if err := m.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]op{"Inspect": m.Inspect, "ForceRelease": m.ForceRelease} {
		if st, err := f(testCtx(t), "r"); !errors.Is(err, redlock.ErrClosed) || st != nil {
			t.Errorf("%s after Close: %v, %v; want ErrClosed", name, st, err)
		}
	}
}

// ForceRelease deletes a lock held under a token it was not told, and
// leaves the fencing counter alone: the next fence is larger.
func TestForceReleaseForeignToken(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	holder := newManager(t, servers, redlock.Config{})
	l := holdEverywhere(t, holder, servers, "job", "job", redlock.Fenced())
	// The counters are set by the second round of a fenced acquisition,
	// which waits for every instance; a minority may lack one.
	counters := make([]string, len(servers))
	for i, s := range servers {
		counters[i] = s.Do(t, "GET", "{job}:redlock-fence")
	}
	if slices.Equal(counters, []string{"(nil)", "(nil)", "(nil)"}) {
		t.Fatal("a fenced lock left no counter")
	}

	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	states, err := m.ForceRelease(ctx, "job")
	if err != nil {
		t.Fatalf("ForceRelease: %v", err)
	}
	checkEndpoints(t, m, states)
	for i, st := range states {
		if st.Token != l.Token() || st.Err != nil || st.TTL <= 0 || st.TTL > time.Minute {
			t.Errorf("instance %d: %+v; want the holder's token %q deleted", i, st, l.Token())
		}
	}
	for i, s := range servers {
		if got := s.Do(t, "GET", "job"); got != "(nil)" {
			t.Errorf("%s still holds %q", s, got)
		}
		if got := s.Do(t, "GET", "{job}:redlock-fence"); got != counters[i] {
			t.Errorf("%s: fencing counter %q after ForceRelease, was %q", s, got, counters[i])
		}
	}
	if ok, err := l.IsLocked(ctx); err != nil || ok {
		t.Fatalf("the holder's Lock.IsLocked after ForceRelease = %v, %v; want false", ok, err)
	}
	next, err := m.Lock(ctx, "job", redlock.Fenced(), redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if next.Fence() <= l.Fence() {
		t.Fatalf("fence after a forced release %d, the released lock's %d", next.Fence(), l.Fence())
	}

	// Nothing held: every state is empty, no error. (Unlock returns at
	// quorum: wait for the last instance's delete.)
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		waitFor(t, 30*time.Second, s.String()+" to drop the key", func() bool { return s.Do(t, "EXISTS", "job") == "0" })
	}
	states, err = m.ForceRelease(ctx, "job")
	if err != nil {
		t.Fatalf("ForceRelease of a free resource: %v", err)
	}
	for i, st := range states {
		if st.Token != "" || st.Err != nil {
			t.Errorf("free, instance %d: %+v", i, st)
		}
	}
}

// interceptClient runs before, once, ahead of the first EvalSha of sha.
type interceptClient struct {
	redlock.Client
	sha    string
	once   sync.Once
	before func()
}

func (c *interceptClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	if sha == c.sha {
		c.once.Do(c.before)
	}
	return c.Client.EvalSha(ctx, sha, keys, args)
}

// A key that another token took between the inspection and the delete is
// left alone: the delete compares the token it saw.
func TestForceReleaseLeavesChangedKey(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		s.Do(t, "SET", "res", "crashed-token", "PX", "60000")
	}
	var setErr error
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rc.Close() })
		clients[i] = goredis.New(rc)
	}
	clients[0] = &interceptClient{Client: clients[0], sha: redlock.ScriptSHA("release"), before: func() {
		// Another process takes the key on instance 0 meanwhile (the
		// crashed lock expired there, say).
		_, setErr = servers[0].TryDo(10*time.Second, "SET", "res", "intruder", "PX", "60000")
	}}
	m, err := redlock.NewFromClients(clients, redlock.Config{NodeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })

	states, err := m.ForceRelease(testCtx(t), "res")
	if setErr != nil {
		t.Fatalf("SET on instance 0: %v", setErr)
	}
	if err != nil {
		t.Fatalf("ForceRelease: %v", err)
	}
	if st := states[0]; st.Token != "crashed-token" || !errors.Is(st.Err, redlock.ErrHeldByOther) {
		t.Errorf("instance 0: %+v; want the token seen and ErrHeldByOther", st)
	}
	if got := servers[0].Do(t, "GET", "res"); got != "intruder" {
		t.Errorf("instance 0 holds %q; the intruder's key was not left alone", got)
	}
	for _, i := range []int{1, 2} {
		if st := states[i]; st.Token != "crashed-token" || st.Err != nil {
			t.Errorf("instance %d: %+v; want crashed-token deleted", i, st)
		}
		if got := servers[i].Do(t, "GET", "res"); got != "(nil)" {
			t.Errorf("instance %d still holds %q", i, got)
		}
	}
}

// With a majority down ForceRelease deletes what it reaches and returns
// ErrUnavailable: the lock may still be held.
func TestForceReleaseUnavailable(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		s.Do(t, "SET", "res", "crashed-token", "PX", "60000")
	}
	m := newManager(t, servers, redlock.Config{NodeTimeout: time.Second})
	servers[0].Kill(t)
	servers[1].Kill(t)
	states, err := m.ForceRelease(testCtx(t), "res")
	if !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("ForceRelease with 2/3 down: %v; want ErrUnavailable", err)
	}
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) || qe.Op != "force-release" || qe.Votes != 1 || qe.Quorum != 2 || qe.N != 3 || len(qe.Instances) != 2 {
		t.Fatalf("error %#v; want a QuorumError with 1/3 votes and two instance errors", err)
	}
	checkEndpoints(t, m, states)
	for _, i := range []int{0, 1} {
		if st := states[i]; st.Err == nil || st.Token != "" {
			t.Errorf("instance %d (down): %+v", i, st)
		}
	}
	if st := states[2]; st.Token != "crashed-token" || st.Err != nil {
		t.Errorf("instance 2: %+v; want crashed-token deleted", st)
	}
	if got := servers[2].Do(t, "GET", "res"); got != "(nil)" {
		t.Errorf("instance 2 still holds %q", got)
	}
}

// pttlOf is the PTTL of key on s.
func pttlOf(t *testing.T, s *redistest.Server, key string) time.Duration {
	t.Helper()
	ms, err := strconv.Atoi(s.Do(t, "PTTL", key))
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// Inspect shows each instance's own answer, for example a lock that a
// crashed process left on two of three instances; ForceRelease deletes it.
func ExampleManager_Inspect() {
	var addrs []string
	var servers []*miniredis.Miniredis
	for i := 0; i < 3; i++ {
		s := miniredis.NewMiniRedis()
		if err := s.Start(); err != nil {
			panic(err)
		}
		defer s.Close()
		addrs = append(addrs, s.Addr())
		servers = append(servers, s)
	}
	// What the crashed process left behind: its token, on two instances.
	for _, s := range servers[:2] {
		_ = s.Set("nightly-report", "3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b")
		s.SetTTL("nightly-report", 30*time.Second)
	}
	m, err := redlock.New(addrs, redlock.Config{})
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()

	states, err := m.Inspect(ctx, "nightly-report")
	if err != nil {
		panic(err)
	}
	for i, st := range states {
		fmt.Printf("instance %d: token %q, ttl %v, err %v\n", i, st.Token, st.TTL, st.Err)
	}
	locked, _ := m.IsLocked(ctx, "nightly-report")
	fmt.Println("locked:", locked)

	states, err = m.ForceRelease(ctx, "nightly-report")
	deleted := 0
	for _, st := range states {
		if st.Token != "" && st.Err == nil {
			deleted++
		}
	}
	fmt.Printf("force release: deleted on %d instances, err %v\n", deleted, err)
	locked, _ = m.IsLocked(ctx, "nightly-report")
	fmt.Println("locked:", locked)
	// Output:
	// instance 0: token "3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b", ttl 30s, err <nil>
	// instance 1: token "3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b", ttl 30s, err <nil>
	// instance 2: token "", ttl 0s, err <nil>
	// locked: true
	// force release: deleted on 2 instances, err <nil>
	// locked: false
}
