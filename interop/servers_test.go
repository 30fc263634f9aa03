package interop

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file is a small, self-contained stand-in for the root module's
// internal/redistest (which another module cannot import): it starts
// throw-away redis-server processes on free loopback ports and stops them in
// t.Cleanup.

const (
	// readyTimeout bounds how long a fresh redis-server may take to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long a killed redis-server may take to exit.
	stopTimeout = 10 * time.Second
	// startAttempts is how many fresh ports a start tries when the chosen one
	// was taken by somebody else in between.
	startAttempts = 5
	// callTimeout bounds every direct command a test sends to a server.
	callTimeout = 5 * time.Second
	// installHint tells how to get the binary when it is missing.
	installHint = "apt-get install -y redis-server (Debian/Ubuntu) or brew install redis (macOS)"
)

// server is one redis-server process owned by a test, with a go-redis
// client for direct inspection (closed before the process is stopped).
type server struct {
	addr string
	rdb  *redis.Client
}

// startServers starts n redis-servers (no persistence) on free loopback
// ports and returns them once all answer PING. They are stopped in
// t.Cleanup. A missing redis-server binary fails the test: it never skips.
func startServers(t *testing.T, n int) []*server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("interop: redis-server not found in $PATH (%v); install it with: %s", err, installHint)
	}
	out := make([]*server, n)
	for i := range out {
		out[i] = startServer(t, bin)
	}
	return out
}

// startServer starts one redis-server, retrying on a fresh port when the
// process exits before answering (typically: the port was taken meanwhile).
func startServer(t *testing.T, bin string) *server {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	var lastLog string
	for attempt := 0; attempt < startAttempts; attempt++ {
		port := freePort(t)
		logPath := filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatalf("interop: create log file: %v", err)
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--daemonize", "no",
			"--dir", dir,
		)
		cmd.Stdout = logFile // *os.File: no copying goroutine
		cmd.Stderr = logFile
		if err := cmd.Start(); err != nil {
			logFile.Close()
			t.Fatalf("interop: start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			logFile.Close()
			close(exited)
		}()
		stop := func() {
			select {
			case <-exited:
				return
			default:
			}
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(stopTimeout):
				t.Errorf("interop: redis-server pid %d did not exit %v after SIGKILL", cmd.Process.Pid, stopTimeout)
			}
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := waitReady(addr, exited); err != nil {
			stop()
			lastErr = err
			lastLog = readTail(logPath)
			continue
		}
		s := &server{addr: addr, rdb: redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})}
		t.Cleanup(func() {
			_ = s.rdb.Close()
			stop()
		})
		return s
	}
	t.Fatalf("interop: redis-server did not start after %d attempts: %v\nlog tail:\n%s", startAttempts, lastErr, lastLog)
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("interop: listen on 127.0.0.1:0: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// errExited means the process ended before it answered PING.
var errExited = errors.New("interop: redis-server exited before answering PING")

// waitReady polls addr with PING until it answers PONG, the process exits,
// or readyTimeout passes.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errExited
		default:
		}
		if lastErr = ping(addr); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(10 * time.Millisecond):
		}
	}
	return errors.Join(errors.New("interop: redis-server did not answer PING in time"), lastErr)
}

// ping sends one inline PING on a fresh connection and checks for +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return errors.New("interop: unexpected PING reply " + strconv.Quote(string(buf[:n])))
	}
	return nil
}

// readTail returns the last lines of a log file, for failure messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// addrs returns the servers' host:port addresses.
func addrs(servers []*server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.addr
	}
	return out
}

// value returns what key holds on s, and whether it exists.
func (s *server) value(t *testing.T, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	v, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	if err != nil {
		t.Fatalf("interop: GET %q on %s: %v", key, s.addr, err)
	}
	return v, true
}

// requireAll fails the test unless key holds want on every server.
func requireAll(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	for _, s := range servers {
		got, ok := s.value(t, key)
		if !ok {
			t.Fatalf("%s: key %q is missing, want it to hold %q", s.addr, key, want)
		}
		if got != want {
			t.Fatalf("%s: key %q holds %q, want %q", s.addr, key, got, want)
		}
	}
}

// waitAll waits until key holds want on every server, failing the test
// after a generous deadline. Our TryLock returns once a quorum has
// answered, so the remaining instances may still be running the acquire
// script when it returns; the step-by-step tests wait for them so that each
// step starts from the same state on every server.
func waitAll(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for _, s := range servers {
		for {
			got, ok := s.value(t, key)
			if ok && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: key %q holds %q (exists: %v), want %q within %v", s.addr, key, got, ok, want, callTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// requireQuorum fails the test unless key holds want on a quorum
// (len/2+1) of the servers: what a winner of a contended attempt holds.
func requireQuorum(t *testing.T, servers []*server, key, want string) {
	t.Helper()
	holders := 0
	for _, s := range servers {
		if got, ok := s.value(t, key); ok && got == want {
			holders++
		}
	}
	if q := len(servers)/2 + 1; holders < q {
		t.Fatalf("key %q holds %q on %d of %d servers, want at least %d", key, want, holders, len(servers), q)
	}
}

// waitNone waits until key exists on no server, failing the test after a
// generous deadline. Our Unlock returns once a quorum confirmed, so the
// release may still be running on the remaining instances.
func waitNone(t *testing.T, servers []*server, key string) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	for _, s := range servers {
		for {
			got, ok := s.value(t, key)
			if !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: key %q still holds %q after %v, want it gone", s.addr, key, got, callTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// expire deletes key on every server, with our metadata key beside it
// (which has the lock key's TTL): what the key's TTL running out does,
// without waiting for it.
func expire(t *testing.T, servers []*server, key string) {
	t.Helper()
	for _, s := range servers {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		err := s.rdb.Del(ctx, key, metaKey(key)).Err()
		cancel()
		if err != nil {
			t.Fatalf("interop: DEL %q on %s: %v", key, s.addr, err)
		}
	}
}
