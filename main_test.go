package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// controlsBuilt reports whether the package was built with the
// redlock_controls tag, which alone compiles the test hooks in
// (internal/testhooks; a normal build has none). test.sh runs the tests
// that use them once more with the tag.
func controlsBuilt() bool { return testhooks.Install != nil }

// installHooks installs h on m, or skips the test in a build without the
// redlock_controls tag (see controlsBuilt).
func installHooks(t testing.TB, m *redlock.Manager, h *testhooks.Hooks) {
	t.Helper()
	if !controlsBuilt() {
		t.Skip("needs the test hooks: go test -tags redlock_controls")
	}
	testhooks.Install(m, h)
}

// TestMain fails the package if any goroutine outlives the tests: every
// Manager is closed by its test, and Close must stop everything it started.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial to the instances the tests kill.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m,
		// rueidis closes the connections a cluster topology refresh
		// replaced after a fixed 5 s sleep, on a goroutine of its own.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		// go-redis keeps re-dialing an instance a test killed for about a
		// second after the client is closed.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		// rueidis retries a failed dial after a backoff (up to about a
		// second) on a goroutine of its own, which a Close does not stop;
		// it ends once the sleep is over.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
	)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// sizes are the numbers of instances the table-driven tests run with.
var sizes = []int{1, 3, 5}

// forEachN runs fn as a parallel subtest for every size in sizes.
func forEachN(t *testing.T, fn func(t *testing.T, n int)) {
	t.Helper()
	for _, n := range sizes {
		t.Run("N="+strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			fn(t, n)
		})
	}
}

// testCtx is a context that bounds one test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addrs(servers []*redistest.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

// newManager dials servers with New and closes the Manager in t.Cleanup
// (before the servers stop: cleanups run last-in first-out).
func newManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) *redlock.Manager {
	t.Helper()
	return newManagerAt(t, addrs(servers), cfg)
}

// newManagerAt is redlock.New over endpoints, closed in t.Cleanup like
// newManager's.
func newManagerAt(t *testing.T, endpoints []string, cfg redlock.Config) *redlock.Manager {
	t.Helper()
	m, err := redlock.New(endpoints, cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", endpoints, err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	return m
}

// closeQuietly closes m, reporting only errors that are not explained by a
// test having closed it already or having taken instances down.
func closeQuietly(t *testing.T, m *redlock.Manager) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := m.Close(ctx)
	if err != nil && !errors.Is(err, redlock.ErrClosed) && !errors.Is(err, redlock.ErrUnavailable) {
		t.Errorf("Close: %v", err)
	}
}

// countingClient wraps a Client, counts its calls per script SHA1 and can
// hold calls at a gate.
type countingClient struct {
	inner redlock.Client
	name  string

	evalsha  atomic.Int64 // EvalSha calls
	eval     atomic.Int64 // Eval calls (NOSCRIPT fallback)
	returned atomic.Int64 // EvalSha calls that returned
	evalDone atomic.Int64 // Eval calls that returned

	mu     sync.Mutex
	bySHA  map[string]int
	doneBy map[string]int // EvalSha calls that returned, by SHA1
	// gate, when non-nil, holds every call (or, with gateSHA set, every
	// EvalSha of that script) until it is closed; entered receives one
	// value per held call (non-blocking).
	gate    chan struct{}
	gateSHA string
	entered chan struct{}
	// replied, when non-nil, receives one value per answered EvalSha
	// (non-blocking).
	replied chan struct{}
}

func (c *countingClient) String() string { return c.name }

func (c *countingClient) hold(ctx context.Context, sha string) error {
	c.mu.Lock()
	if c.bySHA == nil {
		c.bySHA = make(map[string]int)
	}
	c.bySHA[sha]++
	gate, entered := c.gate, c.entered
	if c.gateSHA != "" && sha != c.gateSHA {
		gate = nil
	}
	c.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case entered <- struct{}{}:
	default:
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *countingClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.evalsha.Add(1)
	defer c.returned.Add(1)
	if err := c.hold(ctx, sha); err != nil {
		return nil, err
	}
	v, err := c.inner.EvalSha(ctx, sha, keys, args)
	c.mu.Lock()
	replied := c.replied
	if c.doneBy == nil {
		c.doneBy = make(map[string]int)
	}
	c.doneBy[sha]++
	c.mu.Unlock()
	if replied != nil {
		select {
		case replied <- struct{}{}:
		default:
		}
	}
	return v, err
}

