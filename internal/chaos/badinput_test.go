package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// countingClient counts the commands sent through it.
type countingClient struct {
	c                       redlock.Client
	evalsha, eval, noscript atomic.Int64
}

func (c *countingClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.evalsha.Add(1)
	v, err := c.c.EvalSha(ctx, sha, keys, args)
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		c.noscript.Add(1)
	}
	return v, err
}

func (c *countingClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	c.eval.Add(1)
	return c.c.Eval(ctx, script, keys, args)
}

func (c *countingClient) sent() int64 { return c.evalsha.Load() + c.eval.Load() }

// counted is a Manager over counting clients, and direct go-redis clients
// to inspect the servers.
type counted struct {
	m       *redlock.Manager
	clients []*countingClient
	raw     []*redis.Client
}

func (c *counted) sent() int64 {
	var n int64
	for _, cc := range c.clients {
		n += cc.sent()
	}
	return n
}

func newCounted(t *testing.T, servers []*redistest.Server, cfg redlock.Config) *counted {
	t.Helper()
	out := &counted{}
	var cs []redlock.Client
	for _, s := range servers {
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, DisableIdentity: true, MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		cc := &countingClient{c: goredis.New(rc)}
		out.clients = append(out.clients, cc)
		out.raw = append(out.raw, rc)
		cs = append(cs, cc)
	}
	m, err := redlock.NewFromClients(cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	out.m = m
	return out
}

// keysEverywhere returns, per server, the keys (KEYS *) byte for byte.
func (c *counted) keysEverywhere(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, rc := range c.raw {
		keys, err := rc.Keys(context.Background(), "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, keys)
	}
	return out
}

func TestBadResource(t *testing.T) {
	ctx := context.Background()
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{})
	for _, tc := range []struct {
		name string
		res  string
	}{
		{"empty", ""},
		{"over the cap", strings.Repeat("x", redlock.MaxResourceLen+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.sent()
			start := time.Now()
			_, err := c.m.Lock(ctx, tc.res)
			took := time.Since(start)
			if !errors.Is(err, redlock.ErrInvalid) {
				t.Fatalf("Lock: %v, want ErrInvalid", err)
			}
			if _, err := c.m.IsLocked(ctx, tc.res); !errors.Is(err, redlock.ErrInvalid) {
				t.Fatalf("IsLocked: %v, want ErrInvalid", err)
			}
			if _, err := c.m.Attach(ctx, tc.res, "tok"); !errors.Is(err, redlock.ErrInvalid) {
				t.Fatalf("Attach: %v, want ErrInvalid", err)
			}
			if n := c.sent() - before; n != 0 {
				t.Fatalf("%d commands sent for an invalid resource", n)
			}
			t.Logf("rejected in %v without sending a command", took)
		})
	}
	t.Run("64 KiB works", func(t *testing.T) {
		res := strings.Repeat("k", 64<<10)
		l, err := c.m.Lock(ctx, res, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		waitKeys(t, c, []string{res})
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		waitKeys(t, c, nil)
	})
	t.Run("at the cap works", func(t *testing.T) {
		res := strings.Repeat("c", redlock.MaxResourceLen)
		l, err := c.m.Lock(ctx, res, redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		waitKeys(t, c, nil)
	})
}

// waitKeys waits until every server holds exactly want (byte for byte).
func waitKeys(t *testing.T, c *counted, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, keys := range c.keysEverywhere(t) {
			if len(keys) != len(want) {
				ok = false
				break
			}
			for i := range keys {
				if keys[i] != want[i] {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys on the servers: %q, want exactly %q", c.keysEverywhere(t), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBinaryNames(t *testing.T) {
	ctx := context.Background()
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{})
	for _, res := range []string{"nul\x00in\x00side", "\x00", "bad utf-8 \xff\xfe\xc3\x28", "cr\r\nlf\n", "*?[{}", "a*", "[a-z]", "{tag}x", " spaced ", "\x00*?[{}\r\n\xff"} {
		t.Run(fmt.Sprintf("%q", res), func(t *testing.T) {
			l, err := c.m.Lock(ctx, res, redlock.TTL(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			waitKeys(t, c, []string{res})
			for i, rc := range c.raw {
				v, err := rc.Get(ctx, res).Result()
				if err != nil || v != l.Token() {
					t.Fatalf("server %d: GET %q = %q, %v; want the token", i, res, v, err)
				}
			}
			if locked, err := c.m.IsLocked(ctx, res); err != nil || !locked {
				t.Fatalf("IsLocked = %v, %v", locked, err)
			}
			if err := l.Extend(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			waitKeys(t, c, nil)
		})
	}
}

func TestBadTTL(t *testing.T) {
	ctx := context.Background()
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{})
	l, err := c.m.Lock(ctx, "held", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	waitKeys(t, c, []string{"held"}) // the acquisition's stragglers are done
	for _, d := range []time.Duration{0, -1, -time.Second, math.MinInt64, 500 * time.Microsecond,
		time.Millisecond, 4 * time.Millisecond, redlock.MaxTTL + time.Millisecond, math.MaxInt64 - 1, math.MaxInt64} {
		t.Run(d.String(), func(t *testing.T) {
			before := c.sent()
			if _, err := c.m.Lock(ctx, "r", redlock.TTL(d)); !errors.Is(err, redlock.ErrInvalid) {
				t.Errorf("Lock: %v, want ErrInvalid", err)
			}
			if d != 0 { // Extend(ctx, 0) means "the lock's own TTL"
				if err := l.Extend(ctx, d); !errors.Is(err, redlock.ErrInvalid) {
					t.Errorf("Extend: %v, want ErrInvalid", err)
				}
			}
			if d > 0 || d < 0 {
				if _, err := redlock.New([]string{"127.0.0.1:1"}, redlock.Config{DefaultTTL: d}); !errors.Is(err, redlock.ErrInvalid) {
					t.Errorf("New with DefaultTTL %v: %v, want ErrInvalid", d, err)
				}
			}
			if n := c.sent() - before; n != 0 {
				t.Errorf("%d commands sent for an invalid TTL", n)
			}
		})
	}
	t.Run("MaxTTL works", func(t *testing.T) {
		l, err := c.m.Lock(ctx, "long", redlock.TTL(redlock.MaxTTL))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDuplicateEndpoints(t *testing.T) {
	s := redistest.Start(t, 2)
	a, b := s[0].Addr(), s[1].Addr()
	for _, eps := range [][]string{{a, a}, {a, b, a}, {a, "redis://" + a}, {"redis://" + a + "/0", a}} {
		m, err := redlock.New(eps, redlock.Config{})
		if !errors.Is(err, redlock.ErrInvalid) {
			if m != nil {
				m.Close(context.Background())
			}
			t.Errorf("New(%q): %v, want ErrInvalid", eps, err)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: a})
	defer rc.Close()
	gc := goredis.New(rc)
	if _, err := redlock.NewFromClients([]redlock.Client{gc, gc}, redlock.Config{}); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("NewFromClients(c, c): %v, want ErrInvalid", err)
	}
	// Different databases of one server are different instances to Redis
	// but not independent: the library accepts them (documented).
}

func TestNilClient(t *testing.T) {
	var typedNil *goredis.Client
	for _, cs := range [][]redlock.Client{nil, {}, {nil}, {typedNil}} {
		if _, err := redlock.NewFromClients(cs, redlock.Config{}); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("NewFromClients(%v): %v, want ErrInvalid", cs, err)
		}
	}
	if _, err := redlock.New(nil, redlock.Config{}); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("New(nil): %v, want ErrInvalid", err)
	}
}

// TestCancelledBeforeCall: a context that ended before the call: an error
// satisfying errors.Is(err, context.Canceled), and no command sent.
func TestCancelledBeforeCall(t *testing.T) {
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{})
	l, err := c.m.Lock(context.Background(), "held", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(context.Background())
	waitKeys(t, c, []string{"held"}) // the acquisition's stragglers are done
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := c.sent()
	calls := map[string]func() error{
		"Lock":          func() error { _, err := c.m.Lock(ctx, "r"); return err },
		"TryLock":       func() error { _, err := c.m.TryLock(ctx, "r"); return err },
		"LockWait":      func() error { _, err := c.m.LockWait(ctx, "r"); return err },
		"IsLocked":      func() error { _, err := c.m.IsLocked(ctx, "r"); return err },
		"Attach":        func() error { _, err := c.m.Attach(ctx, "held", l.Token()); return err },
		"Do":            func() error { return c.m.Do(ctx, "r", func(context.Context) error { return nil }) },
		"Extend":        func() error { return l.Extend(ctx, 0) },
		"Lock.IsLocked": func() error { _, err := l.IsLocked(ctx); return err },
		"Lock.TTL":      func() error { _, err := l.TTL(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", name, err)
		}
	}
	if n := c.sent() - before; n != 0 {
		t.Errorf("%d commands sent with a cancelled context", n)
	}
	if !l.Valid() {
		t.Error("the held lock turned invalid")
	}
}

// TestCancelMidAcquire: a context cancelled while the acquisition is in
// flight leaves no key behind. With the latency on the replies
// (downstream) the keys are set before the cancellation; with the latency
// on the requests (upstream) they are set after it. The target is
// no key 100ms after the cancellation; the test waits up to 10s for the
// keys to go and reports the time.
func TestCancelMidAcquire(t *testing.T) {
	for _, stream := range []string{"downstream", "upstream"} {
		t.Run(stream, func(t *testing.T) {
			c := NewCluster(t, ClusterOptions{N: 5})
			for i := 0; i < c.N(); i++ {
				if _, err := c.Toxic(-1, i, "latency", stream, map[string]any{"latency": 40}); err != nil {
					t.Fatal(err)
				}
			}
			m, err := redlock.New(c.Endpoints(0), redlock.Config{NodeTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			var worst time.Duration
			for i := 0; i < 5; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				var cancelled atomic.Int64
				after := time.Duration(5+5*i) * time.Millisecond
				time.AfterFunc(after, func() {
					cancelled.Store(Mono())
					cancel()
				})
				_, err := m.Lock(ctx, "mid", redlock.TTL(30*time.Second))
				returned := Mono()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Lock: %v, want an error satisfying context.Canceled", err)
				}
				took, left := WaitNoKeys(c.Servers, "*", time.Now().Add(10*time.Second))
				if len(left) != 0 {
					t.Fatalf("keys left 10s after a cancelled Lock: %v", left)
				}
				gone := time.Duration(returned-cancelled.Load()) + took
				worst = max(worst, gone)
				t.Logf("cancelled after %v: Lock returned %v later, no key %v after the cancellation",
					after, time.Duration(returned-cancelled.Load()), gone)
				cancel()
			}
			t.Logf("worst: no key %v after the cancellation (target 100ms)", worst)
		})
	}
}

func TestNotHeld(t *testing.T) {
	ctx := context.Background()
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{})
	t.Run("double unlock", func(t *testing.T) {
		l, err := c.m.Lock(ctx, "twice")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
			t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
		}
		if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
			t.Fatalf("Extend after Unlock: %v, want ErrNotHeld", err)
		}
	})
	for _, op := range []string{"unlock", "extend"} {
		t.Run(op+" after expiry", func(t *testing.T) {
			l, err := c.m.Lock(ctx, op+"-expired", redlock.TTL(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			waitClosed(t, l.Lost(), "Lost() after the deadline")
			if l.Valid() {
				t.Fatal("Valid() after the deadline")
			}
			if op == "unlock" {
				err = l.Unlock(ctx)
			} else {
				err = l.Extend(ctx, 0)
			}
			if !errors.Is(err, redlock.ErrNotHeld) {
				t.Fatalf("%s after expiry: %v, want ErrNotHeld", op, err)
			}
		})
	}
}

// TestConcurrentExtendUnlock: Extend and Unlock racing on one handle (run
// with -race): every result is nil or ErrNotHeld, exactly one Unlock
// succeeds, and no key remains.
func TestConcurrentExtendUnlock(t *testing.T) {
	ctx := context.Background()
	c := newCounted(t, redistest.Start(t, 3), redlock.Config{DefaultTTL: time.Second})
	for round := 0; round < 20; round++ {
		l, err := c.m.Lock(ctx, "race")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var unlocked atomic.Int32
		errs := make(chan error, 64)
		start := make(chan struct{})
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-start
				for i := 0; i < 5; i++ {
					var err error
					if g%4 == 0 {
						if err = l.Unlock(ctx); err == nil {
							unlocked.Add(1)
						}
					} else {
						err = l.Extend(ctx, 0)
						_ = l.Valid()
						_ = l.Until()
					}
					if err != nil && !errors.Is(err, redlock.ErrNotHeld) {
						errs <- err
					}
				}
			}(g)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		if n := unlocked.Load(); n != 1 {
			t.Fatalf("round %d: %d Unlock calls succeeded, want 1", round, n)
		}
		waitKeys(t, c, nil)
	}
}

// TestErrorReplies: OOM, READONLY, NOAUTH and WRONGTYPE replies are "no"
// votes with their cause kept: with one bad server of 3 the lock is
// acquired; with two it fails, with ErrUnavailable for OOM (transient:
// retried) and ErrRejected for the others (no retry fixes them), and
// errors.As finds an *InstanceError per bad server whose cause has the
// reply's prefix.
func TestErrorReplies(t *testing.T) {
	ctx := context.Background()
	good := redistest.Start(t, 1)[0]
	kinds := []struct {
		prefix string
		want   error // with two bad servers of 3
		start  func(t *testing.T) *redistest.Server
		prep   func(t *testing.T, s *redistest.Server, res string)
	}{
		{"OOM", redlock.ErrUnavailable, func(t *testing.T) *redistest.Server {
			return redistest.StartWith(t, redistest.Options{Args: []string{"--maxmemory", "1", "--maxmemory-policy", "noeviction"}})
		}, nil},
		// Replicas of a master of their own, not of good, so that each
		// answers the fresh-key path here. A replica of good that has
		// its SET already answers READONLY too (the refresh paths always
		// write); TestReplicaNeverVotesYes in the library shows that,
		// without this test's race between replication and the call.
		{"READONLY", redlock.ErrRejected, func(t *testing.T) *redistest.Server {
			master := redistest.Start(t, 1)[0]
			return redistest.StartWith(t, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", fmt.Sprint(master.Port())}})
		}, nil},
		{"NOAUTH", redlock.ErrRejected, func(t *testing.T) *redistest.Server {
			return redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "chaos-secret"}})
		}, nil},
		{"WRONGTYPE", redlock.ErrRejected, func(t *testing.T) *redistest.Server { return redistest.Start(t, 1)[0] },
			func(t *testing.T, s *redistest.Server, res string) { s.Do(t, "RPUSH", res, "not a lock") }},
	}
	for _, k := range kinds {
		t.Run(k.prefix, func(t *testing.T) {
			bad := []*redistest.Server{k.start(t), k.start(t)}
			for _, nbad := range []int{1, 2} {
				res := fmt.Sprintf("reply-%s-%d", k.prefix, nbad)
				servers := []*redistest.Server{good}
				servers = append(servers, bad[:nbad]...)
				if nbad == 1 {
					servers = append(servers, redistest.Start(t, 1)[0])
				}
				for _, s := range bad[:nbad] {
					if k.prep != nil {
						k.prep(t, s, res)
					}
				}
				m, err := redlock.New(addrs(servers), redlock.Config{RetryCount: 1})
				if err != nil {
					t.Fatal(err)
				}
				l, err := m.Lock(ctx, res, redlock.TTL(10*time.Second))
				switch {
				case nbad == 1 && err != nil:
					t.Errorf("one %s server of 3: %v, want the lock", k.prefix, err)
				case nbad == 1:
					if err := l.Unlock(ctx); err != nil {
						t.Errorf("Unlock: %v", err)
					}
				case !errors.Is(err, k.want):
					t.Errorf("two %s servers of 3: %v, want %v", k.prefix, err, k.want)
				default:
					var qe *redlock.QuorumError
					if !errors.As(err, &qe) {
						t.Fatalf("%v is not a *QuorumError", err)
					}
					// The Client contract: a Redis error reply is an error
					// whose text starts with the reply's prefix.
					found := 0
					for _, ie := range qe.Instances {
						if strings.HasPrefix(ie.Err.Error(), k.prefix+" ") {
							found++
						}
					}
					var ie *redlock.InstanceError
					if found != 2 || !errors.As(err, &ie) {
						t.Errorf("causes %v: want 2 *InstanceError with a %s reply", qe.Instances, k.prefix)
					}
					if strings.Contains(err.Error(), "chaos-secret") {
						t.Errorf("error shows the password: %v", err)
					}
					t.Logf("%v", err)
				}
				m.Close(ctx)
			}
		})
	}
}

// TestScriptFlush: after SCRIPT FLUSH on every server, Lock, Extend and
// Unlock still work (NOSCRIPT, then EVAL).
func TestScriptFlush(t *testing.T) {
	ctx := context.Background()
	servers := redistest.Start(t, 3)
	c := newCounted(t, servers, redlock.Config{})
	for round := 0; round < 3; round++ {
		for _, s := range servers {
			if got := s.Do(t, "SCRIPT", "FLUSH"); got != "OK" {
				t.Fatalf("SCRIPT FLUSH: %s", got)
			}
		}
		before := int64(0)
		for _, cc := range c.clients {
			before += cc.noscript.Load()
		}
		l, err := c.m.Lock(ctx, "flushed", redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Extend(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		after := int64(0)
		for _, cc := range c.clients {
			after += cc.noscript.Load()
		}
		if after-before < int64(len(servers)) {
			t.Fatalf("round %d: %d NOSCRIPT replies, want at least one per server: the flush did not take effect", round, after-before)
		}
	}
	waitKeys(t, c, nil)
}
