package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redlock-go/redlock"
)

// Who holds a lock: "redlock run" stores holderInfo as the lock's metadata
// (redlock.Metadata) unless --metadata replaces it, and "redlock status"
// shows it.

// holderInfo is the metadata "redlock run" stores by default. Anyone who
// can read the instances can read it: it names the program, never its
// arguments (they can carry secrets).
type holderInfo struct {
	Host    string `json:"host"`    // os.Hostname of the holder
	PID     int    `json:"pid"`     // the holder's redlock process
	Command string `json:"command"` // the program's name, without its arguments
	Started string `json:"started"` // when that redlock run started, RFC 3339 (UTC)
}

// runMetadata is the default metadata of "redlock run" for COMMAND argv0,
// started at started.
func runMetadata(argv0 string, started time.Time) string {
	host, _ := os.Hostname()
	b, _ := json.Marshal(holderInfo{
		Host: host, PID: os.Getpid(), Command: filepath.Base(argv0),
		Started: started.UTC().Format(time.RFC3339Nano),
	})
	return string(b)
}

// parseHolder reads metadata as the JSON "redlock run" stores: an object
// with host, pid, command and started (RFC 3339); other fields are ignored.
func parseHolder(md string) (holderInfo, time.Time, bool) {
	var h holderInfo
	if err := json.Unmarshal([]byte(md), &h); err != nil {
		return holderInfo{}, time.Time{}, false
	}
	started, err := time.Parse(time.RFC3339Nano, h.Started)
	if err != nil || h.Host == "" || h.PID <= 0 || h.Command == "" {
		return holderInfo{}, time.Time{}, false
	}
	return h, started, true
}

// canCarryMetadata reports whether a lock key can have metadata beside it,
// by the library's rule (see redlock.Metadata): unless it has a '}' but no
// hash tag. run stores no default metadata for such a key.
func canCarryMetadata(key string) bool {
	if i := strings.IndexByte(key, '{'); i >= 0 && strings.IndexByte(key[i+1:], '}') > 0 {
		return true
	}
	return !strings.Contains(key, "}")
}

// holderJSON is the holder part of a resource in "status --json".
type holderJSON struct {
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Command string `json:"command"`
	Started string `json:"started"`
	// AgeMillis is the time since Started on this host's clock (the
	// holder's clock set Started: a skew shifts it, and it may be negative).
	AgeMillis int64 `json:"age_ms"`
}

// holderOf returns the holder part of the JSON for metadata md, read at
// now; nil unless md is the JSON "redlock run" stores.
func holderOf(md string, now time.Time) *holderJSON {
	h, started, ok := parseHolder(md)
	if !ok {
		return nil
	}
	return &holderJSON{Host: h.Host, PID: h.PID, Command: h.Command, Started: h.Started, AgeMillis: now.Sub(started).Milliseconds()}
}

// holderLine is the human form of who holds a lock: run's fields, or the
// raw metadata quoted; and the fence. "" when there is nothing to say.
func holderLine(rs resourceStatus) string {
	var s string
	switch h := rs.HolderInfo; {
	case h != nil:
		s = fmt.Sprintf("host %s, pid %d, command %s, started %s (%s ago)",
			quoteIfOdd(h.Host), h.PID, quoteIfOdd(h.Command), h.Started, fmtAge(time.Duration(h.AgeMillis)*time.Millisecond))
	case rs.Metadata != "":
		s = "metadata " + quote(rs.Metadata)
	}
	if rs.Fence > 0 {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("fence %d", rs.Fence)
	}
	return s
}

// quoteIfOdd quotes s unless it is plain printable ASCII without spaces.
func quoteIfOdd(s string) string {
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '"' || r == ',' {
			return fmt.Sprintf("%q", s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// fmtAge renders an age for humans (a negative one, from clock skew, as 0).
func fmtAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return max(d, 0).Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// fmtRTT renders a round-trip time for humans.
func fmtRTT(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// verboseObserver is the redlock.Observer of "run -v": it prints the
// acquisition (its time and attempts) and each extension.
type verboseObserver struct {
	w   io.Writer
	res string
}

func (v *verboseObserver) Acquired(_ context.Context, e redlock.AcquireEvent) {
	n := len(e.Attempts)
	word := "attempts"
	if n == 1 {
		word = "attempt"
	}
	if e.Outcome == redlock.OutcomeAcquired {
		fmt.Fprintf(v.w, "redlock: acquired %s in %v after %d %s (fence %d)\n", quote(v.res), fmtRTT(e.Duration), n, word, e.Fence)
		return
	}
	fmt.Fprintf(v.w, "redlock: not acquired %s after %d %s in %v (%s)\n", quote(v.res), n, word, fmtRTT(e.Duration), e.Outcome)
}

func (v *verboseObserver) Extended(_ context.Context, e redlock.ExtendEvent) {
	if e.Outcome == redlock.OutcomeOK {
		fmt.Fprintf(v.w, "redlock: extended %s by %v in %v (%d instances agreed, quorum %d)\n",
			quote(v.res), e.TTL, fmtRTT(e.Duration), e.Yes, e.Quorum)
		return
	}
	fmt.Fprintf(v.w, "redlock: extension of %s by %v failed in %v (%d instances agreed, quorum %d)\n",
		quote(v.res), e.TTL, fmtRTT(e.Duration), e.Yes, e.Quorum)
}

func (v *verboseObserver) Unlocked(context.Context, redlock.UnlockEvent) {}
func (v *verboseObserver) Lost(redlock.LostEvent)                        {}
func (v *verboseObserver) Held(int)                                      {}
func (v *verboseObserver) Waiting(int)                                   {}
func (v *verboseObserver) InstanceCall(redlock.InstanceCallEvent)        {}
func (v *verboseObserver) InstanceState(redlock.InstanceStateEvent)      {}
