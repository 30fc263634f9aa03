package redlock_test

// Attack tests of the sequencing of calls about one lock (quorum.go
// predecessor, lock.go beginExtendLocked/applyExtendLocked, watchdog.go
// batchCalls): deterministic interleavings against real redis-servers,
// triggered by script and argument on chosen instances, never by timing
// luck. Run them with go test -race -count=3 -run TestAttack .

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// ---------------------------------------------------------------------------
// lateClient: a call stuck on the wire.

// lateClient wraps a Client. A call that matches an armed stall does not
// reach the server until the stall is released; when its ctx ends first,
// the caller gets ctx's error at once, but the command stays "on the wire"
// and reaches the server when the stall is released. That is what a
// pooled client (the go-redis adapter) does when one of its connections
// stalls: the call gives up on that connection, go-redis drops it, and the
// bytes already written are still delivered (the kernel keeps sending a
// closed socket's data); later calls go out on other connections and can
// get there first. TestAttackStaleShorterExtendGoRedisProxy shows the same
// with a plain go-redis client and a TCP proxy that stalls one connection.
type lateClient struct {
	inner redlock.Client

	mu     sync.Mutex
	stalls []*stall
	done   []chan struct{} // per stuck command: closed once delivered
}

// stall holds the calls that match until release.
type stall struct {
	match     func(script string, args []string) bool
	open      chan struct{}
	once      sync.Once
	stuck     atomic.Int32 // calls that got stuck
	gaveUp    atomic.Int32 // of those: the caller stopped waiting (ctx ended)
	delivered atomic.Int32 // stuck calls that reached the server afterwards
	replies   sync.Map     // delivery number → reply, for the log
}

func (s *stall) release() { s.once.Do(func() { close(s.open) }) }

func (c *lateClient) stallCalls(match func(string, []string) bool) *stall {
	s := &stall{match: match, open: make(chan struct{})}
	c.mu.Lock()
	c.stalls = append(c.stalls, s)
	c.mu.Unlock()
	return s
}

func (c *lateClient) releaseAll() {
	c.mu.Lock()
	ss := slices.Clone(c.stalls)
	c.mu.Unlock()
	for _, s := range ss {
		s.release()
	}
	c.mu.Lock()
	done := slices.Clone(c.done)
	c.mu.Unlock()
	for _, d := range done {
		<-d
	}
}

func (c *lateClient) find(script string, args []string) *stall {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.stalls {
		if s.match(script, args) {
			return s
		}
	}
	return nil
}

type lateReply struct {
	v   any
	err error
}

func (c *lateClient) run(ctx context.Context, sha string, keys, args []string, do func(ctx context.Context, keys, args []string) (any, error)) (any, error) {
	s := c.find(scriptName(sha), args)
	if s == nil {
		return do(ctx, keys, args)
	}
	s.stuck.Add(1)
	keys, args = slices.Clone(keys), slices.Clone(args)
	ch := make(chan lateReply, 1)
	d := make(chan struct{})
	c.mu.Lock()
	c.done = append(c.done, d)
	c.mu.Unlock()
	go func() {
		defer close(d)
		<-s.open
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := do(dctx, keys, args)
		n := s.delivered.Add(1)
		s.replies.Store(n, lateReply{v, err})
		ch <- lateReply{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		s.gaveUp.Add(1)
		return nil, ctx.Err()
	}
}

func (c *lateClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	return c.run(ctx, sha, keys, args, func(ctx context.Context, keys, args []string) (any, error) {
		return c.inner.EvalSha(ctx, sha, keys, args)
	})
}

func (c *lateClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	return c.run(ctx, sha1Hex(src), keys, args, func(ctx context.Context, keys, args []string) (any, error) {
		return c.inner.Eval(ctx, src, keys, args)
	})
}

// newLateManager is newGateManager with lateClients.
func newLateManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, []*lateClient) {
	t.Helper()
	loadScripts(t, servers)
	ls := make([]*lateClient, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		rc := newGoRedis(t, s.Addr())
		ls[i] = &lateClient{inner: goredis.New(rc)}
		clients[i] = ls[i]
	}
	m, err := redlock.NewFromClients(clients, cfg)
	if err != nil {
		t.Fatalf("NewFromClients: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	t.Cleanup(func() {
		for _, l := range ls {
			l.releaseAll()
		}
	})
	return m, ls
}

