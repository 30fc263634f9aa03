package redlock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	rd "github.com/redis/rueidis"
	rueidisadapter "github.com/redlock-go/redlock/rueidis"
)

// Buffer sizes of a dialed rueidis connection. rueidis defaults to 0.5 MiB
// each way per connection; lock commands are a few hundred bytes (longer
// resources still work: the buffers only batch writes and reads).
const (
	rueidisReadBuffer  = 64 << 10
	rueidisWriteBuffer = 64 << 10
)

// rueidisTopologyRefresh is how often a Sentinel client asks the Sentinels
// who the master is, besides following their +switch-master events (a
// missed event would otherwise bind it to a demoted master).
const rueidisTopologyRefresh = 5 * time.Second

// errNotDialedYet makes rueidis's eager first dial of a single server fail
// without touching the network, so that New never contacts an instance.
var errNotDialedYet = errors.New("redlock: connection is dialed on first use")

// errDialDeferred is what a call that would dial a single server's
// connection under its own deadline gets instead: the connection is made
// by the client's connGate, with the whole dial timeout, and the call
// waits for it within its deadline and is then sent (it was never written).
var errDialDeferred = errors.New("redlock: connection is being dialed")

// errDialerClosed is returned by calls on a lazily built client after Close.
var errDialerClosed = errors.New("redlock: client closed")

