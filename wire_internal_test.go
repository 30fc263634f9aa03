package redlock

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var _ ScriptLoader = (*lazyRueidis)(nil)

// TestLazyClusterDoesNotLoad: a dialed cluster endpoint says it cannot
// load scripts, without building its client.
func TestLazyClusterDoesNotLoad(t *testing.T) {
	l := &lazyRueidis{cluster: true, name: "cluster"}
	if err := l.LoadScripts(context.Background(), allScriptSources); !errors.Is(err, errors.ErrUnsupported) || !cannotLoad(err) {
		t.Errorf("LoadScripts = %v, want errors.ErrUnsupported", err)
	}
	if l.cur.Load() != nil || l.pending != nil {
		t.Error("LoadScripts built the cluster client")
	}
}

// TestAllScriptsListsEveryScript: allScripts holds every embedded script
// (the negative controls' scripts/controls/ are not embedded here), each once.
func TestAllScriptsListsEveryScript(t *testing.T) {
	entries, err := scriptFS.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	listed := make(map[string]int)
	for _, s := range allScripts {
		listed[s.name]++
	}
	for _, e := range entries {
		if e.IsDir() { // scripts/controls: the negative controls', never embedded in a normal build
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".lua")
		if listed[name] != 1 {
			t.Errorf("allScripts lists %s %d times, want once", name, listed[name])
		}
	}
	if len(allScriptSources) != len(allScripts) {
		t.Fatalf("%d sources for %d scripts", len(allScriptSources), len(allScripts))
	}
	for i, s := range allScripts {
		if allScriptSources[i] != s.src {
			t.Errorf("source %d is not %s's", i, s.name)
		}
	}
}

// fakeClient is a script cache in memory: EvalSha answers NOSCRIPT for a
// script that was neither loaded nor run with Eval.
type fakeClient struct {
	mu       sync.Mutex
	cache    map[string]bool // SHA1s
	evals    []string        // Eval'd scripts' names, in order
	evalshas int
}

func newFakeClient() *fakeClient { return &fakeClient{cache: make(map[string]bool)} }

func (c *fakeClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evalshas++
	if !c.cache[sha] {
		return nil, errors.New("NOSCRIPT No matching script. Please use EVAL.")
	}
	return int64(1), nil
}

func (c *fakeClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range allScripts {
		if s.src == src {
			c.cache[s.sha] = true
			c.evals = append(c.evals, s.name)
		}
	}
	return int64(1), nil
}

func (c *fakeClient) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cache)
}

func (c *fakeClient) cached(s *script) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache[s.sha]
}

func (c *fakeClient) evalled() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.evals...)
}

// fakeLoader adds LoadScripts: err (when set) is its answer, gate (when
// set) holds it until closed.
type fakeLoader struct {
	*fakeClient
	loads atomic.Int32
	err   atomic.Pointer[error]
	gate  chan struct{}
}

