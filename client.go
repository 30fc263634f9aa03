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
// Subscriber, to wake waiting callers when a lock is released;
// KeyWatcher, to wake them when a lock key is deleted or expires, whoever
// deleted it;
// ScriptLoader, to load every script before the first EVALSHA (and again
// after a NOSCRIPT); and IsCluster() bool, reporting a Redis Cluster, whose
// multi-key scripts must keep to one slot.
type Client interface {
	// EvalSha runs EVALSHA sha1 len(keys) keys... args...
	EvalSha(ctx context.Context, sha1 string, keys []string, args []string) (any, error)
	// Eval runs EVAL script len(keys) keys... args...
	Eval(ctx context.Context, script string, keys []string, args []string) (any, error)
}

// ScriptLoader is an optional interface of a Client: loading scripts into
// the instance's script cache. The Manager calls LoadScripts with every
// script it runs before the first EVALSHA it sends to the instance, and
// again before the next one after any NOSCRIPT reply, so that an EVALSHA
// whose caller stopped waiting (a paused or stalled instance: the command
// stays queued on the connection) finds its script when it finally runs,
// instead of failing with NOSCRIPT without an EVAL fallback.
//
// LoadScripts runs SCRIPT LOAD for each script, pipelined in one batch,
// ideally on the connection that carries the EVALSHA commands sent after it
// (so that the server runs the batch first even if the call stops waiting
// for it), and returns nil once every script is loaded. Like every Client
// call it honours ctx; the Manager gives it the call's whole context but
// sends the call's EVALSHA after half of it at the latest, and the call's
// reply counts once LoadScripts has returned too. Error replies
// are returned as by Client (the Redis prefix first: "NOPERM ..." for an
// ACL user without SCRIPT LOAD). An error that errors.Is
// errors.ErrUnsupported (a cluster client, whose SCRIPT LOAD would reach
// one node), a NOPERM about SCRIPT LOAD or an unknown command makes the
// Manager stop asking that instance, which then relies on the EVAL
// fallback alone; after other errors a call 100 ms later tries again.
type ScriptLoader interface {
	LoadScripts(ctx context.Context, scripts []string) error
}

// isNoScript reports whether err is a NOSCRIPT reply to EVALSHA.
func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// KeyWatcher is an optional interface of a Client: it reports when a key
// is deleted, expires or is evicted on the instance, whoever did it. A
// waiting Lock or LockWait whose attempt an instance refused watches the
// lock key there (one watch per key per instance per Manager, not per
// waiter) and retries as soon as enough of those keys are gone, instead of
// after its retry delay: this covers releases by clients that do not
// publish on ReleaseChannel (aioredlock, redsync, node-redlock, a
// ForceRelease by another tool) and expiries.
//
// The rueidis adapter (and so the default wire of New) implements it with
// CLIENT TRACKING on one dedicated RESP3 connection per instance; the
// goredis adapter with keyspace notifications, when the server has them
// enabled (notify-keyspace-events with K, g and x, or KA).
type KeyWatcher interface {
	// WatchKeys opens a watch session on the instance: onChange is called
	// with a key once after it changed since Watch last reported on it on
	// this session, and with "" when the session cannot tell (it lost its
	// connection: any key may have changed, and the session is over).
	// onChange must not block. An error that errors.Is
	// errors.ErrUnsupported says that the instance or client cannot watch
	// keys (for example notifications are disabled): the Manager does not
	// ask again.
	WatchKeys(ctx context.Context, onChange func(key string)) (KeyWatch, error)
}

// KeyWatch is a watch session of a KeyWatcher. Close ends it and waits
// until onChange is no longer called. It is an alias of an interface
// literal so that adapter packages can implement KeyWatcher without
// importing this package.
type KeyWatch = interface {
	// Watch reports whether key exists now on the instance; its next
	// deletion, expiry or eviction after that is reported to the session's
	// onChange (an overwrite or a new expiry time may be reported too).
	Watch(ctx context.Context, key string) (exists bool, err error)
	Close() error
}
