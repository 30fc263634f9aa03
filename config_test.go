package redlock_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// yesClient is an in-memory Client that agrees to everything (every script
// returns 1) without I/O, counts its calls and runs onCall first. It is for
// tests of argument checking and of the validity arithmetic, where what
// Redis stores does not matter.
type yesClient struct {
	calls  atomic.Int64
	onCall func()
}

func (c *yesClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.calls.Add(1)
	if c.onCall != nil {
		c.onCall()
	}
	return int64(1), nil
}

func (c *yesClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	return c.EvalSha(ctx, "", keys, args)
}

func yesClients(n int, onCall func()) ([]redlock.Client, func() int64) {
	cs := make([]*yesClient, n)
	out := make([]redlock.Client, n)
	for i := range cs {
		cs[i] = &yesClient{onCall: onCall}
		out[i] = cs[i]
	}
	return out, func() int64 {
		var sum int64
		for _, c := range cs {
			sum += c.calls.Load()
		}
		return sum
	}
}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestConfigDefaults(t *testing.T) {
	clients, _ := yesClients(3, nil)
	m, err := redlock.NewFromClients(clients, redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, m)
	c := m.Config()
	if c.RetryCount != 3 || c.RetryDelayMin != 100*time.Millisecond || c.RetryDelayMax != 300*time.Millisecond ||
		c.DefaultTTL != 10*time.Second || c.DriftFactor != 0.01 || c.NodeTimeout != 500*time.Millisecond ||
		c.KeyPrefix != "" || c.Logger == nil {
		t.Errorf("defaults = %+v", c)
	}
	if c.RetryCount != redlock.DefaultRetryCount || c.DefaultTTL != redlock.DefaultLockTTL ||
		c.DriftFactor != redlock.DefaultDriftFactor || c.NodeTimeout != redlock.DefaultNodeTimeout {
		t.Errorf("defaults disagree with the Default* constants: %+v", c)
	}

	// Explicit values are kept as given.
	in := redlock.Config{RetryCount: 1, RetryDelayMin: time.Millisecond, RetryDelayMax: time.Millisecond,
		DefaultTTL: 500 * time.Millisecond, DriftFactor: 0.49, NodeTimeout: time.Second, KeyPrefix: "p:"}
	m2, err := redlock.NewFromClients(clients, in)
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, m2)
	got := m2.Config()
	got.Logger = nil
	if got != in {
		t.Errorf("Config() = %+v, want %+v", got, in)
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		clients, _ := yesClients(n, nil)
		m, err := redlock.NewFromClients(clients, redlock.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Quorum() != want {
			t.Errorf("N=%d: Quorum() = %d, want %d", n, m.Quorum(), want)
		}
		if len(m.Endpoints()) != n {
			t.Errorf("N=%d: Endpoints() = %q", n, m.Endpoints())
		}
		closeQuietly(t, m)
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  redlock.Config
	}{
		{"negative RetryCount", redlock.Config{RetryCount: -1}},
		{"negative RetryDelayMin", redlock.Config{RetryDelayMin: -time.Millisecond}},
		{"negative RetryDelayMax", redlock.Config{RetryDelayMax: -time.Millisecond}},
		{"RetryDelayMax below Min", redlock.Config{RetryDelayMin: 200 * time.Millisecond, RetryDelayMax: 100 * time.Millisecond}},
		{"DriftFactor NaN", redlock.Config{DriftFactor: math.NaN()}},
		{"DriftFactor negative", redlock.Config{DriftFactor: -0.01}},
		{"DriftFactor 0.5", redlock.Config{DriftFactor: 0.5}},
		{"DriftFactor above 0.5", redlock.Config{DriftFactor: 0.9}},
		{"DriftFactor +Inf", redlock.Config{DriftFactor: math.Inf(1)}},
		{"negative NodeTimeout", redlock.Config{NodeTimeout: -time.Second}},
		{"negative DefaultTTL", redlock.Config{DefaultTTL: -time.Second}},
		{"DefaultTTL under 1ms", redlock.Config{DefaultTTL: 500 * time.Microsecond}},
		{"DefaultTTL within 2x drift", redlock.Config{DefaultTTL: 4 * time.Millisecond}},
		{"DefaultTTL over MaxTTL", redlock.Config{DefaultTTL: redlock.MaxTTL + time.Millisecond}},
		{"KeyPrefix too long", redlock.Config{KeyPrefix: strings.Repeat("k", redlock.MaxResourceLen+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clients, calls := yesClients(3, nil)
			m, err := redlock.NewFromClients(clients, tt.cfg)
			if !errors.Is(err, redlock.ErrInvalid) {
				t.Errorf("NewFromClients: err = %v, want ErrInvalid", err)
			}
			if m != nil {
				t.Errorf("NewFromClients returned a Manager with an error")
			}
			m, err = redlock.New([]string{"127.0.0.1:1"}, tt.cfg)
			if !errors.Is(err, redlock.ErrInvalid) || m != nil {
				t.Errorf("New: m = %v, err = %v, want ErrInvalid", m, err)
			}
			if calls() != 0 {
				t.Errorf("%d calls sent", calls())
			}
		})
	}

	// Boundaries that are valid.
	for _, cfg := range []redlock.Config{
		{DriftFactor: 0.49},
		{DefaultTTL: 5 * time.Millisecond},
		{DefaultTTL: redlock.MaxTTL},
		{RetryCount: 1, RetryDelayMin: time.Millisecond, RetryDelayMax: time.Millisecond},
	} {
		clients, _ := yesClients(1, nil)
		m, err := redlock.NewFromClients(clients, cfg)
		if err != nil {
			t.Errorf("NewFromClients(%+v): %v", cfg, err)
			continue
		}
		closeQuietly(t, m)
	}
}

func TestNewInvalidEndpointsAndClients(t *testing.T) {
	same := &yesClient{}
	var typedNil *goredis.Client
	tests := []struct {
		name string
		new  func() (*redlock.Manager, error)
	}{
		{"New nil", func() (*redlock.Manager, error) { return redlock.New(nil, redlock.Config{}) }},
		{"New empty", func() (*redlock.Manager, error) { return redlock.New([]string{}, redlock.Config{}) }},
		{"New empty string", func() (*redlock.Manager, error) { return redlock.New([]string{""}, redlock.Config{}) }},
		{"New no port", func() (*redlock.Manager, error) { return redlock.New([]string{"localhost"}, redlock.Config{}) }},
		{"New duplicate", func() (*redlock.Manager, error) {
			return redlock.New([]string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7000"}, redlock.Config{})
		}},
		{"New duplicate as URL", func() (*redlock.Manager, error) {
			return redlock.New([]string{"127.0.0.1:7000", "redis://127.0.0.1:7000/0"}, redlock.Config{})
		}},
		{"NewFromEndpoints nil", func() (*redlock.Manager, error) { return redlock.NewFromEndpoints(nil, redlock.Config{}) }},
		{"NewFromEndpoints duplicate", func() (*redlock.Manager, error) {
			return redlock.NewFromEndpoints([]redlock.Endpoint{{Addr: "127.0.0.1:7000"}, {Addr: "127.0.0.1:7000"}}, redlock.Config{})
		}},
		{"NewFromClients nil", func() (*redlock.Manager, error) { return redlock.NewFromClients(nil, redlock.Config{}) }},
		{"NewFromClients nil client", func() (*redlock.Manager, error) {
			return redlock.NewFromClients([]redlock.Client{&yesClient{}, nil}, redlock.Config{})
		}},
		{"NewFromClients typed nil client", func() (*redlock.Manager, error) {
			return redlock.NewFromClients([]redlock.Client{typedNil}, redlock.Config{})
		}},
		{"NewFromClients duplicate client", func() (*redlock.Manager, error) {
			return redlock.NewFromClients([]redlock.Client{same, &yesClient{}, same}, redlock.Config{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.new()
			if !errors.Is(err, redlock.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if m != nil {
				t.Errorf("returned a Manager with an error")
				closeQuietly(t, m)
			}
		})
	}
}

// TestBadInputs checks that every bad argument gives ErrInvalid before any
// command is sent.
func TestBadInputs(t *testing.T) {
	ctx := testCtx(t)
	clients, calls := yesClients(3, nil)
	m, err := redlock.NewFromClients(clients, redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, m)
	l, err := m.TryLock(ctx, "held", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// TryLock returns at quorum: its call to the third instance may not
	// have been made yet, and would count as sent by the first bad input
	// (seen under load: "TryLock(TTL zero): sent 1 commands").
	waitFor(t, 10*time.Second, "the acquisition's call to every instance", func() bool { return calls() >= 3 })
	longName := strings.Repeat("r", redlock.MaxResourceLen+1)
	longToken := strings.Repeat("t", redlock.MaxTokenLen+1)
	acquirers := map[string]func(ctx context.Context, resource string, opts ...redlock.LockOption) (*redlock.Lock, error){
		"Lock":     m.Lock,
		"TryLock":  m.TryLock,
		"LockWait": m.LockWait,
		"Do": func(ctx context.Context, resource string, opts ...redlock.LockOption) (*redlock.Lock, error) {
			return nil, m.Do(ctx, resource, func(context.Context) error {
				t.Error("Do ran its function despite a bad argument")
				return nil
			}, opts...)
		},
	}
	cases := []struct {
		name     string
		resource string
		opts     []redlock.LockOption
	}{
		{"empty resource", "", nil},
		{"resource too long", longName, nil},
		{"TTL zero", "r", []redlock.LockOption{redlock.TTL(0)}},
		{"TTL negative", "r", []redlock.LockOption{redlock.TTL(-time.Second)}},
		{"TTL under 1ms", "r", []redlock.LockOption{redlock.TTL(999 * time.Microsecond)}},
		{"TTL within 2x drift", "r", []redlock.LockOption{redlock.TTL(4 * time.Millisecond)}},
		{"TTL truncates into 2x drift", "r", []redlock.LockOption{redlock.TTL(4*time.Millisecond + 999*time.Microsecond)}},
		{"TTL over MaxTTL", "r", []redlock.LockOption{redlock.TTL(redlock.MaxTTL + time.Millisecond)}},
		{"empty Token", "r", []redlock.LockOption{redlock.Token("")}},
		{"Token too long", "r", []redlock.LockOption{redlock.Token(longToken)}},
		{"nil option", "r", []redlock.LockOption{nil}},
	}
	for name, acquire := range acquirers {
		for _, c := range cases {
			before := calls()
			got, err := acquire(ctx, c.resource, c.opts...)
			if !errors.Is(err, redlock.ErrInvalid) || got != nil {
				t.Errorf("%s(%s): lock %v, err %v; want ErrInvalid", name, c.name, got, err)
			}
			if calls() != before {
				t.Errorf("%s(%s): sent %d commands", name, c.name, calls()-before)
			}
		}
	}

	others := map[string]func() error{
		"Do nil fn":               func() error { return m.Do(ctx, "r", nil) },
		"IsLocked empty resource": func() error { _, err := m.IsLocked(ctx, ""); return err },
		"IsLocked long resource":  func() error { _, err := m.IsLocked(ctx, longName); return err },
		"Attach empty resource":   func() error { _, err := m.Attach(ctx, "", "tok"); return err },
		"Attach empty token":      func() error { _, err := m.Attach(ctx, "r", ""); return err },
		"Attach long token":       func() error { _, err := m.Attach(ctx, "r", longToken); return err },
		"Extend negative":         func() error { return l.Extend(ctx, -time.Second) },
		"Extend under 1ms":        func() error { return l.Extend(ctx, time.Microsecond) },
		"Extend within 2x drift":  func() error { return l.Extend(ctx, 4*time.Millisecond) },
		"Extend over MaxTTL":      func() error { return l.Extend(ctx, redlock.MaxTTL+time.Millisecond) },
	}
	for name, f := range others {
		before := calls()
		if err := f(); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
		if calls() != before {
			t.Errorf("%s: sent %d commands", name, calls()-before)
		}
	}
	if !l.Valid() {
		t.Error("a bad Extend invalidated the lock")
	}

	// The smallest valid TTL is accepted (whether the attempt then fits in
	// its 2.95ms validity depends on the machine).
	l2, err := m.TryLock(ctx, "min-ttl", redlock.TTL(5*time.Millisecond))
	if errors.Is(err, redlock.ErrInvalid) {
		t.Fatalf("TTL(5ms): %v", err)
	}
	if l2 != nil {
		_ = l2.Unlock(ctx)
	}
}

func TestDriftAndValidity(t *testing.T) {
	def := redlock.Config{DriftFactor: redlock.DefaultDriftFactor}
	custom := redlock.Config{DriftFactor: 0.1}
	tests := []struct {
		cfg          redlock.Config
		ttl, elapsed time.Duration
		drift, valid time.Duration
	}{
		{def, 10 * time.Second, 0, 102 * time.Millisecond, 10*time.Second - 102*time.Millisecond},
		{def, 10 * time.Second, 3 * time.Second, 102 * time.Millisecond, 7*time.Second - 102*time.Millisecond},
		{def, time.Second, 500 * time.Millisecond, 12 * time.Millisecond, 488 * time.Millisecond},
		{def, time.Second, 988 * time.Millisecond, 12 * time.Millisecond, 0},
		{def, time.Second, 2 * time.Second, 12 * time.Millisecond, -1012 * time.Millisecond},
		{def, 100 * time.Millisecond, 0, 3 * time.Millisecond, 97 * time.Millisecond},
		{def, 5 * time.Millisecond, 0, 2*time.Millisecond + 50*time.Microsecond, 2*time.Millisecond + 950*time.Microsecond},
		{custom, time.Second, 100 * time.Millisecond, 102 * time.Millisecond, 798 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := redlock.Drift(tt.cfg, tt.ttl); got != tt.drift {
			t.Errorf("DriftFactor %v: drift(%v) = %v, want %v", tt.cfg.DriftFactor, tt.ttl, got, tt.drift)
		}
		if got := redlock.Validity(tt.cfg, tt.ttl, tt.elapsed); got != tt.valid {
			t.Errorf("DriftFactor %v: validity(%v, %v) = %v, want %v", tt.cfg.DriftFactor, tt.ttl, tt.elapsed, got, tt.valid)
		}
	}
}

// TestValidityClock drives acquisition, Valid, Until and Extend with an
// injected clock. There is one instance, and each call to it moves the clock
// forward by step, as if the round trip took that long.
func TestValidityClock(t *testing.T) {
	ctx := testCtx(t)
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &fakeClock{t: base}
	var step atomic.Int64
	setRound := func(now time.Time, d time.Duration) {
		clk.Set(now)
		step.Store(int64(d))
	}
	clients, _ := yesClients(1, func() { clk.Advance(time.Duration(step.Load())) })
	m, err := redlock.NewFromClients(clients, redlock.Config{RetryCount: 3, RetryDelayMin: time.Millisecond, RetryDelayMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	redlock.SetClock(m, clk.Now)
	defer closeQuietly(t, m)

	const ttl = time.Second // drift 12ms: an attempt must take under 988ms

	// An attempt that took exactly TTL - drift leaves no validity: it fails.
	setRound(base, 988*time.Millisecond)
	_, err = m.TryLock(ctx, "slow", redlock.TTL(ttl))
	if !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("988ms acquisition: err = %v, want ErrUnavailable", err)
	}
	// Negative control: a manager that forgets the time the attempt took
	// takes this lock, which the check above would have reported.
	if controlsBuilt() {
		broken, err := redlock.NewFromClients(clients, redlock.Config{})
		if err != nil {
			t.Fatal(err)
		}
		redlock.SetClock(broken, clk.Now)
		testhooks.Install(broken, &testhooks.Hooks{IgnoreElapsed: true})
		setRound(base, 988*time.Millisecond)
		if l, err := broken.TryLock(ctx, "slow-control", redlock.TTL(ttl)); err != nil {
			t.Errorf("negative control (IgnoreElapsed): %v, want a (wrong) lock", err)
		} else {
			_ = l.Unlock(ctx)
		}
		closeQuietly(t, broken)
	}
	setRound(base, 988*time.Millisecond)

	// Lock retries, and every attempt is measured from its own start.
	_, err = m.Lock(ctx, "slow", redlock.TTL(ttl))
	if qe := quorumError(t, err); qe.Attempts != 3 || !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("Lock with slow attempts: %v (attempts %d), want 3 attempts, ErrUnavailable", err, qe.Attempts)
	}

	// One millisecond faster succeeds, valid until start + TTL - drift.
	setRound(base, 987*time.Millisecond)
	l, err := m.TryLock(ctx, "fast", redlock.TTL(ttl))
	if err != nil {
		t.Fatalf("987ms acquisition: %v", err)
	}
	if want := base.Add(988 * time.Millisecond); !l.Until().Equal(want) {
		t.Errorf("Until = %v, want %v", l.Until(), want)
	}
	if !l.Valid() {
		t.Error("not Valid right after acquisition")
	}
	clk.Set(base.Add(988*time.Millisecond - time.Nanosecond))
	if !l.Valid() {
		t.Error("not Valid 1ns before Until")
	}
	clk.Set(base.Add(988 * time.Millisecond))
	if l.Valid() {
		t.Error("still Valid at Until")
	}
	// The expiry timer consults the clock and closes Lost.
	waitClosed(t, l.Lost(), 10*time.Second, "Lost after the clock reached Until")
	if err := l.Extend(ctx, 0); !errors.Is(err, redlock.ErrNotHeld) {
		t.Errorf("Extend after validity: %v, want ErrNotHeld", err)
	}
	if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
		t.Errorf("Unlock after validity: %v, want ErrNotHeld", err)
	}

	// Extend moves Until to the start of the extension + ttl - drift.
	start := base.Add(time.Hour)
	setRound(start, 0)
	l, err = m.TryLock(ctx, "extend", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(10*time.Second - 102*time.Millisecond); !l.Until().Equal(want) {
		t.Errorf("Until = %v, want %v", l.Until(), want)
	}
	start = start.Add(4 * time.Second)
	setRound(start, 100*time.Millisecond)
	if err := l.Extend(ctx, 0); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if want := start.Add(10*time.Second - 102*time.Millisecond); !l.Until().Equal(want) {
		t.Errorf("after Extend(0): Until = %v, want %v", l.Until(), want)
	}
	start = start.Add(time.Second)
	setRound(start, 0)
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		t.Fatalf("Extend(20s): %v", err)
	}
	if want := start.Add(20*time.Second - 202*time.Millisecond); !l.Until().Equal(want) {
		t.Errorf("after Extend(20s): Until = %v, want %v", l.Until(), want)
	}
	// An extension that takes too long fails and leaves the deadline alone.
	prev := l.Until()
	setRound(start.Add(time.Second), 20*time.Second)
	if err := l.Extend(ctx, 20*time.Second); !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("slow Extend: %v, want ErrUnavailable", err)
	}
	if !l.Until().Equal(prev) {
		t.Errorf("slow Extend moved Until from %v to %v", prev, l.Until())
	}
	setRound(start.Add(time.Second), 0)
	if !l.Valid() {
		t.Error("slow Extend invalidated the lock before its deadline")
	}
	if err := l.Unlock(ctx); err != nil {
		t.Errorf("Unlock: %v", err)
	}
	if l.Valid() || !isClosed(l.Lost()) {
		t.Error("lock still valid after Unlock")
	}
}

// DefaultTTL is truncated to whole milliseconds like the TTL option: PX
// takes milliseconds, and Until is computed from the lease the instances
// were sent. Seen failing before the change (2.0009995s kept as given).
func TestDefaultTTLWholeMillis(t *testing.T) {
	clients, _ := yesClients(3, nil)
	m, err := redlock.NewFromClients(clients, redlock.Config{DefaultTTL: 2*time.Second + 999500*time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if got, want := m.Config().DefaultTTL, 2*time.Second; got != want {
		t.Fatalf("DefaultTTL %v, want %v", got, want)
	}
}
