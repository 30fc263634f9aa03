package redlock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

func dialRueidisT(t *testing.T, ep Endpoint) Client {
	t.Helper()
	c, closer, err := dialRueidis(ep, Config{NodeTimeout: DefaultNodeTimeout})
	if err != nil {
		t.Fatalf("dialRueidis(%s): %v", ep, err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	return c
}

func rueidisCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// lockUnlockOnce runs the acquire and release scripts through c (EVALSHA
// with the EVAL fallback, as the manager does) and checks the key on s.
func lockUnlockOnce(t *testing.T, c Client, s *redistest.Server, db string) {
	t.Helper()
	ctx := rueidisCtx(t)
	in := &instance{client: c, name: "test"}
	v, err := call(ctx, in, scriptAcquire, []string{"dial:res"}, []string{"tok", "60000"})
	if err != nil || v != int64(1) {
		t.Fatalf("acquire = (%#v, %v), want (1, nil)", v, err)
	}
	if info := s.Do(t, "INFO", "keyspace"); !strings.Contains(info, db+":keys=1") {
		t.Fatalf("after acquire, INFO keyspace = %q, want %s:keys=1", info, db)
	}
	v, err = call(ctx, in, scriptRelease, []string{"dial:res"}, []string{"tok"})
	if err != nil || v != int64(1) {
		t.Fatalf("release = (%#v, %v), want (1, nil)", v, err)
	}
	if info := s.Do(t, "INFO", "keyspace"); strings.Contains(info, db+":") {
		t.Fatalf("after release, INFO keyspace = %q, want no %s", info, db)
	}
}

func TestDialRueidisDoesNotConnectUntilUsed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := dialRueidisT(t, Endpoint{Addr: ln.Addr().String()})
	// A connection made during dialRueidis would already be in the accept
	// queue: Accept would return it at once.
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if conn, err := ln.Accept(); err == nil {
		conn.Close()
		t.Fatal("dialRueidis connected to the instance")
	}
	// The first call connects (the listener never answers: the call ends
	// with its context).
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.EvalSha(ctx, scriptAcquire.sha, []string{"k"}, []string{"t", "1000"})
		done <- err
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the first call did not connect: %v", err)
	}
	defer conn.Close()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to a silent listener: %v, want context.DeadlineExceeded", err)
	}
}

func TestDialRueidisScripts(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	c := dialRueidisT(t, Endpoint{Addr: s.Addr()})
	lockUnlockOnce(t, c, s, "db0")
	// After SCRIPT FLUSH the EVAL fallback reloads the script.
	s.Do(t, "SCRIPT", "FLUSH")
	lockUnlockOnce(t, c, s, "db0")
	if st, ok := c.(interface{ String() string }); !ok || st.String() != s.Addr() {
		t.Fatalf("the client does not name its address %s", s.Addr())
	}
}

