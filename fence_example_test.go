package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/fencing"
)

// A fenced lock carries a token that the protected resource checks: a
// holder that paused past its lease writes with an old token and is
// rejected.
func ExampleLock_Fence() {
	var addrs []string
	for i := 0; i < 3; i++ {
		s := miniredis.NewMiniRedis()
		if err := s.Start(); err != nil {
			panic(err)
		}
		defer s.Close()
		addrs = append(addrs, s.Addr())
	}
	m, err := redlock.New(addrs, redlock.Config{})
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()
	var store fencing.Store

	first, _ := m.Lock(ctx, "invoice-42", redlock.Fenced(), redlock.TTL(time.Minute))
	fmt.Println("first write:", store.Write(first.Fence(), "invoice-42", "draft"))
	_ = first.Unlock(ctx) // (or: its lease ran out while it was paused)

	second, _ := m.Lock(ctx, "invoice-42", redlock.Fenced(), redlock.TTL(time.Minute))
	fmt.Println("token increased:", second.Fence() > first.Fence())
	fmt.Println("second write:", store.Write(second.Fence(), "invoice-42", "final"))

	err = store.Write(first.Fence(), "invoice-42", "late draft")
	fmt.Println("late write rejected:", errors.Is(err, fencing.ErrStale))
	v, _ := store.Read("invoice-42")
	fmt.Println("value:", v)
	// Output:
	// first write: <nil>
	// token increased: true
	// second write: <nil>
	// late write rejected: true
	// value: final
}

// LockMany takes several resources at once, all or none.
func ExampleManager_LockMany() {
	s := miniredis.NewMiniRedis()
	if err := s.Start(); err != nil {
		panic(err)
	}
	defer s.Close()
	m, err := redlock.New([]string{s.Addr()}, redlock.Config{RetryCount: 1})
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background())
	ctx := context.Background()

	l, err := m.LockMany(ctx, []string{"account:1", "account:2"}, redlock.TTL(time.Minute))
	fmt.Println("transfer lock:", err, l.Resources())
	_, err = m.LockMany(ctx, []string{"account:2", "account:3"})
	fmt.Println("overlapping set:", errors.Is(err, redlock.ErrNotAcquired))
	fmt.Println("unlock:", l.Unlock(ctx))
	// Output:
	// transfer lock: <nil> [account:1 account:2]
	// overlapping set: true
	// unlock: <nil>
}
