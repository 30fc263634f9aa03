package redlock

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redlock-go/redlock/internal/redistest"
)

// With 2 of 3 instances down and the default Config, waiting callers must
// not flood the instance that is still up: every retry waits at least the
// retry delay (a clean-up of one's own failed attempt is no release to wake
// on), and the delay grows while instances stay unavailable. Seen failing
// before the backoff: 9,568 EVALSHA in 2 s from one LockWait (its own
// clean-up's release message woke it after every attempt).
func TestNoRetryStormWithMajorityDown(t *testing.T) {
	servers := redistest.Start(t, 3)
	eps := serverURLs(servers)
	servers[1].Stop(t)
	servers[2].Stop(t)
	const window = 3 * time.Second
	for _, c := range []struct {
		managers int
		cfg      Config
	}{
		{1, Config{}},
		{20, Config{}},
		// Short delays: with a majority down, contended attempts often end
		// "not acquired" (a refusal and one quick connection error decide
		// the round); that must not reset the backoff. Seen failing before
		// the backoff counted the instances known to be down.
		{20, Config{RetryDelayMin: 2 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond}},
	} {
		managers := c.managers
		ms := make([]*Manager, managers)
		for i := range ms {
			m, err := New(eps, c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ms[i] = m
		}
		before := evalshaCalls(t, servers[0])
		ctx, cancel := context.WithTimeout(context.Background(), window)
		var wg sync.WaitGroup
		for _, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Contended by the others on the one instance up, an attempt
				// may stop at a refusal and a failure: "not acquired".
				l, err := m.LockWait(ctx, "storm")
				if l != nil {
					explainStrayLock(t, m, l, servers)
				}
				if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotAcquired) {
					t.Errorf("LockWait with 2 of 3 down: %v, want ErrUnavailable or ErrNotAcquired", err)
				}
			}()
		}
		wg.Wait()
		cancel()
		for _, m := range ms {
			_ = m.Close(context.Background())
		}
		calls := evalshaCalls(t, servers[0]) - before
		t.Logf("%d Manager(s), one LockWait each for %v: %d script calls on the surviving instance", managers, window, calls)
		if limit := 60 * managers; calls > limit {
			t.Errorf("%d Manager(s): %d script calls on the surviving instance in %v, want at most %d", managers, calls, window, limit)
		}
	}
}

// explainStrayLock logs, for a lock granted although servers[1:] are
// stopped, how each instance voted and what answers on the stopped
// servers' addresses: a process answering there (another test binary's
// redis-server on a reused port) explains the quorum; none points at the
// library.
func explainStrayLock(t *testing.T, m *Manager, l *Lock, servers []*redistest.Server) {
	t.Helper()
	if r, ok := l.tail.(*round); ok {
		for i, in := range m.inst {
			t.Logf("stray lock: instance %d (%s): vote %d, reply %#v, err %v", i, in.name, r.out.votes[i], r.out.vals[i], r.out.errs[i])
		}
	}
	for i, s := range servers[1:] {
		info, err := s.TryDo(time.Second, "INFO", "server")
		if err != nil {
			t.Logf("stray lock: stopped server %d (%s): %v", i+1, s.Addr(), err)
			continue
		}
		pid := ""
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
				pid = v
			}
		}
		t.Logf("stray lock: stopped server %d (%s) answers: a foreign redis-server, process_id %s", i+1, s.Addr(), pid)
	}
}

