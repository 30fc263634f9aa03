package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/redlock-go/redlock"
)

// statusJSON is the documented shape of "status --json". Fields are only
// ever added, never renamed or removed.
type statusJSON struct {
	Quorum    int              `json:"quorum"`
	N         int              `json:"n"`
	Resources []resourceStatus `json:"resources"`
}

type resourceStatus struct {
	Resource string `json:"resource"`
	Key      string `json:"key"`
	// Verdict is held, shared, free, contended, unavailable or rejected:
	// the first word after the resource in the text form (shared: readers
	// of the read-write lock hold it, see Readers).
	Verdict string `json:"verdict"`
	// Locked is what Manager.IsLocked answers (false when unavailable).
	Locked bool `json:"locked"`
	// Holder is the full token holding a quorum, "" when none. JSON
	// strings are UTF-8: bytes that are not come out as U+FFFD.
	Holder string `json:"holder"`
	// HolderBase64 is Holder in standard base64, byte for byte (for
	// release --token-base64), "" when none.
	HolderBase64 string `json:"holder_base64"`
	// Votes is how many instances hold the holder's token.
	Votes int `json:"votes"`
	// TTLMillis is the smallest remaining TTL of the holder's keys, as
	// Lock.TTL reports it; 0 without a holder, -1 for keys without expiry.
	TTLMillis int64            `json:"ttl_ms"`
	Instances []instanceStatus `json:"instances"`
	// Metadata is the holder's metadata (redlock.Metadata), "" when none
	// or without a holder.
	Metadata string `json:"metadata"`
	// HolderInfo is the holder as "redlock run" describes it (host, pid,
	// command, started, age_ms), when Metadata is that JSON; else null.
	HolderInfo *holderJSON `json:"holder_info"`
	// Fence is the largest fencing counter among the holder's instances:
	// the holder's fencing token when it took the lock fenced (run does);
	// 0 without a holder.
	Fence uint64 `json:"fence"`
	// Readers are the readers ("run --shared") whose share a quorum holds,
	// longest-lasting first; empty when none (shared.go).
	Readers []readerStatus `json:"readers"`
	// WriterWaiting is how many instances show a writer waiting for the
	// readers to leave (new readers wait while it does).
	WriterWaiting int `json:"writer_waiting"`
}

type instanceStatus struct {
	Endpoint string `json:"endpoint"`
	// State is held (the key exists), free or error.
	State string `json:"state"`
	// Token is the full token in the key, "" when free or error (lossy
	// where it is not UTF-8, as Holder).
	Token string `json:"token"`
	// TokenBase64 is Token in standard base64, byte for byte.
	TokenBase64 string `json:"token_base64"`
	// TTLMillis is the key's PTTL: 0 when free or error, -1 without expiry.
	TTLMillis int64 `json:"ttl_ms"`
	// Error is the instance's error, "" unless State is error.
	Error string `json:"error"`
	// Metadata is the metadata stored beside the key under Token.
	Metadata string `json:"metadata"`
	// Fence is the instance's fencing counter for the resource (0: none).
	Fence uint64 `json:"fence"`
	// RTTMicros is the instance's round-trip time for the inspection, in
	// microseconds; 0 when it did not answer in time.
	RTTMicros int64 `json:"rtt_us"`
}

func newStatusFlags() (*flag.FlagSet, *connFlags, *bool) {
	fs := newFlagSet("status")
	var conn connFlags
	conn.register(fs)
	asJSON := fs.Bool("json", false, "")
	fs.Int("permits", 0, "") // semaphore.go: statusPermits
	return fs, &conn, asJSON
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, conn, asJSON := newStatusFlags()
	pos, tail, _, err := parseArgs(fs, args, -1)
	if err != nil {
		return reportUsage("status", err, stdout, stderr)
	}
	resources := append(pos, tail...)
	if len(resources) == 0 {
		return reportUsage("status", usagef("want at least one RESOURCE"), stdout, stderr)
	}
	for _, r := range resources {
		if err := checkResource(r); err != nil {
			return reportUsage("status", err, stdout, stderr)
		}
	}
	cfg, err := conn.config(stderr)
	if err != nil {
		return reportUsage("status", err, stdout, stderr)
	}
	m, err := conn.newManager(cfg, stderr)
	if err != nil {
		return reportUsage("status", err, stdout, stderr)
	}
	defer func() {
		cctx, cancel := boundedCtx(ctx, cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		cancel()
	}()
	if n := fs.Lookup("permits").Value.(flag.Getter).Get().(int); n != 0 {
		return statusPermits(ctx, m, cfg, resources, n, *asJSON, stdout, stderr)
	}
	quorum := m.Quorum()

	out := statusJSON{Quorum: quorum, N: len(m.Endpoints())}
	code := exitOK
	for _, res := range resources {
		key := cfg.KeyPrefix + res
		states, err := m.Inspect(ctx, res)
		if states == nil {
			// ctx ended before the call (or a bug): no instance was asked.
			fmt.Fprintf(stderr, "redlock status: %s\n", msg(err))
			if ctx.Err() != nil {
				return exitUnavailable
			}
			return exitSoftware
		}
		s := summarize(states, quorum)
		switch s.Verdict {
		case verdictUnavailable:
			fmt.Fprintf(stderr, "redlock status: %s\n", noQuorum(res, false, s.N, s.Quorum, stateFailures(states)))
			code = max(code, exitUnavailable)
		case verdictRejected:
			fmt.Fprintf(stderr, "redlock status: %s\n", rejected(res, stateFailures(states)))
			code = max(code, exitConfig)
		}
		rs := newResourceStatus(res, key, states, s)
		addReaders(ctx, m, key, &rs, quorum)
		out.Resources = append(out.Resources, rs)
		if !*asJSON {
			printStatus(stdout, rs, s)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "redlock status: %s\n", msg(err))
			return exitSoftware
		}
	}
	return code
}

