package redlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redlock-go/redlock"
)

func ExampleManager_Semaphore() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	// At most two holders of "crawlers" at any time, across processes.
	sem := m.Semaphore("crawlers", 2)
	a, err := sem.TryAcquire(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := sem.TryAcquire(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = sem.TryAcquire(ctx)
	fmt.Println("third:", errors.Is(err, redlock.ErrNotAcquired))
	held, _ := sem.Held(ctx)
	fmt.Println("held:", held)

	_ = a.Unlock(ctx)
	err = sem.Do(ctx, func(ctx context.Context) error {
		fmt.Println("working with a permit")
		return nil
	})
	fmt.Println("do:", err)
	_ = b.Unlock(ctx)
	// Output:
	// third: true
	// held: 2
	// working with a permit
	// do: <nil>
}

func ExampleManager_Election() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	e := m.Election("scheduler")
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	leaders := e.Observe(octx)

	lead, err := e.Campaign(ctx, "host-a:8080") // blocks until leader
	if err != nil {
		fmt.Println(err)
		return
	}
	l := <-leaders
	fmt.Println("observed:", l.Value, l.Term == lead.Fence())
	value, term, _ := e.Leader(ctx)
	fmt.Println("leader:", value, term == lead.Fence())

	// Lead until lead.Lost() is closed, passing lead.Fence() (the term)
	// to whatever the leader writes; resign with Unlock.
	_ = lead.Unlock(ctx)
	_, _, err = e.Leader(ctx)
	fmt.Println("after resigning:", errors.Is(err, redlock.ErrNoLeader))
	cancel()
	for range leaders {
	}
	// Output:
	// observed: host-a:8080 true
	// leader: host-a:8080 true
	// after resigning: true
}