// A key of another type at the resource's name on every instance is a
// misconfiguration, not an outage: Lock and LockWait return ErrRejected
// after one attempt (no waiting), naming each instance and its reply. On
// one instance of three (a minority) it is plain unavailability of that
// instance. Seen failing before ErrRejected: ErrUnavailable, and LockWait
// retried until its ctx ended.
func TestWrongTypeIsRejected(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newInternalManager(t, servers, Config{})
	for _, s := range servers {
		s.Do(t, "HSET", "wrongtype", "f", "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := m.LockWait(ctx, "wrongtype")
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotAcquired) {
		t.Fatalf("LockWait on a hash: %v, want ErrRejected alone", err)
	}
	if ctx.Err() != nil {
		t.Fatal("LockWait waited until its ctx ended")
	}
	var qe *QuorumError
	if !errors.As(err, &qe) || qe.Attempts != 1 || len(qe.Instances) < m.quorum {
		t.Fatalf("LockWait on a hash: %#v, want one attempt and the instances' replies", qe)
	}
	for _, ie := range qe.Instances {
		if !isRejection(ie.Err) {
			t.Errorf("instance %s: %v, want the WRONGTYPE reply", ie.Endpoint, ie.Err)
		}
	}
	// A minority: not rejected; the lock is taken on the other two.
	servers[0].Do(t, "DEL", "wrongtype")
	servers[1].Do(t, "DEL", "wrongtype")
	l, err := m.Lock(ctx, "wrongtype")
	if err != nil {
		t.Fatalf("Lock with a WRONGTYPE minority: %v", err)
	}
	_ = l.Unlock(ctx)
}

// A Lock queued behind a LockWait of the same Manager keeps its own attempt
// budget and delay: it returns ErrNotAcquired after RetryCount attempts
// instead of waiting for the LockWait (here unbounded) to end. Seen failing
// before the change: only the head of the queue retried, so the Lock waited
// as long as the LockWait did.
func TestQueuedLockKeepsItsBudget(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newInternalManager(t, servers, Config{RetryCount: 3, RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 20 * time.Millisecond})
	other := newInternalManager(t, servers, Config{})
	ctx := context.Background()
	if _, err := other.Lock(ctx, "budget", TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitDone := make(chan struct{})
	go func() {
		defer close(waitDone)
		_, _ = m.LockWait(wctx, "budget") // unbounded: ends with the test
	}()
	waitQueued(t, m, m.cfg.KeyPrefix+"budget", 1)
	done := make(chan error, 1)
	go func() {
		_, err := m.Lock(ctx, "budget")
		done <- err
	}()
	select {
	case err := <-done:
		var qe *QuorumError
		if !errors.Is(err, ErrNotAcquired) || !errors.As(err, &qe) || qe.Attempts != 3 {
			t.Errorf("Lock behind a LockWait: %v, want ErrNotAcquired after 3 attempts", err)
		}
	case <-time.After(20 * time.Second): // a failure bound only
		t.Fatal("Lock behind an unbounded LockWait did not return")
	}
	cancel()
	<-waitDone
}

// fakeInstance answers every script call with reply/err after delay.
type fakeInstance struct {
	reply any
	err   error
	delay time.Duration
	calls atomic.Int64
}

func (f *fakeInstance) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	f.calls.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.reply, f.err
}

func (f *fakeInstance) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	return f.EvalSha(ctx, "", keys, args)
}

// With a majority known to be down, an attempt decided early by a refusal
// and one quick connection error says "not acquired"; that must not reset
// the backoff, or contended waiters retry at their minimum delay while the
// majority is down (the fault suite measured 24-36 calls/s per waiting
// Manager and resource at a 2-10 ms delay). Seen failing before the
// backoff counted the instances known to be down: 83 attempts in 1 s.
func TestBackoffGrowsWhileMajorityDown(t *testing.T) {
	refused := &fakeInstance{reply: int64(-2 - 60000)} // held by another, 60 s left
	down := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	d1 := &fakeInstance{err: down, delay: 2 * time.Millisecond}
	d2 := &fakeInstance{err: down, delay: 2 * time.Millisecond}
	m, err := NewFromClients([]Client{refused, d1, d2}, Config{RetryDelayMin: 2 * time.Millisecond, RetryDelayMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = m.LockWait(ctx, "contended")
	if err == nil {
		t.Fatal("acquired with a majority down")
	}
	n := refused.calls.Load()
	t.Logf("%d attempts in 1s: %v", n, err)
	if n > 20 {
		t.Errorf("%d attempts in 1s with 2 of 3 instances down: the backoff did not grow", n)
	}
}

// serverURLs returns the servers' URLs, the endpoints of a Manager over them.
func serverURLs(servers []*redistest.Server) []string {
	eps := make([]string, 0, len(servers))
	for _, s := range servers {
		eps = append(eps, s.URL())
	}
	return eps
}

// newInternalManager is New over the servers' URLs with cfg, closed in
// t.Cleanup.
func newInternalManager(t *testing.T, servers []*redistest.Server, cfg Config) *Manager {
	t.Helper()
	m, err := New(serverURLs(servers), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}
