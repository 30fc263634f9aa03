package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redlock-go/redlock"
)

// This file words what redlock says when the instances do not give a
// quorum: which instances failed, and why.

// isRejection reports whether err is an error reply that no retry fixes
// (redlock.ErrRejected's replies), for Manager.Inspect's per-instance
// answers, where the library does not classify.
func isRejection(err error) bool { return redlock.IsRejection(err) }

// cause is one instance's reason for not voting.
type cause struct {
	endpoint string
	err      error
}

// causeList renders causes as "ENDPOINT: CAUSE; ENDPOINT: CAUSE".
func causeList(cs []cause) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.endpoint)
		b.WriteString(": ")
		if errors.Is(c.err, context.DeadlineExceeded) {
			// The call's deadline, not the caller's: the instance did not
			// answer within --node-timeout (black-holed, paused, overloaded).
			b.WriteString("no answer within --node-timeout")
			continue
		}
		b.WriteString(strings.TrimSpace(c.err.Error()))
	}
	return b.String()
}

// failures returns the instances of qe that did not answer usably: every
// instance cause but a refusal because another token holds the key (an
// answer). Instances whose reply had not come when the attempt was decided
// are not among them.
func failures(qe *redlock.QuorumError) []cause {
	var out []cause
	for _, ie := range qe.Instances {
		if !errors.Is(ie.Err, redlock.ErrHeldByOther) {
			out = append(out, cause{ie.Endpoint, ie.Err})
		}
	}
	return out
}

// stateFailures returns the instances of an Inspect or ForceRelease that
// did not answer (their Err set and no token seen).
func stateFailures(states []redlock.InstanceState) []cause {
	var out []cause
	for _, st := range states {
		if st.Err != nil && st.Token == "" {
			out = append(out, cause{st.Endpoint, st.Err})
		}
	}
	return out
}

// noQuorum words a failure to reach a quorum for res: "no quorum for
// "RES"[ yet] (A/N answered, quorum Q): CAUSES".
func noQuorum(res string, yet bool, n, quorum int, cs []cause) string {
	y := ""
	if yet {
		y = " yet"
	}
	return fmt.Sprintf("no quorum for %s%s (%d/%d answered, quorum %d): %s", quote(res), y, n-len(cs), n, quorum, causeList(cs))
}

// rejected words a rejection: "RES" rejected by the instances: CAUSES.
func rejected(res string, cs []cause) string {
	return fmt.Sprintf("%s rejected by the instances (an error that no retry fixes: check the configuration): %s", quote(res), causeList(cs))
}
