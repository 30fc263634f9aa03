package chaos

import (
	"fmt"
	"sort"
	"time"
)

// Violation is one breach of a safety property found in a history.
type Violation struct {
	// Kind names the property: "overlap", "late-extension", "revived",
	// "valid-after-deadline", "pause-unnoticed", "validity-after-pause",
	// "fence-duplicate",
	// "fence-order", "fence-missing", "key-without-ttl", "key-left".
	Kind string
	// At is when the violation began (CLOCK_MONOTONIC ns): for an overlap,
	// the start of the later window.
	At int64
	// Detail describes it for a human.
	Detail string
}

func (v Violation) String() string { return v.Kind + ": " + v.Detail }

// window is the part of a record during which its holder may act.
type window struct {
	start, end int64
	rec        *Record
}

// windows returns the non-empty windows of the successful records of one
// resource, sorted by start.
func windows(recs []*Record) []window {
	var ws []window
	for _, r := range recs {
		if !r.OK {
			continue
		}
		w := window{start: r.Return, end: r.End(), rec: r}
		if w.end > w.start {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].start < ws[j].start })
	return ws
}

// byResource groups records by resource.
func byResource(recs []Record) map[string][]*Record {
	m := make(map[string][]*Record)
	for i := range recs {
		r := &recs[i]
		m[r.Resource] = append(m[r.Resource], r)
	}
	return m
}

// CheckExclusion checks mutual exclusion on a history. Per resource, the
// window of a successful acquisition is [Return, min(latest deadline,
// Release)]: the holder learns it holds the lock when Lock returns and may
// act until its validity deadline or until it calls Unlock. No two windows
// may overlap. (The start is the return, not the attempt start: another
// holder's release or expiry may legitimately happen while an attempt is in
// flight, so windows starting at the attempt start overlap in correct runs.)
//
// It also reports, per record: an explicit extension that succeeded but
// returned after the deadline it extended; a lock seen valid again after it
// was seen invalid; Valid() true after the deadline; a holder that slept
// past its deadline without Lost() closed and Valid() false when it woke;
// and a lock granted with validity left although its winning attempt slept
// for at least the TTL after the replies arrived.
func CheckExclusion(recs []Record) []Violation {
	var out []Violation
	res := byResource(recs)
	names := make([]string, 0, len(res))
	for k := range res {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		ws := windows(res[name])
		// prev: the window that ends last among those that started
		// earlier; prevW: the same among exclusive ones. Shared windows
		// (readers of a read-write lock, Record.Read) may overlap each
		// other, never an exclusive one (see rwmutex.go).
		var prev, prevW *window
		for i := range ws {
			w := &ws[i]
			p := prev
			if w.rec.Read {
				p = prevW
			}
			if p != nil && w.start < p.end {
				out = append(out, Violation{
					Kind: "overlap", At: w.start,
					Detail: fmt.Sprintf("resource %q: %s holds [%s] and %s holds [%s]: overlap %v",
						name, p.rec.Worker+p.rec.mode(), span(p.start, p.end), w.rec.Worker+w.rec.mode(), span(w.start, w.end),
						time.Duration(min(p.end, w.end)-w.start)),
				})
			}
			if prev == nil || w.end > prev.end {
				prev = w
			}
			if !w.rec.Read && (prevW == nil || w.end > prevW.end) {
				prevW = w
			}
		}
	}
	for i := range recs {
		r := &recs[i]
		if !r.OK {
			continue
		}
		for _, e := range r.Extensions {
			// A racing extension's Prev is the deadline when it was made,
			// but another one made after it may set a later deadline
			// before its reply is taken; a re-lock needs no held lock. Their
			// safety is the window's (Follow) and the holder's looks.
			if e.OK && !e.Auto && !e.Racing && !e.Relock && e.Return > e.Prev {
				out = append(out, Violation{
					Kind: "late-extension", At: e.Prev,
					Detail: fmt.Sprintf("%s on %q: extension returned %v after the deadline it extended",
						r.Worker, r.Resource, time.Duration(e.Return-e.Prev)),
				})
			}
		}
		if r.Revived != 0 {
			out = append(out, Violation{Kind: "revived", At: r.InvalidSeen,
				Detail: fmt.Sprintf("%s on %q: Valid() true %v after it was false", r.Worker, r.Resource, time.Duration(r.Revived-r.InvalidSeen))})
		}
		if r.ValidLate != 0 {
			out = append(out, Violation{Kind: "valid-after-deadline", At: r.ValidLate,
				Detail: fmt.Sprintf("%s on %q: Valid() true after the deadline", r.Worker, r.Resource)})
		}
		if r.TTL > 0 && r.AcqPausedLast >= r.TTL && r.End() > r.Return {
			out = append(out, Violation{Kind: "validity-after-pause", At: r.Return,
				Detail: fmt.Sprintf("%s on %q: acquired with %v of validity left although its attempt slept %v (≥ TTL %v) after the replies",
					r.Worker, r.Resource, time.Duration(r.End()-r.Return), time.Duration(r.AcqPausedLast), time.Duration(r.TTL))})
		}
		if r.Paused != 0 && !r.LostNoticed {
			out = append(out, Violation{Kind: "pause-unnoticed", At: r.Return,
				Detail: fmt.Sprintf("%s on %q: woke %v into a pause past its deadline with the lock still valid or Lost() open",
					r.Worker, r.Resource, time.Duration(r.Paused))})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// CheckFencing checks fencing tokens: per resource they are unique, and
// strictly increasing in window order. ran is false when no record carries
// a token (the locks were taken without fencing): the check did not run,
// which is not a pass.
func CheckFencing(recs []Record) (vs []Violation, ran bool) {
	for i := range recs {
		if recs[i].Fence != nil {
			ran = true
			break
		}
	}
	if !ran {
		return nil, false
	}
	for name, rs := range byResource(recs) {
		seen := make(map[uint64]*Record)
		ws := windows(rs)
		var last *window
		for i := range ws {
			w := &ws[i]
			if w.rec.Fence == nil {
				vs = append(vs, Violation{Kind: "fence-missing", At: w.start,
					Detail: fmt.Sprintf("%s on %q: no fencing token", w.rec.Worker, name)})
				continue
			}
			f := *w.rec.Fence
			if o, dup := seen[f]; dup {
				vs = append(vs, Violation{Kind: "fence-duplicate", At: w.start,
					Detail: fmt.Sprintf("resource %q: token %d given to %s and %s", name, f, o.Worker, w.rec.Worker)})
			}
			seen[f] = w.rec
			if last != nil && f <= *last.rec.Fence {
				vs = append(vs, Violation{Kind: "fence-order", At: w.start,
					Detail: fmt.Sprintf("resource %q: %s's token %d follows %s's token %d", name, w.rec.Worker, f, last.rec.Worker, *last.rec.Fence)})
			}
			last = w
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].At < vs[j].At })
	return vs, true
}

// span formats a window relative to its own start.
func span(start, end int64) string {
	return fmt.Sprintf("%d +%v", start, time.Duration(end-start))
}
