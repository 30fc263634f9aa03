package redlock_test

// Fourth attack review: the N=1 direct path (quorum.go instance.direct,
// wire_rueidis.go directClient). A round of one call runs on its caller's
// goroutine, and on a dialed single server goes over a second, synchronous
// connection: calls about one lock can now travel over two connections,
// kept in order only by waiting for each other's replies, and a call that
// timed out on either may still reach the server later. Interleavings on
// real redis-servers, over the real dialed client (redlock.New) behind a
// TCP proxy that stalls chosen connections (stallProxy, attack_test.go;
// holdProxy here) or with the server paused.
//
// Findings (each failed on ad2eb1e and passes on a12fc4f, before the
// direct path; fixed):
//   TestAttack4TokenLateReleaseAfterRelock        two holders: the release of a lock whose token the
//                                                 caller knows (Token, Lock.Token), stalled on the
//                                                 synchronous connection, deletes the key of a re-lock
//                                                 or Attach made meanwhile over the pipelined one
//   TestAttack4TokenRelockOvertakesStalledRelease two holders: the release stalled on the pipelined
//                                                 connection, the re-lock or Attach sent direct
//   TestAttack4ConcurrentDirectReleasesDropped    liveness: releases queued behind a timed-out
//                                                 synchronous call are dropped, each key stays for its
//                                                 TTL (the design allows one per instance and Manager)
//
// Interleavings that held are kept as TestAttack4Held...
//
// Run them with go test -race -count=1 -run TestAttack4 .

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// scriptSHA is the SHA1 of the embedded script name, as EVALSHA sends it.
func scriptSHA(t *testing.T, name string) string {
	t.Helper()
	scripts, err := embeddedScripts()
	if err != nil {
		t.Fatal(err)
	}
	src, ok := scripts[name]
	if !ok {
		t.Fatalf("no script %q", name)
	}
	return sha1Hex(src)
}

// newProxiedManager starts one redis-server behind a stallProxy and dials
// it with redlock.New (the directClient of a single server).
func newProxiedManager(t *testing.T, cfg redlock.Config) (*redistest.Server, *stallProxy, *redlock.Manager) {
	t.Helper()
	servers := redistest.Start(t, 1)
	p := startStallProxy(t, servers[0].Addr())
	m := newManagerAt(t, []string{p.Addr()}, cfg)
	return servers[0], p, m
}

// ---------------------------------------------------------------------------
// Finding 1: a Token lock's release stalled on one connection, its re-lock
// over the other.

// retake is a way to hold a lock again by its token: Lock with Token, or
// Attach.
type retake struct {
	name string
	do   func(ctx context.Context, m *redlock.Manager, token string) (*redlock.Lock, error)
}

var retakes = []retake{
	{"Lock", func(ctx context.Context, m *redlock.Manager, token string) (*redlock.Lock, error) {
		return m.Lock(ctx, "res", redlock.TTL(30*time.Second), redlock.Token(token))
	}},
	{"Attach", func(ctx context.Context, m *redlock.Manager, token string) (*redlock.Lock, error) {
		return m.Attach(ctx, "res", token)
	}},
}

