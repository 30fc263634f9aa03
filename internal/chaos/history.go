package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// Record is one Lock call of a worker and, when it succeeded, what happened
// to the lock until it was released. Times are CLOCK_MONOTONIC nanoseconds
// (see Mono); zero means "did not happen".
type Record struct {
	// Worker names the worker ("g3", "p1.0" for worker 0 of subprocess 1).
	Worker string `json:"w"`
	// Resource is the locked resource, Token the lock's token.
	Resource string `json:"r"`
	Token    string `json:"tok,omitempty"`
	// Auto is true for an auto-extended lock, false for a fixed TTL.
	Auto bool `json:"auto,omitempty"`
	// Invoke and Return bracket the Lock call.
	Invoke int64 `json:"inv"`
	Return int64 `json:"ret"`
	// OK reports whether the call returned a lock; Err classifies a failure
	// ("not-acquired", "unavailable", "ctx", "other").
	OK  bool   `json:"ok,omitempty"`
	Err string `json:"err,omitempty"`
	// ErrText is the failed call's error message, for diagnosis.
	ErrText string `json:"errtext,omitempty"`
	// TTL is the lock's TTL (ns).
	TTL int64 `json:"ttl,omitempty"`
	// AcqPaused is how long the call slept in its acquisition attempts
	// after the replies arrived (testhooks.AfterReplies), in nanoseconds;
	// AcqPausedLast is the sleep of its last attempt that reached a quorum
	// (the one that won, when the call succeeded).
	AcqPaused     int64 `json:"acqpaused,omitempty"`
	AcqPausedLast int64 `json:"acqlast,omitempty"`
	// Deadline is Lock.Until right after the call returned.
	Deadline int64 `json:"dl,omitempty"`
	// Extensions are the explicit Extend calls and the auto-extensions seen
	// (Until moved forward between two looks).
	Extensions []Extension `json:"ext,omitempty"`
	// InvalidSeen is the first time the holder saw Valid() == false.
	InvalidSeen int64 `json:"inval,omitempty"`
	// Revived is the first time the holder saw Valid() == true again after
	// InvalidSeen (a violation).
	Revived int64 `json:"revived,omitempty"`
	// ValidLate is a time at which Valid() returned true although the
	// deadline read just before had passed (a violation).
	ValidLate int64 `json:"validlate,omitempty"`
	// Paused is how long the holder slept inside its critical section on
	// purpose (a holder pause), in nanoseconds.
	Paused int64 `json:"paused,omitempty"`
	// LostNoticed reports, for a holder that paused past its deadline,
	// whether Lost() was closed and Valid() false when it woke up.
	LostNoticed bool `json:"lostok,omitempty"`
	// FinalDeadline is Lock.Until read right before Release.
	FinalDeadline int64 `json:"fdl,omitempty"`
	// Release is when Unlock was called (or the explicit late Extend that
	// replaced it); ReleaseErr classifies its error.
	Release    int64  `json:"rel,omitempty"`
	ReleaseErr string `json:"relerr,omitempty"`
	// Fence is the lock's fencing token; nil for a lock taken without
	// fencing.
	Fence *uint64 `json:"fence,omitempty"`
	// Follow marks a holder whose deadline can move back (a racing holder,
	// Workload.Race: a shorter extension lowers Until): its window ends at
	// the deadline it saw last (FinalDeadline), not the latest one.
	Follow bool `json:"follow,omitempty"`
	// Read marks a reader's share of a read-write lock (Workload.ReadShare):
	// its window may overlap other readers', never a writer's or a
	// mutex holder's.
	Read bool `json:"read,omitempty"`
}

// Extension is one extension of a held lock.
type Extension struct {
	// Invoke and Return bracket an explicit Extend call; for an observed
	// auto-extension both are the time it was observed.
	Invoke int64 `json:"inv"`
	Return int64 `json:"ret"`
	// Auto marks an observed auto-extension.
	Auto bool `json:"auto,omitempty"`
	// OK reports success; Err classifies a failure.
	OK  bool   `json:"ok,omitempty"`
	Err string `json:"err,omitempty"`
	// Prev is the deadline before the extension, Deadline after it.
	Prev     int64 `json:"prev"`
	Deadline int64 `json:"dl"`
	// Racing marks an Extend call made while others of the same lock may
	// be on their way (Workload.Race); Relock a re-lock with the lock's
	// token (TryLock), whose Deadline is the new handle's. TTL is the
	// lease asked for (0: the lock's own, or auto-extended for a re-lock).
	Racing bool  `json:"race,omitempty"`
	Relock bool  `json:"relock,omitempty"`
	TTL    int64 `json:"ttl,omitempty"`
}

// End returns the end of the record's window: the earlier of the latest
// deadline and the release. For a Follow record, the earliest of the
// deadline seen last, the first time the holder saw the lock invalid (it
// stops acting then) and the release.
func (r *Record) End() int64 {
	if r.Follow {
		end := r.FinalDeadline
		if r.InvalidSeen != 0 && r.InvalidSeen < end {
			end = r.InvalidSeen
		}
		if r.Release != 0 && r.Release < end {
			end = r.Release
		}
		return end
	}
	end := r.Deadline
	if r.FinalDeadline > end {
		end = r.FinalDeadline
	}
	for _, e := range r.Extensions {
		if e.OK && e.Deadline > end {
			end = e.Deadline
		}
	}
	if r.Release != 0 && r.Release < end {
		end = r.Release
	}
	return end
}

// Recorder collects records from concurrent workers. The zero value is
// ready to use.
type Recorder struct {
	mu      sync.Mutex
	recs    []Record
	ok      int
	sink    io.Writer // if set, every record is also written here as a JSON line
	sinkErr error
}

// Add appends r.
func (h *Recorder) Add(r Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	if r.OK {
		h.ok++
	}
	if h.sink != nil && h.sinkErr == nil {
		b, err := json.Marshal(&r)
		if err == nil {
			_, err = h.sink.Write(append(b, '\n'))
		}
		h.sinkErr = err
	}
}

// SinkErr returns the first error writing to the sink.
func (h *Recorder) SinkErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sinkErr
}

// Snapshot returns a copy of the records so far.
func (h *Recorder) Snapshot() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Record(nil), h.recs...)
}

// Acquired returns how many successful acquisitions were recorded.
func (h *Recorder) Acquired() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok
}

// ReadRecords reads a file of JSON lines written by a Recorder's sink.
func ReadRecords(path string) ([]Record, error) { return readRecords(path, false) }

// readRecords reads JSON lines; with partial set, a truncated last line
// (a file still being written) ends the records without an error.
func readRecords(path string, partial bool) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var r Record
		err := dec.Decode(&r)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			if partial {
				return out, nil
			}
			return out, fmt.Errorf("chaos: %s record %d: %w", path, len(out)+1, err)
		}
		out = append(out, r)
	}
}
