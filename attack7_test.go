package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestAttack7CloseDuringGateDial: a Manager closed while a connGate's dial
// is under way (the proxy holds the new connection) leaves no connection
// and no goroutine behind once Close returned. rueidis's Close marks the
// client's wire dead, but a dial already running stores its new
// connection over it when it ends: the gate's goroutine then PINGs on a
// connection no one will close.
func TestAttack7CloseDuringGateDial(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	p := startSetupDelayProxy(t, s.Addr(), 400*time.Millisecond)
	before := goleak.IgnoreCurrent()
	m, err := redlock.New([]string{p.Addr()}, redlock.Config{NodeTimeout: 100 * time.Millisecond, RetryCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// The lock's calls start the gates' dials and give up within 100 ms.
	if _, err := m.Lock(ctx, "close-during-dial"); err == nil {
		t.Fatal("Lock succeeded behind a 400ms connection set-up with NodeTimeout 100ms")
	}
	if p.accepted.Load() == 0 {
		t.Fatal("no connection was dialed")
	}
	if err := m.Close(ctx); err != nil && !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("Close: %v", err)
	}
	// Close returned: the dials it waited for ended. Nothing of m may run.
	if err := goleak.Find(before,
		goleak.IgnoreAnyFunction("github.com/redlock-go/redlock_test.(*setupDelayProxy).accept.func1"),
		goleak.IgnoreAnyFunction("github.com/redlock-go/redlock_test.(*setupDelayProxy).accept.func1.1"),
	); err != nil {
		t.Errorf("goroutines left after Close: %v", err)
	}
	t.Logf("clients of the server after Close: %v", s.Do(t, "CLIENT", "LIST"))
}

// TestAttack7ConnectionsKilledUnderLoad: callers busy on every instance
// while the server kills every client connection, again and again: the
// calls that find their connection gone wait for the gate's new one and
// are sent; none fails with the gate's internal errDialDeferred.
func TestAttack7ConnectionsKilledUnderLoad(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			servers := redistest.Start(t, n)
			m := newManager(t, servers, redlock.Config{NodeTimeout: 500 * time.Millisecond, RetryCount: 0})
			ctx := testCtx(t)
			var (
				mu       sync.Mutex
				errs     = map[string]int{}
				ok       atomic.Int64
				outlived atomic.Int32
				stop     atomic.Bool
				wg       sync.WaitGroup
				rounds   = 0
			)
			record := func(err error) {
				e := err.Error()
				if i := strings.LastIndex(e, ": "); i >= 0 {
					e = e[i+2:] // the last instance's cause
				}
				mu.Lock()
				errs[e]++
				mu.Unlock()
			}
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 2000 && !stop.Load(); i++ {
						l, err := m.TryLock(ctx, fmt.Sprintf("killed-%d-%d", g, i), redlock.TTL(5*time.Second))
						if err != nil {
							record(err)
							continue
						}
						if err := l.Unlock(ctx); err != nil {
							record(err)
							continue
						}
						ok.Add(1)
						// At N=1 a release that returned deleted the key:
						// nothing of the lock may set it again.
						if n == 1 {
							key := fmt.Sprintf("killed-%d-%d", g, i)
							if v, err := servers[0].TryDo(time.Second, "PTTL", key); err == nil && v != "-2" {
								outlived.Add(1)
								t.Errorf("%s: PTTL %s after its Unlock returned", key, v)
							}
						}
					}
				}()
			}
			deadline := time.Now().Add(4 * time.Second)
			for ; rounds < 40 && time.Now().Before(deadline); rounds++ {
				for _, s := range servers {
					s.Do(t, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
				}
				// Let some calls through on the new connections.
				for start := ok.Load(); ok.Load() < start+5 && time.Now().Before(deadline); {
					runtime.Gosched()
				}
			}
			stop.Store(true)
			wg.Wait()
			t.Logf("%d kills, %d lock+unlock cycles; errors: %v", rounds, ok.Load(), errs)
			for e, c := range errs {
				if strings.Contains(e, "connection is being dialed") {
					t.Errorf("%d calls failed with the gate's internal error: %s", c, e)
				}
			}
		})
	}
}

