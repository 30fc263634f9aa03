package redistest

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// sentinelMasterName is the name every group's sentinels monitor.
	sentinelMasterName = "mymaster"
	// topologyTimeout bounds waits for replication links, sentinel
	// discovery, failovers and cluster convergence.
	topologyTimeout = 30 * time.Second
)

// Sentinel is a redis-sentinel process owned by a test.
type Sentinel struct {
	in *instance
}

// SentinelGroup is a master, its replicas and the sentinels monitoring it,
// all started by StartSentinel.
type SentinelGroup struct {
	// Master is the server currently believed to be the master. Failover
	// updates it (and Replicas) to match the sentinels' new view.
	Master *Server
	// Replicas are the other data servers of the group.
	Replicas []*Server
	// Sentinels are the redis-sentinel processes.
	Sentinels []*Sentinel
	// MasterName is the monitored master name ("mymaster").
	MasterName string
}

// StartSentinel starts a master, `replicas` replicas (replicaof the master)
// and `sentinels` redis-sentinel processes monitoring it as "mymaster" with
// quorum sentinels/2+1, down-after-milliseconds 1000 and failover-timeout
// 5000. It returns once replication links are up and every sentinel reports
// the master as healthy, sees all replicas and knows all other sentinels.
// Everything is stopped in t.Cleanup.
func StartSentinel(t testing.TB, replicas, sentinels int) *SentinelGroup {
	t.Helper()
	if sentinels < 1 {
		t.Fatalf("redistest: StartSentinel needs at least one sentinel, got %d", sentinels)
	}
	g := &SentinelGroup{MasterName: sentinelMasterName}
	g.Master = StartWith(t, Options{})
	for i := 0; i < replicas; i++ {
		r := startServer(t, Options{}, []string{"replicaof 127.0.0.1 " + strconv.Itoa(g.Master.Port())}, false)
		g.Replicas = append(g.Replicas, r)
	}
	waitReplication(t, g.Master, g.Replicas)

	bin := findBinary(t, "redis-sentinel")
	quorum := sentinels/2 + 1
	for i := 0; i < sentinels; i++ {
		g.Sentinels = append(g.Sentinels, startSentinelProc(t, bin, g.Master.Port(), quorum))
	}
	g.waitDiscovery(t, g.Master.Addr(), replicas)
	return g
}

func startSentinelProc(t testing.TB, bin string, masterPort, quorum int) *Sentinel {
	t.Helper()
	dir := t.TempDir()
	in := newInstance(t, "redis-sentinel", bin, dir)
	confPath := filepath.Join(dir, "sentinel.conf")
	writeConfig(t, confPath, []string{
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		"dir " + confQuote(dir),
		`logfile ""`,
		"sentinel resolve-hostnames no",
		"sentinel announce-ip 127.0.0.1",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", sentinelMasterName, masterPort, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", sentinelMasterName),
		fmt.Sprintf("sentinel failover-timeout %s 5000", sentinelMasterName),
		fmt.Sprintf("sentinel parallel-syncs %s 1", sentinelMasterName),
	})
	// Sentinel rewrites its config file, so it is written once and the port
	// is passed on the command line (which overrides the file).
	in.argv = func(port int) []string {
		return []string{confPath, "--port", strconv.Itoa(port)}
	}
	in.start(t, false)
	return &Sentinel{in: in}
}

// waitReplication waits until master reports every replica connected and
// every replica reports its link up.
func waitReplication(t testing.TB, master *Server, replicas []*Server) {
	t.Helper()
	if len(replicas) == 0 {
		return
	}
	want := strconv.Itoa(len(replicas))
	wantMaster := strconv.Itoa(master.Port())
	waitFor(t, topologyTimeout, "replication links up", func() (bool, string) {
		info := formatReply(master.in.do(t, "INFO", "replication"))
		if got := infoField(info, "connected_slaves"); got != want {
			return false, fmt.Sprintf("master %s: connected_slaves=%s, want %s", master.Addr(), got, want)
		}
		for _, r := range replicas {
			info := formatReply(r.in.do(t, "INFO", "replication"))
			if infoField(info, "master_port") != wantMaster || infoField(info, "master_link_status") != "up" {
				return false, fmt.Sprintf("replica %s: master_port=%s master_link_status=%s", r.Addr(),
					infoField(info, "master_port"), infoField(info, "master_link_status"))
			}
		}
		return true, ""
	}, serverLogs(append([]*Server{master}, replicas...))...)
}

