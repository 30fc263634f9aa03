package chaos

import (
	"fmt"
	"sort"
	"time"
)

// Holding is one successful acquisition of a Semaphore permit or of an
// Election's leadership, as its holder saw it. Times are CLOCK_MONOTONIC
// nanoseconds (see Mono).
type Holding struct {
	// Worker names the holder; Slot is the permit's slot (its lock's
	// resource), "" for a leadership.
	Worker, Slot string
	// Start is when Acquire or Campaign returned; End is when the holder
	// stopped acting as a holder: the earlier of its validity deadline as
	// it last read it and its release (a holder that ignores Lost, a
	// negative control, ends at its release).
	Start, End int64
	// Term is the leadership's term (the lock's Fence); 0 for a permit.
	Term uint64
	// Lost reports that the validity deadline came before the release:
	// the lease ran out under the holder (a stall).
	Lost bool
}

// CheckPermits checks that at no instant more than permits holdings are
// held: a sweep over the windows [Start, End) of every holding with
// End > Start (a window that ends where another starts does not overlap
// it). It reports one "over-permits" violation per excess episode, at the
// start that broke the bound.
func CheckPermits(hs []Holding, permits int) []Violation {
	type ev struct {
		at    int64
		delta int
		h     *Holding
	}
	var evs []ev
	for i := range hs {
		h := &hs[i]
		if h.End > h.Start {
			evs = append(evs, ev{h.Start, +1, h}, ev{h.End, -1, h})
		}
	}
	// Ends before starts at the same instant.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at != evs[j].at {
			return evs[i].at < evs[j].at
		}
		return evs[i].delta < evs[j].delta
	})
	var out []Violation
	held := map[*Holding]bool{}
	over := false
	for _, e := range evs {
		if e.delta < 0 {
			delete(held, e.h)
			if len(held) <= permits {
				over = false
			}
			continue
		}
		held[e.h] = true
		if len(held) > permits && !over {
			over = true
			var who []string
			for h := range held {
				who = append(who, fmt.Sprintf("%s(%s, %v left)", h.Worker, h.Slot, time.Duration(h.End-e.at)))
			}
			sort.Strings(who)
			out = append(out, Violation{Kind: "over-permits", At: e.at,
				Detail: fmt.Sprintf("%d holders of %d permits at once: %v", len(held), permits, who)})
		}
	}
	return out
}

// CheckLeaders checks an election's history: no two leaders' windows
// [Start, End) overlap ("leader-overlap"), and the terms strictly increase
// in the order of the windows ("term-order"). Holdings with End <= Start
// (no time as leader) are left out.
func CheckLeaders(hs []Holding) []Violation {
	var ws []*Holding
	for i := range hs {
		if hs[i].End > hs[i].Start {
			ws = append(ws, &hs[i])
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start < ws[j].Start })
	var out []Violation
	var prev, last *Holding // prev: the window that ends last so far; last: the one before
	for _, w := range ws {
		if prev != nil && w.Start < prev.End {
			out = append(out, Violation{Kind: "leader-overlap", At: w.Start,
				Detail: fmt.Sprintf("%s (term %d) leads from %d while %s (term %d) leads %v more",
					w.Worker, w.Term, w.Start, prev.Worker, prev.Term, time.Duration(prev.End-w.Start))})
		}
		if last != nil && w.Term <= last.Term {
			out = append(out, Violation{Kind: "term-order", At: w.Start,
				Detail: fmt.Sprintf("%s's term %d follows %s's term %d", w.Worker, w.Term, last.Worker, last.Term)})
		}
		if prev == nil || w.End > prev.End {
			prev = w
		}
		last = w
	}
	return out
}
