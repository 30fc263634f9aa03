// Package clienttest is the contract test suite that every redlock.Client
// adapter must pass. It runs against real redis-server processes started by
// internal/redistest.
//
// An adapter's tests call Run with a function that builds a client for one
// server address:
//
//	func TestContract(t *testing.T) {
//		clienttest.Run(t, func(t *testing.T, addr string) redlock.Client {
//			rc := ... // dial addr
//			t.Cleanup(func() { rc.Close() })
//			return adapter.New(rc)
//		})
//	}
//
// newClient must register the closing of what it dials with t.Cleanup, and
// must leave the client library's own read/write timeouts at a minute or
// more: the suite checks that the context alone bounds a call to a paused
// server.
package clienttest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// hangTimeout bounds how long the suite waits for a call that must return
// because its context ended. It only detects hangs: it is far above the
// context deadlines used and far below the client timeouts newClient must
// leave in place. The suite logs the actual times.
const hangTimeout = 15 * time.Second

// testTimeout bounds every subtest's own calls.
const testTimeout = 30 * time.Second

// NewClientFunc builds a client for the redis-server at addr (host:port).
type NewClientFunc func(t *testing.T, addr string) redlock.Client

// Run runs the contract suite with clients built by newClient. It starts
// its own redis-servers.
func Run(t *testing.T, newClient NewClientFunc) {
	t.Helper()
	t.Run("Replies", func(t *testing.T) { testReplies(t, newClient) })
	t.Run("KeysAndArgs", func(t *testing.T) { testKeysAndArgs(t, newClient) })
	t.Run("ErrorReplies", func(t *testing.T) { testErrorReplies(t, newClient) })
	t.Run("ScriptFlush", func(t *testing.T) { testScriptFlush(t, newClient) })
	t.Run("LoadScripts", func(t *testing.T) { testLoadScripts(t, newClient) })
	t.Run("Stringer", func(t *testing.T) { testStringer(t, newClient) })
	t.Run("CancelledBeforeCall", func(t *testing.T) { testCancelledBeforeCall(t, newClient) })
	t.Run("DeadlinePausedServer", func(t *testing.T) { testDeadline(t, newClient) })
	t.Run("CancelPausedServer", func(t *testing.T) { testCancel(t, newClient) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newClient) })
	t.Run("Redlock", func(t *testing.T) { testRedlock(t, newClient) })
	t.Run("RedlockContention", func(t *testing.T) { testContention(t, newClient) })
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sha(script string) string {
	sum := sha1.Sum([]byte(script))
	return hex.EncodeToString(sum[:])
}

// evalBoth runs script with EVAL, then with EVALSHA (now cached), and
// checks that both give the same reply.
func evalBoth(t *testing.T, ctx context.Context, c redlock.Client, script string, keys, args []string) (any, error) {
	t.Helper()
	v1, err1 := c.Eval(ctx, script, keys, args)
	v2, err2 := c.EvalSha(ctx, sha(script), keys, args)
	if !reflect.DeepEqual(v1, v2) || (err1 == nil) != (err2 == nil) {
		t.Fatalf("script %q: EVAL gave (%#v, %v), EVALSHA gave (%#v, %v)", script, v1, err1, v2, err2)
	}
	if err1 != nil && err2 != nil && err1.Error() != err2.Error() {
		// The texts differ only by the script's SHA in some messages; the
		// prefix must be the same.
		if firstWord(err1.Error()) != firstWord(err2.Error()) {
			t.Fatalf("script %q: EVAL error %q, EVALSHA error %q", script, err1, err2)
		}
	}
	return v1, err1
}

func firstWord(s string) string {
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[:i]
	}
	return s
}

