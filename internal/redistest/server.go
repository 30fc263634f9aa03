// Package redistest starts and controls real redis-server and
// redis-sentinel processes for tests.
//
// Every process listens on 127.0.0.1 only, on a port picked at run time
// (never a fixed port, never an already running server), keeps its files in
// a per-test temporary directory, and is stopped (and reaped) in t.Cleanup,
// even when it was paused with SIGSTOP. Readiness is polled with PING under
// a deadline; failures call t.Fatal with the tail of the server's log. A
// missing binary fails the test with an install hint; tests are never
// skipped.
package redistest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Options configures a redis-server started by StartWith.
type Options struct {
	// AOF enables the append-only file with appendfsync always, so that
	// data written before a Kill survives a Restart.
	AOF bool
	// Args are extra redis-server command-line arguments, appended last so
	// they override the defaults, e.g. []string{"--requirepass", "x"}.
	// A "--requirepass" value is also used by Do, Keys and readiness checks.
	Args []string
	// UnixSocket additionally listens on a unix socket (unixsocketperm 700)
	// in a temporary directory; see Server.Socket.
	UnixSocket bool
	// TLS, if set, serves TLS on the port (--tls-port) and disables the
	// plain-text port (--port 0). Client certificates are not required
	// (tls-auth-clients no) unless Args say otherwise.
	TLS *TLSConfig
	// Binary is the redis-server executable to run. Default: redis-server
	// from $PATH or the usual install directories.
	Binary string
}

// TLSConfig names the PEM files a TLS server uses.
type TLSConfig struct {
	// CertFile is the server certificate (PEM).
	CertFile string
	// KeyFile is the server private key (PEM).
	KeyFile string
	// CAFile is the CA certificate that signed CertFile (PEM).
	CAFile string
}

// Server is a redis-server process owned by a test. Its methods are safe for
// concurrent use, but the ones taking a testing.TB must be called from the
// test's goroutine as they may call t.Fatal.
type Server struct {
	in     *instance
	socket string
}

// Start starts n redis-servers with default options (no persistence:
// save "" and appendonly no) and returns them once all answer PING.
func Start(t testing.TB, n int) []*Server {
	t.Helper()
	out := make([]*Server, n)
	for i := range out {
		out[i] = StartWith(t, Options{})
	}
	return out
}

// StartWith starts one redis-server configured by opts on a free loopback
// port and waits until it answers PING. The server is stopped in t.Cleanup.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	return startServer(t, opts, nil, false)
}

// startServer is StartWith plus extra config lines and the cluster-bus port
// constraint.
func startServer(t testing.TB, opts Options, extraConf []string, clusterBus bool) *Server {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = findBinary(t, "redis-server")
	}
	dir := t.TempDir()
	s := &Server{}
	in := newInstance(t, "redis-server", bin, dir)
	in.clusterBus = clusterBus
	s.in = in

	conf := []string{
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		"dir " + confQuote(dir),
		`logfile ""`,
		`save ""`,
		"shutdown-timeout 0",
		"repl-diskless-sync-delay 0",
	}
	if opts.AOF {
		conf = append(conf, "appendonly yes", "appendfsync always")
	} else {
		conf = append(conf, "appendonly no")
	}
	if opts.UnixSocket {
		sdir := shortTempDir(t)
		s.socket = filepath.Join(sdir, "redis.sock")
		conf = append(conf, "unixsocket "+confQuote(s.socket), "unixsocketperm 700")
	}
	if opts.TLS != nil {
		conf = append(conf,
			"tls-cert-file "+confQuote(opts.TLS.CertFile),
			"tls-key-file "+confQuote(opts.TLS.KeyFile),
			"tls-ca-cert-file "+confQuote(opts.TLS.CAFile),
			"tls-auth-clients no",
		)
		in.tls = clientTLS(t, opts.TLS.CAFile)
	}
	conf = append(conf, extraConf...)
	confPath := filepath.Join(dir, "redis.conf")
	writeConfig(t, confPath, conf)

	for i := 0; i+1 < len(opts.Args); i++ {
		if opts.Args[i] == "--requirepass" {
			in.password = opts.Args[i+1]
		}
	}
	userArgs := append([]string(nil), opts.Args...)
	useTLS := opts.TLS != nil
	in.argv = func(port int) []string {
		a := []string{confPath}
		if useTLS {
			a = append(a, "--port", "0", "--tls-port", strconv.Itoa(port))
		} else {
			a = append(a, "--port", strconv.Itoa(port))
		}
		return append(a, userArgs...)
	}
	in.start(t, false)
	return s
}

