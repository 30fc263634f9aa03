package redlock_test

// Fourth attack review: the N=1 direct path (quorum.go instance.direct,
// wire_rueidis.go directClient). A round of one call runs on its caller's
// goroutine, and on a dialed single server goes over a second, synchronous
// connection: calls about one lock can now travel over two connections,
// kept in order only by waiting for each other's replies, and a call that
// timed out on either may still reach the server later. Interleavings on
// real redis-servers, over the real dialed client (redlock.New) behind a
// TCP proxy that stalls one connection (stallProxy, attack_test.go) or with
// the server paused, never by timing luck.
//
// Findings (failed on ad2eb1e, fixed):
//   TestAttack4TokenLateReleaseAfterRelock     two holders: a Token lock's release stalled on the
//                                              synchronous connection deletes a re-lock made meanwhile
//                                              over the pipelined one
//   TestAttack4TokenRelockOvertakesStalledRelease two holders: the same with the release stalled on the
//                                              pipelined connection and the re-lock sent direct
//   TestAttack4ConcurrentDirectReleasesDropped liveness: releases queued behind a timed-out synchronous
//                                              call are dropped, each key stays for its TTL (more than
//                                              the one call per instance and Manager the design allows)
//
// Interleavings that held are kept as TestAttack4Held...
//
// Run them with go test -race -count=1 -run TestAttack4 .

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// ---------------------------------------------------------------------------
// Finding 2: calls queued behind a synchronous call that times out.

// TestAttack4ConcurrentDirectReleasesDropped: N=1, eight locks taken one
// after the other (each call alone on the synchronous connection), then
// the server pauses and all eight are unlocked at once. Each release runs
// direct: the first is written by its caller (rueidis's synchronous path),
// the others queue behind it on the same connection. At NodeTimeout the
// first times out and rueidis closes the connection, failing the queued
// calls, which were never written: seven releases dropped, seven keys that
// stay for their TTL (30s) after the server resumes. The design allows one
// dropped call per instance and Manager (the first direct call that fails
// turns the direct calls off); before the direct path every release queued
// on the pipelined connection and ran when the server resumed.
func TestAttack4ConcurrentDirectReleasesDropped(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	m := newManager(t, servers, redlock.Config{NodeTimeout: 500 * time.Millisecond, RetryCount: 1})
	const n = 8
	locks := make([]*redlock.Lock, n)
	keys := make([]string, n)
	for i := range locks {
		keys[i] = fmt.Sprintf("r%d", i)
		l, err := m.Lock(ctx, keys[i], redlock.TTL(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		locks[i] = l
	}
	if on := redlock.DirectCallsOn(m); !on[0] {
		t.Fatalf("direct calls on = %v after the locks, want [true]", on)
	}
	s.Pause(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i, l := range locks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = l.Unlock(ctx)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err == nil || !errors.Is(err, redlock.ErrUnavailable) {
			t.Errorf("Unlock(%s) with the server paused: %v, want ErrUnavailable", keys[i], err)
		}
	}
	s.Resume(t)
	// Every release that reached the server runs now; one more call
	// through the Manager makes sure the connection is read again.
	if _, err := m.IsLocked(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	var left []string
	eventually(3*time.Second, func() bool {
		left = left[:0]
		for _, k := range keys {
			if get(t, s, k) != "(nil)" {
				left = append(left, k)
			}
		}
		return len(left) == 0
	})
	if len(left) > 1 {
		t.Errorf("%d keys left for their TTL after the server resumed (%v), want at most one (the one dropped call per instance and Manager)", len(left), left)
	}
	t.Logf("keys left: %v", left)
}