// testReplies checks that every reply shape is normalised to int64, string,
// []any or nil, with both EVAL and EVALSHA.
func testReplies(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	ctx := testCtx(t)
	cases := []struct {
		name   string
		script string
		want   any
	}{
		{"integer", "return 42", int64(42)},
		{"zero", "return 0", int64(0)},
		{"negative", "return -1", int64(-1)},
		{"large integer", "return 1234567890123", int64(1234567890123)},
		{"number truncated", "return 3.99", int64(3)},
		{"bulk string", "return 'hello'", "hello"},
		{"empty string", "return ''", ""},
		{"status", "return redis.status_reply('OK')", "OK"},
		{"status from call", "return redis.call('SET', KEYS[1], 'v')", "OK"},
		{"nil", "return nil", nil},
		{"nil from GET", "return redis.call('GET', 'clienttest:missing')", nil},
		{"false", "return false", nil},
		{"true", "return true", int64(1)},
		{"empty array", "return {}", []any{}},
		{"array", "return {1, 'two', {3, 'four'}, {}}", []any{int64(1), "two", []any{int64(3), "four"}, []any{}}},
		{"array with false", "return {1, false, 'x'}", []any{int64(1), nil, "x"}},
		{"array with true", "return {true}", []any{int64(1)}},
		{"array of inspect shape", "return {'token', -2}", []any{"token", int64(-2)}},
		{"PTTL from call", "return redis.call('PTTL', 'clienttest:missing')", int64(-2)},
		{"double", "return {double=3.5}", "3.5"},
		{"map", "return {map={only='one'}}", []any{"only", "one"}},
	}
	keys := []string{"clienttest:replies"}
	for _, tc := range cases {
		got, err := evalBoth(t, ctx, c, tc.script, keys, nil)
		if err != nil {
			t.Errorf("%s: %q: unexpected error %v", tc.name, tc.script, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q = %#v (%T), want %#v (%T)", tc.name, tc.script, got, got, tc.want, tc.want)
		}
	}
}

// testKeysAndArgs checks that keys and args arrive as given, binary-safe,
// including none and large ones.
func testKeysAndArgs(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	ctx := testCtx(t)
	const echo = "local out = {#KEYS, #ARGV} " +
		"for _, k in ipairs(KEYS) do table.insert(out, k) end " +
		"for _, a in ipairs(ARGV) do table.insert(out, a) end " +
		"return out"
	big := strings.Repeat("x", 1<<20)
	cases := []struct {
		keys, args []string
	}{
		{nil, nil},
		{[]string{"k"}, nil},
		{nil, []string{"a"}},
		{[]string{"k1"}, []string{"tok", "30000"}},
		{[]string{"k1", "k2", "k3"}, []string{"", "a b", "\x00\xff\r\n", "ünïcödé ✓"}},
		{[]string{"{same}:1", "{same}:2"}, []string{big}},
	}
	for _, tc := range cases {
		got, err := evalBoth(t, ctx, c, echo, tc.keys, tc.args)
		if err != nil {
			t.Fatalf("keys %q args (%d): %v", tc.keys, len(tc.args), err)
		}
		want := []any{int64(len(tc.keys)), int64(len(tc.args))}
		for _, k := range tc.keys {
			want = append(want, k)
		}
		for _, a := range tc.args {
			want = append(want, a)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("keys %q, %d args: echo mismatch (got %d elements)", tc.keys, len(tc.args), lenOf(got))
		}
	}
	// A script's writes land in the key it names, with the value given.
	if _, err := c.Eval(ctx, "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])", []string{"clienttest:k"}, []string{"tok-1", "60000"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Do(t, "GET", "clienttest:k"); got != "tok-1" {
		t.Fatalf("GET after script = %q, want tok-1", got)
	}
	if ms, _ := strconv.Atoi(s.Do(t, "PTTL", "clienttest:k")); ms <= 0 || ms > 60000 {
		t.Fatalf("PTTL after script = %d, want in (0, 60000]", ms)
	}
}

func lenOf(v any) int {
	if a, ok := v.([]any); ok {
		return len(a)
	}
	return -1
}

// testErrorReplies checks that Redis error replies are errors whose text
// starts with the Redis error prefix, that they are not mistaken for
// context errors, and that the client keeps working after them.
func testErrorReplies(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	ctx := testCtx(t)
	s.Do(t, "RPUSH", "clienttest:list", "x")

	check := func(what string, err error, prefix string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error, want one starting %q", what, prefix)
			return
		}
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s: error %q does not start with %q", what, err, prefix)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("%s: error reply %q satisfies errors.Is with a context error", what, err)
		}
	}

	v, err := c.EvalSha(ctx, sha("return 'never loaded'"), nil, nil)
	check("EVALSHA of an unknown script", err, "NOSCRIPT")
	if v != nil {
		t.Errorf("EVALSHA of an unknown script: value %#v with the error, want nil", v)
	}
	_, err = evalBoth(t, ctx, c, "return redis.call('GET', KEYS[1])", []string{"clienttest:list"}, nil)
	check("GET of a list inside a script", err, "WRONGTYPE")
	_, err = evalBoth(t, ctx, c, "return redis.error_reply('MYCODE custom failure')", nil, nil)
	check("redis.error_reply with a code", err, "MYCODE custom failure")
	_, err = evalBoth(t, ctx, c, "return redis.error_reply('ERR custom failure')", nil, nil)
	check("redis.error_reply with ERR", err, "ERR custom failure")
	_, err = c.Eval(ctx, "this is not lua", nil, nil)
	check("EVAL of a syntax error", err, "ERR")
	_, err = evalBoth(t, ctx, c, "return redis.call('NOSUCHCOMMAND')", nil, nil)
	check("unknown command inside a script", err, "ERR")

	// The connection still works after error replies.
	for i := 0; i < 3; i++ {
		v, err := c.Eval(ctx, "return 7", nil, nil)
		if err != nil || v != int64(7) {
			t.Fatalf("after error replies: (%#v, %v), want (7, nil)", v, err)
		}
	}
}

// testScriptFlush checks that EVALSHA after SCRIPT FLUSH gives NOSCRIPT, and
// that EVAL loads the script again (what redlock's fallback relies on).
func testScriptFlush(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	ctx := testCtx(t)
	const script = "return 'flush-' .. ARGV[1]"
	if v, err := evalBoth(t, ctx, c, script, nil, []string{"a"}); err != nil || v != "flush-a" {
		t.Fatalf("before flush: (%#v, %v)", v, err)
	}
	if got := s.Do(t, "SCRIPT", "FLUSH"); got != "OK" {
		t.Fatalf("SCRIPT FLUSH = %q", got)
	}
	v, err := c.EvalSha(ctx, sha(script), nil, []string{"b"})
	if err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("EVALSHA after SCRIPT FLUSH = (%#v, %v), want a NOSCRIPT error", v, err)
	}
	if v, err := c.Eval(ctx, script, nil, []string{"c"}); err != nil || v != "flush-c" {
		t.Fatalf("EVAL after flush: (%#v, %v)", v, err)
	}
	if v, err := c.EvalSha(ctx, sha(script), nil, []string{"d"}); err != nil || v != "flush-d" {
		t.Fatalf("EVALSHA after EVAL reloaded the script: (%#v, %v)", v, err)
	}
}