// firstLock takes "res" for 30s, with the Token option (chosen) or with a
// token drawn by the library that the caller then reads (Lock.Token), and
// returns the lock and its token.
func firstLock(t *testing.T, ctx context.Context, m *redlock.Manager, chosen bool) (*redlock.Lock, string) {
	t.Helper()
	var opts []redlock.LockOption
	if chosen {
		opts = append(opts, redlock.Token("attack4-chosen-token"))
	}
	l, err := m.Lock(ctx, "res", append(opts, redlock.TTL(30*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	return l, l.Token()
}

// forEachRetake runs fn for a chosen and a drawn token, each held again
// with each retake.
func forEachRetake(t *testing.T, fn func(t *testing.T, chosen bool, again retake)) {
	for _, chosen := range []bool{true, false} {
		for _, again := range retakes {
			name := "drawn/" + again.name
			if chosen {
				name = "Token/" + again.name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fn(t, chosen, again)
			})
		}
	}
}

// wantLateReleaseHarmless: l2 holds "res" again by the token of a release
// that is stalled (hold); once that release has arrived, l2 must still hold
// the key while it is Valid, and no other Manager may take it.
func wantLateReleaseHarmless(t *testing.T, ctx context.Context, s *redistest.Server, release func(), l2 *redlock.Lock) {
	t.Helper()
	before := commandCalls(t, s, "evalsha")
	release()
	waitFor(t, 5*time.Second, "the stalled release to reach the server", func() bool {
		return commandCalls(t, s, "evalsha") > before
	})
	servers := []*redistest.Server{s}
	checkSafety(t, "the lock held again by its token while its release was stalled, after that release arrived", servers, l2, "res")
	wantNotAcquiredByOther(t, ctx, servers, "res", l2)
	_ = l2.Unlock(ctx)
}

// TestAttack4TokenLateReleaseAfterRelock: N=1, a lock whose token the
// caller knows: chosen (Token), or drawn and read with Lock.Token. Its
// Unlock ran direct, on the synchronous connection, and that connection
// stalls (the proxy holds its bytes): the call times out, rueidis closes
// the connection, the release is still on its way (the kernel delivers a
// closed socket's data). The caller takes the lock again by its token
// (Lock with Token, which the option allows at once, or Attach); the
// direct calls are off now, so that goes over the pipelined connection,
// finds the key (the release has not arrived) and holds it: a valid lock.
// Then the stalled release arrives and deletes the key: the lock is Valid
// with no key behind it, and another Manager takes the resource. Before
// the direct path every call went over one connection, and the re-take
// queued behind the stalled release (it failed, or found the key gone).
//
// Fixed: a lock whose token the caller chose or read makes no direct
// release (Lock.private).
func TestAttack4TokenLateReleaseAfterRelock(t *testing.T) {
	forEachRetake(t, func(t *testing.T, chosen bool, again retake) {
		ctx := testCtx(t)
		s, p, m := newProxiedManager(t, redlock.Config{NodeTimeout: 300 * time.Millisecond, RetryCount: 1})
		l, token := firstLock(t, ctx, m, chosen)
		p.arm([]byte(scriptSHA(t, "release")), []byte(token))
		if err := l.Unlock(ctx); err == nil {
			t.Fatal("Unlock over a stalled connection succeeded")
		}
		if p.stalled.Load() != 1 {
			t.Fatalf("the proxy stalled %d connections, want 1 (the release's)", p.stalled.Load())
		}
		l2, err := again.do(ctx, m, token)
		if err != nil {
			// It waited behind the release (one connection): the order held.
			t.Logf("%s with the token while its release is stalled: %v", again.name, err)
			p.release()
			return
		}
		wantLateReleaseHarmless(t, ctx, s, p.release, l2)
	})
}

// TestAttack4TokenRelockOvertakesStalledRelease: the other way round, and
// why a lock's acquisitions and Attach's read must not run direct either
// when the caller knows the token. N=1, a lock whose token the caller
// knows; its Unlock goes over the pipelined connection (not direct: the
// fix of the test above), which stalls: the release times out and is
// still on its way, and the instance is known down. A read of another
// resource, sent direct just before that timeout, answers over the
// synchronous connection just after it: the instance is up again. The
// caller takes the lock again by its token: sent direct, over the
// synchronous connection, that would overtake the stalled release and
// hold the key, which the release then deletes: two holders. Not direct,
// it queues behind the release (and fails: the connection is stalled).
//
// Where the read is sent is timed (half a NodeTimeout after the release
// stalled): on a machine so slow that it goes out after the timeout, the
// read is not direct, the instance stays down, and the re-take is not
// direct whatever the fix; the test then checks nothing more than the
// other orders do (it never fails for timing).
func TestAttack4TokenRelockOvertakesStalledRelease(t *testing.T) {
	forEachRetake(t, func(t *testing.T, chosen bool, again retake) {
		ctx := testCtx(t)
		const nodeTimeout = time.Second
		servers := redistest.Start(t, 1)
		s := servers[0]
		p := startHoldProxy(t, s.Addr())
		m := newManagerAt(t, []string{p.Addr()}, redlock.Config{NodeTimeout: nodeTimeout, RetryCount: 1})
		// A direct call first, so that both connections are up.
		if _, err := m.IsLocked(ctx, "attack4-warm"); err != nil {
			t.Fatal(err)
		}
		l, token := firstLock(t, ctx, m, chosen)
		rel := p.hold([]byte(scriptSHA(t, "release")), []byte(token))
		read := p.hold([]byte("attack4-straddle"))
		unlocked := goErr(func() error { return l.Unlock(ctx) })
		waitFor(t, 5*time.Second, "the release to stall", func() bool { return rel.stalled.Load() == 1 })
		stalledAt := time.Now()
		time.Sleep(nodeTimeout/2 - time.Since(stalledAt))
		readDone := goErr(func() error { _, err := m.IsLocked(ctx, "attack4-straddle"); return err })
		readHeld := eventually(nodeTimeout, func() bool { return read.stalled.Load() == 1 })
		if err := recv(t, unlocked, 5*time.Second, "Unlock"); err == nil {
			t.Fatal("Unlock over a stalled connection succeeded")
		}
		read.release()
		readErr := recv(t, readDone, 5*time.Second, "IsLocked")
		t.Logf("the read: held on its own connection %v, then %v; direct calls on: %v", readHeld, readErr, redlock.DirectCallsOn(m))
		l2, err := again.do(ctx, m, token)
		if err != nil {
			t.Logf("%s with the token while its release is stalled: %v", again.name, err)
			rel.release()
			return
		}
		wantLateReleaseHarmless(t, ctx, s, rel.release, l2)
	})
}

// holdProxy forwards TCP connections to a redis-server, like stallProxy,
// but with holds of their own: each hold stalls the next connection (not
// stalled already) whose client-to-server bytes contain its markers, and
// delivers what it held when released, even after the client closed the
// connection (a network stall on one TCP connection).
type holdProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	holds []*connHold // armed, not matched yet
	conns []net.Conn
	wg    sync.WaitGroup
}

// connHold is one hold of a holdProxy.
type connHold struct {
	markers [][]byte
	open    chan struct{}
	once    sync.Once
	stalled atomic.Int32 // connections stalled (0 or 1)
}

func (h *connHold) release() { h.once.Do(func() { close(h.open) }) }

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) Addr() string { return p.ln.Addr().String() }