// setReplied installs (or with nil removes) the replied channel.
func (c *countingClient) setReplied(ch chan struct{}) {
	c.mu.Lock()
	c.replied = ch
	c.mu.Unlock()
}

func (c *countingClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	c.eval.Add(1)
	defer c.evalDone.Add(1)
	return c.inner.Eval(ctx, script, keys, args)
}

// calls returns how many EvalSha calls ran the named script.
func (c *countingClient) calls(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySHA[redlock.ScriptSHA(script)]
}

func (c *countingClient) total() int64 { return c.evalsha.Load() + c.eval.Load() }

// doneCalls returns how many EvalSha calls of the named script returned.
func (c *countingClient) doneCalls(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.doneBy[redlock.ScriptSHA(script)]
}

// setGate installs (or with nil removes) a gate for every call.
func (c *countingClient) setGate(gate chan struct{}, entered chan struct{}) {
	c.setGateFor("", gate, entered)
}

// setGateFor installs (or with nil removes) a gate for the EvalSha calls
// of the named script only ("": every call).
func (c *countingClient) setGateFor(script string, gate chan struct{}, entered chan struct{}) {
	sha := ""
	if script != "" {
		sha = redlock.ScriptSHA(script)
	}
	c.mu.Lock()
	c.gate, c.gateSHA, c.entered = gate, sha, entered
	c.mu.Unlock()
}

type counters []*countingClient

func (cs counters) total() int64 {
	var n int64
	for _, c := range cs {
		n += c.total()
	}
	return n
}

func (cs counters) calls(script string) int {
	n := 0
	for _, c := range cs {
		n += c.calls(script)
	}
	return n
}

func (cs counters) evals() int64 {
	var n int64
	for _, c := range cs {
		n += c.eval.Load()
	}
	return n
}

// newCountingManager builds a Manager with NewFromClients over go-redis
// clients wrapped in countingClients. The go-redis clients are closed in
// t.Cleanup after the Manager.
func newCountingManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, counters) {
	t.Helper()
	return newWrappedManager(t, servers, cfg, func(c redlock.Client, s *redistest.Server) *countingClient {
		return &countingClient{inner: c, name: s.Addr()}
	})
}

// newWrappedManager builds a Manager with NewFromClients over a go-redis
// client per server, each wrapped by wrap, and returns the wrappers. The
// Manager is closed in t.Cleanup before the go-redis clients.
func newWrappedManager[C redlock.Client](t *testing.T, servers []*redistest.Server, cfg redlock.Config, wrap func(redlock.Client, *redistest.Server) C) (*redlock.Manager, []C) {
	t.Helper()
	ws := make([]C, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		ws[i] = wrap(goredis.New(newGoRedis(t, s.Addr())), s)
		clients[i] = ws[i]
	}
	m, err := redlock.NewFromClients(clients, cfg)
	if err != nil {
		t.Fatalf("NewFromClients: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	return m, ws
}

// waitFor polls cond until it holds or timeout passes (then fails the test).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits until ch is closed, failing the test after timeout.
func waitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s: not closed within %v", what, timeout)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// get returns the value of key on s, "(nil)" when missing.
func get(t *testing.T, s *redistest.Server, key string) string {
	t.Helper()
	return s.Do(t, "GET", key)
}

// getDB reads key in database db of s (through a script, as Do uses a
// fresh connection per command).
func getDB(t *testing.T, s *redistest.Server, db int, key string) string {
	t.Helper()
	return s.Do(t, "EVAL", "redis.call('SELECT', ARGV[1]) return redis.call('GET', KEYS[1])", "1", key, strconv.Itoa(db))
}

// pttl returns PTTL key on s (-2 missing, -1 no TTL).
func pttl(t *testing.T, s *redistest.Server, key string) int64 {
	t.Helper()
	v := s.Do(t, "PTTL", key)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("PTTL %q on %s: %q", key, s, v)
	}
	return n
}

// wantKeyEverywhere checks that key holds value on every server, with a TTL
// in (0, maxTTL]. A lock call returns once a quorum agreed, so the other
// instances may still be setting the key: each gets a few seconds.
func wantKeyEverywhere(t *testing.T, servers []*redistest.Server, key, value string, maxTTL time.Duration) {
	t.Helper()
	for _, s := range servers {
		deadline := time.Now().Add(5 * time.Second)
		got := get(t, s, key)
		for got != value && got == "(nil)" && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			got = get(t, s, key)
		}
		if got != value {
			t.Errorf("%s: GET %q = %q, want %q", s, key, got, value)
			continue
		}
		if p := pttl(t, s, key); p <= 0 || p > maxTTL.Milliseconds() {
			t.Errorf("%s: PTTL %q = %d, want in (0, %d]", s, key, p, maxTTL.Milliseconds())
		}
	}
}