// waitDiscovery waits until every running sentinel reports masterAddr as a
// healthy master with the given number of healthy replicas and all other
// running sentinels.
func (g *SentinelGroup) waitDiscovery(t testing.TB, masterAddr string, replicas int) {
	t.Helper()
	others := strconv.Itoa(len(g.Sentinels) - 1)
	waitFor(t, topologyTimeout, "sentinels to discover the topology", func() (bool, string) {
		for _, s := range g.Sentinels {
			if !s.Running() {
				continue
			}
			m := replyMap(s.in.do(t, "SENTINEL", "MASTER", g.MasterName))
			addr := net.JoinHostPort(m["ip"], m["port"])
			if addr != masterAddr || m["flags"] != "master" || m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != others {
				return false, fmt.Sprintf("sentinel %s: master=%s flags=%s num-slaves=%s num-other-sentinels=%s (want %s, master, %d, %s)",
					s.Addr(), addr, m["flags"], m["num-slaves"], m["num-other-sentinels"], masterAddr, replicas, others)
			}
			for _, rv := range asArray(s.in.do(t, "SENTINEL", "REPLICAS", g.MasterName)) {
				r := replyMap(rv)
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return false, fmt.Sprintf("sentinel %s: replica %s:%s flags=%s master-link-status=%s",
						s.Addr(), r["ip"], r["port"], r["flags"], r["master-link-status"])
				}
			}
		}
		return true, ""
	}, g.logs()...)
}

func asArray(v any) []any {
	a, _ := v.([]any)
	return a
}

// servers returns the data servers (master first).
func (g *SentinelGroup) servers() []*Server {
	return append([]*Server{g.Master}, g.Replicas...)
}

// logs returns every process of the group as a log source.
func (g *SentinelGroup) logs() []logSource {
	out := serverLogs(g.servers())
	for _, s := range g.Sentinels {
		out = append(out, s)
	}
	return out
}

func serverLogs(servers []*Server) []logSource {
	out := make([]logSource, len(servers))
	for i, s := range servers {
		out[i] = s
	}
	return out
}

// SentinelAddrs returns the "127.0.0.1:PORT" addresses of all sentinels.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

// CurrentMaster returns the master address ("127.0.0.1:PORT") reported by
// the first running sentinel that answers. It fails the test if none does.
func (g *SentinelGroup) CurrentMaster(t testing.TB) string {
	t.Helper()
	addr, err := g.currentMaster()
	if err != nil {
		t.Fatalf("redistest: CurrentMaster: %v", err)
	}
	return addr
}

func (g *SentinelGroup) currentMaster() (string, error) {
	var lastErr error = fmt.Errorf("no running sentinel")
	for _, s := range g.Sentinels {
		if !s.Running() {
			continue
		}
		v, err := s.in.dialer().roundTrip(2*time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.MasterName)
		if err != nil {
			lastErr = err
			continue
		}
		parts := replyStrings(v)
		if len(parts) != 2 {
			lastErr = fmt.Errorf("sentinel %s: unexpected reply %q", s.Addr(), formatReply(v))
			continue
		}
		return net.JoinHostPort(parts[0], parts[1]), nil
	}
	return "", lastErr
}