func TestDialRueidisAuthAndDB(t *testing.T) {
	const pw, userPW = "server-secret", "user-secret"
	s := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", pw}})
	s.Do(t, "ACL", "SETUSER", "locker", "on", ">"+userPW, "~*", "+@all")
	lockUnlockOnce(t, dialRueidisT(t, Endpoint{Addr: s.Addr(), Password: pw, DB: 2}), s, "db2")
	lockUnlockOnce(t, dialRueidisT(t, Endpoint{Addr: s.Addr(), Username: "locker", Password: userPW, DB: 3}), s, "db3")

	bad := dialRueidisT(t, Endpoint{Addr: s.Addr(), Username: "locker", Password: "wrong-secret"})
	_, err := bad.Eval(rueidisCtx(t), "return 1", nil, nil)
	if err == nil {
		t.Fatal("a call with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestDialRueidisTLS(t *testing.T) {
	cfg, _ := redistest.GenerateTLS(t)
	s := redistest.StartWith(t, redistest.Options{TLS: cfg})
	lockUnlockOnce(t, dialRueidisT(t, Endpoint{Addr: s.Addr(), TLS: s.ClientTLSConfig()}), s, "db0")
}

func TestDialRueidisUnixSocket(t *testing.T) {
	s := redistest.StartWith(t, redistest.Options{UnixSocket: true})
	lockUnlockOnce(t, dialRueidisT(t, Endpoint{Network: "unix", Addr: s.Socket(), DB: 1}), s, "db1")
}

func TestDialRueidisInvalid(t *testing.T) {
	for _, ep := range []Endpoint{{}, {Addr: "127.0.0.1:1", SentinelAddrs: []string{"127.0.0.1:2"}}} {
		if _, _, err := dialRueidis(ep, Config{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("dialRueidis(%#v): %v, want ErrInvalid", ep, err)
		}
	}
}

// TestDialRueidisSentinel locks through a Sentinel endpoint, fails the
// master over, and locks again on the new master (whose script cache is
// empty: the EVAL fallback reloads it).
func TestDialRueidisSentinel(t *testing.T) {
	g := redistest.StartSentinel(t, 1, 3)
	c := dialRueidisT(t, Endpoint{SentinelAddrs: g.SentinelAddrs(), MasterName: g.MasterName})
	if st, ok := c.(interface{ String() string }); !ok || !strings.HasPrefix(st.String(), "redis+sentinel://") {
		t.Fatalf("the Sentinel client is named %v", c)
	}
	lockUnlockOnce(t, c, g.Master, "db0")
	g.Failover(t)
	// Until the client has followed the failover, calls may fail (READONLY
	// from the demoted master, or a closed connection): bounded retries.
	ctx := rueidisCtx(t)
	in := &instance{client: c, name: "sentinel"}
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 1; ; attempt++ {
		v, err := call(ctx, in, scriptAcquire, []string{"dial:failover"}, []string{"tok", "60000"})
		if err == nil && v == int64(1) {
			t.Logf("locked on the new master at attempt %d", attempt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lock on the new master after %d attempts: (%#v, %v)", attempt, v, err)
		}
		time.Sleep(50 * time.Millisecond) // poll the client until it follows
	}
	if got := g.Master.Do(t, "GET", "dial:failover"); got != "tok" {
		t.Fatalf("the new master %s holds %q, want the token", g.Master, got)
	}
}

// TestDialRueidisSentinelDoesNotConnectUntilUsed: a Sentinel endpoint
// whose Sentinels are unreachable dials without error; calls fail.
func TestDialRueidisSentinelDoesNotConnectUntilUsed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := dialRueidisT(t, Endpoint{SentinelAddrs: []string{addr}, MasterName: "mymaster"})
	if _, err := c.Eval(rueidisCtx(t), "return 1", nil, nil); err == nil {
		t.Fatal("a call through unreachable Sentinels succeeded")
	}
}

// TestDialRueidisCluster locks resources on every master of a cluster
// used as one instance.
func TestDialRueidisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	c := dialRueidisT(t, Endpoint{ClusterAddrs: cl.Addrs()[:1]})
	ctx := rueidisCtx(t)
	in := &instance{client: c, name: "cluster"}
	for i := 0; i < 12; i++ {
		key := "dial:cluster:" + strconv.Itoa(i)
		v, err := call(ctx, in, scriptAcquire, []string{key}, []string{"tok", "60000"})
		if err != nil || v != int64(1) {
			t.Fatalf("acquire %s = (%#v, %v)", key, v, err)
		}
	}
	for _, s := range cl.Masters {
		if keys := s.Keys(t); len(keys) == 0 {
			t.Errorf("master %s holds none of the keys: they did not spread over the cluster", s)
		}
	}
}

// TestDialRueidisManager runs a Manager over three instances dialed by
// dialRueidis, as New would once it switches.
func TestDialRueidisManager(t *testing.T) {
	servers := redistest.Start(t, 3)
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var inst []*instance
	var closers []io.Closer
	for _, s := range servers {
		ep := Endpoint{Addr: s.Addr()}
		c, closer, err := dialRueidis(ep, cfg)
		if err != nil {
			t.Fatal(err)
		}
		inst = append(inst, &instance{client: c, name: ep.String()})
		closers = append(closers, closer)
	}
	m := newManager(inst, closers, cfg)
	ctx := rueidisCtx(t)
	l, err := m.Lock(ctx, "dial:manager")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLock(ctx, "dial:manager"); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryLock of a held resource: %v, want ErrNotAcquired", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if keys := s.Keys(t); len(keys) != 0 {
			t.Fatalf("%s has keys %q after Unlock", s, keys)
		}
	}
}

// TestDialRueidisMinimalACL: the rueidis connection set-up works for a user
// allowed only the commands the scripts use (connMinimalACL in
// connections_test.go), SCRIPT LOAD and PING (connQuietACL: the connection
// probe of connGate and rueidis's keep-alive), and nothing it sends is
// denied (the ACL log stays empty). Without +ping it works too, and the
// log shows only PING's denials. redis-server 7.0 has no CLIENT SETINFO,
// so this does not show that dialRueidis disables it (it does, for 7.2
// and later).
func TestDialRueidisMinimalACL(t *testing.T) {
	for _, ping := range []bool{true, false} {
		t.Run(fmt.Sprintf("ping=%v", ping), func(t *testing.T) {
			s := redistest.Start(t, 1)[0]
			args := []string{"ACL", "SETUSER", "locker", "reset", "on", ">locker-pw", "~lock:*", "resetchannels",
				"-@all", "+evalsha", "+eval", "+get", "+set", "+pexpire", "+del", "+pttl", "+script|load"}
			if ping {
				args = append(args, "+ping")
			}
			if got := s.Do(t, args...); got != "OK" {
				t.Fatalf("ACL SETUSER: %s", got)
			}
			c := dialRueidisT(t, Endpoint{Addr: s.Addr(), Username: "locker", Password: "locker-pw"})
			ctx := rueidisCtx(t)
			in := &instance{client: c, name: "acl"}
			for _, sc := range []struct {
				s    *script
				args []string
			}{{scriptAcquire, []string{"tok", "60000"}}, {scriptExtend, []string{"tok", "60000"}}, {scriptRelease, []string{"tok"}}} {
				if v, err := call(ctx, in, sc.s, []string{"lock:res"}, sc.args); err != nil || v != int64(1) {
					t.Fatalf("%s with the minimal ACL = (%#v, %v), want (1, nil)", sc.s.name, v, err)
				}
			}
			log := s.Do(t, "ACL", "LOG")
			switch {
			case ping && log != "":
				t.Fatalf("ACL LOG is not empty:\n%s", log)
			case !ping && (!strings.Contains(log, "ping") || strings.Contains(log, "eval") || strings.Contains(log, "script")):
				t.Fatalf("ACL LOG without +ping: want PING's denials only:\n%s", log)
			}
		})
	}
}