// TestAttack7CloseDoesNotWaitForGateDial: Close does not wait for a
// connGate's dial to run its course (up to Endpoint.DialTimeout, here a
// minute, and the handshake's reply wait, ReadTimeout, a minute too): the
// proxy holds every new connection until the test ends, so the gate's
// dial cannot end before its minute, and Close (under a 200 ms
// context) must return long before that, with the server having seen no
// connection of the proxy.
//
// The proxy used to hold the connections 3 s and the test checked, after
// Close, that the server had seen none of them: on a loaded machine the
// Lock, Close and the two INFO reads could together take longer than the
// 3 s and fail a Close that had not waited. Now nothing reaches the
// server however slow the machine, and a Close that waited for the dial
// would still be blocked when waitClosed gives up (30 s, half the dial's
// minute).
func TestAttack7CloseDoesNotWaitForGateDial(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	p := startSetupDelayProxy(t, s.Addr(), time.Hour) // held until the proxy closes
	m, err := redlock.NewFromEndpoints([]redlock.Endpoint{{Addr: p.Addr(), DialTimeout: time.Minute, ReadTimeout: time.Minute}},
		redlock.Config{NodeTimeout: 100 * time.Millisecond, RetryCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	base := connectionsReceived(t, s)
	if _, err := m.Lock(ctx, "close-no-wait"); err == nil {
		t.Fatal("Lock succeeded behind a connection set-up held until the test ends")
	}
	if p.accepted.Load() == 0 {
		t.Fatal("no connection was dialed")
	}
	closed := make(chan struct{})
	var closeErr error
	go func() {
		defer close(closed)
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		closeErr = m.Close(cctx)
	}()
	waitClosed(t, closed, 30*time.Second, "Close while a gate's dial (DialTimeout 1m) waits for a held connection: it waited for the dial")
	if closeErr != nil && !errors.Is(closeErr, redlock.ErrUnavailable) {
		t.Fatalf("Close: %v", closeErr)
	}
	// connectionsReceived's own connections count: one each call.
	if got := connectionsReceived(t, s) - base - 1; got != 0 {
		t.Errorf("the server saw %d connection(s) of the proxy, which holds them all (accepted by the proxy: %d)", got, p.accepted.Load())
	}
}

// connectionsReceived is the server's total_connections_received.
func connectionsReceived(t *testing.T, s *redistest.Server) int {
	t.Helper()
	for _, line := range strings.Split(s.Do(t, "INFO", "stats"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_connections_received in INFO stats")
	return 0
}

// TestAttack7SlowReconnectNoKeyOutlivesRelease: N=1, private tokens,
// 8 callers; the connections are dropped again and again and each new one
// takes longer than NodeTimeout to make (the calls wait at the gates, the
// direct ones go pipelined meanwhile): a release that returned leaves no
// key behind (no acquisition of the lock reaches the instance after it).
func TestAttack7SlowReconnectNoKeyOutlivesRelease(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	p := startSetupDelayProxy(t, s.Addr(), 150*time.Millisecond)
	m := newManagerAt(t, []string{p.Addr()}, redlock.Config{NodeTimeout: 100 * time.Millisecond, RetryCount: 0})
	ctx := testCtx(t)
	var ok, failed atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load(); i++ {
				key := fmt.Sprintf("slow-%d-%d", g, i)
				l, err := m.TryLock(ctx, key, redlock.TTL(10*time.Second))
				if err != nil {
					failed.Add(1)
					continue
				}
				if err := l.Unlock(ctx); err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				if v, err := s.TryDo(time.Second, "PTTL", key); err == nil && v != "-2" {
					t.Errorf("%s: PTTL %s after its Unlock returned", key, v)
				}
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	drops := 0
	for ; drops < 10 && time.Now().Before(deadline); drops++ {
		for start := ok.Load(); ok.Load() < start+20 && time.Now().Before(deadline); {
			runtime.Gosched()
		}
		p.drop()
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d drops, %d cycles, %d failed; connections accepted: %d", drops, ok.Load(), failed.Load(), p.accepted.Load())
	if ok.Load() == 0 {
		t.Fatal("no lock+unlock cycle completed")
	}
}