// dialRueidis builds the rueidis client for one endpoint: the wire of New
// and NewFromEndpoints. Like every dial here it does not contact the
// instance: the first call connects, within that call's context.
//
// Differences from the go-redis wire (the benchmarks' dial): Endpoint.PoolSize has no rueidis counterpart
// (rueidis pipelines every caller's commands on 2^PipelineMultiplex shared
// connections per server) and is ignored; ReadTimeout and WriteTimeout
// become ConnWriteTimeout (rueidis's bound on waiting for a reply on a
// connection, which it then closes).
func dialRueidis(ep Endpoint, cfg Config) (Client, io.Closer, error) {
	if err := ep.validate(); err != nil {
		return nil, nil, invalidf("endpoint %s: %v", ep, err)
	}
	tlsCfg, err := ep.tlsConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: endpoint %s: %w", ErrInvalid, ep, err)
	}
	dialTimeout := ep.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = max(cfg.NodeTimeout, time.Second)
	}
	opt := rd.ClientOption{
		Username:  ep.Username,
		Password:  ep.Password,
		SelectDB:  ep.DB,
		TLSConfig: tlsCfg,
		Dialer:    net.Dialer{Timeout: dialTimeout},
		// Locks are never read through the client-side cache.
		DisableCache: true,
		// Every call is bounded by its context and redlock decides about
		// retries (rueidis would not retry EVALSHA anyway).
		DisableRetry: true,
		// No CLIENT SETINFO: a minimal ACL suffices.
		ClientSetInfo:       rd.DisableClientSetInfo,
		ReadBufferEachConn:  rueidisReadBuffer,
		WriteBufferEachConn: rueidisWriteBuffer,
		ConnWriteTimeout:    max(ep.ReadTimeout, ep.WriteTimeout), // 0: rueidis's default (10s)
		// Without it, a connection used by one caller at a time runs each
		// command synchronously under the context's deadline and closes
		// the connection when the deadline passes: the call is dropped (a
		// release would not reach a paused instance when it resumes), and
		// under faults every call that outlived NodeTimeout cost a
		// reconnect: a reconnect storm, loopback ran out of usable ports
		// (tens of thousands of TIME_WAIT sockets) and connects waited for
		// SYN retransmits. Pipelined, a timed-out call only stops waiting,
		// the connection stays and the call still reaches the instance.
		// rueidis still closes a connection that has not answered for
		// ConnWriteTimeout. (A single server's direct calls are the
		// exception: see directClient.)
		AlwaysPipelining: true,
		// One connection per instance (rueidis would otherwise spread keyed
		// commands at random over 2^n of them): commands reach an instance
		// in the order they were issued, so a release issued after an
		// acquisition, even one whose caller stopped waiting, runs after
		// it. Measured: no loss at 64 callers, slightly faster at 1.
		PipelineMultiplex: -1,
		// After each write to a connection, wait up to 20 µs for more
		// commands to batch into the next write: with many callers that
		// is fewer syscalls per lock (64 callers, N=3: 43 µs per cycle
		// instead of 53-57 in BenchmarkLockUnlockParallel; 10 µs gained
		// nothing, 50 µs little more), and one caller does not notice it
		// (its next command comes a round trip later).
		MaxFlushDelay: 20 * time.Microsecond,
	}
	switch ep.kind() {
	case kindSentinel:
		opt.InitAddress = ep.SentinelAddrs
		opt.Sentinel = rd.SentinelOption{
			MasterSet:               ep.MasterName,
			Username:                ep.SentinelUsername,
			Password:                ep.SentinelPassword,
			TLSConfig:               tlsCfg,
			Dialer:                  opt.Dialer,
			TopologyRefreshInterval: rueidisTopologyRefresh,
		}
		// rueidis contacts the Sentinels in NewClient: build it on first use.
		l := &lazyRueidis{opt: opt, name: ep.String()}
		return l, l, nil
	case kindCluster:
		opt.InitAddress = ep.ClusterAddrs
		// rueidis contacts the seed nodes in NewClient: build it on first
		// use. It routes each EVALSHA by the slot of its key.
		l := &lazyRueidis{opt: opt, name: ep.String(), cluster: true}
		return l, l, nil
	}
	// A single server. ForceSingleClient: never probe for a cluster, and
	// keep the client although its first dial "fails" (it re-dials on use).
	var ready atomic.Bool
	unix := ep.isUnix()
	opt.InitAddress = []string{ep.Addr}
	opt.ForceSingleClient = true
	opt.DialCtxFn = func(ctx context.Context, addr string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
		if !ready.Load() {
			return nil, errNotDialedYet
		}
		// rueidis dials (and runs the handshake) under the context of the
		// call that found no connection: a round's call, bounded by
		// NodeTimeout. The connGate dials instead, under the dial timeout;
		// connections without a deadline (the dedicated ones of a key
		// watch or a subscription) dial here as they are.
		if _, ok := ctx.Deadline(); ok && ctx.Value(gateDialKey{}) == nil {
			return nil, errDialDeferred
		}
		network := "tcp"
		if unix {
			network = "unix"
		}
		var conn net.Conn
		var err error
		if tc != nil {
			td := tls.Dialer{NetDialer: d, Config: tc}
			conn, err = td.DialContext(ctx, network, addr)
		} else {
			conn, err = d.DialContext(ctx, network, addr)
		}
		if g, ok := ctx.Value(gateDialKey{}).(*connGate); ok && err == nil {
			g.abortOnClose(ctx, conn)
		}
		return conn, err
	}
	rc, err := rd.NewClient(opt)
	if rc == nil {
		return nil, nil, fmt.Errorf("%w: endpoint %s: %w", ErrInvalid, ep, err)
	}
	sopt := opt
	sopt.AlwaysPipelining = false
	src, err := rd.NewClient(sopt)
	if src == nil {
		rc.Close()
		return nil, nil, fmt.Errorf("%w: endpoint %s: %w", ErrInvalid, ep, err)
	}
	ready.Store(true) // err was errNotDialedYet
	dc := &directClient{
		Client: rueidisadapter.New(rc), sync: rueidisadapter.New(src),
		gate: connGate{rc: rc, timeout: dialTimeout}, syncGate: connGate{rc: src, timeout: dialTimeout},
	}
	return dc, closerFunc(func() {
		dc.gate.close()
		dc.syncGate.close()
		rc.Close()
		src.Close()
		dc.gate.wg.Wait()
		dc.syncGate.wg.Wait()
		// rueidis's Close does not stop a dial under way: one that ends
		// after it stores its new connection over the closed client's
		// (and the gate's PING then starts its reader and writer), which
		// nothing would close. Closing again, now that the gates' dials
		// ended, closes it (TestAttack7CloseDuringGateDial).
		rc.Close()
		src.Close()
	}), nil
}

// gateDialKey marks the context under which a connGate dials (its value
// is the gate) and the retry of a call whose deferred dial the gate could
// not make (true: see gated).
type gateDialKey struct{}

