package redlock

import (
	"context"
	"strings"
)

// Client is one independent Redis instance, as this package uses it: it runs
// Lua scripts. Implementations must be safe for concurrent use and honour ctx
// on every call (return once ctx is done).
//
// Replies are normalised to int64 (integer replies), string (bulk and status
// replies), []any (arrays, elements normalised the same way) and nil (nil
// replies). Redis error replies are returned as errors whose Error() starts
// with the Redis error prefix ("NOSCRIPT ...", "WRONGTYPE ...", "READONLY ...").
//
// The adapters in the goredis and rueidis packages implement Client for the
// go-redis v9 and rueidis clients; New dials rueidis clients. A Client may
// also implement optional interfaces that this package discovers with a
// type assertion: fmt.Stringer, to name the instance in errors and logs;
// Subscriber, to wake waiting callers when a lock is released; and
// IsCluster() bool, reporting a Redis Cluster, whose multi-key scripts must
// keep to one slot.
type Client interface {
	// EvalSha runs EVALSHA sha1 len(keys) keys... args...
	EvalSha(ctx context.Context, sha1 string, keys []string, args []string) (any, error)
	// Eval runs EVAL script len(keys) keys... args...
	Eval(ctx context.Context, script string, keys []string, args []string) (any, error)
}

// isNoScript reports whether err is a NOSCRIPT reply to EVALSHA.
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
