//go:build linux

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// An exclusive run that waits behind readers says so on its status line.
func TestRunOnTerminalBehindReaders(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	term := openPTY(t)
	r, err := m.RWMutex("tty-rw").RLock(ctx, redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		ch <- run(ctx, args(a("run", "--retry-delay", "10ms"), redisFlags(servers), a("tty-rw", "--", "true")), term.tty, &out, term.tty)
	}()
	waitFor(t, "the status line", func() bool {
		return strings.Contains(term.String(), `redlock: waiting for "tty-rw" (shared by 1 reader)`)
	})
	if err := r.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-ch:
		if code != 0 {
			t.Fatalf("run exited %d; terminal:\n%q", code, term.String())
		}
	case <-time.After(deadline):
		t.Fatal("run did not return after the reader left")
	}
}
