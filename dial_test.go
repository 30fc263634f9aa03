package redlock_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// setupDelayProxy forwards TCP connections to a redis-server, each only
// after holding it for delay once accepted: the kernel completes the
// client's connect at once, but the server sees (and answers) nothing of
// the connection before delay has passed, as over a slow link or a TLS
// handshake across a WAN. A connection still held when the proxy closes is
// closed, never forwarded.
type setupDelayProxy struct {
	ln       net.Listener
	target   string
	delay    time.Duration
	accepted atomic.Int32
	stop     chan struct{} // closed by close: the held connections are dropped

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func startSetupDelayProxy(t *testing.T, target string, delay time.Duration) *setupDelayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &setupDelayProxy{ln: ln, target: target, delay: delay, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *setupDelayProxy) Addr() string { return p.ln.Addr().String() }

// track registers c for close; false once the proxy is closed.
func (p *setupDelayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

// drop closes every connection so far: the clients find theirs gone.
func (p *setupDelayProxy) drop() {
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *setupDelayProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	if !p.closed {
		close(p.stop)
	}
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *setupDelayProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			t := time.NewTimer(p.delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-p.stop:
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil || !p.track(s) {
				return
			}
			defer s.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = io.Copy(s, c)
				_ = s.Close()
			}()
			_, _ = io.Copy(c, s)
			_ = c.Close()
			<-done
		}()
	}
}

// TestDialNotCutByNodeTimeout: a connection whose set-up (connect and
// handshake) takes longer than NodeTimeout still gets made: the dial is
// bounded by the dial timeout (here the default, max(NodeTimeout, 1 s)),
// not by the deadline of the call that needed it, and the calls waiting
// for it give up within their own deadlines without dialing again. Before,
// every call dialed within its own 150 ms, no connection was ever made,
// and each call cost a new connection (the fault suite's N=5 scenarios
// stalled that way on a loaded machine: "dial tcp ...: i/o timeout", then
// every call "context deadline exceeded" for the whole run).
//
// At N=1 the calls of a lock and its release run on their caller's
// goroutine over a client of their own (directClient's synchronous one),
// at N=3 over the pipelined one: both are covered.
func TestDialNotCutByNodeTimeout(t *testing.T) {
	const setup = 400 * time.Millisecond // > NodeTimeout, < the dial timeout
	for _, n := range []int{1, 3} {
		t.Run(map[int]string{1: "N=1", 3: "N=3"}[n], func(t *testing.T) {
			t.Parallel()
			servers := redistest.Start(t, n)
			proxies := make([]*setupDelayProxy, n)
			endpoints := make([]string, n)
			for i, s := range servers {
				proxies[i] = startSetupDelayProxy(t, s.Addr(), setup)
				endpoints[i] = proxies[i].Addr()
			}
			m := newManagerAt(t, endpoints, redlock.Config{
				NodeTimeout: 150 * time.Millisecond, RetryCount: 50,
				RetryDelayMin: 20 * time.Millisecond, RetryDelayMax: 40 * time.Millisecond,
			})
			ctx := testCtx(t)
			// Lock (not LockWait: no key watch or subscription, whose
			// dedicated connections would add to the counts): its attempts
			// fail until the connections are made, within its 50 retries
			// (about 10 s).
			l, err := m.Lock(ctx, "slow-dial", redlock.TTL(10*time.Second))
			counts := make([]int32, n)
			for i, p := range proxies {
				counts[i] = p.accepted.Load()
			}
			if err != nil {
				t.Fatalf("Lock behind a %v connection set-up with NodeTimeout 150ms: %v (connections per instance: %v)", setup, err, counts)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			// The connections go away (a proxy or a server restart): the
			// next calls find them gone, and the new ones are made the
			// same way.
			for _, p := range proxies {
				p.drop()
			}
			l, err = m.Lock(ctx, "slow-dial", redlock.TTL(10*time.Second))
			for i, p := range proxies {
				counts[i] = p.accepted.Load()
			}
			if err != nil {
				t.Fatalf("Lock after the connections were dropped: %v (connections per instance: %v)", err, counts)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			// Each instance has two clients (the pipelined one and, for
			// direct calls, the synchronous one): a connection each, twice,
			// and a few more if a dial failed on this loaded machine; a
			// dial per call would be dozens.
			for i, c := range counts {
				if c > 10 {
					t.Errorf("instance %d: %d connections accepted, want at most 10 (a dial per call?); all: %v", i, c, counts)
				}
			}
			t.Logf("connections accepted per instance: %v", counts)
		})
	}
}