// testLoadScripts checks redlock.ScriptLoader, for a client that implements
// it (it is optional; a client that does not is logged): after
// LoadScripts, EVALSHA of each of the scripts works on a server whose
// script cache was flushed; LoadScripts of none is nil; an error reply
// comes back with its Redis prefix (ERR for a script that does not
// compile, NOPERM for a user without SCRIPT LOAD); an ended context
// returns its error and loads nothing.
func testLoadScripts(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	sl, ok := c.(redlock.ScriptLoader)
	if !ok {
		t.Logf("%T does not implement redlock.ScriptLoader; redlock relies on the EVAL fallback alone", c)
		return
	}
	ctx := testCtx(t)
	warmUp(t, c)
	if got := s.Do(t, "SCRIPT", "FLUSH"); got != "OK" {
		t.Fatalf("SCRIPT FLUSH = %q", got)
	}
	scripts := []string{
		"return 'loaded-' .. ARGV[1]",
		"return {KEYS[1], #ARGV}",
		counterScript,
	}
	for i := 0; i < 20; i++ { // a larger batch
		scripts = append(scripts, fmt.Sprintf("return %d", i))
	}
	if err := sl.LoadScripts(ctx, scripts); err != nil {
		t.Fatalf("LoadScripts: %v", err)
	}
	for _, src := range scripts {
		if got := s.Do(t, "SCRIPT", "EXISTS", sha(src)); got != "1" {
			t.Errorf("after LoadScripts: SCRIPT EXISTS of %q = %s, want 1", src, got)
		}
	}
	if v, err := c.EvalSha(ctx, sha(scripts[0]), nil, []string{"x"}); err != nil || v != "loaded-x" {
		t.Errorf("EVALSHA of a loaded script = (%#v, %v), want (\"loaded-x\", nil)", v, err)
	}
	if v, err := c.EvalSha(ctx, sha(scripts[1]), []string{"clienttest:k"}, []string{"a", "b"}); err != nil || !reflect.DeepEqual(v, []any{"clienttest:k", int64(2)}) {
		t.Errorf("EVALSHA of a loaded script with keys and args = (%#v, %v)", v, err)
	}
	if v, err := c.EvalSha(ctx, sha(counterScript), []string{"clienttest:loaded"}, nil); err != nil || v != int64(1) {
		t.Errorf("EVALSHA of the loaded counter = (%#v, %v), want (1, nil)", v, err)
	}
	for i := 0; i < 20; i++ {
		if v, err := c.EvalSha(ctx, sha(fmt.Sprintf("return %d", i)), nil, nil); err != nil || v != int64(i) {
			t.Errorf("EVALSHA of loaded script %d = (%#v, %v)", i, v, err)
		}
	}

	if err := sl.LoadScripts(ctx, nil); err != nil {
		t.Errorf("LoadScripts of no script: %v", err)
	}
	if err := sl.LoadScripts(ctx, []string{"return 'fine'", "this is not lua"}); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
		t.Errorf("LoadScripts of a script that does not compile: %v, want an error starting ERR", err)
	} else if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("LoadScripts error reply %q satisfies errors.Is with a context error", err)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	const unsent = "return 'never sent'"
	if err := sl.LoadScripts(cancelled, []string{unsent}); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadScripts with a cancelled context: %v, want errors.Is context.Canceled", err)
	}
	if got := s.Do(t, "SCRIPT", "EXISTS", sha(unsent)); got != "0" {
		t.Errorf("LoadScripts with a cancelled context loaded the script")
	}

	// An ACL user without SCRIPT LOAD (here the default user, which c is
	// connected as): NOPERM, which tells redlock not to ask again.
	if got := s.Do(t, "ACL", "SETUSER", "default", "-script|load"); got != "OK" {
		t.Fatalf("ACL SETUSER = %q", got)
	}
	err := sl.LoadScripts(ctx, []string{"return 'denied'"})
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("LoadScripts denied by the ACL: %v, want an error starting NOPERM", err)
	}
	if v, err := c.Eval(ctx, "return 'still works'", nil, nil); err != nil || v != "still works" {
		t.Errorf("EVAL after a denied LoadScripts = (%#v, %v)", v, err)
	}
}