// loadScripts loads every embedded script on the servers (no NOSCRIPT path).
func loadScripts(t *testing.T, servers []*redistest.Server) {
	t.Helper()
	scripts, err := embeddedScripts()
	if err != nil || len(scripts) == 0 {
		t.Fatalf("reading scripts/*.lua: %v (%d scripts)", err, len(scripts))
	}
	for _, s := range servers {
		for name, src := range scripts {
			if got := s.Do(t, "SCRIPT", "LOAD", src); got != sha1Hex(src) {
				t.Fatalf("%s: SCRIPT LOAD %s: %q", s, name, got)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Finding 1: an extension that returned without an answer is not over.

// TestAttackStaleShorterExtend: a fixed 5s lock, N=3, NodeTimeout 300ms.
// Extend(1s) reaches A; on B and C it is stuck on the wire: its calls give
// up at their deadline (300ms) and the Extend fails with ErrUnavailable,
// lowering Until to start+1s−drift. Round.run counts those calls as
// returned, so Extend(5s), made next, goes out to B and C at once (on other
// connections) and succeeds: Until = start+5s−drift. Then the stuck
// PEXPIRE 1000 reaches B and C. B and C now expire the key ~1s later, A
// ~5s: the quorum holds it for 1s while the handle is Valid for 5s, and
// another client takes the lock on B and C once their keys expired: two
// holders.
func TestAttackStaleShorterExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, ls := newLateManager(t, servers, redlock.Config{NodeTimeout: 300 * time.Millisecond})

	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sB := ls[1].stallCalls(onScriptArg("extend", 1, "1000"))
	sC := ls[2].stallCalls(onScriptArg("extend", 1, "1000"))
	err = l.Extend(ctx, time.Second)
	t.Logf("Extend(1s), stuck on B and C: %v (Until now+%v)", err, time.Until(l.Until()).Round(time.Millisecond))
	waitFor(t, time.Second, "the stuck calls to B and C to give up", func() bool {
		return sB.gaveUp.Load() == 1 && sC.gaveUp.Load() == 1
	})
	if err := l.Extend(ctx, 5*time.Second); err != nil {
		t.Fatalf("Extend(5s): %v", err)
	}
	t.Logf("Extend(5s): nil (Until now+%v)", time.Until(l.Until()).Round(time.Millisecond))
	// Extend returned at quorum: wait until B and C both ran it.
	waitFor(t, 3*time.Second, "B and C to run Extend(5s)", func() bool {
		return pttl(t, servers[1], "res") > 4000 && pttl(t, servers[2], "res") > 4000
	})
	// The stuck commands arrive.
	sB.release()
	sC.release()
	waitFor(t, 3*time.Second, "the stuck Extend(1s) delivered to B and C", func() bool {
		return sB.delivered.Load() == 1 && sC.delivered.Load() == 1
	})
	checkSafety(t, "after a failed Extend(1s) delivered late and Extend(5s)", servers, l, "res")
	// Extensions never shorten a lease: the late PEXPIRE 1000 changed
	// nothing, and no other client can take the lock.
	wantLeaseAbove(t, servers[1:], "res", 3000)
	wantNotAcquiredByOther(t, ctx, servers, "res", l)
}

// wantLeaseAbove checks that key has a PTTL above ms on every server.
func wantLeaseAbove(t *testing.T, servers []*redistest.Server, key string, ms int64) {
	t.Helper()
	for _, s := range servers {
		if p := pttl(t, s, key); p <= ms {
			t.Errorf("%s: PTTL %q = %d, want > %d: a late, shorter extension shortened the lease", s, key, p, ms)
		}
	}
}

// waitEvalsha waits until s has served more than n EVALSHA calls.
func waitEvalsha(t *testing.T, s *redistest.Server, n int) {
	t.Helper()
	waitFor(t, 3*time.Second, "the late call run on "+s.String(), func() bool {
		return commandCalls(t, s, "evalsha") > n
	})
}

// TestAttackStaleShorterExtendAutoLock: the same with the watchdog. An
// auto-extended lock (DefaultTTL 4s, NodeTimeout 1s): right after the
// acquisition the owner's Extend(3s) reaches A but is stuck on B and C; it
// fails and lowers Until to its start+3s−drift. The watchdog's first batch
// (PEXPIRE 4000, at 2.4s, made after the failed Extend) succeeds: Until =
// its start+4s−drift. Then the stuck PEXPIRE 3000 reaches B and C: their
// keys expire ~850ms before Until.
func TestAttackStaleShorterExtendAutoLock(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, ls := newLateManager(t, servers, redlock.Config{DefaultTTL: 4 * time.Second, NodeTimeout: time.Second})

	l, err := m.Lock(ctx, "res")
	if err != nil {
		t.Fatal(err)
	}
	sB := ls[1].stallCalls(onScriptArg("extend", 1, "3000"))
	sC := ls[2].stallCalls(onScriptArg("extend", 1, "3000"))
	err = l.Extend(ctx, 3*time.Second)
	t.Logf("Extend(3s), stuck on B and C: %v (Until now+%v)", err, time.Until(l.Until()).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "the stuck calls to B and C to give up", func() bool {
		return sB.gaveUp.Load() == 1 && sC.gaveUp.Load() == 1
	})
	// The watchdog's first batch (extend_batch, 4000 ms): made after the
	// failed Extend, it succeeds on every instance.
	waitFor(t, 5*time.Second, "the watchdog's batch on every instance", func() bool {
		for _, s := range servers {
			if pttl(t, s, "res") <= 3100 {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "the batch's outcome applied", func() bool { return time.Until(l.Until()) > 3500*time.Millisecond })
	t.Logf("watchdog batch done: Until now+%v", time.Until(l.Until()).Round(time.Millisecond))
	sB.release()
	sC.release()
	waitFor(t, 3*time.Second, "the stuck Extend(3s) delivered to B and C", func() bool {
		return sB.delivered.Load() == 1 && sC.delivered.Load() == 1
	})
	checkSafety(t, "auto-extended lock after a failed Extend(3s) delivered late", servers, l, "res")
	_ = l.Unlock(ctx)
}

// ---------------------------------------------------------------------------
// The same with go-redis over a TCP proxy: no wrapper around the Client.

// stallProxy forwards TCP connections to a redis-server. Armed, it stalls
// the next connection whose client-to-server bytes contain every marker:
// those bytes (and what follows on that connection) are held until
// release, even after the client closed the connection (then they are
// delivered and the connection closed), as a network stall on one TCP
// connection does.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	markers [][]byte
	armed   bool
	conns   []net.Conn
	open    chan struct{}
	once    sync.Once
	stalled atomic.Int32 // connections stalled
	flushed atomic.Int32 // stalled connections whose bytes were delivered
	gone    atomic.Int32 // stalled connections the client closed while stalled
	wg      sync.WaitGroup
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, open: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) Addr() string { return p.ln.Addr().String() }

func (p *stallProxy) arm(markers ...[]byte) {
	p.mu.Lock()
	p.markers, p.armed = markers, true
	p.mu.Unlock()
}

func (p *stallProxy) release() { p.once.Do(func() { close(p.open) }) }

func (p *stallProxy) close() {
	p.release()
	_ = p.ln.Close()
	p.wg.Wait()
}

func (p *stallProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			for _, c := range p.conns {
				_ = c.Close()
			}
			p.mu.Unlock()
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(c)
		p.track(s)
		p.wg.Add(2)
		go func() { // server → client
			defer p.wg.Done()
			defer s.Close()
			defer c.Close()
			_, _ = io.Copy(c, s)
		}()
		go func() { // client → server
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			var held []byte
			stalled := false
			flush := func() bool {
				_, err := s.Write(held)
				held, stalled = nil, false
				p.flushed.Add(1)
				return err == nil
			}
			for {
				n, err := c.Read(buf)
				if n > 0 {
					chunk := buf[:n]
					if !stalled {
						p.mu.Lock()
						if p.armed && containsAll(chunk, p.markers) {
							p.armed, stalled = false, true
							p.stalled.Add(1)
						}
						p.mu.Unlock()
					}
					if stalled {
						held = append(held, chunk...)
					} else if _, werr := s.Write(chunk); werr != nil {
						return
					}
				}
				if err != nil {
					if stalled {
						// The client gave up on the connection; its bytes
						// are still on their way (the kernel delivers a
						// closed socket's data, then the FIN).
						p.gone.Add(1)
						<-p.open
						flush()
					}
					// Half-close: the server runs what it read, then
					// closes, which ends the other direction.
					_ = s.(*net.TCPConn).CloseWrite()
					return
				}
				if stalled {
					select {
					case <-p.open: // released while the client still uses it
						if !flush() {
							return
						}
					default:
					}
				}
			}
		}()
	}
}

func containsAll(b []byte, markers [][]byte) bool {
	for _, m := range markers {
		if !bytes.Contains(b, m) {
			return false
		}
	}
	return true
}

// TestAttackStaleShorterExtendGoRedisProxy is TestAttackStaleShorterExtend
// with the go-redis adapter exactly as a user builds it (ContextTimeoutEnabled,
// one go-redis client per instance), over TCP proxies: B's and C's proxies
// stall the connection that carries the EVALSHA of Extend(1s). go-redis
// times the call out at its deadline and drops that connection; Extend(5s)
// goes out on another one; then the stalled connection's bytes are
// delivered.
func TestAttackStaleShorterExtendGoRedisProxy(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	proxies := make([]*stallProxy, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		proxies[i] = startStallProxy(t, s.Addr())
		clients[i] = goredis.New(newGoRedis(t, proxies[i].Addr()))
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{NodeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	t.Cleanup(func() {
		for _, p := range proxies {
			p.release()
		}
	})

	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Warm B's and C's pools with idle connections besides the one the
	// Extend(1s) will take (a fresh pool dials one on demand anyway).
	for range 3 {
		if _, err := l.TTL(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The EVALSHA of extend with PEXPIRE 1000: RESP of the script's SHA1
	// and of the argument "1000".
	sha := []byte(redlock.ScriptSHA("extend"))
	arg := []byte("$4\r\n1000\r\n")
	proxies[1].arm(sha, arg)
	proxies[2].arm(sha, arg)
	err = l.Extend(ctx, time.Second)
	t.Logf("Extend(1s), its connections to B and C stalled: %v", err)
	if proxies[1].stalled.Load() != 1 || proxies[2].stalled.Load() != 1 {
		t.Fatalf("the proxies of B and C stalled %d and %d connections, want 1 each", proxies[1].stalled.Load(), proxies[2].stalled.Load())
	}
	if err := l.Extend(ctx, 5*time.Second); err != nil {
		t.Fatalf("Extend(5s): %v", err)
	}
	t.Logf("Extend(5s): nil (Until now+%v); B: PTTL %d, C: PTTL %d", time.Until(l.Until()).Round(time.Millisecond),
		pttl(t, servers[1], "res"), pttl(t, servers[2], "res"))
	// Extend returned at quorum: wait until B and C both ran it.
	waitFor(t, 3*time.Second, "B and C to run Extend(5s)", func() bool {
		return pttl(t, servers[1], "res") > 4000 && pttl(t, servers[2], "res") > 4000
	})
	// go-redis dropped the stalled connections (or not: either way the
	// bytes are on the wire); the network recovers.
	t.Logf("stalled connections closed by go-redis: B %d, C %d", proxies[1].gone.Load(), proxies[2].gone.Load())
	nB, nC := commandCalls(t, servers[1], "evalsha"), commandCalls(t, servers[2], "evalsha")
	proxies[1].release()
	proxies[2].release()
	waitFor(t, 3*time.Second, "the stalled bytes delivered to B and C", func() bool {
		return proxies[1].flushed.Load() == 1 && proxies[2].flushed.Load() == 1
	})
	waitEvalsha(t, servers[1], nB)
	waitEvalsha(t, servers[2], nC)
	checkSafety(t, "go-redis: after a failed Extend(1s) delivered late and Extend(5s)", servers, l, "res")
	wantLeaseAbove(t, servers[1:], "res", 3000)
	wantNotAcquiredByOther(t, ctx, servers, "res", l)
}

// ---------------------------------------------------------------------------
// Finding 2: a watchdog extension superseded by a failed Extend is thrown
// away, and the watchdog waits a full period: the lock is lost while every
// instance holds it.

// supersededWatchdog: an auto-extended lock (DefaultTTL 3s, NodeTimeout 3s). The watchdog's
// extension (script wdScript) runs on every instance, replies held. The
// owner calls Extend(ctx, 0) with a 50ms ctx: its calls wait behind the
// watchdog's, its ctx ends, it fails (ErrUnavailable + DeadlineExceeded)
// without changing anything. Then the watchdog's replies come: 3 of 3. The
// watchdog's success is discarded (it is not the extension made last), and
// the next one is scheduled 0.6×TTL after it: after the deadline, which
// still is the acquisition's. The Extend's own calls then extend every key
// too. The lock is lost at the acquisition's deadline, with its keys held
// on every instance for more than a second.
func supersededWatchdog(t *testing.T, wdScript string, lock func(ctx context.Context, m *redlock.Manager) (*redlock.Lock, error), keys ...string) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	// NodeTimeout 3s: the held calls must not reach their deadline on a
	// loaded machine (the watchdog would then fail and retry).
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: 3 * time.Second, NodeTimeout: 3 * time.Second})
	var hs []*hold
	for _, g := range gs {
		hs = append(hs, g.holdCalls(true, onScript(wdScript)))
	}
	l, err := lock(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the watchdog's "+wdScript+" on every instance, replies held", func() bool {
		for _, h := range hs {
			if h.held.Load() < 1 {
				return false
			}
		}
		return true
	})
	ectx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = l.Extend(ectx, 0)
	cancel()
	t.Logf("Extend(ctx 50ms, 0) behind the watchdog: %v", err)
	if err == nil {
		t.Fatal("Extend returned nil: the test needs it to fail")
	}
	for _, h := range hs {
		h.release()
	}
	waitFor(t, 3*time.Second, "the watchdog's replies", func() bool {
		for _, h := range hs {
			if h.passed.Load() < 1 {
				return false
			}
		}
		return true
	})
	// The Extend's calls follow the watchdog's on every instance.
	eventually(time.Second, func() bool {
		for _, g := range gs {
			if g.replyCount("extend")+g.replyCount("extend_many") < 1 {
				return false
			}
		}
		return true
	})
	until := l.Until()
	t.Logf("watchdog done; Until now+%v", time.Until(until).Round(time.Millisecond))
	// Wait until just past the deadline the handle has now.
	select {
	case <-l.Lost():
	case <-time.After(time.Until(until) + 200*time.Millisecond):
	}
	if l.Valid() {
		t.Logf("the lock is still Valid (Until now+%v): not lost", time.Until(l.Until()).Round(time.Millisecond))
		_ = l.Unlock(ctx)
		return
	}
	held := 0
	var least int64 = -1
	for _, s := range servers {
		ok := true
		var m int64 = -1
		for _, k := range keys {
			if get(t, s, k) != l.Token() {
				ok = false
				break
			}
			if p := pttl(t, s, k); m < 0 || p < m {
				m = p
			}
		}
		if ok {
			held++
			if least < 0 || m < least {
				least = m
			}
		}
	}
	if held >= 2 && least > 500 {
		t.Errorf("the auto-extended lock was lost (Valid false, Lost closed: %v) while %d of 3 instances hold its keys under its token for %dms more: "+
			"the watchdog's successful extension was discarded because the owner's Extend, made after it, failed, and the next one was scheduled after the deadline",
			isClosed(l.Lost()), held, least)
	}
}

func TestAttackSupersededWatchdogBatch(t *testing.T) {
	t.Parallel()
	supersededWatchdog(t, "extend_batch", func(ctx context.Context, m *redlock.Manager) (*redlock.Lock, error) {
		return m.Lock(ctx, "res")
	}, "res")
}

func TestAttackSupersededWatchdogMany(t *testing.T) {
	t.Parallel()
	supersededWatchdog(t, "extend_many", func(ctx context.Context, m *redlock.Manager) (*redlock.Lock, error) {
		return m.LockMany(ctx, []string{"r1", "r2"})
	}, "r1", "r2")
}

// ---------------------------------------------------------------------------
// Finding 3: one lock's pending call holds up the whole batch on an
// instance.

// TestAttackBatchHeadOfLineBlocking: two auto-extended locks S and M
// (DefaultTTL 3s, NodeTimeout 3s), taken together: one watchdog batch
// extends both, 1.8s after. Right after taking them, the owner of M calls
// Extend(M), whose calls to B and C are held (a stalled connection: they
// give up at their 3s deadline). The batch's goroutine for B (and C) waits
// for M's previous call before it sends anything, so S's extension reaches
// B and C only when M's call gave up: after S's deadline. S is lost,
// though every call about S was answered at once. (3s, not 1s: the batch
// has 0.4×TTL to extend S before its deadline, which 400ms of scheduling
// delay on a loaded machine could use up.)
func TestAttackBatchHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{DefaultTTL: 3 * time.Second, NodeTimeout: 3 * time.Second})

	s, err := m.Lock(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	mm, err := m.Lock(ctx, "M")
	if err != nil {
		t.Fatal(err)
	}
	sDeadline := s.Until()
	// M's manual extension: held before B and C (matched by M's token).
	onM := func(script string, args []string) bool {
		return script == "extend" && len(args) > 0 && args[0] == mm.Token()
	}
	hB := gs[1].holdCalls(false, onM)
	hC := gs[2].holdCalls(false, onM)
	ext := goErr(func() error { return mm.Extend(ctx, 0) })
	waitFor(t, 3*time.Second, "M's Extend held on B and C", func() bool { return hB.held.Load() == 1 && hC.held.Load() == 1 })

	select {
	case <-s.Lost():
	case <-time.After(time.Until(sDeadline) + 300*time.Millisecond):
	}
	t.Logf("M's Extend: %v", recv(t, ext, 5*time.Second, "M's Extend"))
	if !s.Valid() {
		sends := make([]int, len(gs))
		for i, g := range gs {
			sends[i] = g.callCount("extend_batch")
		}
		t.Errorf("S was lost at its first deadline (Lost closed: %v); extend_batch calls per instance %v: "+
			"the batch waited on B and C for M's held call before sending S's extension", isClosed(s.Lost()), sends)
	}
}

// ---------------------------------------------------------------------------
// Interleavings that held (kept as regression tests).

// TestAttackUnlockBehindHeldExtend: Extend(5s) of a 1s lock runs on C
// (reply held) and returns at quorum; Unlock then releases at quorum; the
// release to C must follow the extension there (not overtake it and leave
// C's key alive for 5s).
func TestAttackUnlockBehindHeldExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	l, err := m.Lock(ctx, "res", redlock.TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// C's extension: held before it reaches C, so that the release, if it
	// did not wait, would reach C first.
	hC := gs[2].holdCalls(false, onScriptArg("extend", 1, "5000"))
	if err := l.Extend(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	released := eventually(300*time.Millisecond, func() bool { return gs[2].callCount("release") > 0 })
	t.Logf("release reached C before its extension: %v", released)
	hC.release()
	waitFor(t, 3*time.Second, "C's release", func() bool { return gs[2].replyCount("release") > 0 })
	if v := get(t, servers[2], "res"); v != "(nil)" {
		t.Errorf("C still holds the key (%q, PTTL %d) after Unlock: the release overtook the extension; C's log: %v",
			v, pttl(t, servers[2], "res"), gs[2].replyLog())
	}
}

// TestAttackFenceSkippedThenExtend: a fenced lock with TTL 1s and
// NodeTimeout 2s: the acquisition's calls have 1s, the fence round only
// what is left of the validity (~990ms, so its deadline comes before the
// acquisition's). C's acquisition is held before C until its deadline, so
// the fence round's call to C is not sent (errOutOfOrder) and counts as
// returned only after the acquisition's. The lock's tail is the fence
// round; an Extend(4s) made at once must follow it on C, and the lock's
// safety must hold.
//
// The lock must still be valid when Extend starts: ~980ms after Lock
// returned (~380ms with TTL 400ms).
func TestAttackFenceSkippedThenExtend(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: loadedNodeTimeout})
	hC := gs[2].holdCalls(false, onScript("acquire_many"))
	l, err := m.Lock(ctx, "res", redlock.Fenced(), redlock.TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() == 0 {
		t.Fatal("no fence")
	}
	err = l.Extend(ctx, 4*time.Second)
	t.Logf("Extend(4s): %v; fence calls to C: %d; C: %v", err, gs[2].callCount("fence"), gs[2].replyLog())
	if gs[2].callCount("fence") != 0 {
		t.Errorf("the fence round reached C before C answered the acquisition")
	}
	hC.release()
	if err == nil {
		checkSafety(t, "fenced lock, C's acquisition held, then Extend", servers, l, "res")
		wantNotAcquiredByOther(t, ctx, servers, "res", l)
	}
}

// TestAttackShorterExtendChangesNothing: Extend(200ms) of a 5s lock, every
// reply held past its deadline, fails; leases are never shortened, so the
// keys keep their 5s lease and Until its 5s deadline (it used to be lowered
// at once, which TestAttackLoweredUntilExpires checked the expiry timer
// followed).
func TestAttackShorterExtendChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	m, gs := newGateManager(t, servers, redlock.Config{NodeTimeout: time.Second})
	l, err := m.Lock(ctx, "res", redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	until := l.Until()
	for _, g := range gs {
		g.holdCalls(true, onScriptArg("extend", 1, "200"))
	}
	err = l.Extend(ctx, 200*time.Millisecond)
	t.Logf("Extend(200ms), replies held: %v", err)
	if !l.Until().Equal(until) {
		t.Errorf("Until moved from now%+v to now%+v by a shorter extension", time.Until(until), time.Until(l.Until()))
	}
	wantLeaseAbove(t, servers, "res", 4000)
	checkSafety(t, "after a failed shorter extension", servers, l, "res")
	if !l.Valid() {
		t.Error("lock invalid after a shorter extension failed")
	}
}

// TestAttackStaleShorterExtendRueidisReconnect: the default wire (rueidis,
// one pipelined connection per instance) keeps the calls to an instance in
// order while that connection lives, but rueidis closes a connection that
// has not answered for ConnWriteTimeout (Endpoint.ReadTimeout here: 500ms;
// default 10s) and dials a new one. The bytes written on the old one are
// still delivered when the network recovers. Lock TTL 10s; Extend(4s) is
// stalled on B's and C's connections and fails; rueidis drops those
// connections; Extend(10s) goes out on new ones and succeeds; then the
// stalled PEXPIRE 4000 reaches B and C.
func TestAttackStaleShorterExtendRueidisReconnect(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	proxies := make([]*stallProxy, len(servers))
	eps := make([]redlock.Endpoint, len(servers))
	for i, s := range servers {
		proxies[i] = startStallProxy(t, s.Addr())
		eps[i] = redlock.Endpoint{Addr: proxies[i].Addr(), ReadTimeout: 500 * time.Millisecond}
	}
	m, err := redlock.NewFromEndpoints(eps, redlock.Config{NodeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	t.Cleanup(func() {
		for _, p := range proxies {
			p.release()
		}
	})
	l, err := m.Lock(ctx, "res", redlock.TTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sha := []byte(redlock.ScriptSHA("extend"))
	arg := []byte("$4\r\n4000\r\n")
	proxies[1].arm(sha, arg)
	proxies[2].arm(sha, arg)
	err = l.Extend(ctx, 4*time.Second)
	t.Logf("Extend(4s), B's and C's connections stalled: %v (Until now+%v)", err, time.Until(l.Until()).Round(time.Millisecond))
	if proxies[1].stalled.Load() != 1 || proxies[2].stalled.Load() != 1 {
		t.Fatalf("the proxies of B and C stalled %d and %d connections, want 1 each", proxies[1].stalled.Load(), proxies[2].stalled.Load())
	}
	waitFor(t, 3*time.Second, "rueidis to close the stalled connections", func() bool {
		return proxies[1].gone.Load() == 1 && proxies[2].gone.Load() == 1
	})
	var err2 error
	for i := range 20 { // the first call after the close may still find the old pipe
		if err2 = l.Extend(ctx, 10*time.Second); err2 == nil {
			break
		}
		t.Logf("Extend(10s) #%d: %v", i+1, err2)
		time.Sleep(20 * time.Millisecond)
	}
	if err2 != nil {
		t.Fatalf("Extend(10s): %v", err2)
	}
	t.Logf("Extend(10s): nil (Until now+%v)", time.Until(l.Until()).Round(time.Millisecond))
	// Extend returned at quorum: wait until B and C both ran it.
	waitFor(t, 3*time.Second, "B and C to run Extend(10s)", func() bool {
		return pttl(t, servers[1], "res") > 9000 && pttl(t, servers[2], "res") > 9000
	})
	nB, nC := commandCalls(t, servers[1], "evalsha"), commandCalls(t, servers[2], "evalsha")
	proxies[1].release()
	proxies[2].release()
	waitFor(t, 3*time.Second, "the stalled bytes delivered to B and C", func() bool {
		return proxies[1].flushed.Load() == 1 && proxies[2].flushed.Load() == 1
	})
	waitEvalsha(t, servers[1], nB)
	waitEvalsha(t, servers[2], nC)
	checkSafety(t, "rueidis: after a failed Extend(4s) delivered late and Extend(10s)", servers, l, "res")
	wantLeaseAbove(t, servers[1:], "res", 8000)
}

// ---------------------------------------------------------------------------
// Finding 4: OOM under noeviction is classified as ErrRejected.

// TestAttackOOMIsTransient: with maxmemory-policy noeviction (what the
// README asks for), an instance over maxmemory refuses the acquire
// script's SET with "OOM command not allowed ...", and stops refusing once
// keys expire or are released: lock keys are short-lived, so a full
// instance frees itself. Here every instance is over maxmemory because of a
// 1 MiB key that expires 400ms later. LockWait with a 5s ctx should wait for
// it; it returns ErrRejected at once, as for a misconfiguration.
func TestAttackOOMIsTransient(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	big := string(bytes.Repeat([]byte("x"), 1<<20))
	for _, s := range servers {
		// No TTL yet: it is set once the probe below has seen the
		// instances full (on a loaded machine the set-up can take longer
		// than the ballast's 400 ms).
		s.Do(t, "SET", "ballast", big)
		used := s.Do(t, "MEMORY", "USAGE", "ballast")
		t.Logf("%s: ballast uses %s bytes", s, used)
		s.Do(t, "CONFIG", "SET", "maxmemory-policy", "noeviction")
		// Over the limit now, under it once the ballast is gone.
		info := s.Do(t, "INFO", "memory")
		var usedMem int64
		for _, line := range bytes.Split([]byte(info), []byte("\r\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("used_memory:")); ok {
				_, _ = fmt.Sscan(string(v), &usedMem)
			}
		}
		if usedMem == 0 {
			t.Fatalf("%s: no used_memory in INFO memory", s)
		}
		s.Do(t, "CONFIG", "SET", "maxmemory", fmt.Sprint(usedMem-512<<10))
	}
	m := newManager(t, servers, redlock.Config{NodeTimeout: time.Second})
	if _, err := m.TryLock(ctx, "probe", redlock.TTL(time.Second)); err == nil {
		t.Fatal("TryLock succeeded on instances over maxmemory: the setup did not make them full")
	} else {
		t.Logf("TryLock while full: %v", err)
	}
	for _, s := range servers {
		s.Do(t, "PEXPIRE", "ballast", "400")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	l, err := m.LockWait(wctx, "res", redlock.TTL(5*time.Second))
	t.Logf("LockWait after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err != nil {
		if errors.Is(err, redlock.ErrRejected) {
			t.Errorf("LockWait gave up at once with ErrRejected on an OOM that cleared %v later by itself (the ballast expired): %v",
				time.Until(start.Add(400*time.Millisecond)).Round(time.Millisecond), err)
			waitFor(t, 3*time.Second, "the ballast to expire", func() bool {
				for _, s := range servers {
					if get(t, s, "ballast") != "(nil)" {
						return false
					}
				}
				return true
			})
			l, err := m.TryLock(ctx, "res", redlock.TTL(5*time.Second))
			t.Logf("TryLock once the ballast expired (%v after LockWait started): %v", time.Since(start).Round(time.Millisecond), err)
			if err == nil {
				_ = l.Unlock(ctx)
			}
		} else {
			t.Errorf("LockWait: %v", err)
		}
		return
	}
	_ = l.Unlock(ctx)
}