// Failover forces a failover with SENTINEL FAILOVER on the first running
// sentinel, then waits (bounded) until all running sentinels agree on a new
// master different from the old one and that server answers ROLE with
// "master". It updates g.Master and g.Replicas accordingly and returns the
// new master's address. The old master, if still running, is demoted to a
// replica by the sentinels asynchronously.
func (g *SentinelGroup) Failover(t testing.TB) string {
	t.Helper()
	if len(g.Replicas) == 0 {
		t.Fatalf("redistest: Failover needs at least one replica")
	}
	old := g.CurrentMaster(t)
	var leader *Sentinel
	for _, s := range g.Sentinels {
		if s.Running() {
			leader = s
			break
		}
	}
	if leader == nil {
		t.Fatalf("redistest: Failover: no running sentinel")
	}
	// NOGOODSLAVE can happen briefly while the sentinel refreshes replica
	// state; retry within the bound.
	waitFor(t, topologyTimeout, "SENTINEL FAILOVER to be accepted", func() (bool, string) {
		reply := formatReply(leader.in.do(t, "SENTINEL", "FAILOVER", g.MasterName))
		if reply == "OK" || strings.HasPrefix(reply, "INPROG") {
			return true, ""
		}
		return false, reply
	}, g.logs()...)

	var newAddr string
	waitFor(t, topologyTimeout, "sentinels to agree on a new master", func() (bool, string) {
		newAddr = ""
		for _, s := range g.Sentinels {
			if !s.Running() {
				continue
			}
			v, err := s.in.dialer().roundTrip(2*time.Second, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.MasterName)
			if err != nil {
				return false, fmt.Sprintf("sentinel %s: %v", s.Addr(), err)
			}
			parts := replyStrings(v)
			if len(parts) != 2 {
				return false, fmt.Sprintf("sentinel %s: %q", s.Addr(), formatReply(v))
			}
			addr := net.JoinHostPort(parts[0], parts[1])
			if addr == old {
				return false, fmt.Sprintf("sentinel %s still reports %s", s.Addr(), old)
			}
			if newAddr != "" && addr != newAddr {
				return false, fmt.Sprintf("sentinels disagree: %s vs %s", newAddr, addr)
			}
			newAddr = addr
		}
		srv := g.serverByAddr(newAddr)
		if srv == nil {
			return false, fmt.Sprintf("new master %s is not a server of this group", newAddr)
		}
		role, err := srv.in.dialer().roundTrip(2*time.Second, "ROLE")
		if err != nil {
			return false, fmt.Sprintf("ROLE on %s: %v", newAddr, err)
		}
		if r := replyStrings(role); len(r) == 0 || r[0] != "master" {
			return false, fmt.Sprintf("ROLE on %s: %q", newAddr, formatReply(role))
		}
		return true, ""
	}, g.logs()...)

	all := g.servers()
	g.Master = g.serverByAddr(newAddr)
	g.Replicas = g.Replicas[:0:0]
	for _, s := range all {
		if s != g.Master {
			g.Replicas = append(g.Replicas, s)
		}
	}
	return newAddr
}

// WaitReplication waits (bounded) until every running replica in
// g.Replicas reports g.Master as its master with the replication link up,
// and the master counts them all. After Failover the sentinels demote a
// still-running old master asynchronously, typically within about 10
// seconds (their INFO period), so this can take that long.
func (g *SentinelGroup) WaitReplication(t testing.TB) {
	t.Helper()
	var running []*Server
	for _, r := range g.Replicas {
		if r.Running() {
			running = append(running, r)
		}
	}
	waitReplication(t, g.Master, running)
}

func (g *SentinelGroup) serverByAddr(addr string) *Server {
	for _, s := range g.servers() {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// logSource is anything with a log worth showing on failure.
type logSource interface {
	Addr() string
	LogTail() string
}

// waitFor polls cond every 50ms until it returns true or timeout passes, in
// which case it fails the test with cond's last explanation and the log
// tails of logs.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string), logs ...logSource) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, s := range logs {
				fmt.Fprintf(&b, "\n--- log tail %s ---\n%s", s.Addr(), s.LogTail())
			}
			t.Fatalf("redistest: timed out after %v waiting for %s: %s%s", timeout, what, why, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr returns the sentinel's "127.0.0.1:PORT".
func (s *Sentinel) Addr() string { return s.in.addr() }

// Port returns the sentinel's TCP port.
func (s *Sentinel) Port() int { return s.in.getPort() }

// Do runs one command on the sentinel and returns the reply as text, like
// Server.Do.
func (s *Sentinel) Do(t testing.TB, args ...string) string {
	t.Helper()
	return formatReply(s.in.do(t, args...))
}

// Pause freezes the sentinel with SIGSTOP.
func (s *Sentinel) Pause(t testing.TB) {
	t.Helper()
	s.in.sendSignal(t, syscall.SIGSTOP)
}

// Resume continues a paused sentinel with SIGCONT.
func (s *Sentinel) Resume(t testing.TB) {
	t.Helper()
	s.in.sendSignal(t, syscall.SIGCONT)
}

// Kill sends SIGKILL and waits for the sentinel to exit.
func (s *Sentinel) Kill(t testing.TB) {
	t.Helper()
	s.in.kill(t)
}

// Stop shuts the sentinel down gracefully; it is idempotent.
func (s *Sentinel) Stop(t testing.TB) {
	t.Helper()
	s.in.stop(t)
}

// Restart starts the sentinel again on the same port with its (rewritten)
// config file and waits until it answers PING.
func (s *Sentinel) Restart(t testing.TB) {
	t.Helper()
	s.in.restart(t)
}

// Running reports whether the sentinel process is alive.
func (s *Sentinel) Running() bool { return s.in.running() }

// LogTail returns the last lines of the sentinel's log.
func (s *Sentinel) LogTail() string { return s.in.logTail() }