// testStringer checks that a client that names itself names its address.
func testStringer(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	st, ok := c.(fmt.Stringer)
	if !ok {
		t.Logf("%T does not implement fmt.Stringer; redlock names it client[i]", c)
		return
	}
	if got := st.String(); !strings.Contains(got, s.Addr()) {
		t.Errorf("String() = %q, want it to contain the address %q", got, s.Addr())
	}
}

// counterScript increments KEYS[1] and returns the new value: it shows
// whether a call reached the server.
const counterScript = "return redis.call('INCR', KEYS[1])"

// testCancelledBeforeCall checks that a call with an ended context returns
// its error and sends nothing.
func testCancelledBeforeCall(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	warmUp(t, c)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"deadline passed", expired, context.DeadlineExceeded}} {
		_, err := c.EvalSha(tc.ctx, sha(counterScript), []string{"clienttest:ctr"}, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: EvalSha error %v, want errors.Is %v", tc.name, err, tc.want)
		}
		_, err = c.Eval(tc.ctx, counterScript, []string{"clienttest:ctr"}, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Eval error %v, want errors.Is %v", tc.name, err, tc.want)
		}
	}
	if got := s.Do(t, "GET", "clienttest:ctr"); got != "(nil)" {
		t.Errorf("a call with an ended context reached the server: counter = %s", got)
	}
}

