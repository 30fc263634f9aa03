package redistest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a freshly spawned process may take to
	// answer PING.
	readyTimeout = 10 * time.Second
	// rebindTimeout bounds how long Restart keeps retrying when its fixed
	// port is (transiently) in use.
	rebindTimeout = 10 * time.Second
	// newPortAttempts is how many fresh ports a first start tries when the
	// chosen one was taken by somebody else in between.
	newPortAttempts = 5
	// termTimeout is how long a graceful stop waits after SIGTERM before
	// escalating to SIGKILL.
	termTimeout = 5 * time.Second
	// killTimeout is how long to wait for exit after SIGKILL.
	killTimeout = 10 * time.Second
	// doTimeout bounds Do/Keys round trips.
	doTimeout = 10 * time.Second
	// clusterPortLimit keeps cluster ports low enough that port+10000 (the
	// cluster bus) is a valid port.
	clusterPortLimit = 55535
	// logTailLines is how many lines LogTail returns.
	logTailLines = 40
)

const installHint = "apt-get install -y redis-server redis-sentinel"

// binaryDirs are searched, after $PATH, for the Redis binaries.
var binaryDirs = []string{"/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin"}

// findBinary locates name (redis-server, redis-sentinel, redis-cli) or fails
// the test with an install hint. It never skips.
func findBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range binaryDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("redistest: %s not found in $PATH or %v; install it with: %s", name, binaryDirs, installHint)
	return ""
}

// freePort returns a loopback port that was free a moment ago and that no
// test process handed out within portQuarantine. With clusterBus it also
// requires port < 55535 and port+10000 free.
func freePort(t testing.TB, clusterBus bool) int {
	t.Helper()
	return pickPort(t, clusterBus, func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") })
}

// pickPort is freePort with the kernel's choice of a port (listen) passed in.
func pickPort(t testing.TB, clusterBus bool, listen func() (net.Listener, error)) int {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		l, err := listen()
		if err != nil {
			t.Fatalf("redistest: cannot listen on 127.0.0.1:0: %v", err)
		}
		held = append(held, l) // keep rejected ports bound so we do not get them again
		port := l.Addr().(*net.TCPAddr).Port
		ports := []int{port}
		if clusterBus {
			if port >= clusterPortLimit {
				continue
			}
			bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
			if err != nil {
				continue
			}
			bus.Close()
			ports = append(ports, port+10000)
		}
		// Not a port another test handed out lately: it may be a stopped
		// server's, which must stay dead (see portQuarantine).
		claimed, err := claimPorts(portRegistry(), time.Now(), ports...)
		if err != nil {
			t.Logf("redistest: port registry %s: %v (using the kernel's choice alone)", portRegistry(), err)
			return port
		}
		if claimed {
			return port
		}
	}
	t.Fatalf("redistest: could not find a free loopback port (clusterBus=%v)", clusterBus)
	return 0
}

// shortTempDir returns a temp dir whose path leaves room for a unix socket
// name (sun_path is limited to 108 bytes). It prefers t.TempDir() and falls
// back to a dir under /tmp removed in t.Cleanup.
func shortTempDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if len(d) <= 80 {
		return d
	}
	d, err := os.MkdirTemp("/tmp", "redistest")
	if err != nil {
		t.Fatalf("redistest: mkdir temp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// proc is one spawned OS process (its own process group).
type proc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed after Wait returned (process reaped)
	err  error         // Wait's result; valid after done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the whole process group unless the leader has already
// been reaped (so a recycled pid is never signalled).
func (p *proc) signal(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid, sig)
}

func (p *proc) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// instance is a restartable slot for one redis-server or redis-sentinel
// process: a binary, a directory, a log file and a port.
type instance struct {
	kind       string // "redis-server" or "redis-sentinel", for messages
	bin        string
	dir        string
	logPath    string
	clusterBus bool                    // port must leave room for port+10000
	argv       func(port int) []string // arguments after the binary
	tls        *tls.Config             // client TLS config, nil for plain
	password   string                  // requirepass, if any

	mu   sync.Mutex
	port int
	cur  *proc
}

func (in *instance) getPort() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.port
}

func (in *instance) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.getPort()))
}

func (in *instance) dialer() dialer {
	return dialer{network: "tcp", addr: in.addr(), tls: in.tls, password: in.password}
}

func (in *instance) current() *proc {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cur
}

func (in *instance) running() bool {
	p := in.current()
	return p != nil && !p.exited()
}