// clientTLS builds a client tls.Config trusting the CA in caFile.
func clientTLS(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("redistest: read CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("redistest: no certificates in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Addr returns "127.0.0.1:PORT" (the TLS port for a TLS server).
func (s *Server) Addr() string { return s.in.addr() }

// Port returns the TCP port (the TLS port for a TLS server).
func (s *Server) Port() int { return s.in.getPort() }

// Socket returns the unix socket path, or "" when Options.UnixSocket was
// not set.
func (s *Server) Socket() string { return s.socket }

// URL returns "redis://127.0.0.1:PORT", or "rediss://..." for a TLS server.
func (s *Server) URL() string {
	if s.in.tls != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Pid returns the process id of the running server (of the last start
// after a Restart); 0 before the first start.
func (s *Server) Pid() int {
	if p := s.in.current(); p != nil {
		return p.pid
	}
	return 0
}

// Dir returns the server's working directory (config, log, AOF files).
func (s *Server) Dir() string { return s.in.dir }

// ClientTLSConfig returns a client TLS configuration trusting the server's
// CA, or nil for a plain-text server. The result is a fresh copy.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.in.tls == nil {
		return nil
	}
	return s.in.tls.Clone()
}

// Pause freezes the server (and its children) with SIGSTOP. Connections
// stay open but nothing is answered until Resume. Cleanup stops paused
// servers too.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.in.sendSignal(t, syscall.SIGSTOP)
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.in.sendSignal(t, syscall.SIGCONT)
}

// Kill sends SIGKILL (no shutdown, no final fsync beyond what appendfsync
// already did) and waits for the process to exit. It works on paused
// servers too, and is a no-op if the server is not running.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.in.kill(t)
}

// Stop shuts the server down gracefully (SIGCONT, SIGTERM, then SIGKILL if
// it has not exited within a few seconds) and waits for it. It is
// idempotent and is also what t.Cleanup runs.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.in.stop(t)
}

// Restart starts the server again on the same port with the same directory
// (so AOF data survives a Kill) and waits until it answers PING. A running
// server is stopped first. If the port is briefly in use, Restart retries
// for a bounded time before failing the test.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.in.restart(t)
}

// Running reports whether the process is alive (paused counts as alive).
func (s *Server) Running() bool { return s.in.running() }

// Do runs one command over a short-lived connection (TLS and AUTH as
// configured) and returns the reply as text: status and bulk strings
// verbatim, integers in decimal, nil as "(nil)", error replies as their
// message (e.g. "ERR unknown command ..."), and arrays as their elements
// joined by newlines. Connection failures and timeouts (10s) fail the test.
func (s *Server) Do(t testing.TB, args ...string) string {
	t.Helper()
	return formatReply(s.in.do(t, args...))
}

// TryDo is like Do but returns transport errors (dial failures, timeouts)
// instead of failing the test; it is meant for probing a server that may be
// paused or down. Redis error replies are returned as text with a nil error.
func (s *Server) TryDo(timeout time.Duration, args ...string) (string, error) {
	v, err := s.in.dialer().roundTrip(timeout, args...)
	if err != nil {
		return "", err
	}
	return formatReply(v), nil
}

// Keys returns all keys (KEYS *), sorted.
func (s *Server) Keys(t testing.TB) []string {
	t.Helper()
	v := s.in.do(t, "KEYS", "*")
	if e, ok := v.(replyError); ok {
		t.Fatalf("redistest: KEYS * on %s: %s", s.Addr(), e)
	}
	keys := replyStrings(v)
	sort.Strings(keys)
	return keys
}

// LogTail returns the last lines of the server's log.
func (s *Server) LogTail() string { return s.in.logTail() }

// String returns a short description for test messages.
func (s *Server) String() string { return fmt.Sprintf("redis-server(%s)", s.Addr()) }