// warmUp connects c and loads counterScript.
func warmUp(t *testing.T, c redlock.Client) {
	t.Helper()
	if _, err := c.Eval(testCtx(t), counterScript, []string{"clienttest:warm"}, nil); err != nil {
		t.Fatal(err)
	}
}

type callResult struct {
	v       any
	err     error
	elapsed time.Duration
}

// callAsync runs one EvalSha of counterScript on its own goroutine.
func callAsync(ctx context.Context, c redlock.Client, key string) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		start := time.Now()
		v, err := c.EvalSha(ctx, sha(counterScript), []string{key}, nil)
		ch <- callResult{v, err, time.Since(start)}
	}()
	return ch
}

// waitCall waits for a call that must return; it fails the test (on the
// test goroutine) if it hangs. The server is resumed by the caller's
// cleanup so the call can finish either way.
func waitCall(t *testing.T, ch <-chan callResult, what string) callResult {
	t.Helper()
	timer := time.NewTimer(hangTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r
	case <-timer.C:
		t.Fatalf("%s: the call did not return within %v of its context ending", what, hangTimeout)
		return callResult{}
	}
}

// pausedServer returns a server with a connected, warmed-up client, then
// pauses the server (resumed in cleanup, before the server stops).
func pausedServer(t *testing.T, newClient NewClientFunc) (*redistest.Server, redlock.Client) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	warmUp(t, c)
	s.Pause(t)
	t.Cleanup(func() { s.Resume(t) }) // SIGCONT again is harmless
	return s, c
}

// recovers checks that c works again once s answers: a bounded number of
// calls, the first one that succeeds ends the check.
func recovers(t *testing.T, c redlock.Client) {
	t.Helper()
	var err error
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.EvalSha(ctx, sha(counterScript), []string{"clienttest:after"}, nil)
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("the client does not work again after the server resumed: %v", err)
}

// testDeadline checks that a call to a paused server returns once its
// context's deadline passes, with an error that satisfies errors.Is with
// context.DeadlineExceeded, twice in a row (the second call may have to
// re-dial), and that the client works again after the server resumes.
func testDeadline(t *testing.T, newClient NewClientFunc) {
	s, c := pausedServer(t, newClient)
	const deadline = 200 * time.Millisecond
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		r := waitCall(t, callAsync(ctx, c, "clienttest:paused"), fmt.Sprintf("call %d to a paused server", i))
		cancel()
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("call %d to a paused server: (%#v, %v), want an error satisfying errors.Is(err, context.DeadlineExceeded)", i, r.v, r.err)
		}
		t.Logf("call %d to a paused server returned after %v (ctx deadline %v): %v", i, r.elapsed.Round(time.Millisecond), deadline, r.err)
	}
	s.Resume(t)
	recovers(t, c)
}