// connGate makes the connection of one rueidis client of a single server
// under the dial timeout, never under a caller's deadline: rueidis dials
// and runs the handshake (HELLO, AUTH, SELECT) within the context of the
// call that found no connection, and a round's call has NodeTimeout. When
// connecting took longer than that (a loaded machine, a proxy, TLS over a
// slow link), every call dialed, gave up within its deadline and left the
// next call to dial again: no connection was ever made and each call cost
// one, a stall that lasted as long as the load (the fault suite's N=5
// scenarios on a loaded machine; TestDialNotCutByNodeTimeout).
//
// The gate dials once at a time, on a goroutine of its own, with a PING
// under the dial timeout; calls wait for it within their own deadlines and
// are sent once it is made. It is "up" from then until a call finds the
// connection gone (its dial deferred: see DialCtxFn in dialRueidis).
type connGate struct {
	rc      rd.Client
	timeout time.Duration

	up atomic.Bool // the last dial made the connection, and no call found it gone since

	mu      sync.Mutex
	pending chan struct{}      // closed when the running dial ends; nil if none
	cancel  context.CancelFunc // ends the running dial's context
	err     error              // the last dial's error
	closed  bool
	wg      sync.WaitGroup
}

// wait returns nil once the connection is made, the running (or a new)
// dial's error when it failed, or ctx's error when ctx ends first.
func (g *connGate) wait(ctx context.Context) error {
	if g.up.Load() {
		return nil
	}
	pending := g.start()
	if pending == nil {
		return errDialerClosed
	}
	select {
	case <-pending:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.up.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// ready reports whether the connection is made; if not, it starts a dial
// unless one runs, and does not wait for it.
func (g *connGate) ready() bool {
	if g.up.Load() {
		return true
	}
	g.start()
	return false
}

// down records that a call found the connection gone, and starts a dial.
func (g *connGate) down() {
	g.up.Store(false)
	g.start()
}

// start starts a dial unless one runs, and returns the channel closed when
// the running dial ends; nil after close.
func (g *connGate) start() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	if g.pending == nil {
		g.pending = make(chan struct{})
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), gateDialKey{}, g), g.timeout)
		g.cancel = cancel
		g.wg.Add(1)
		go g.dial(ctx, g.pending)
	}
	return g.pending
}

