package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/redlock-go/redlock"
)

// permitsStatus is the semaphore part of "status --permits N": how many
// of the N slots a quorum holds, and whether a slot beyond them is held
// (a client using more permits).
type permitsStatus struct {
	Permits int `json:"permits"`
	// Held is the number of slots held by a token on a quorum.
	Held int `json:"held"`
	// Unknown is the number of slots whose state no quorum told.
	Unknown int `json:"unknown"`
	// Beyond reports that slot N is held: some client uses more permits.
	Beyond bool             `json:"beyond"`
	Slots  []resourceStatus `json:"slots"`
}

// addSlot counts the status of one slot.
func (p *permitsStatus) addSlot(rs resourceStatus, s summary, beyond bool) {
	switch {
	case beyond:
		p.Beyond = s.Verdict == verdictHeld
		return
	case s.Verdict == verdictHeld:
		p.Held++
	case s.Verdict != verdictFree:
		p.Unknown++
	}
	p.Slots = append(p.Slots, rs)
}

// printPermits writes the human form of a semaphore's status.
func printPermits(w io.Writer, name string, p *permitsStatus) {
	fmt.Fprintf(w, "%s: semaphore, %d/%d permits held", quote(name), p.Held, p.Permits)
	if p.Unknown > 0 {
		fmt.Fprintf(w, ", %d unknown", p.Unknown)
	}
	fmt.Fprintln(w)
	if p.Beyond {
		fmt.Fprintf(w, "  warning: slot %d is held too: another client uses more than %d permits\n", p.Permits, p.Permits)
	}
}

// semaphoresJSON is the documented shape of "status --permits N --json".
// Fields are only ever added, never renamed or removed.
type semaphoresJSON struct {
	Quorum     int             `json:"quorum"`
	N          int             `json:"n"`
	Semaphores []semaphoreJSON `json:"semaphores"`
}

type semaphoreJSON struct {
	Name string `json:"name"`
	permitsStatus
}

// statusPermits is "status --permits N NAME...": each NAME is a semaphore
// (redlock run --permits N NAME); its slots are inspected one by one, and
// slot N too (a client with more permits).
func statusPermits(ctx context.Context, m *redlock.Manager, cfg redlock.Config, names []string, permits int, asJSON bool, stdout, stderr io.Writer) int {
	if permits < 1 || permits > redlock.MaxPermits {
		return reportUsage("status", usagef("--permits %d is outside 1..%d", permits, redlock.MaxPermits), stdout, stderr)
	}
	quorum := m.Quorum()
	out := semaphoresJSON{Quorum: quorum, N: len(m.Endpoints())}
	code := exitOK
	for _, name := range names {
		sem := m.Semaphore(name, permits)
		if sem.Slot(0) == "" {
			return reportUsage("status", usagef("%s cannot name a semaphore (see redlock help status)", quote(name)), stdout, stderr)
		}
		p := permitsStatus{Permits: permits}
		var texts []func()
		for i := 0; i <= permits; i++ {
			slot := sem.Slot(i)
			states, err := m.Inspect(ctx, slot)
			if states == nil {
				fmt.Fprintf(stderr, "redlock status: %s\n", msg(err))
				if ctx.Err() != nil {
					return exitUnavailable
				}
				return exitSoftware
			}
			s := summarize(states, quorum)
			rs := newResourceStatus(slot, cfg.KeyPrefix+slot, states, s)
			p.addSlot(rs, s, i == permits)
			if i < permits && s.Verdict != verdictFree {
				texts = append(texts, func() { printStatus(stdout, rs, s) })
			}
			switch s.Verdict {
			case verdictUnavailable:
				fmt.Fprintf(stderr, "redlock status: %s\n", noQuorum(slot, false, s.N, s.Quorum, stateFailures(states)))
				code = max(code, exitUnavailable)
			case verdictRejected:
				fmt.Fprintf(stderr, "redlock status: %s\n", rejected(slot, stateFailures(states)))
				code = max(code, exitConfig)
			}
		}
		out.Semaphores = append(out.Semaphores, semaphoreJSON{Name: name, permitsStatus: p})
		if !asJSON {
			printPermits(stdout, name, &p)
			for _, f := range texts {
				f()
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "redlock status: %s\n", msg(err))
			return exitSoftware
		}
	}
	return code
}
