package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/fencing"
	"github.com/redlock-go/redlock/internal/redistest"
)

func urls(servers []*redistest.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}

// Sequential handoffs across several managers: every new holder gets a
// strictly larger token.
func TestFenceIncreasesAcrossManagers(t *testing.T) {
	servers := redistest.Start(t, 3)
	var ms []*redlock.Manager
	for i := 0; i < 3; i++ {
		ms = append(ms, newManagerAt(t, urls(servers), redlock.Config{}))
	}
	ctx := context.Background()
	const handoffs = 2000
	var last uint64
	for i := 0; i < handoffs; i++ {
		l, err := ms[i%len(ms)].Lock(ctx, "fenced", redlock.Fenced(), redlock.TTL(5*time.Second))
		if err != nil {
			t.Fatalf("handoff %d: %v", i, err)
		}
		if l.Fence() <= last {
			t.Fatalf("handoff %d: fence %d after %d", i, l.Fence(), last)
		}
		last = l.Fence()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if last < handoffs {
		t.Fatalf("last fence %d < %d handoffs", last, handoffs)
	}
	// Counters never expire and sit in the lock key's slot.
	for _, s := range servers {
		if got := s.Do(t, "PTTL", "{fenced}:redlock-fence"); got != "-1" {
			t.Fatalf("counter PTTL = %q, want -1 (no expiry)", got)
		}
	}
}

func TestFenceOffIsZero(t *testing.T) {
	servers := redistest.Start(t, 1)
	m := newManagerAt(t, urls(servers), redlock.Config{})
	l, err := m.Lock(context.Background(), "plain", redlock.TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() != 0 {
		t.Fatalf("Fence() = %d without fencing", l.Fence())
	}
	m2 := newManagerAt(t, urls(servers), redlock.Config{Fencing: true})
	if err := l.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	l2, err := m2.Lock(context.Background(), "plain", redlock.TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if l2.Fence() == 0 {
		t.Fatal("Config.Fencing did not fence")
	}
}

// A holder that pauses past its TTL writes late with its old token: the
// fenced store rejects it after the next holder wrote.
func TestFenceRejectsPausedHolder(t *testing.T) {
	servers := redistest.Start(t, 3)
	a := newManagerAt(t, urls(servers), redlock.Config{})
	b := newManagerAt(t, urls(servers), redlock.Config{})
	ctx := context.Background()
	var store fencing.Store

	la, err := a.Lock(ctx, "report", redlock.Fenced(), redlock.TTL(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Write(la.Fence(), "report", "a-early"); err != nil {
		t.Fatal(err)
	}
	// A "pauses": its lease runs out while it is not looking.
	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("lock A not lost after its TTL")
	}
	lb, err := b.LockWait(ctx, "report", redlock.Fenced(), redlock.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if lb.Fence() <= la.Fence() {
		t.Fatalf("B's fence %d not above A's %d", lb.Fence(), la.Fence())
	}
	if err := store.Write(lb.Fence(), "report", "b"); err != nil {
		t.Fatal(err)
	}
	// A wakes up and writes with its stale token.
	if err := store.Write(la.Fence(), "report", "a-late"); !errors.Is(err, fencing.ErrStale) {
		t.Fatalf("late write by A: %v, want ErrStale", err)
	}
	if v, _ := store.Read("report"); v != "b" {
		t.Fatalf("store holds %q, want B's write", v)
	}
}

// faultyClient wraps a Client: it delays calls and drops replies (the
// command runs, the caller sees a timeout), driven by a seeded schedule.
type faultyClient struct {
	redlock.Client
	mu    sync.Mutex
	n     int
	seed  int
	delay time.Duration
}

func (f *faultyClient) next() (drop bool, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	x := (f.n*7919 + f.seed*104729) % 100
	return x < 10, time.Duration(x%5) * f.delay
}

func (f *faultyClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	drop, d := f.next()
	time.Sleep(d)
	v, err := f.Client.EvalSha(ctx, sha, keys, args)
	if drop {
		return nil, context.DeadlineExceeded
	}
	return v, err
}

func (f *faultyClient) Eval(ctx context.Context, src string, keys, args []string) (any, error) {
	drop, d := f.next()
	time.Sleep(d)
	v, err := f.Client.Eval(ctx, src, keys, args)
	if drop {
		return nil, context.DeadlineExceeded
	}
	return v, err
}

type grant struct {
	fence      uint64
	start, end time.Time
}

// Under delays and dropped replies, with several managers contending,
// tokens are unique and increase in the order the holds happened.
func TestFenceStressWithFaults(t *testing.T) {
	servers := redistest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var grants []grant
	var wg sync.WaitGroup
	const workers, perWorker = 4, 60
	for w := 0; w < workers; w++ {
		m, err := redlock.New(urls(servers), redlock.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var clients []redlock.Client
		for i := range servers {
			clients = append(clients, &faultyClient{Client: clientOf(t, m, i), seed: w*10 + i, delay: time.Millisecond})
		}
		fm, err := redlock.NewFromClients(clients, redlock.Config{RetryDelayMin: time.Millisecond, RetryDelayMax: 5 * time.Millisecond, NodeTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer m.Close(context.Background())
			defer fm.Close(context.Background())
			for i := 0; i < perWorker && ctx.Err() == nil; i++ {
				l, err := fm.LockWait(ctx, "stress", redlock.Fenced(), redlock.TTL(2*time.Second))
				if err != nil {
					return
				}
				g := grant{fence: l.Fence(), start: time.Now()}
				time.Sleep(time.Millisecond)
				g.end = time.Now()
				if l.Valid() {
					mu.Lock()
					grants = append(grants, g)
					mu.Unlock()
				}
				_ = l.Unlock(ctx)
			}
		}()
	}
	wg.Wait()
	if len(grants) < workers*perWorker/2 {
		t.Fatalf("only %d grants", len(grants))
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].start.Before(grants[j].start) })
	seen := map[uint64]bool{}
	regressions := 0
	for i, g := range grants {
		if seen[g.fence] {
			t.Errorf("duplicate fence %d", g.fence)
		}
		seen[g.fence] = true
		if i > 0 && g.fence <= grants[i-1].fence {
			regressions++
		}
	}
	if regressions > 0 {
		t.Fatalf("%d regressions in %d grants", regressions, len(grants))
	}
	t.Logf("%d fenced grants under faults, 0 duplicates, 0 regressions", len(grants))
}

// clientOf digs the i-th dialed client out of a manager, for wrapping.
func clientOf(t *testing.T, m *redlock.Manager, i int) redlock.Client {
	t.Helper()
	c := redlock.ClientForTest(m, i)
	if c == nil {
		t.Fatal("no client " + strconv.Itoa(i))
	}
	return c
}

var _ = fmt.Sprint

// The fencing round returns at quorum like the others: an instance that
// does not answer (its calls held at a gate until the end of the test)
// costs a fenced acquisition nothing, where it used to cost the round's
// whole deadline (Config.NodeTimeout). Seen failing before the change: the
// Lock returned only when the held call to the third instance timed out.
func TestFenceRoundReturnsAtQuorum(t *testing.T) {
	servers := redistest.Start(t, 3)
	m, cs := newCountingManager(t, servers, redlock.Config{NodeTimeout: 20 * time.Second})
	gate := make(chan struct{})
	cs[2].setGate(gate, nil)
	defer close(gate)
	ctx := testCtx(t)
	l, err := m.Lock(ctx, "fence-quorum", redlock.Fenced(), redlock.TTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if l.Fence() == 0 {
		t.Fatal("no fencing token")
	}
	if n := cs[2].returned.Load(); n != 0 {
		t.Fatalf("Lock returned after %d held call(s) to the third instance had returned: it waited for them", n)
	}
}