// hold arms a hold; the proxy's close releases it.
func (p *holdProxy) hold(markers ...[]byte) *connHold {
	h := &connHold{markers: markers, open: make(chan struct{})}
	p.mu.Lock()
	p.holds = append(p.holds, h)
	p.mu.Unlock()
	return h
}

func (p *holdProxy) close() {
	p.mu.Lock()
	for _, h := range p.holds {
		h.release()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// match returns the armed hold whose markers chunk contains, disarmed.
func (p *holdProxy) match(chunk []byte) *connHold {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.holds {
		if h.stalled.Load() == 0 && containsAll(chunk, h.markers) {
			h.stalled.Store(1)
			return h
		}
	}
	return nil
}

func (p *holdProxy) accept() {
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
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { // server → client
			defer p.wg.Done()
			defer s.Close()
			defer c.Close()
			_, _ = io.Copy(c, s)
		}()
		go p.forward(c, s)
	}
}

// forward copies client c's bytes to server s, holding them from the
// chunk that matches a hold until that hold is released.
func (p *holdProxy) forward(c, s net.Conn) {
	defer p.wg.Done()
	var mu sync.Mutex // guards held and h, and orders the writes to s
	var held []byte
	var h *connHold
	var flushed chan struct{} // closed once h's bytes are written
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			mu.Lock()
			if h == nil {
				if h = p.match(buf[:n]); h != nil {
					flushed = make(chan struct{})
					p.wg.Add(1)
					go func(this *connHold, done chan struct{}) {
						defer p.wg.Done()
						defer close(done)
						<-this.open
						mu.Lock()
						_, _ = s.Write(held)
						held, h = nil, nil // passes through from now on
						mu.Unlock()
					}(h, flushed)
				}
			}
			var werr error
			if h != nil {
				held = append(held, buf[:n]...)
			} else {
				_, werr = s.Write(buf[:n])
			}
			mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			// The client closed the connection: what it sent is still on
			// its way (the kernel delivers a closed socket's data, then
			// the FIN). Half-close: the server runs what it read, then
			// closes, which ends the other direction.
			if flushed != nil {
				<-flushed
			}
			_ = s.(*net.TCPConn).CloseWrite()
			return
		}
	}
}