// dial makes the connection with a PING under the dial timeout. An error
// reply counts as made (an ACL may refuse PING, and a server that is
// loading still has the connection); if it was the handshake's (a wrong
// password), the call that finds no connection retries with a dial of its
// own and gets that reply (see gated).
func (g *connGate) dial(ctx context.Context, done chan struct{}) {
	defer g.wg.Done()
	err := g.rc.Do(ctx, g.rc.B().Ping().Build()).Error()
	// rueidis lets the calls that wait for one connection attempt share
	// its outcome: this PING may have joined a call's dial that was
	// refused (errDialDeferred). Dial again, a few times at most.
	for i := 0; i < deferredRetries && errors.Is(err, errDialDeferred) && ctx.Err() == nil; i++ {
		err = g.rc.Do(ctx, g.rc.B().Ping().Build()).Error()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancel()
	if _, isReply := rd.IsRedisErr(err); err == nil || isReply {
		err = nil
		g.up.Store(true)
	}
	g.err = err
	g.pending = nil
	close(done)
}

// abortOnClose closes conn, dialed under the gate's dial context ctx, if
// the gate is closed while that dial runs: rueidis runs the handshake
// under the context's deadline only (its cancellation does not stop it),
// and Close would otherwise wait for the dial timeout
// (TestAttack7CloseDoesNotWaitForGateDial).
func (g *connGate) abortOnClose(ctx context.Context, conn net.Conn) {
	context.AfterFunc(ctx, func() {
		g.mu.Lock()
		closed := g.closed
		g.mu.Unlock()
		if closed {
			_ = conn.Close()
		}
	})
}

// close makes later waits fail with errDialerClosed and ends a running
// dial (its context, and the connection it dialed); the caller then
// closes the rueidis client and waits for wg.
func (g *connGate) close() {
	g.mu.Lock()
	g.closed = true
	if g.pending != nil {
		g.cancel()
	}
	g.mu.Unlock()
}

// gated runs call on the client behind g once its connection is made. A
// call whose dial was deferred (the connection went away since) marks the
// gate down, waits for the gate's dial and runs once more; that second
// time it may dial itself, under its own deadline, so that a handshake
// refusal the gate took for a made connection (WRONGPASS) reaches the
// caller. A deferred dial writes nothing: the call is sent at most once.
func gated(ctx context.Context, g *connGate, call func(context.Context) (any, error)) (any, error) {
	if err := g.wait(ctx); err != nil {
		return nil, err
	}
	v, err := call(ctx)
	if !errors.Is(err, errDialDeferred) {
		return v, err
	}
	ctx = context.WithValue(ctx, gateDialKey{}, true)
	for i := 0; ; i++ {
		g.down()
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		// This time the call may dial; it may still join a refused dial
		// of another call (see dial), which wrote nothing either.
		if v, err = call(ctx); !errors.Is(err, errDialDeferred) || i == deferredRetries {
			return v, err
		}
	}
}

// deferredRetries bounds how often a dial that joined another call's
// refused dial (errDialDeferred) is tried again.
const deferredRetries = 3

// directClient is the dialed client of a single server: two rueidis
// clients, each with one connection (dialed on first use). The first
// pipelines every call (AlwaysPipelining, see dialRueidis). The second
// carries the calls that run on their caller's goroutine (see
// instance.direct in quorum.go), and without AlwaysPipelining rueidis runs
// such a call synchronously when nothing else is in flight on its
// connection: the caller writes the command and reads the reply itself,
// two goroutine hand-offs fewer per call. For one caller on one instance
// that is the difference between 0.51-0.73× and 0.84-0.97× bsm/redislock's
// lock+unlock rate (bench/results/issue16-one-caller.md). It carries one
// call at a time: a direct call that finds another one on it goes to the
// first client.
//
// The price of the synchronous path is what AlwaysPipelining avoids: a
// call whose deadline passes closes the connection and may be dropped. So
// the first call on the second client that fails without a reply (a
// timeout, a network error) sends every later call of the client's life to
// the first: at most one dropped call per instance and Manager (a dropped
// acquisition is a failed attempt, one that runs late leaves its key to its
// TTL, and so does a dropped release), and no reconnect storm. That bound
// needs the second client to carry one call at a time: calls queued behind
// a synchronous one that times out are failed when rueidis closes the
// connection, never written (eight releases at once to a paused server
// left seven keys to their TTL: TestAttack4ConcurrentDirectReleasesDropped,
// seen failing without busy). Calls about one lock may go over both
// connections; their order on an instance is kept by waiting for each
// other's replies (see predecessor in quorum.go), never by the connection,
// so a call that timed out on one may still arrive after a later one on
// the other: harmless under a token no one else knows, which is why only a
// private token's release is direct and an acquisition under a chosen
// token, or Attach's read, never is (see Lock.private).
//
// Each of the two clients makes its connection through a connGate (gate,
// syncGate), under the dial timeout rather than a call's deadline.
type directClient struct {
	*rueidisadapter.Client // pipelined: every call that is not direct

	sync *rueidisadapter.Client // direct calls, synchronous when alone
	off  atomic.Bool            // a direct call failed without a reply: none since
	busy atomic.Bool            // a direct call is on sync

	gate, syncGate connGate // the connections of Client and sync
}

// EvalSha implements Client.
func (c *directClient) EvalSha(ctx context.Context, sha1 string, keys, args []string) (any, error) {
	return c.route(ctx,
		func(ctx context.Context) (any, error) { return c.Client.EvalSha(ctx, sha1, keys, args) },
		func(ctx context.Context) (any, error) { return c.sync.EvalSha(ctx, sha1, keys, args) })
}

// Eval implements Client.
func (c *directClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	return c.route(ctx,
		func(ctx context.Context) (any, error) { return c.Client.Eval(ctx, script, keys, args) },
		func(ctx context.Context) (any, error) { return c.sync.Eval(ctx, script, keys, args) })
}

// route runs a call on the synchronous client (direct) when it may go
// there (enter) and that client's connection is made; otherwise, or when
// that connection turns out to be gone (nothing was sent), on the
// pipelined one (pipelined), once its connection is made (gated). A
// direct call that finds no connection does not wait for one: the gate
// dials meanwhile.
func (c *directClient) route(ctx context.Context, pipelined, direct func(context.Context) (any, error)) (any, error) {
	if !c.enter(ctx) {
		return gated(ctx, &c.gate, pipelined)
	}
	if !c.syncGate.ready() {
		c.leave(nil)
		return gated(ctx, &c.gate, pipelined)
	}
	v, err := direct(ctx)
	if errors.Is(err, errDialDeferred) {
		c.syncGate.down()
		c.leave(nil)
		return gated(ctx, &c.gate, pipelined)
	}
	c.leave(err)
	return v, err
}

// LoadScripts implements ScriptLoader on the pipelined client, once its
// connection is made.
func (c *directClient) LoadScripts(ctx context.Context, scripts []string) error {
	_, err := gated(ctx, &c.gate, func(ctx context.Context) (any, error) { return nil, c.Client.LoadScripts(ctx, scripts) })
	return err
}

// enter reports whether a call under ctx goes to the synchronous client:
// a round's call that runs on its caller's goroutine, while no such call
// has failed without a reply and no other is on it. If so, the caller
// calls leave when the call returns.
func (c *directClient) enter(ctx context.Context) bool {
	rc, ok := ctx.(*roundCtx)
	if !ok || !rc.direct || c.off.Load() || !c.busy.CompareAndSwap(false, true) {
		return false
	}
	if c.off.Load() { // the call before this one, which just left, set it
		c.busy.Store(false)
		return false
	}
	return true
}

// leave records a direct call's error and frees the synchronous client:
// an error that is not a reply (a timeout, a network error, a closed
// connection) ends the direct calls.
func (c *directClient) leave(err error) {
	if err != nil && !errors.Is(err, context.Canceled) && !isErrorReply(err.Error()) && !c.off.Load() {
		c.off.Store(true)
	}
	c.busy.Store(false)
}

// closerFunc adapts a Close method without a result to io.Closer.
type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// lazyRueidis is a Client whose rueidis client is built on first use, for
// the Sentinel and cluster clients that rueidis connects in NewClient. A
// call waits for the build within its context; a failed build is tried
// again by the next call. Safe for concurrent use.
type lazyRueidis struct {
	opt     rd.ClientOption
	name    string
	cluster bool

	cur atomic.Pointer[rueidisadapter.Client] // set once built

	mu      sync.Mutex
	rc      rd.Client     // the built client, closed by Close
	pending chan struct{} // closed when the running build ends; nil if none
	err     error         // the last build's error
	closed  bool
	builds  sync.WaitGroup
}

func (l *lazyRueidis) client(ctx context.Context) (*rueidisadapter.Client, error) {
	if c := l.cur.Load(); c != nil {
		return c, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errDialerClosed
	}
	if l.pending == nil {
		l.pending = make(chan struct{})
		l.builds.Add(1)
		go l.build(l.pending)
	}
	pending := l.pending
	l.mu.Unlock()
	select {
	case <-pending:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c := l.cur.Load(); c != nil {
		return c, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return nil, l.err
}

// build runs rueidis.NewClient, bounded by the dial timeouts.
func (l *lazyRueidis) build(done chan struct{}) {
	defer l.builds.Done()
	rc, err := rd.NewClient(l.opt)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		if rc != nil {
			rc.Close()
		}
		l.err = err
	case l.closed:
		rc.Close()
	default:
		l.rc = rc
		l.cur.Store(rueidisadapter.New(rc))
	}
	l.pending = nil
	close(done)
}

// EvalSha implements Client.
func (l *lazyRueidis) EvalSha(ctx context.Context, sha1 string, keys, args []string) (any, error) {
	c, err := l.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.EvalSha(ctx, sha1, keys, args)
}

// Eval implements Client.
func (l *lazyRueidis) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	c, err := l.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Eval(ctx, script, keys, args)
}

// String names the endpoint without its passwords.
func (l *lazyRueidis) String() string { return l.name }

// IsCluster reports whether the endpoint is a Redis Cluster.
func (l *lazyRueidis) IsCluster() bool { return l.cluster }

// Subscribe implements Subscriber once the client is built.
func (l *lazyRueidis) Subscribe(ctx context.Context, channel string, onMessage func(payload string)) (io.Closer, error) {
	c, err := l.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.Subscribe(ctx, channel, onMessage)
}

// Close waits for a running build and closes the client, if built.
func (l *lazyRueidis) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.builds.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rc != nil {
		l.rc.Close()
		l.rc = nil
	}
	return nil
}

// LoadScripts implements ScriptLoader once the client is built. A cluster
// client does not load scripts (errors.ErrUnsupported, as the rueidis
// adapter answers for a cluster): SCRIPT LOAD would reach one node only.
func (l *lazyRueidis) LoadScripts(ctx context.Context, scripts []string) error {
	if l.cluster {
		return fmt.Errorf("redlock: SCRIPT LOAD on a Redis Cluster: %w", errors.ErrUnsupported)
	}
	c, err := l.client(ctx)
	if err != nil {
		return err
	}
	return c.LoadScripts(ctx, scripts)
}

// WatchKeys implements KeyWatcher once the client is built.
func (l *lazyRueidis) WatchKeys(ctx context.Context, onChange func(key string)) (KeyWatch, error) {
	c, err := l.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.WatchKeys(ctx, onChange)
}