func (l *fakeLoader) LoadScripts(ctx context.Context, scripts []string) error {
	l.loads.Add(1)
	if l.gate != nil {
		select {
		case <-l.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p := l.err.Load(); p != nil {
		return *p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, src := range scripts {
		for _, s := range allScripts {
			if s.src == src {
				l.cache[s.sha] = true
			}
		}
	}
	return nil
}

func (l *fakeLoader) fail(err error) {
	if err == nil {
		l.err.Store(nil)
		return
	}
	l.err.Store(&err)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCall(t *testing.T, in *instance, s *script) {
	t.Helper()
	if v, err := call(callCtx(t), in, s, []string{"k"}, []string{"tok", "1000"}); err != nil || v != int64(1) {
		t.Fatalf("call %s = (%#v, %v)", s.name, v, err)
	}
}

// TestCallLoadsScripts: the first call loads every script, later ones do
// not; a NOSCRIPT (a flushed cache) falls back to EVAL and makes the next
// call load them again; no priming for a loader.
func TestCallLoadsScripts(t *testing.T) {
	l := &fakeLoader{fakeClient: newFakeClient()}
	in := &instance{client: l}
	mustCall(t, in, scriptAcquire)
	mustCall(t, in, scriptRelease)
	mustCall(t, in, scriptAcquireMany)
	if n := l.loads.Load(); n != 1 {
		t.Fatalf("%d loads after three calls, want 1", n)
	}
	if got := l.evalled(); len(got) != 0 {
		t.Fatalf("EVAL of %q with the scripts loaded", got)
	}
	l.flush()
	mustCall(t, in, scriptAcquire)
	if got := l.evalled(); len(got) != 1 || got[0] != "acquire" {
		t.Fatalf("after a flush: EVAL of %q, want the fallback for acquire alone (no priming)", got)
	}
	if l.cached(scriptReleaseMany) {
		t.Fatal("release_many cached before the reload")
	}
	mustCall(t, in, scriptExtend)
	if n := l.loads.Load(); n != 2 {
		t.Fatalf("%d loads after the NOSCRIPT and one more call, want 2", n)
	}
	for _, s := range allScripts {
		if !l.cached(s) {
			t.Errorf("%s not loaded again", s.name)
		}
	}
}

// TestCallLoadErrors: an error that will last (NOPERM, unsupported) stops
// the loading for good and the instance primes again; a passing one (a
// timeout, a lost connection) is retried by the next call.
func TestCallLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		err     error
		lasting bool
	}{
		{errors.New("NOPERM User locker has no permissions to run the 'script|load' command"), true},
		{errors.New("ERR unknown command 'SCRIPT', with args beginning with: 'LOAD'"), true},
		{errors.Join(errors.New("cluster"), errors.ErrUnsupported), true},
		{errors.New("NOPERM User locker has no permissions to run the 'script' command"), true},
		{errors.New("NOPERM User locker has no permissions to run the 'select' command"), false},
		{context.DeadlineExceeded, false},
		{errors.New("EOF"), false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			l := &fakeLoader{fakeClient: newFakeClient()}
			l.fail(tc.err)
			in := &instance{client: l}
			mustCall(t, in, scriptAcquire) // NOSCRIPT, EVAL
			l.fail(nil)
			if !tc.lasting {
				// Held back for scriptLoadRetry after a failure.
				mustCall(t, in, scriptAcquire)
				if n := l.loads.Load(); n != 1 {
					t.Fatalf("%d loads right after a failed one, want 1 (held back)", n)
				}
				in.loadAfter.Store(time.Now().Add(-time.Second).UnixNano())
			}
			mustCall(t, in, scriptAcquire)
			wantLoads, wantEvals := int32(2), []string{"acquire"}
			if tc.lasting {
				// Not asked again; the first NOSCRIPT primed the release.
				wantLoads, wantEvals = 1, []string{"acquire", "release"}
			}
			if n := l.loads.Load(); n != wantLoads {
				t.Errorf("%d loads, want %d", n, wantLoads)
			}
			if got := l.evalled(); strings.Join(got, ",") != strings.Join(wantEvals, ",") {
				t.Errorf("EVAL of %q, want %q", got, wantEvals)
			}
		})
	}
}

// TestCallWithoutLoader: a Client that is not a ScriptLoader keeps the
// EVAL fallback and the priming of the release.
func TestCallWithoutLoader(t *testing.T) {
	c := newFakeClient()
	in := &instance{client: c}
	mustCall(t, in, scriptAcquire)
	mustCall(t, in, scriptRelease)
	if got := c.evalled(); strings.Join(got, ",") != "acquire,release" {
		t.Errorf("EVAL of %q, want acquire then the priming of release", got)
	}
	if st := in.scripts.Load(); st != scriptsNoLoader {
		t.Errorf("state %d, want scriptsNoLoader", st)
	}
}

// TestCallLoadsOnceAtATime: while one call loads, the others go ahead
// without loading (the EVAL fallback covers them).
func TestCallLoadsOnceAtATime(t *testing.T) {
	l := &fakeLoader{fakeClient: newFakeClient(), gate: make(chan struct{})}
	in := &instance{client: l}
	first := make(chan struct{})
	go func() {
		defer close(first)
		mustCall(t, in, scriptAcquire)
	}()
	for l.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustCall(t, in, scriptRelease)
		}()
	}
	wg.Wait()
	if n := l.loads.Load(); n != 1 {
		t.Errorf("%d loads while one was running, want 1", n)
	}
	if st := in.scripts.Load(); st != scriptsReload {
		t.Errorf("state %d after NOSCRIPTs during the load, want scriptsReload", st)
	}
	close(l.gate)
	<-first
	// The NOSCRIPTs of the calls that went ahead (they might have come
	// after the load) ask for one more load, by the next call.
	mustCall(t, in, scriptExtend)
	mustCall(t, in, scriptExtend)
	if n := l.loads.Load(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
	if st := in.scripts.Load(); st != scriptsLoaded {
		t.Errorf("state %d, want scriptsLoaded", st)
	}
}

// TestCallLoadWaitsHalfTheDeadline: a load that does not answer holds the
// call's own command for half of its remaining time at most, so that it is
// still sent within the deadline; the load keeps the whole deadline (and
// the call returns after it).
func TestCallLoadWaitsHalfTheDeadline(t *testing.T) {
	l := &fakeLoader{fakeClient: newFakeClient(), gate: make(chan struct{})}
	defer close(l.gate)
	c := &timedClient{fakeLoader: l}
	in := &instance{client: c}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	v, err := call(ctx, in, scriptAcquire, []string{"k"}, []string{"tok", "1000"})
	if err != nil || v != int64(1) {
		t.Fatalf("call = (%#v, %v), want the EVAL fallback's answer", v, err)
	}
	if d := c.sent.Sub(start); d < 150*time.Millisecond || d > 350*time.Millisecond {
		t.Errorf("EVALSHA sent after %v, want about 200ms (half the deadline)", d)
	}
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("call returned after %v, before the load's deadline (400ms)", d)
	}
	if st := in.scripts.Load(); st != scriptsUnloaded {
		t.Errorf("state %d after an unanswered load, want scriptsUnloaded", st)
	}
}

// timedClient records when EvalSha was called.
type timedClient struct {
	*fakeLoader
	sent time.Time
}

func (c *timedClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.sent = time.Now()
	return c.fakeLoader.EvalSha(ctx, sha, keys, args)
}