// ---------------------------------------------------------------------------
// Finding 2: calls queued behind a synchronous call that times out.

// TestAttack4ConcurrentDirectReleasesDropped: N=1, eight locks taken one
// after the other (each call alone on the synchronous connection), then
// the server pauses and all eight are unlocked at once. Each release runs
// direct: the first is written by its caller (rueidis's synchronous path),
// the others queue behind it on the same connection. At NodeTimeout the
// first times out and rueidis closes the connection, failing the queued
// calls, which were never written: seven releases dropped, seven keys that
// stay for their TTL (30s) after the server resumes. The design allows one
// dropped call per instance and Manager (the first direct call that fails
// turns the direct calls off); before the direct path every release queued
// on the pipelined connection and ran when the server resumed.
func TestAttack4ConcurrentDirectReleasesDropped(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	m := newManager(t, servers, redlock.Config{NodeTimeout: 500 * time.Millisecond, RetryCount: 1})
	const n = 8
	locks := make([]*redlock.Lock, n)
	keys := make([]string, n)
	for i := range locks {
		keys[i] = fmt.Sprintf("r%d", i)
		l, err := m.Lock(ctx, keys[i], redlock.TTL(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		locks[i] = l
	}
	if on := redlock.DirectCallsOn(m); !on[0] {
		t.Fatalf("direct calls on = %v after the locks, want [true]", on)
	}
	s.Pause(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i, l := range locks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = l.Unlock(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err == nil || !errors.Is(err, redlock.ErrUnavailable) {
			t.Errorf("Unlock(%s) with the server paused: %v, want ErrUnavailable", keys[i], err)
		}
	}
	s.Resume(t)
	// Every release that reached the server runs now; one more call
	// through the Manager makes sure the connection is read again.
	if _, err := m.IsLocked(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	var left []string
	eventually(3*time.Second, func() bool {
		left = left[:0]
		for _, k := range keys {
			if get(t, s, k) != "(nil)" {
				left = append(left, k)
			}
		}
		return len(left) == 0
	})
	if len(left) > 1 {
		t.Errorf("%d keys left for their TTL after the server resumed (%v), want at most one (the one dropped call per instance and Manager)", len(left), left)
	}
	t.Logf("keys left: %v", left)
}

// ---------------------------------------------------------------------------
// Interleavings that held.

// TestAttack4HeldLateDirectAcquisitionOnce: N=1. A Lock's acquisition,
// direct, stalls on the synchronous connection and times out; the attempt
// fails and its clean-up goes over the pipelined connection, reaching the
// server first (nothing to delete). Then the stalled acquisition arrives
// and sets the key under a token no one holds: the resource stays taken
// for its TTL. That is the one call per instance and Manager the design
// allows: the direct calls are off now, so a second stalled acquisition
// (on the pipelined connection) is followed there by its clean-up, and
// leaves nothing. Neither Lock returned a lock.
func TestAttack4HeldLateDirectAcquisitionOnce(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	p := startHoldProxy(t, s.Addr())
	m := newManagerAt(t, []string{p.Addr()}, redlock.Config{NodeTimeout: 300 * time.Millisecond, RetryCount: 1})
	acquire := []byte(scriptSHA(t, "acquire"))
	// A first call makes the connections (the direct calls' one on a
	// goroutine of its own: see connGate).
	if _, err := m.IsLocked(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the direct calls' connection", func() bool { return redlock.DirectConnected(m)[0] })
	for _, key := range []string{"first", "second"} {
		h := p.hold(acquire, []byte(key))
		before := commandCalls(t, s, "evalsha")
		l, err := m.Lock(ctx, key, redlock.TTL(5*time.Second))
		if err == nil {
			t.Fatalf("Lock(%s) over a stalled connection returned a lock (Until now+%v)", key, time.Until(l.Until()))
		}
		t.Logf("Lock(%s): %v; direct calls on: %v", key, err, redlock.DirectCallsOn(m))
		if h.stalled.Load() != 1 {
			t.Fatalf("Lock(%s): the acquisition did not stall", key)
		}
		h.release()
		waitFor(t, 5*time.Second, "the stalled acquisition and its clean-up to reach the server", func() bool {
			return commandCalls(t, s, "evalsha") >= before+2
		})
		v := get(t, s, key)
		switch key {
		case "first":
			// Direct: its clean-up went over the other connection and
			// came first. The key stays for its TTL (the one call).
			if v == "(nil)" {
				t.Logf("the late direct acquisition left no key (its clean-up came after it)")
			} else if ms := pttl(t, s, key); ms <= 0 || ms > 5000 {
				t.Errorf("the late acquisition's key has PTTL %d, want within its 5s TTL", ms)
			}
		case "second":
			if v != "(nil)" {
				t.Errorf("a second stalled acquisition left its key (%s, PTTL %d): more than one late call per instance and Manager", v, pttl(t, s, key))
			}
		}
	}
	if on := redlock.DirectCallsOn(m); on[0] {
		t.Errorf("direct calls on = %v after a direct call timed out, want [false]", on)
	}
}

// TestAttack4HeldMutualExclusionAcrossPause: N=1, dialed (directClient),
// six goroutines take and release one auto-extended resource in a loop,
// while the server is paused once for longer than NodeTimeout (direct
// calls time out, the direct path turns off, in.down flips, the watchdog's
// extensions fail) and resumed. No lock may be granted while another one
// the process holds is still Valid (it clears itself before its Unlock),
// under the race detector.
func TestAttack4HeldMutualExclusionAcrossPause(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	m := newManager(t, servers, redlock.Config{
		NodeTimeout: 200 * time.Millisecond, DefaultTTL: 2 * time.Second,
		RetryCount: 3, RetryDelayMin: time.Millisecond, RetryDelayMax: 5 * time.Millisecond,
	})
	var mu sync.Mutex
	var cur *redlock.Lock
	var granted atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := m.Lock(ctx, "res")
				if err != nil {
					continue
				}
				granted.Add(1)
				mu.Lock()
				if cur != nil && cur.Valid() {
					t.Errorf("two holders: a lock granted (Until now+%v) while another is Valid (Until now+%v)",
						time.Until(l.Until()).Round(time.Millisecond), time.Until(cur.Until()).Round(time.Millisecond))
				}
				cur = l
				mu.Unlock()
				time.Sleep(time.Duration(granted.Load()%10) * time.Millisecond) // the work under the lock
				mu.Lock()
				if cur == l {
					cur = nil
				}
				mu.Unlock()
				_ = l.Unlock(ctx)
			}
		}()
	}
	waitFor(t, 10*time.Second, "some locks granted", func() bool { return granted.Load() >= 20 })
	s.Pause(t)
	paused := time.Now()
	for time.Since(paused) < 3*200*time.Millisecond {
		time.Sleep(10 * time.Millisecond) // the pause's length; nothing is asserted on time
	}
	s.Resume(t)
	after := granted.Load()
	waitFor(t, 10*time.Second, "locks granted again after the pause", func() bool { return granted.Load() >= after+20 })
	close(stop)
	wg.Wait()
	t.Logf("granted %d locks; direct calls on: %v", granted.Load(), redlock.DirectCallsOn(m))
}
