package main

import (
	"time"

	"github.com/redlock-go/redlock"
)

// Per-instance answers come from Manager.Inspect and Manager.ForceRelease;
// this file turns them into the quorum's verdict, as the library would.

// Verdicts of a resource.
const (
	verdictHeld        = "held"        // one token holds the key on a quorum
	verdictFree        = "free"        // too few instances hold the key for anyone to hold the lock
	verdictContended   = "contended"   // the key is on a quorum but no token is known to hold one
	verdictUnavailable = "unavailable" // too few instances answered to tell
	verdictRejected    = "rejected"    // instances answered with errors that no retry fixes, too many for a quorum
)

// summary is the quorum's view of one resource.
type summary struct {
	Verdict  string
	Locked   bool          // as Manager.IsLocked: the key is on a quorum, under any token
	Holder   string        // the token that holds a quorum, if any
	Votes    int           // instances holding Holder (or, without a holder, the most common token)
	TTL      time.Duration // the smallest TTL among the holder's keys
	Present  int           // instances with the key
	Absent   int           // instances without it
	Failed   int           // instances that did not answer usably (Rejected among them)
	Rejected int           // instances that answered with an error that no retry fixes
	Metadata string        // the holder's metadata (redlock.Metadata): the most common among its instances
	Fence    uint64        // the largest fencing counter among the holder's instances
	N        int
	Quorum   int
	topToken string // the most common token, for the waiting line
}

// summarize computes the verdict the library would give: Manager.IsLocked
// is true when a quorum has the key (under any token) and false when more
// than N-quorum instances lack it; otherwise it fails, with ErrRejected
// when the instances that answered with an error no retry fixes are too
// many for a quorum, else with ErrUnavailable.
func summarize(states []redlock.InstanceState, quorum int) summary {
	s := summary{N: len(states), Quorum: quorum}
	votes := map[string]int{}
	for _, st := range states {
		switch {
		case st.Err != nil:
			s.Failed++
			if isRejection(st.Err) {
				s.Rejected++
			}
		case st.Token == "":
			s.Absent++
		default:
			s.Present++
			votes[st.Token]++
		}
	}
	for _, st := range states { // endpoint order: ties resolve the same way each time
		if st.Err == nil && st.Token != "" && votes[st.Token] > s.Votes {
			s.topToken, s.Votes = st.Token, votes[st.Token]
		}
	}
	switch {
	case s.Votes >= quorum:
		s.Verdict, s.Locked, s.Holder = verdictHeld, true, s.topToken
		s.TTL = -1
		mds := map[string]int{}
		for _, st := range states {
			if st.Err == nil && st.Token == s.Holder && st.TTL >= 0 && (s.TTL < 0 || st.TTL < s.TTL) {
				s.TTL = st.TTL
			}
			if st.Err == nil && st.Token == s.Holder {
				s.Fence = max(s.Fence, st.Fence)
				if st.Metadata != "" {
					if mds[st.Metadata]++; mds[st.Metadata] > mds[s.Metadata] {
						s.Metadata = st.Metadata
					}
				}
			}
		}
	case s.Present >= quorum:
		s.Verdict, s.Locked = verdictContended, true
	case s.Absent > s.N-quorum:
		s.Verdict = verdictFree
	case s.Rejected > 0 && s.N-s.Rejected < quorum:
		// As the library's ErrRejected: the rejections alone rule out a
		// quorum, and retrying will not change that.
		s.Verdict = verdictRejected
	default:
		s.Verdict = verdictUnavailable
	}
	return s
}