// testCancel checks that a call to a paused server that is cancelled
// returns with an error that satisfies errors.Is with context.Canceled.
// The context also has a deadline, as every call redlock makes does, and
// the call may return only then: go-redis bounds a call by its deadline
// alone, and so does rueidis for a call that took its synchronous
// (unpipelined) path. The log says when it returned. redlock itself stops
// waiting at cancellation; only its call goroutines live to the deadline.
func testCancel(t *testing.T, newClient NewClientFunc) {
	s, c := pausedServer(t, newClient)
	const deadline = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	ch := callAsync(ctx, c, "clienttest:paused")
	// Whether cancel lands before or after the call is sent, the call must
	// return with context.Canceled; the wait only makes "after" likely.
	timer := time.NewTimer(100 * time.Millisecond)
	select {
	case r := <-ch:
		timer.Stop()
		t.Fatalf("a call to a paused server returned before its context was cancelled: (%#v, %v)", r.v, r.err)
	case <-timer.C:
	}
	cancelledAt := time.Now()
	cancel()
	r := waitCall(t, ch, "cancelled call to a paused server")
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled call to a paused server: (%#v, %v), want an error satisfying errors.Is(err, context.Canceled)", r.v, r.err)
	}
	t.Logf("cancelled call returned %v after cancel (ctx deadline %v after the call): %v",
		time.Since(cancelledAt).Round(time.Millisecond), deadline, r.err)
	s.Resume(t)
	recovers(t, c)
}

// testConcurrent checks that one client serves many goroutines at once
// (run with -race): each goroutine increments its own counter and must see
// 1, 2, 3, ... in order, mixing EVAL and EVALSHA.
func testConcurrent(t *testing.T, newClient NewClientFunc) {
	s := redistest.Start(t, 1)[0]
	c := newClient(t, s.Addr())
	ctx := testCtx(t)
	const workers, calls = 32, 40
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := "clienttest:conc:" + strconv.Itoa(w)
			for i := 1; i <= calls; i++ {
				var v any
				var err error
				if i%5 == 0 {
					v, err = c.Eval(ctx, counterScript, []string{key}, nil)
				} else {
					v, err = c.EvalSha(ctx, sha(counterScript), []string{key}, nil)
					if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
						v, err = c.Eval(ctx, counterScript, []string{key}, nil)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d call %d: %w", w, i, err)
					return
				}
				if v != int64(i) {
					errs <- fmt.Errorf("worker %d call %d: got %#v, want %d", w, i, v, i)
					return
				}
			}
			errs <- nil
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for w := 0; w < workers; w++ {
		if got := s.Do(t, "GET", "clienttest:conc:"+strconv.Itoa(w)); got != strconv.Itoa(calls) {
			t.Errorf("counter %d = %s, want %d", w, got, calls)
		}
	}
}

