package redistest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestStartPing(t *testing.T) {
	t.Parallel()
	servers := Start(t, 3)
	if len(servers) != 3 {
		t.Fatalf("got %d servers", len(servers))
	}
	seen := map[int]bool{}
	for _, s := range servers {
		if got := s.Do(t, "PING"); got != "PONG" {
			t.Fatalf("%s PING = %q", s.Addr(), got)
		}
		if seen[s.Port()] {
			t.Fatalf("duplicate port %d", s.Port())
		}
		seen[s.Port()] = true
		if want := fmt.Sprintf("127.0.0.1:%d", s.Port()); s.Addr() != want {
			t.Fatalf("Addr = %q, want %q", s.Addr(), want)
		}
		if s.URL() != "redis://"+s.Addr() {
			t.Fatalf("URL = %q", s.URL())
		}
		if s.Socket() != "" {
			t.Fatalf("Socket = %q, want empty", s.Socket())
		}
		if !s.Running() {
			t.Fatal("not running")
		}
	}
	s := servers[0]
	if got := s.Do(t, "SET", "a", "1"); got != "OK" {
		t.Fatalf("SET = %q", got)
	}
	if got := s.Do(t, "INCR", "a"); got != "2" {
		t.Fatalf("INCR = %q", got)
	}
	if got := s.Do(t, "GET", "missing"); got != "(nil)" {
		t.Fatalf("GET missing = %q", got)
	}
	if got := s.Do(t, "NOSUCHCOMMAND"); !strings.HasPrefix(got, "ERR") {
		t.Fatalf("unknown command = %q", got)
	}
	s.Do(t, "SET", "b", "2")
	if got := s.Keys(t); strings.Join(got, ",") != "a,b" {
		t.Fatalf("Keys = %q", got)
	}
	// Default options: no persistence.
	if got := s.Do(t, "CONFIG", "GET", "appendonly"); got != "appendonly\nno" {
		t.Fatalf("appendonly = %q", got)
	}
	if got := s.Do(t, "CONFIG", "GET", "save"); got != "save\n" {
		t.Fatalf("save = %q", got)
	}
	if got := s.Do(t, "CONFIG", "GET", "bind"); got != "bind\n127.0.0.1" {
		t.Fatalf("bind = %q", got)
	}
}

func TestStopIdempotentAndCleanupOfPaused(t *testing.T) {
	t.Parallel()
	var paused, stopped *Server
	t.Run("inner", func(t *testing.T) {
		paused = StartWith(t, Options{})
		paused.Pause(t)
		stopped = StartWith(t, Options{})
		stopped.Stop(t)
		stopped.Stop(t)
		if stopped.Running() {
			t.Fatal("running after Stop")
		}
	})
	// The subtest's cleanup must have stopped the paused server.
	if paused.Running() {
		t.Fatal("paused server survived cleanup")
	}
	if _, err := paused.TryDo(200*time.Millisecond, "PING"); err == nil {
		t.Fatal("PING succeeded after cleanup")
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{})
	s.Pause(t)
	if !s.Running() {
		t.Fatal("paused server should count as running")
	}
	start := time.Now()
	if got, err := s.TryDo(200*time.Millisecond, "PING"); err == nil {
		t.Fatalf("PING while paused = %q, want timeout", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// A go-redis client with a short timeout fails too.
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("go-redis PING while paused succeeded")
	}
	s.Resume(t)
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING after resume = %q", got)
	}
	if err := c.Ping(ctx(t)).Err(); err != nil {
		t.Fatalf("go-redis PING after resume: %v", err)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	for _, aof := range []bool{true, false} {
		t.Run(fmt.Sprintf("aof=%v", aof), func(t *testing.T) {
			t.Parallel()
			s := StartWith(t, Options{AOF: aof})
			port := s.Port()
			if got := s.Do(t, "SET", "k", "v"); got != "OK" {
				t.Fatalf("SET = %q", got)
			}
			s.Kill(t)
			if s.Running() {
				t.Fatal("running after Kill")
			}
			if _, err := s.TryDo(200*time.Millisecond, "PING"); err == nil {
				t.Fatal("PING succeeded after Kill")
			}
			s.Kill(t) // no-op
			s.Restart(t)
			if s.Port() != port {
				t.Fatalf("port changed %d -> %d", port, s.Port())
			}
			want := "(nil)"
			if aof {
				want = "v"
			}
			if got := s.Do(t, "GET", "k"); got != want {
				t.Fatalf("GET after restart = %q, want %q\n%s", got, want, s.LogTail())
			}
			// Restart of a running server stops it first.
			s.Restart(t)
			if got := s.Do(t, "PING"); got != "PONG" {
				t.Fatalf("PING = %q", got)
			}
		})
	}
}

func TestRestartWaitsForBusyPort(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{AOF: true})
	s.Do(t, "SET", "k", "v")
	s.Kill(t)
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(700 * time.Millisecond)
		l.Close()
	}()
	s.Restart(t)
	<-released
	if got := s.Do(t, "GET", "k"); got != "v" {
		t.Fatalf("GET = %q", got)
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{UnixSocket: true})
	if s.Socket() == "" {
		t.Fatal("no socket")
	}
	fi, err := os.Stat(s.Socket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket mode = %v", fi.Mode())
	}
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket()})
	defer c.Close()
	if err := c.Set(ctx(t), "via", "unix", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.Do(t, "GET", "via"); got != "unix" {
		t.Fatalf("GET over TCP = %q", got)
	}
}

