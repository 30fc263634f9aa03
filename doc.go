// Package redlock implements distributed locks on Redis with the Redlock
// algorithm: a lock is held when a quorum (N/2+1) of N independent Redis
// instances hold its key under a random token.
//
// # The algorithm
//
// To acquire, the Manager runs one Lua script on every instance in
// parallel: set the key to the token with a TTL if it is absent (or already
// holds the same token). Once a quorum has agreed, the lock is held until
//
//	validity deadline = start of the attempt + TTL − (TTL×DriftFactor + 2ms)
//
// measured with Go's monotonic clock; if that deadline has already passed
// the attempt fails. A failed or cancelled attempt releases what it may have
// set, on every instance that did not refuse; the call returns once those
// releases are done, except that once ctx has ended (and the token is the
// call's own, not fixed with the Token option) it waits only for the
// instances that set the key, and the releases to slow or unreachable ones
// finish in the background (Close waits for them), so that a call returns
// at its deadline, or up to Config.NodeTimeout later if an instance that
// set the key stops answering. Each release to an instance is sent after that
// instance's answer to the acquisition, so that it reaches the key. Every
// attempt of a call draws a fresh token (unless the Token option fixes
// one), so a late release of one attempt never deletes the key of the next.
// Extension resets the TTL only where the key still holds the token, and
// never re-creates an expired key. Release deletes the key only where it
// holds the token. An attempt costs one parallel round trip, and it returns
// as soon as the quorum is decided; a dead or black-holed instance costs at
// most Config.NodeTimeout.
//
// # Wire format
//
// The key is Config.KeyPrefix + resource, verbatim; the value is the token
// (by default 128 random bits from crypto/rand as UUIDv4 text). Locks taken
// by aioredlock, redsync and node-redlock on the same names and instances
// exclude ours, and ours exclude theirs.
//
// # What is guaranteed, and what is not
//
// While the lock is Valid (before its deadline), no other client following
// the algorithm holds it, provided that
//
//   - clocks advance at about the same rate on the client and the
//     instances (DriftFactor bounds the difference; Go's monotonic clock
//     stops while the machine is suspended, but Redis keeps expiring keys);
//   - instances keep their data: an instance that restarts without
//     persistence, fails over to an asynchronously replicated replica, or
//     evicts keys (any maxmemory-policy but noeviction) may grant the lock
//     twice. Run instances with appendonly yes and appendfsync always, or
//     keep a restarted instance out for longer than the largest TTL;
//   - the holder acts before the deadline. A process that pauses (GC,
//     SIGSTOP, swap) past it still believes it holds the lock. Lock.Lost
//     tells a running holder, and Do cancels its context, but nothing can
//     stop a write already on its way.
//
// The last point is why fencing tokens exist. A lock taken with the Fenced
// option carries a number (Lock.Fence) that the protected resource checks:
// it accepts a write only with a token at least as large as any it has
// seen. Tokens are issued in a second round across the quorum (the
// Attiya–Bar-Noy–Dolev scheme under the lease), so they are unique always
// and strictly increasing from one holder to the next while the lock's own
// assumptions hold; counters never expire. See package fencing for an
// example of a fenced resource.
//
// # Read-write locks
//
// Manager.RWMutex gives a lock that readers share and a writer holds alone,
// each grant on a quorum, with the guarantees above. The writer's key is
// the mutex key of the name; readers live in keys of their own, and each
// reader's share expires by the instances' clocks. docs/primitives.md has
// the key shapes and the safety argument.
//
// # Lifetimes
//
// A Manager owns the background work of its locks: auto-extension of locks
// taken without the TTL option (every 0.6×TTL; one goroutine per Manager
// extends all of them, with one script call per instance per tick), the
// timers that close Lock.Lost at the deadline, the pub/sub subscriptions
// (one per instance, started in the background by the first caller that has
// to wait) on which releases wake waiting callers, and the call workers
// (long-lived goroutines per instance, as many as calls were in flight at
// the peak; each exits after 10 s without work). Close releases every held
// lock, stops that work, waits for in-flight calls and background releases,
// and closes the clients New dialed.
//
// # Wake-ups
//
// The release scripts publish the key on ReleaseChannel. Lock and LockWait
// callers that found the lock taken queue per key inside their Manager; only
// the first of each queue retries, as soon as a release is announced (or its
// own Unlock ran), and otherwise after its retry delay, so a lost message
// costs a poll, not a hang.
package redlock