// managers builds a Manager over three fresh servers through newClient.
func managers(t *testing.T, newClient NewClientFunc, servers []*redistest.Server, n int, cfg redlock.Config) []*redlock.Manager {
	t.Helper()
	var out []*redlock.Manager
	for i := 0; i < n; i++ {
		clients := make([]redlock.Client, len(servers))
		for j, s := range servers {
			clients[j] = newClient(t, s.Addr())
		}
		m, err := redlock.NewFromClients(clients, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		out = append(out, m)
	}
	return out
}

// testRedlock runs the lock flow through the adapter on three servers:
// lock, contention from a second manager, extend, TTL, unlock, re-lock.
func testRedlock(t *testing.T, newClient NewClientFunc) {
	servers := redistest.Start(t, 3)
	ms := managers(t, newClient, servers, 2, redlock.Config{RetryCount: 2, RetryDelayMin: time.Millisecond, RetryDelayMax: 5 * time.Millisecond})
	m, other := ms[0], ms[1]
	ctx := testCtx(t)

	l, err := m.Lock(ctx, "clienttest:res", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	// Lock returns once a quorum agreed; the last instance may still be
	// answering.
	holding := 0
	for _, s := range servers {
		if s.Do(t, "GET", "clienttest:res") == l.Token() {
			holding++
		}
	}
	if holding < m.Quorum() {
		t.Fatalf("%d instances hold the token after Lock, want at least %d", holding, m.Quorum())
	}
	if ok, err := other.IsLocked(ctx, "clienttest:res"); err != nil || !ok {
		t.Fatalf("IsLocked from another manager = (%v, %v), want (true, nil)", ok, err)
	}
	_, err = other.TryLock(ctx, "clienttest:res", redlock.TTL(10*time.Second))
	if !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryLock of a held resource: %v, want ErrNotAcquired", err)
	}
	var ie *redlock.InstanceError
	if !errors.As(err, &ie) || !errors.Is(ie, redlock.ErrHeldByOther) {
		t.Fatalf("TryLock of a held resource: %v, want an InstanceError with ErrHeldByOther", err)
	}
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	// Extend returns once a quorum extended; TTL reads the first quorum to
	// answer, which may include a straggler still at the old lease.
	d, err := l.TTL(ctx)
	if err != nil || d <= 0 || d > 20*time.Second {
		t.Fatalf("TTL after Extend(20s) = (%v, %v), want in (0, 20s]", d, err)
	}
	extended := 0
	for _, s := range servers {
		if ms, _ := strconv.Atoi(s.Do(t, "PTTL", "clienttest:res")); ms > 10000 {
			extended++
		}
	}
	if extended < m.Quorum() {
		t.Fatalf("%d instances have a PTTL over 10s after Extend(20s), want at least %d", extended, m.Quorum())
	}
	if ok, err := l.IsLocked(ctx); err != nil || !ok {
		t.Fatalf("Lock.IsLocked = (%v, %v)", ok, err)
	}
	// A lost script cache on one instance is repaired by the EVAL fallback.
	servers[1].Do(t, "SCRIPT", "FLUSH")
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	// Unlock returns once a quorum released; the last release (here maybe
	// the one that needed EVAL after the flush) completes shortly after.
	waitNoKeys(t, servers)
	if err := l.Unlock(ctx); !errors.Is(err, redlock.ErrNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
	}
	l2, err := other.TryLock(ctx, "clienttest:res", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of the second lock: %v", err)
	}
	// An auto-extended lock through the adapter.
	l3, err := m.Lock(ctx, "clienttest:auto")
	if err != nil {
		t.Fatalf("Lock with auto-extension: %v", err)
	}
	if err := l3.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of the auto-extended lock: %v", err)
	}
}

// waitNoKeys waits (bounded) until no server holds a key.
func waitNoKeys(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range servers {
		for {
			keys := s.Keys(t)
			if len(keys) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still has keys %q", s, keys)
			}
			time.Sleep(10 * time.Millisecond) // poll until the last release lands
		}
	}
}

// testContention checks mutual exclusion through the adapter: workers on
// several managers take turns on one resource, and never two at once.
func testContention(t *testing.T, newClient NewClientFunc) {
	servers := redistest.Start(t, 3)
	const workers, rounds = 6, 5
	ms := managers(t, newClient, servers, 3, redlock.Config{RetryDelayMin: time.Millisecond, RetryDelayMax: 10 * time.Millisecond})
	ctx := testCtx(t)
	var inside, maxInside, done atomic.Int32
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(m *redlock.Manager) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				l, err := m.LockWait(ctx, "clienttest:contended", redlock.TTL(10*time.Second))
				if err != nil {
					errs <- fmt.Errorf("LockWait: %w", err)
					return
				}
				n := inside.Add(1)
				for {
					old := maxInside.Load()
					if n <= old || maxInside.CompareAndSwap(old, n) {
						break
					}
				}
				time.Sleep(time.Millisecond) // hold the lock for a moment
				inside.Add(-1)
				if err := l.Unlock(ctx); err != nil {
					errs <- fmt.Errorf("Unlock: %w", err)
					return
				}
				done.Add(1)
			}
		}(ms[w%len(ms)])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := maxInside.Load(); got != 1 {
		t.Errorf("%d workers held the lock at once, want 1", got)
	}
	if got := done.Load(); got != workers*rounds {
		t.Errorf("%d lock/unlock rounds completed, want %d", got, workers*rounds)
	}
}
