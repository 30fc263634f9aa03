// Package chaos is the fault-injection suite of redlock: it shows that
// mutual exclusion holds while Redis servers pause, crash, slow down and get
// cut off, and that its checkers see violations when the algorithm is broken
// on purpose (negative controls).
//
// A scenario starts N real redis-server processes (internal/redistest), puts
// an in-process toxiproxy in front of each (latency, black holes, connection
// resets), and runs a workload of goroutine workers and worker subprocesses
// (the test binary run again) that contend on a few resources with ~1s TTLs,
// some with a fixed lease and some auto-extended (racing holders, see Race,
// also fire concurrent Extends of random TTLs and re-lock by token while
// they hold). Every acquisition is recorded with its times on
// CLOCK_MONOTONIC, which is comparable across processes. A nemesis running
// on the test goroutine injects the scenario's faults meanwhile. Afterwards
// the checkers look at the history:
//
//   - exclusion: per resource, no two holders' windows overlap. A window is
//     [return of the Lock call, min(validity deadline, release)]; for a
//     racing holder, whose deadline moves back when it sends a shorter
//     extension, the deadline it saw last, and no later than when it first
//     saw the lock invalid. An extension that returned after the deadline
//     it extended (but for racing ones), a lock that turned valid again
//     after it was seen invalid, a holder that still saw Valid() after its
//     deadline or was not told (Lost) after sleeping past it, and a lock
//     granted with validity left by an attempt that slept for a TTL after
//     the replies are violations too;
//   - keys: sampled during the run, no lock key lacks a TTL; after healing,
//     the longest lease and drift, no lock key remains on any server;
//   - ownership: an unlock or extension never touches another holder's key;
//   - hygiene: no goroutine leaks (goleak in TestMain), file descriptors back
//     to their baseline after every scenario;
//   - fencing: for fenced locks (redlock.Fenced), tokens unique and
//     increasing in window order; a holder that paused past its TTL has
//     its late write rejected by a fenced store;
//   - permits and leaders (primitives_test.go, in-process workers with a
//     Manager each, which may stall past their lease): a Semaphore never
//     has more holders than permits (CheckPermits), and an Election's
//     leaders' windows never overlap and their terms strictly increase
//     (CheckLeaders), under the pause, crash-with-AOF, latency and
//     black-hole nemeses at N=3 and N=5, with a negative control each.
//
// This directory is its own Go module, so that toxiproxy and its
// dependencies stay out of the library's module graph. The short mode (the
// default) runs in ./test.sh (go -C internal/chaos test -mod=mod .). The
// full mode:
//
//	go -C internal/chaos test -mod=mod -race -count=1 . -run . -chaos.full -v
//
// (or CHAOS_FULL=1). CHAOS_REPORT=path (or -chaos.report path) writes the
// per-scenario table as Markdown.
package chaos
