package harness

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Impl is one implementation under test.
type Impl struct {
	// Key names the implementation in flags and the detailed table.
	Key string
	// Label is the column title in the summary table and the chart legend.
	Label string
	// SingleOnly marks an implementation that locks one instance (N=1 only).
	SingleOnly bool
	// Floor marks a raw round-trip floor: no retry, so no contended workload.
	Floor bool
	// OwnKeyFormat marks an implementation whose lock key is not the
	// resource name (rueidislock: "rueidislock:0:<name>"): a redsync
	// holder's key means nothing to it, so the foreign-release handoff does
	// not apply.
	OwnKeyFormat bool
	// Setup connects to the instances at addrs. A contended target's Lock
	// waits for the lock with the library's own retry policy (bounded by
	// ctx); an uncontended one makes the library's ordinary Lock call.
	// Unused when RunCell is set.
	Setup func(addrs []string, p Params) (Target, error)
	// RunCell, when set, runs a whole cell instead of Setup and the
	// harness's loops: for an implementation outside this process, where a
	// call per Worker method would measure the process boundary. It warms
	// up for cfg.warmup, measures w for cfg.duration with the same
	// definitions of an op and of its latency, and fills Result.OtherCores
	// itself. An error aborts the run.
	RunCell func(ctx context.Context, addrs []string, w Workload, cfg cellConfig, ttl time.Duration) (Result, error)
	// Prepare, when set, runs once before the first cell (for example to
	// install dependencies) and returns a note for the report. An error
	// skips the implementation for the run, reported as "not run: <reason>".
	Prepare func(ctx context.Context) (note string, err error)
}

// Params are the per-lock choices shared by all implementations.
type Params struct {
	// TTL is the lease of every lock: fixed, so nothing extends it.
	TTL time.Duration
	// Contended selects the waiting Lock call.
	Contended bool
}

// Target is an implementation connected to a set of instances.
type Target interface {
	// NewWorker returns a worker that locks resource. Each worker is used
	// by one goroutine.
	NewWorker(resource string) Worker
	// Close releases the connections.
	Close() error
}

// Worker locks and unlocks one resource, one call at a time.
type Worker interface {
	// Lock acquires the resource; on success the worker holds it until
	// Unlock.
	Lock(ctx context.Context) error
	// Unlock releases the lock taken by the last successful Lock.
	Unlock(ctx context.Context) error
}

// Impls returns every implementation, in the order of the tables.
func Impls() []*Impl {
	return []*Impl{
		implRedlock(),
		implRedlockGoredis(),
		implRedsync(),
		implRedislock(),
		implRueidislock(),
		implNodeRedlock(),
		implGoredisFloor(),
		implRueidisFloor(),
	}
}

// SelectImpls returns the implementations named in the comma-separated
// list keys, in table order; an empty list selects all.
func SelectImpls(keys string) ([]*Impl, error) {
	all := Impls()
	if strings.TrimSpace(keys) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, k := range strings.Split(keys, ",") {
		k = strings.TrimSpace(k)
		found := false
		for _, im := range all {
			found = found || im.Key == k
		}
		if !found {
			var names []string
			for _, im := range all {
				names = append(names, im.Key)
			}
			return nil, fmt.Errorf("unknown implementation %q (have %s)", k, strings.Join(names, ", "))
		}
		want[k] = true
	}
	var out []*Impl
	for _, im := range all {
		if want[im.Key] {
			out = append(out, im)
		}
	}
	return out, nil
}

// appliesTo reports whether im runs workload w at n instances.
func (im *Impl) appliesTo(n int, w Workload) bool {
	if im.SingleOnly && n != 1 {
		return false
	}
	if im.Floor && (w.Contended || w.Handoff != "") {
		return false
	}
	switch w.Handoff {
	case HandoffRelease:
		return im.Setup != nil && !im.OwnKeyFormat
	case HandoffExpiry:
		return im.Setup != nil // not node-redlock (a process per cell)
	}
	return true
}
