package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/redlock-go/redlock"
)

// Shared holders: "run --shared" takes a reader's share of RESOURCE's
// read-write lock (redlock.RWMutex), as flock -s takes a shared lock, and
// a plain "run" takes its exclusive side (the writer), so that the two
// exclude each other as flock's -x and -s do. The writer's key is the
// plain mutex key of RESOURCE, so a plain run also still excludes (and is
// excluded by) any mutex on RESOURCE, of this or another Redlock client.
// A key that cannot have companion keys in its Redis Cluster slot (a '}'
// but no hash tag) has no read-write lock: a plain run then takes the
// mutex, and --shared is a usage error.

// rwCapable reports whether RESOURCE's key can carry a read-write lock
// (the library's rule for companion keys, the same as for metadata).
func (r *runner) rwCapable() bool { return canCarryMetadata(r.cfg.KeyPrefix + r.res) }

// lockOptions are the options of every attempt: a fixed lease (supervise
// extends it, see killMargin), the holder's metadata, and for an exclusive
// holder a fencing token (readers have none: REDLOCK_FENCE is 0).
func (r *runner) lockOptions() []redlock.LockOption {
	opts := []redlock.LockOption{redlock.TTL(r.o.lock.ttl), redlock.Metadata(r.metadata)}
	if !r.o.shared {
		opts = append(opts, redlock.Fenced())
	}
	return opts
}

// tryLock makes one attempt: a reader's share with --shared, else the
// writer's side of the read-write lock (or the plain mutex, see above).
func (r *runner) tryLock(ctx context.Context, opts []redlock.LockOption) (*redlock.Lock, error) {
	switch {
	case r.sem != nil:
		return r.sem.TryAcquire(ctx, opts...)
	case r.o.shared:
		return r.m.RWMutex(r.res).TryRLock(ctx, opts...)
	case r.rwCapable():
		return r.m.RWMutex(r.res).TryLock(ctx, opts...)
	}
	return r.m.TryLock(ctx, r.res, opts...)
}

// readersNote is what the waiting line adds while the writer's key is
// free: " (shared by N readers)" when readers hold a quorum, else "".
func (r *runner) readersNote(ctx context.Context) string {
	if r.o.shared {
		return "" // a reader waits for a writer (or its mark), not for readers
	}
	rs := resourceStatus{Resource: r.res, Verdict: verdictFree}
	addReaders(ctx, r.m, r.cfg.KeyPrefix+r.res, &rs, r.m.Quorum())
	if n := len(rs.Readers); n > 0 {
		return fmt.Sprintf(" (shared by %d %s)", n, plural(n, "reader", "readers"))
	}
	return ""
}

// verdictShared: no writer, and at least one reader holds its share on a
// quorum.
const verdictShared = "shared"

// readerStatus is one reader in "status --json".
type readerStatus struct {
	// Token is the reader's token (lossy where it is not UTF-8).
	Token string `json:"token"`
	// Votes is how many instances hold the reader's share.
	Votes int `json:"votes"`
	// TTLMillis is the smallest remaining time of its share among them,
	// by the instances' clocks.
	TTLMillis int64 `json:"ttl_ms"`
	// Metadata is the reader's metadata, "" when none.
	Metadata string `json:"metadata"`
	// HolderInfo is the reader as "redlock run" describes it, else null.
	HolderInfo *holderJSON `json:"holder_info"`
}

// addReaders adds the readers of RESOURCE's read-write lock to rs (the
// readers holding a quorum; and how many instances show a waiting writer),
// and makes a free verdict "shared" when a reader holds. Nothing for a key
// without a read-write lock, or when the inspection fails (the writer's
// side says why).
func addReaders(ctx context.Context, m *redlock.Manager, key string, rs *resourceStatus, quorum int) {
	rs.Readers = []readerStatus{} // [] rather than null in the JSON
	if !canCarryMetadata(key) {
		return
	}
	states, err := m.RWMutex(rs.Resource).Inspect(ctx)
	if err != nil && states == nil {
		return
	}
	type agg struct {
		votes int
		ttl   time.Duration
		mds   map[string]int
	}
	byToken := map[string]*agg{}
	var order []string
	for _, st := range states {
		if st.Err != nil {
			continue
		}
		if st.WriterWaiting {
			rs.WriterWaiting++
		}
		for _, r := range st.Readers {
			a := byToken[r.Token]
			if a == nil {
				a = &agg{ttl: r.TTL, mds: map[string]int{}}
				byToken[r.Token] = a
				order = append(order, r.Token)
			}
			a.votes++
			a.ttl = min(a.ttl, r.TTL)
			if r.Metadata != "" {
				a.mds[r.Metadata]++
			}
		}
	}
	now := time.Now()
	for _, tok := range order {
		a := byToken[tok]
		if a.votes < quorum {
			continue
		}
		md, best := "", 0
		for s, n := range a.mds {
			if n > best || (n == best && s < md) {
				md, best = s, n
			}
		}
		rs.Readers = append(rs.Readers, readerStatus{Token: tok, Votes: a.votes, TTLMillis: a.ttl.Milliseconds(), Metadata: md, HolderInfo: holderOf(md, now)})
	}
	slices.SortStableFunc(rs.Readers, func(x, y readerStatus) int { return int(y.TTLMillis - x.TTLMillis) })
	if len(rs.Readers) > 0 && rs.Verdict == verdictFree {
		rs.Verdict = verdictShared
	}
}

// printReaders writes the human form of rs's readers.
func printReaders(w io.Writer, rs resourceStatus, s summary) {
	if rs.Verdict == verdictShared {
		fmt.Fprintf(w, "%s: shared by %d %s on a quorum (quorum %d of %d instances)\n",
			quote(rs.Resource), len(rs.Readers), plural(len(rs.Readers), "reader", "readers"), s.Quorum, s.N)
	}
	for _, r := range rs.Readers {
		line := fmt.Sprintf("  reader %s on %d/%d instances, ttl %s", shortToken(r.Token), r.Votes, s.N, fmtTTL(msDuration(r.TTLMillis)))
		if h := holderLine(resourceStatus{HolderInfo: r.HolderInfo, Metadata: r.Metadata}); h != "" {
			line += ": " + h
		}
		fmt.Fprintln(w, line)
	}
	if rs.WriterWaiting > 0 {
		fmt.Fprintf(w, "  a writer is waiting (mark on %d/%d instances): new readers wait\n", rs.WriterWaiting, s.N)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
