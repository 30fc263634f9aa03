//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// pty is a pseudo-terminal: redlock writes to tty, the test reads what a
// terminal would show.
type pty struct {
	tty  *os.File
	mu   sync.Mutex
	seen bytes.Buffer
}

// openPTY opens a pseudo-terminal, read in the background until cleanup.
func openPTY(t *testing.T) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx (a pseudo-terminal is needed to test the status line): %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &pty{tty: tty}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := master.Read(buf)
			p.mu.Lock()
			p.seen.Write(buf[:k])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = tty.Close()
		_ = master.Close()
		<-done
	})
	return p
}

func (p *pty) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen.String()
}

// mark writes a line to the terminal and waits until it is read back:
// everything redlock wrote before it has been read too. It returns the
// output since the previous mark.
func (p *pty) mark(t *testing.T, from int) (string, int) {
	t.Helper()
	m := fmt.Sprintf("<mark %d>", from)
	if _, err := p.tty.WriteString(m + "\n"); err != nil {
		t.Fatal(err)
	}
	var out string
	waitFor(t, "the terminal to echo a mark", func() bool {
		s := p.String()
		i := strings.Index(s[from:], m)
		if i < 0 {
			return false
		}
		out = s[from : from+i]
		return true
	})
	end := p.String()
	return out, strings.Index(end[from:], m) + from + len(m)
}

// On a terminal, run shows who holds the lock while it waits and clears
// the line once acquired; -n explains a conflict; -q silences both; the
// command does not get the terminal as stdin.
func TestRunOnTerminal(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	term := openPTY(t)
	dir := t.TempDir()
	runTTY := func(ctx context.Context, argv ...string) <-chan int {
		ch := make(chan int, 1)
		go func() {
			var out bytes.Buffer
			ch <- run(ctx, argv, term.tty, &out, term.tty)
		}()
		return ch
	}
	awaitCode := func(ch <-chan int) int {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(deadline):
			t.Fatal("run did not return")
		}
		return 0
	}

	l, err := m.Lock(ctx, "tty-res", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ch := runTTY(ctx, args(a("run", "--retry-delay", "10ms"), redisFlags(servers),
		a("tty-res", "--", "sh", "-c", `test -t 0 || touch "$1/stdin-not-a-tty"`, "sh", dir))...)
	want := `redlock: waiting for "tty-res" (held by ` + l.Token()[:8]
	waitFor(t, "the status line", func() bool { return strings.Contains(term.String(), want) })
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if code := awaitCode(ch); code != 0 {
		t.Fatalf("run exited %d; terminal:\n%q", code, term.String())
	}
	out, pos := term.mark(t, 0)
	if !strings.HasSuffix(out, "\r\x1b[K") {
		t.Errorf("the status line was not cleared: %q", out)
	}
	if !exists(filepath.Join(dir, "stdin-not-a-tty")) {
		t.Error("the command got the terminal as stdin")
	}

	if _, err := m.Lock(ctx, "tty-res", redlock.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if code := awaitCode(runTTY(ctx, args(a("run", "-n"), redisFlags(servers), a("tty-res", "--", "true"))...)); code != exitConflict {
		t.Fatalf("run -n exited %d", code)
	}
	out, pos = term.mark(t, pos)
	if !strings.Contains(out, `"tty-res" is held by someone else`) {
		t.Errorf("run -n on a terminal did not explain the conflict: %q", out)
	}
	if code := awaitCode(runTTY(ctx, args(a("run", "-q", "-w", "1500ms", "--retry-delay", "10ms"), redisFlags(servers), a("tty-res", "--", "true"))...)); code != exitConflict {
		t.Fatalf("run -q -w exited %d", code)
	}
	if out, _ = term.mark(t, pos); strings.Contains(out, "redlock") {
		t.Errorf("run -q wrote to the terminal: %q", out)
	}
}
