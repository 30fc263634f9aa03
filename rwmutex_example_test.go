package redlock_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redlock-go/redlock"
)

func ExampleManager_RWMutex() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	rw := m.RWMutex("report")

	// Readers share the lock.
	r1, err := rw.RLock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	r2, err := rw.TryRLock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("two readers:", r1.Valid(), r2.Valid())

	// A writer is refused while they hold.
	if _, err := rw.TryLock(ctx); errors.Is(err, redlock.ErrNotAcquired) {
		fmt.Println("writer: not acquired while readers hold")
	}
	_ = r1.Unlock(ctx)
	_ = r2.Unlock(ctx)

	// Once they left, the writer holds the lock alone.
	w, err := rw.TryLock(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := rw.TryRLock(ctx); errors.Is(err, redlock.ErrNotAcquired) {
		fmt.Println("reader: not acquired while the writer holds")
	}
	_ = w.Unlock(ctx)
	// Output:
	// two readers: true true
	// writer: not acquired while readers hold
	// reader: not acquired while the writer holds
}
