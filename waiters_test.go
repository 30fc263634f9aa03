package redlock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// A waiter in another manager wakes up on the release message: its retry
// delay is far longer than the test's deadline, so only the pub/sub wake-up
// can get it the lock in time.
func TestLockWaitWakesOnRelease(t *testing.T) {
	servers := redistest.Start(t, 3)
	holder := newManagerAt(t, urls(servers), redlock.Config{})
	waiter := newManagerAt(t, urls(servers), redlock.Config{RetryDelayMin: time.Minute, RetryDelayMax: time.Minute})
	ctx := context.Background()
	l, err := holder.Lock(ctx, "wake", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		wl, err := waiter.LockWait(wctx, "wake", redlock.TTL(time.Minute))
		if err == nil {
			err = wl.Unlock(ctx)
		}
		got <- err
	}()
	// Wait until the waiter has failed once and queued (it then subscribes).
	deadline := time.Now().Add(10 * time.Second)
	for redlock.WaitersForTest(waiter, "wake") == 0 || redlock.SubscriptionsForTest(waiter) < len(servers) {
		if time.Now().After(deadline) {
			t.Fatal("waiter never queued and subscribed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v (a one-minute retry delay means the release message was not received)", err)
	}
}

// Local waiters on one resource take turns: each of them gets the lock.
func TestLockWaitLocalWaitersAllServed(t *testing.T) {
	servers := redistest.Start(t, 3)
	m := newManagerAt(t, urls(servers), redlock.Config{RetryDelayMin: time.Minute, RetryDelayMax: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const waiters, rounds = 8, 5
	var wg sync.WaitGroup
	counts := make([]int, waiters)
	errs := make([]error, waiters)
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				l, err := m.LockWait(ctx, "turns", redlock.TTL(10*time.Second))
				if err != nil {
					errs[i] = err
					return
				}
				counts[i]++
				if err := l.Unlock(ctx); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range counts {
		if errs[i] != nil || counts[i] != rounds {
			t.Fatalf("waiter %d: %d/%d acquisitions, %v", i, counts[i], rounds, errs[i])
		}
	}
}
