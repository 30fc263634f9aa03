// Package redlock implements distributed locks on Redis with the Redlock
// algorithm: a lock is held when a quorum (N/2+1) of N independent Redis
// instances hold its key under a random token, and it is valid until
//
//	start of the attempt + TTL − (TTL×DriftFactor + 2ms)
//
// measured with Go's monotonic clock. A Manager (New, NewFromClients) takes
// locks (Lock, TryLock, LockWait, LockMany, Do); a Lock is extended
// automatically every 0.6×TTL unless it was taken with the TTL option, and
// Lost tells its holder when it is gone. Close releases every held lock and
// stops the Manager's background work.
//
// Keys are Config.KeyPrefix + resource and values the token, so locks of
// aioredlock, redsync and node-redlock on the same names exclude ours and
// ours exclude theirs. A holder that pauses past the validity deadline
// still believes it holds the lock: the Fenced option adds a fencing token
// (Lock.Fence) for the protected resource to check; see package fencing.
//
// Beyond the mutex: Manager.RWMutex (readers share, a writer holds alone),
// Manager.Semaphore (at most n holders) and Manager.Election (a leader with
// a strictly increasing term), each grant on a quorum; their key shapes and
// safety arguments are in docs/primitives.md.
//
// What is guaranteed, and what is not, is in the README; the algorithm,
// lifetimes and wake-ups in docs/package-overview.md; the decisions and
// their reasons in docs/design.md.
package redlock
