package redlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestElectionInvalid: a bad name gives ErrInvalid from every method and a
// closed Observe channel; a value over MaxMetadataLen is refused.
func TestElectionInvalid(t *testing.T) {
	servers := redistest.Start(t, 1)
	m := newManager(t, servers, redlock.Config{})
	ctx := testCtx(t)
	for _, name := range []string{"", "x:redlock-meta"} {
		e := m.Election(name)
		if _, err := e.Campaign(ctx, "v"); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("Campaign(%q): %v, want ErrInvalid", name, err)
		}
		if _, _, err := e.Leader(ctx); !errors.Is(err, redlock.ErrInvalid) {
			t.Errorf("Leader(%q): %v, want ErrInvalid", name, err)
		}
		if _, ok := <-e.Observe(ctx); ok {
			t.Errorf("Observe(%q) delivered a leader", name)
		}
	}
	big := make([]byte, redlock.MaxMetadataLen+1)
	if _, err := m.Election("e").Campaign(ctx, string(big)); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("Campaign with a huge value: %v, want ErrInvalid", err)
	}
	wantNoKeysNow(t, servers)
}

// next receives the next leadership from ch, failing the test when none
// comes within a generous deadline or ch closes.
func next(t *testing.T, ch <-chan redlock.Leadership) redlock.Leadership {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe channel closed")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("no leader observed within 20s")
	}
	return redlock.Leadership{}
}

// TestElectionSequence: A leads; B, campaigning, leads once A resigns; C
// leads once B's lease ran out (B "crashed": its instances stopped
// answering it). Observe sees A, B, C in that order, each once, with
// strictly increasing terms equal to the leaders' Fence; Leader agrees at
// each step and reports ErrNoLeader before A and after C resigns.
//
// A, B (until it crashes) and C must keep their leases through their
// steps: DefaultTTL 2s and NodeTimeout 2s (loadedNodeTimeout), so that an
// extension may be 788ms late (0.4×TTL less the drift), uncut, before a
// lease runs out (388ms with 1s). B's lease still runs out once its calls
// stop reaching the instances.
func TestElectionSequence(t *testing.T) {
	servers := redistest.Start(t, 3)
	cfg := redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: loadedNodeTimeout, RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 50 * time.Millisecond}
	ma := newManager(t, servers, cfg)
	mb, cb := newCountingManager(t, servers, cfg)
	mc := newManager(t, servers, cfg)
	mo := newManager(t, servers, cfg)
	ctx := testCtx(t)
	eo := mo.Election("svc")
	if _, _, err := eo.Leader(ctx); !errors.Is(err, redlock.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v, want ErrNoLeader", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	obs := eo.Observe(octx)

	a, err := ma.Election("svc").Campaign(ctx, "A")
	if err != nil {
		t.Fatalf("Campaign A: %v", err)
	}
	if a.Fence() == 0 || a.Metadata() != "A" {
		t.Fatalf("A: term %d, metadata %q", a.Fence(), a.Metadata())
	}
	if got := next(t, obs); got != (redlock.Leadership{Value: "A", Term: a.Fence()}) {
		t.Fatalf("observed %+v, want A at term %d", got, a.Fence())
	}
	if v, term, err := eo.Leader(ctx); err != nil || v != "A" || term != a.Fence() {
		t.Fatalf("Leader = %q, %d, %v; want A, %d", v, term, err, a.Fence())
	}

	type result struct {
		l   *redlock.Lock
		err error
	}
	bch := make(chan result, 1)
	go func() {
		l, err := mb.Election("svc").Campaign(ctx, "B")
		bch <- result{l, err}
	}()
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("A resigns: %v", err)
	}
	br := <-bch
	if br.err != nil {
		t.Fatalf("Campaign B: %v", br.err)
	}
	b := br.l
	if b.Fence() <= a.Fence() {
		t.Errorf("B's term %d not above A's %d", b.Fence(), a.Fence())
	}
	if got := next(t, obs); got != (redlock.Leadership{Value: "B", Term: b.Fence()}) {
		t.Fatalf("observed %+v, want B at term %d", got, b.Fence())
	}

	cch := make(chan result, 1)
	go func() {
		l, err := mc.Election("svc").Campaign(ctx, "C")
		cch <- result{l, err}
	}()
	// B crashes: none of its calls reach an instance any more, so its
	// lease is not extended and runs out.
	gate := make(chan struct{})
	defer close(gate)
	for _, c := range cb {
		c.setGate(gate, nil)
	}
	cr := <-cch
	if cr.err != nil {
		t.Fatalf("Campaign C: %v", cr.err)
	}
	c := cr.l
	if b.Valid() {
		t.Errorf("B still valid while C leads")
	}
	waitClosed(t, b.Lost(), 10*time.Second, "B's Lost")
	if c.Fence() <= b.Fence() {
		t.Errorf("C's term %d not above B's %d", c.Fence(), b.Fence())
	}
	if got := next(t, obs); got != (redlock.Leadership{Value: "C", Term: c.Fence()}) {
		t.Fatalf("observed %+v, want C at term %d", got, c.Fence())
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatalf("C resigns: %v", err)
	}
	if _, _, err := eo.Leader(ctx); !errors.Is(err, redlock.ErrNoLeader) {
		t.Errorf("Leader after C resigned: %v, want ErrNoLeader", err)
	}
	ocancel()
	for l := range obs {
		t.Errorf("observed %+v after the last leader", l)
	}
}

// TestElectionLeaderUnavailable: with too few instances answering, Leader
// says it cannot tell (ErrUnavailable), not that there is no leader.
func TestElectionLeaderUnavailable(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 200 * time.Millisecond, DefaultTTL: 2 * time.Second})
	ctx := testCtx(t)
	e := m.Election("u")
	l, err := e.Campaign(ctx, "me")
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	if v, _, err := e.Leader(ctx); err != nil || v != "me" {
		t.Fatalf("Leader = %q, %v", v, err)
	}
	servers[0].Kill(t)
	servers[1].Kill(t)
	if _, _, err := e.Leader(ctx); !errors.Is(err, redlock.ErrUnavailable) || errors.Is(err, redlock.ErrNoLeader) {
		t.Errorf("Leader with 2 of 3 down: %v, want ErrUnavailable", err)
	}
	waitClosed(t, l.Lost(), 20*time.Second, "leader's Lost with 2 of 3 down")
}

// TestElectionObserveEnds: the Observe channel closes when the Manager is
// closed (and goleak in TestMain checks that its goroutine ended).
func TestElectionObserveEnds(t *testing.T) {
	servers := redistest.Start(t, 1)
	m, err := redlock.New(addrs(servers), redlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	ch := m.Election("x").Observe(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a leader observed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Observe channel not closed after Close")
	}
	if _, ok := <-m.Election("x").Observe(ctx); ok {
		t.Fatal("Observe after Close delivered a leader")
	}
}
