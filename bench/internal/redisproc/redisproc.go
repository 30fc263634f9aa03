// Package redisproc starts and stops the redis-server processes that the
// benchmark harness measures against.
//
// Every server listens on 127.0.0.1 only, on a port picked at run time (never
// a fixed port, never a server that was already running), without
// persistence (--save "" --appendonly no), in a temporary directory that Stop
// removes. It is a small stand-alone counterpart of the root module's
// internal/redistest, which a separate module cannot import.
package redisproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits on starting and stopping a server.
const (
	startAttempts = 5                // free-port races retried
	readyTimeout  = 10 * time.Second // until a started server answers PING
	stopTimeout   = 5 * time.Second  // after SIGTERM, before SIGKILL
	logCap        = 16 << 10         // bytes of server output kept for errors
)

// Server is one redis-server process. Its methods are safe for concurrent
// use.
type Server struct {
	// Addr is the server's loopback host:port.
	Addr string

	cmd  *exec.Cmd
	dir  string
	log  *capBuffer
	done chan struct{} // closed once the process has been reaped

	stopOnce sync.Once
	stopErr  error
}

// Version returns the version reported by `bin --version` (for example
// "7.0.15").
func Version(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("redisproc: %s --version: %w (install redis-server 7.x, e.g. apt-get install redis-server)", bin, err)
	}
	m := regexp.MustCompile(`v=(\d+\.\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("redisproc: cannot read a version in %q", strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

// CheckVersion returns an error unless bin is redis-server 7 or newer.
func CheckVersion(bin string) (string, error) {
	v, err := Version(bin)
	if err != nil {
		return "", err
	}
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < 7 {
		return v, fmt.Errorf("redisproc: %s is version %s, need 7.x or newer", bin, v)
	}
	return v, nil
}

// StartN starts n servers and returns them once every one answers PING. On
// error the servers already started are stopped.
func StartN(ctx context.Context, bin string, n int) ([]*Server, error) {
	out := make([]*Server, 0, n)
	for range n {
		s, err := Start(ctx, bin)
		if err != nil {
			StopAll(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// StopAll stops every server and returns the errors joined.
func StopAll(servers []*Server) error {
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// Start starts one server on a free loopback port and waits until it
// answers PING. ctx bounds the wait.
func Start(ctx context.Context, bin string) (*Server, error) {
	var last error
	for range startAttempts {
		s, err := startOnce(ctx, bin)
		if err == nil {
			return s, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

func startOnce(ctx context.Context, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "redlock-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	s := &Server{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:  dir,
		log:  &capBuffer{max: logCap},
		done: make(chan struct{}),
	}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", "",
	)
	s.cmd.Dir = dir
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("redisproc: start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("redisproc: redis-server on %s: %w; its output:\n%s", s.Addr, err, s.log.String())
	}
	return s, nil
}

// waitReady polls PING until the server answers, it exits, ctx ends or
// readyTimeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := ping(ctx, s.Addr); err == nil {
			return nil
		}
		select {
		case <-s.done:
			return errors.New("exited before answering PING")
		case <-ctx.Done():
			return fmt.Errorf("no answer to PING: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// ping sends PING over a fresh connection and expects +PONG.
func ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Stop terminates the server (SIGTERM, then SIGKILL after stopTimeout),
// reaps it and removes its directory. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(stopTimeout):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis-server binds it; Start retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisproc: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// capBuffer keeps the last max bytes written to it.
type capBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.Write(p)
	if over := c.b.Len() - c.max; over > 0 {
		c.b.Next(over)
	}
	return len(p), nil
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// Pid returns the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }
