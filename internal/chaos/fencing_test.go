package chaos

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/fencing"
	"github.com/redlock-go/redlock/internal/redistest"
)

// TestFencing is checker 5 of issue 5, deterministic: a holder that pauses
// past its TTL has a smaller fencing token than the holder after it, and
// the fenced store rejects its late write. (Under faults, the scenarios
// with fenced locks check the tokens with CheckFencing.)
func TestFencing(t *testing.T) {
	ctx := context.Background()
	servers := redistest.Start(t, 5)
	ma, mb := newManager(t, servers, nil), newManager(t, servers, nil)
	var store fencing.Store
	for round := 0; round < 3; round++ {
		a, err := ma.Lock(ctx, "fenced", redlock.Fenced(), redlock.TTL(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		fa := a.Fence()
		if err := store.Write(fa, "fenced", "a"); err != nil {
			t.Fatalf("A's write in its window: %v", err)
		}
		waitClosed(t, a.Lost(), "A's Lost() after its deadline") // A pauses past its TTL
		b := lockEventually(t, mb, "fenced", redlock.Fenced(), redlock.TTL(10*time.Second))
		fb := b.Fence()
		if fb <= fa {
			t.Fatalf("B's token %d is not above A's %d", fb, fa)
		}
		if err := store.Write(fb, "fenced", "b"); err != nil {
			t.Fatalf("B's write: %v", err)
		}
		if err := store.Write(fa, "fenced", "a-late"); !errors.Is(err, fencing.ErrStale) {
			t.Fatalf("A's late write: %v, want fencing.ErrStale", err)
		}
		if got, _ := store.Read("fenced"); got != "b" {
			t.Fatalf("store holds %q, want B's write", got)
		}
		if err := b.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewFDs(t *testing.T) {
	base := OpenFDs()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if extra := NewFDs(base); len(extra) != 1 {
		t.Fatalf("NewFDs after opening one file: %v", extra)
	}
	f.Close()
	if extra := NewFDs(base); len(extra) != 0 {
		t.Fatalf("NewFDs after closing it: %v", extra)
	}
}