// logSize returns the current size of the log file (0 if missing).
func (in *instance) logSize() int64 {
	fi, err := os.Stat(in.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the log content written after offset.
func (in *instance) logSince(offset int64) string {
	b, err := os.ReadFile(in.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

func (in *instance) logTail() string {
	b, err := os.ReadFile(in.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

// spawn starts the process on in.port, with stdout/stderr appended to the
// log file.
func (in *instance) spawn(port int) (*proc, error) {
	logf, err := os.OpenFile(in.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy of the descriptor
	cmd := exec.Command(in.bin, in.argv(port)...)
	cmd.Dir = in.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

var errAddrInUse = errors.New("address already in use")

// waitReady polls PING until the process answers, exits, or the deadline
// passes.
func (in *instance) waitReady(p *proc, port int, logOffset int64, deadline time.Time) error {
	d := dialer{network: "tcp", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), tls: in.tls, password: in.password}
	var lastErr error
	for {
		if p.exited() {
			if strings.Contains(in.logSince(logOffset), "Address already in use") {
				return errAddrInUse
			}
			return fmt.Errorf("process exited during startup: %v", p.err)
		}
		v, err := d.roundTrip(500*time.Millisecond, "PING")
		switch {
		case err != nil:
			lastErr = err
		case v == "PONG":
			// Make sure the answer came from our process and not from
			// somebody else who grabbed the port first (ours will then
			// fail to bind and exit, which the loop notices).
			ok, err := d.isPID(p.pid)
			if ok {
				return nil
			}
			lastErr = err
		default:
			// Any reply but LOADING means the server is serving commands
			// (e.g. NOAUTH when the password given in Args is unusual).
			if e, ok := v.(replyError); ok && strings.HasPrefix(string(e), "LOADING") {
				lastErr = e
			} else {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %v (last error: %v)", readyTimeout, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start launches the process and waits for readiness. With keepPort it
// reuses in.port, retrying for a bounded time while the port is busy;
// otherwise it picks a fresh free port, retrying with new ports if the
// chosen one gets taken before the server binds it.
func (in *instance) start(t testing.TB, keepPort bool) {
	t.Helper()
	rebindDeadline := time.Now().Add(rebindTimeout)
	for attempt := 1; ; attempt++ {
		port := in.getPort()
		if !keepPort {
			port = freePort(t, in.clusterBus)
		}
		offset := in.logSize()
		p, err := in.spawn(port)
		if err != nil {
			t.Fatalf("redistest: cannot start %s: %v", in.bin, err)
		}
		in.mu.Lock()
		in.port = port
		in.cur = p
		in.mu.Unlock()
		err = in.waitReady(p, port, offset, time.Now().Add(readyTimeout))
		if err == nil {
			return
		}
		stopProc(p)
		if errors.Is(err, errAddrInUse) {
			if keepPort && time.Now().Before(rebindDeadline) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if !keepPort && attempt < newPortAttempts {
				continue
			}
		}
		t.Fatalf("redistest: %s on 127.0.0.1:%d did not become ready: %v\n--- log tail (%s) ---\n%s",
			in.kind, port, err, in.logPath, in.logTail())
	}
}

// stopProc stops p gracefully: SIGCONT (in case it is paused), SIGTERM,
// then SIGKILL after termTimeout. It reports whether the process was reaped.
func stopProc(p *proc) bool {
	if p.exited() {
		return true
	}
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGTERM)
	if p.wait(termTimeout) {
		return true
	}
	p.signal(syscall.SIGKILL)
	return p.wait(killTimeout)
}

func (in *instance) stop(t testing.TB) {
	t.Helper()
	p := in.current()
	if p == nil {
		return
	}
	if !stopProc(p) {
		t.Errorf("redistest: %s pid %d did not exit after SIGKILL", in.kind, p.pid)
	}
}

func (in *instance) kill(t testing.TB) {
	t.Helper()
	p := in.current()
	if p == nil || p.exited() {
		return
	}
	p.signal(syscall.SIGKILL)
	if !p.wait(killTimeout) {
		t.Fatalf("redistest: %s pid %d did not exit after SIGKILL", in.kind, p.pid)
	}
}

func (in *instance) sendSignal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p := in.current()
	if p == nil || p.exited() {
		t.Fatalf("redistest: %s on %s is not running", in.kind, in.addr())
	}
	p.signal(sig)
}

func (in *instance) restart(t testing.TB) {
	t.Helper()
	if in.running() {
		in.stop(t)
	}
	in.start(t, true)
}

// do runs one command and fails the test on a transport error.
func (in *instance) do(t testing.TB, args ...string) any {
	t.Helper()
	v, err := in.dialer().roundTrip(doTimeout, args...)
	if err != nil {
		t.Fatalf("redistest: %s %s: %q: %v", in.kind, in.addr(), args, err)
	}
	return v
}

// newInstance prepares an instance and registers its cleanup. The dir must
// come from t.TempDir (or shortTempDir) called before this, so that the
// directory is removed only after the process has been stopped.
func newInstance(t testing.TB, kind, bin, dir string) *instance {
	in := &instance{kind: kind, bin: bin, dir: dir, logPath: filepath.Join(dir, kind+".log")}
	t.Cleanup(func() {
		p := in.current()
		if p != nil && !stopProc(p) {
			t.Errorf("redistest: %s pid %d did not exit after SIGKILL", kind, p.pid)
		}
	})
	return in
}

// writeConfig writes lines to path (mode 0600).
func writeConfig(t testing.TB, path string, lines []string) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatalf("redistest: write %s: %v", path, err)
	}
}

// confQuote quotes s for a redis config file.
func confQuote(s string) string { return strconv.Quote(s) }

// isPID reports whether the server behind d has process id pid.
func (d dialer) isPID(pid int) (bool, error) {
	v, err := d.roundTrip(500*time.Millisecond, "INFO", "server")
	if err != nil {
		return false, err
	}
	if e, ok := v.(replyError); ok {
		return false, e
	}
	got := infoField(formatReply(v), "process_id")
	if got != strconv.Itoa(pid) {
		return false, fmt.Errorf("port answered by process %s, not %d", got, pid)
	}
	return true, nil
}