// wantKeyOnQuorum checks that key holds value on at least a quorum of the
// servers (after contention, the others may hold nothing).
func wantKeyOnQuorum(t *testing.T, servers []*redistest.Server, key, value string) {
	t.Helper()
	held := 0
	for _, s := range servers {
		if get(t, s, key) == value {
			held++
		}
	}
	if held < len(servers)/2+1 {
		t.Errorf("%q holds the token on %d of %d instances, want a quorum", key, held, len(servers))
	}
}

// waitPTTLAbove waits until key has a PTTL above ms on every server (an
// Extend returns at quorum; the other instances follow shortly).
func waitPTTLAbove(t *testing.T, servers []*redistest.Server, key string, ms int64) {
	t.Helper()
	for _, s := range servers {
		waitFor(t, 5*time.Second, fmt.Sprintf("PTTL %q > %d on %s", key, ms, s), func() bool { return pttl(t, s, key) > ms })
	}
}

// wantNoKeys checks that no server holds any key, allowing a few seconds
// for the stragglers of an Unlock or Extend: those return once a quorum
// answered, and the other instances get the command shortly after.
func wantNoKeys(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		deadline := time.Now().Add(5 * time.Second)
		keys := s.Keys(t)
		for len(keys) != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			keys = s.Keys(t)
		}
		if len(keys) != 0 {
			t.Errorf("%s: keys left: %q", s, keys)
		}
	}
}

// wantNoKeysNow checks that no server holds any key right now: after Close,
// or after a failed acquisition (whose clean-up waits for every instance).
func wantNoKeysNow(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		if keys := s.Keys(t); len(keys) != 0 {
			t.Errorf("%s: keys left: %q", s, keys)
		}
	}
}

// commandCalls returns how many times s executed cmd (INFO commandstats).
func commandCalls(t *testing.T, s *redistest.Server, cmd string) int {
	t.Helper()
	info := s.Do(t, "INFO", "commandstats")
	prefix := "cmdstat_" + cmd + ":calls="
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
			if err != nil {
				t.Fatalf("%s: bad commandstats line %q", s, line)
			}
			return n
		}
	}
	return 0
}

// endpointOf returns the server an InstanceError.Endpoint names, or nil.
// Names are "redis://ADDR", "ADDR" or "client[i] ADDR".
func endpointOf(name string, servers []*redistest.Server) *redistest.Server {
	for _, s := range servers {
		a := s.Addr()
		if name == a || name == "redis://"+a || strings.HasSuffix(name, " "+a) || strings.HasPrefix(name, "redis://"+a+"/") {
			return s
		}
	}
	return nil
}

// instanceErrors returns the *InstanceError values in err's tree.
func instanceErrors(err error) []*redlock.InstanceError {
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		return nil
	}
	return qe.Instances
}

// quorumError returns err as a *QuorumError or fails the test.
func quorumError(t *testing.T, err error) *redlock.QuorumError {
	t.Helper()
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		t.Fatalf("error %v (%T) is not a *QuorumError", err, err)
	}
	return qe
}

// newGoRedis is the go-redis client of the tests (closed in t.Cleanup).
func newGoRedis(t *testing.T, addr string) *redis.Client {
	rc := redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}