func TestRequirePass(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{Args: []string{"--requirepass", "sekret"}})
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %q", got)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(ctx(t)).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cfg, caPEM := GenerateTLS(t)
	s := StartWith(t, Options{TLS: cfg})
	if !strings.HasPrefix(s.URL(), "rediss://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING = %q", got)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("bad CA PEM")
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer c.Close()
	if err := c.Set(ctx(t), "tls", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := s.Do(t, "GET", "tls"); got != "yes" {
		t.Fatalf("GET = %q", got)
	}
	// ParseURL + ClientTLSConfig also work.
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.TLSConfig = s.ClientTLSConfig()
	c2 := redis.NewClient(opt)
	defer c2.Close()
	if err := c2.Ping(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	// Plain text on the TLS port does not work.
	plain := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, ReadTimeout: time.Second, DialTimeout: time.Second})
	defer plain.Close()
	if err := plain.Ping(ctx(t)).Err(); err == nil {
		t.Fatal("plain-text PING on TLS port succeeded")
	}
	// Restart keeps TLS.
	s.Kill(t)
	s.Restart(t)
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING after restart = %q", got)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	g := StartSentinel(t, 1, 3)
	if g.MasterName != "mymaster" || len(g.Replicas) != 1 || len(g.Sentinels) != 3 {
		t.Fatalf("group = %+v", g)
	}
	oldMaster := g.Master
	if got := g.CurrentMaster(t); got != oldMaster.Addr() {
		t.Fatalf("CurrentMaster = %q, want %q", got, oldMaster.Addr())
	}
	if got := g.Sentinels[0].Do(t, "SENTINEL", "MASTER", "mymaster"); !strings.Contains(got, "quorum\n2") {
		t.Fatalf("quorum not 2:\n%s", got)
	}

	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: g.MasterName, SentinelAddrs: g.SentinelAddrs()})
	defer fc.Close()
	if err := fc.Set(ctx(t), "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	newAddr := g.Failover(t)
	if newAddr == oldMaster.Addr() {
		t.Fatalf("failover kept master %s", newAddr)
	}
	if g.Master.Addr() != newAddr || len(g.Replicas) != 1 || g.Replicas[0] != oldMaster {
		t.Fatalf("group not updated: master=%s replicas=%v", g.Master.Addr(), g.Replicas)
	}
	if got := g.CurrentMaster(t); got != newAddr {
		t.Fatalf("CurrentMaster = %q, want %q", got, newAddr)
	}
	if got := g.Master.Do(t, "GET", "before"); got != "1" {
		t.Fatalf("replicated key on new master = %q", got)
	}
	// The failover client follows the sentinels to the new master.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fc.Set(ctx(t), "after", "2", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := g.Master.Do(t, "GET", "after"); got != "2" {
		t.Fatalf("GET after on new master = %q", got)
	}
	// The sentinels demote the old master to a replica of the new one.
	g.WaitReplication(t)
	if got := oldMaster.Do(t, "ROLE"); !strings.HasPrefix(got, "slave\n127.0.0.1\n"+fmt.Sprint(g.Master.Port())) {
		t.Fatalf("old master ROLE = %q", got)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3)
	addrs := c.Addrs()
	if len(addrs) != 3 {
		t.Fatalf("Addrs = %v", addrs)
	}
	for _, s := range c.Masters {
		if s.Port() >= 55535 {
			t.Fatalf("cluster port %d leaves no room for the bus port", s.Port())
		}
		if got := s.Do(t, "CLUSTER", "INFO"); !strings.Contains(got, "cluster_state:ok") {
			t.Fatalf("%s CLUSTER INFO:\n%s", s.Addr(), got)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	for i := 0; i < 30; i++ {
		if err := cc.Set(ctx(t), fmt.Sprintf("key-%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, s := range c.Masters {
		n := len(s.Keys(t))
		if n == 0 {
			t.Errorf("%s holds no keys; slots not spread?", s.Addr())
		}
		total += n
	}
	if total != 30 {
		t.Fatalf("total keys = %d, want 30", total)
	}
	if got, err := cc.Get(ctx(t), "key-7").Result(); err != nil || got != "7" {
		t.Fatalf("GET key-7 = %q, %v", got, err)
	}
}

// TestStandalone starts servers outside a test's TB, then checks that Close
// stops them and that a Fatal inside Run comes back as an error.
func TestStandalone(t *testing.T) {
	t.Parallel()
	sa := NewStandalone()
	var servers []*Server
	if err := sa.Run(func(tb testing.TB) { servers = Start(tb, 2) }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(servers) != 2 || servers[0].Pid() == 0 || servers[0].Addr() == servers[1].Addr() {
		t.Fatalf("servers: %v", servers)
	}
	for _, s := range servers {
		if v, err := s.TryDo(5*time.Second, "PING"); err != nil || v != "PONG" {
			t.Fatalf("%s: PING = %q, %v", s, v, err)
		}
	}
	err := sa.Run(func(tb testing.TB) {
		StartWith(tb, Options{Binary: "/nonexistent/redis-server"})
		t.Error("StartWith returned after its Fatal")
	})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/redis-server") {
		t.Fatalf("Run with a missing binary: err = %v", err)
	}
	if err := sa.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, s := range servers {
		if s.Running() {
			t.Errorf("%s still running after Close", s)
		}
		if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
			t.Errorf("%s: directory %s still there (%v)", s, s.Dir(), err)
		}
	}
}

// A port handed out stays claimed for the quarantine, across processes
// sharing the registry file; other ports, and the same port after the
// quarantine, can be claimed.
func TestClaimPorts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports")
	t0 := time.Now()
	claim := func(at time.Time, ports ...int) bool {
		t.Helper()
		ok, err := claimPorts(path, at, ports...)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(t0, 40000) {
		t.Fatal("a fresh port was not claimed")
	}
	if claim(t0.Add(time.Minute), 40000) {
		t.Error("a port claimed a minute ago was claimed again")
	}
	if claim(t0.Add(time.Minute), 40002, 40000) {
		t.Error("a pair with a claimed port was claimed")
	}
	if !claim(t0.Add(time.Minute), 40002, 50002) {
		t.Error("two fresh ports were not claimed")
	}
	if !claim(t0.Add(portQuarantine), 40000) {
		t.Error("a port was still claimed after the quarantine")
	}
}

// freePort never hands out the port of a stopped server, even when the
// kernel offers it again (as it may to any test binary running in
// parallel): another test's server must not answer in the stopped one's
// place. Seen failing without the port registry: the stopped port came back.
func TestFreePortSkipsStoppedServersPort(t *testing.T) {
	s := Start(t, 1)[0]
	port := s.Port()
	s.Stop(t)
	offered := false
	got := pickPort(t, false, func() (net.Listener, error) {
		if !offered {
			offered = true // the kernel's first choice: the stopped server's port
			return net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		}
		return net.Listen("tcp", "127.0.0.1:0")
	})
	if !offered {
		t.Fatal("pickPort did not ask for a port")
	}
	if got == port {
		t.Fatalf("pickPort handed out %d, the port of a stopped server", got)
	}
}