// printStatus writes the human form of one resource's status.
func printStatus(w io.Writer, rs resourceStatus, s summary) {
	switch rs.Verdict {
	case verdictShared: // printReaders says it
	case verdictHeld:
		fmt.Fprintf(w, "%s: held by %s on %d/%d instances (quorum %d), ttl %s\n",
			quote(rs.Resource), shortToken(s.Holder), s.Votes, s.N, s.Quorum, fmtTTL(s.TTL))
		if h := holderLine(rs); h != "" {
			fmt.Fprintf(w, "  holder: %s\n", h)
		}
	case verdictFree:
		fmt.Fprintf(w, "%s: free (no key on %d/%d instances, quorum %d)\n", quote(rs.Resource), s.Absent, s.N, s.Quorum)
	case verdictContended:
		fmt.Fprintf(w, "%s: contended: locked but held by no one: keys on %d/%d instances, no token on a quorum of %d; they block new locks until they expire\n",
			quote(rs.Resource), s.Present, s.N, s.Quorum)
	case verdictRejected:
		fmt.Fprintf(w, "%s: rejected: %d/%d instances answered with an error that no retry fixes (quorum %d)\n", quote(rs.Resource), s.Rejected, s.N, s.Quorum)
	default:
		fmt.Fprintf(w, "%s: unavailable: only %d/%d instances answered (quorum %d)\n", quote(rs.Resource), s.N-s.Failed, s.N, s.Quorum)
	}
	printReaders(w, rs, s)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, is := range rs.Instances {
		switch is.State {
		case "held":
			ttl := fmtTTL(msDuration(is.TTLMillis))
			fmt.Fprintf(tw, "  %s\t%s\tttl %s\trtt %s\n", is.Endpoint, shortToken(is.Token), ttl, fmtRTT(time.Duration(is.RTTMicros)*time.Microsecond))
		case "free":
			fmt.Fprintf(tw, "  %s\t-\tfree\trtt %s\n", is.Endpoint, fmtRTT(time.Duration(is.RTTMicros)*time.Microsecond))
		default:
			fmt.Fprintf(tw, "  %s\t-\terror: %s\n", is.Endpoint, is.Error)
		}
	}
	_ = tw.Flush()
}

// newResourceStatus is the status of the lock on key (resource res) that
// states show and s sums up: the holder, and each instance's state.
func newResourceStatus(res, key string, states []redlock.InstanceState, s summary) resourceStatus {
	rs := resourceStatus{
		Resource: res, Key: key, Verdict: s.Verdict, Locked: s.Locked,
		Holder: s.Holder, Instances: make([]instanceStatus, len(states)),
	}
	if s.Holder != "" {
		rs.HolderBase64 = base64.StdEncoding.EncodeToString([]byte(s.Holder))
		rs.Votes, rs.TTLMillis = s.Votes, s.TTL.Milliseconds()
		if s.TTL < 0 {
			rs.TTLMillis = -1
		}
		rs.Metadata, rs.Fence, rs.HolderInfo = s.Metadata, s.Fence, holderOf(s.Metadata, time.Now())
	}
	for i, st := range states {
		is := instanceStatus{Endpoint: st.Endpoint, State: "free", Metadata: st.Metadata, Fence: st.Fence, RTTMicros: st.RTT.Microseconds()}
		switch {
		case st.Err != nil:
			is.State, is.Error = "error", st.Err.Error()
		case st.Token != "":
			is.State, is.Token, is.TTLMillis = "held", st.Token, st.TTL.Milliseconds()
			is.TokenBase64 = base64.StdEncoding.EncodeToString([]byte(st.Token))
			if st.TTL < 0 {
				is.TTLMillis = -1
			}
		}
		rs.Instances[i] = is
	}
	return rs
}
