package chaos

import (
	"net"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
)

// proxyDialTimeout bounds a proxy's connect to its server.
const proxyDialTimeout = time.Second

// faultProxy is a toxiproxy proxy with an accept loop of our own: the
// toxics of tp (added through tp.Toxics) apply to every connection, but
// each connection is accepted, connected to the server and linked on a
// goroutine of its own.
//
// toxiproxy v2.5.0's own accept loop (Proxy.Start) connects to the
// upstream inline, one client after the other, with net.Dial and no
// timeout. After a fault, dozens of clients reconnect at once; on a loaded
// 2-core machine each connect took 5-40 ms, so a proxy accepted a few
// dozen connections per second while the clients, whose handshakes are
// bounded by NodeTimeout (150 ms), gave up and dialed again: the backlog
// filled with abandoned connections, and the fault suite's workload
// stalled with every instance timing out for whole runs.
type faultProxy struct {
	tp       *toxiproxy.Proxy // never started: only its Toxics are used
	api      *toxiproxy.ApiServer
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// startProxy listens on a free loopback port and proxies to upstream.
func startProxy(api *toxiproxy.ApiServer, name, upstream string) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tp := toxiproxy.NewProxy(api, name, ln.Addr().String(), upstream)
	p := &faultProxy{tp: tp, api: api, ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns the address clients connect to.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.link(c)
	}
}

// track registers c, to be closed by Close; false once closed. Closing c
// resets the connection instead of leaving a TIME_WAIT socket: the suite
// opens and closes connections by the thousand, and loopback has about
// 28,000 ephemeral ports.
func (p *faultProxy) track(c net.Conn) bool {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// link connects client to the server and hands both to toxiproxy's links
// (one per direction, through the toxics), as its own accept loop would.
func (p *faultProxy) link(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.upstream, proxyDialTimeout)
	if err != nil {
		p.untrack(client)
		client.Close()
		return
	}
	if !p.track(server) {
		server.Close()
		p.untrack(client)
		client.Close()
		return
	}
	name := client.RemoteAddr().String()
	p.tp.Toxics.StartLink(p.api, name+"upstream", client, server, stream.Upstream)
	p.tp.Toxics.StartLink(p.api, name+"downstream", server, client, stream.Downstream)
	// The links close their destinations when their sources end; the
	// connections stay tracked until Close, which closes them again
	// (harmless) so that no link outlives the proxy.
}

// Close stops accepting, closes every connection and waits for the
// accept loop and the connects in progress. The links' goroutines end as
// their connections close.
func (p *faultProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}
