package redlock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/redlock-go/redlock"
)

// startInstances starts n embedded Redis instances (miniredis) for the
// examples and returns their addresses and a function that stops them. Real
// deployments pass the addresses of independent redis-server processes.
func startInstances(n int) ([]string, func()) {
	var (
		addrs []string
		stops []func()
	)
	for i := 0; i < n; i++ {
		s := miniredis.NewMiniRedis()
		if err := s.Start(); err != nil {
			panic(err)
		}
		addrs = append(addrs, s.Addr())
		stops = append(stops, s.Close)
	}
	return addrs, func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// newExampleManager returns a Manager over three embedded instances.
func newExampleManager() (*redlock.Manager, func()) {
	endpoints, stop := startInstances(3)
	m, err := redlock.New(endpoints, redlock.Config{})
	if err != nil {
		panic(err)
	}
	return m, func() {
		_ = m.Close(context.Background())
		stop()
	}
}

func Example() {
	ctx := context.Background()
	endpoints, stop := startInstances(3) // e.g. "localhost:6379", "redis://localhost:6380/0", ...
	defer stop()

	m, err := redlock.New(endpoints, redlock.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close(ctx)

	lock, err := m.Lock(ctx, "resource_name", redlock.TTL(10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("valid:", lock.Valid())
	// ... work while holding the lock ...
	if err := lock.Unlock(ctx); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("valid after unlock:", lock.Valid())
	// Output:
	// valid: true
	// valid after unlock: false
}

func ExampleManager_TryLock() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	held, _ := m.Lock(ctx, "resource_name")
	// TryLock makes one attempt: it does not wait for the holder.
	_, err := m.TryLock(ctx, "resource_name")
	fmt.Println("held by someone else:", errors.Is(err, redlock.ErrNotAcquired))

	_ = held.Unlock(ctx)
	lock, err := m.TryLock(ctx, "resource_name")
	fmt.Println("acquired after unlock:", err == nil && lock.Valid())
	_ = lock.Unlock(ctx)
	// Output:
	// held by someone else: true
	// acquired after unlock: true
}

func ExampleManager_LockWait() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	held, _ := m.Lock(ctx, "resource_name")
	go func() {
		time.Sleep(50 * time.Millisecond) // the holder finishes its work
		_ = held.Unlock(ctx)
	}()

	// LockWait retries until the lock is free or ctx ends.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lock, err := m.LockWait(wctx, "resource_name")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("acquired once the holder let go:", lock.Valid())
	_ = lock.Unlock(ctx)

	// With the lock held, LockWait gives up when ctx ends.
	held, _ = m.Lock(ctx, "resource_name")
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	_, err = m.LockWait(short, "resource_name")
	fmt.Println("gave up:", errors.Is(err, context.DeadlineExceeded))
	_ = held.Unlock(ctx)
	// Output:
	// acquired once the holder let go: true
	// gave up: true
}

func ExampleManager_Do() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	// The lock is extended automatically while fn runs, released
	// afterwards, and fn's ctx is cancelled (cause redlock.ErrLost) if the
	// lock is lost.
	err := m.Do(ctx, "resource_name", func(ctx context.Context) error {
		locked, _ := m.IsLocked(ctx, "resource_name")
		fmt.Println("locked inside:", locked)
		return nil
	})
	fmt.Println("Do:", err)
	locked, _ := m.IsLocked(ctx, "resource_name")
	fmt.Println("locked after:", locked)
	// Output:
	// locked inside: true
	// Do: <nil>
	// locked after: false
}

func ExampleLock_Extend() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	lock, _ := m.Lock(ctx, "resource_name", redlock.TTL(10*time.Second))
	before := lock.Until()
	err := lock.Extend(ctx, 30*time.Second) // ErrNotHeld if it is no longer ours
	fmt.Println("extended:", err == nil, lock.Until().After(before))

	_ = lock.Unlock(ctx)
	err = lock.Extend(ctx, 0) // 0: the lock's own TTL
	fmt.Println("extend after unlock:", errors.Is(err, redlock.ErrNotHeld))
	// Output:
	// extended: true true
	// extend after unlock: true
}

func ExampleManager_IsLocked() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	locked, err := m.IsLocked(ctx, "resource_name") // anyone holds it on a quorum?
	fmt.Println(locked, err)
	lock, _ := m.Lock(ctx, "resource_name")
	locked, err = m.IsLocked(ctx, "resource_name")
	fmt.Println(locked, err)
	mine, err := lock.IsLocked(ctx) // held under this lock's token?
	fmt.Println(mine, err)
	_ = lock.Unlock(ctx)
	// Output:
	// false <nil>
	// true <nil>
	// true <nil>
}

func ExampleManager_Attach() {
	ctx := context.Background()
	endpoints, stop := startInstances(3)
	defer stop()

	// One process takes the lock and passes its token on...
	a, _ := redlock.New(endpoints, redlock.Config{})
	defer a.Close(ctx)
	lock, _ := a.Lock(ctx, "resource_name", redlock.TTL(time.Minute))
	token := lock.Token()

	// ...another attaches to it, and can extend and release it.
	b, _ := redlock.New(endpoints, redlock.Config{})
	defer b.Close(ctx)
	attached, err := b.Attach(ctx, "resource_name", token)
	fmt.Println("attached:", err == nil && attached.Valid())
	fmt.Println("extend:", attached.Extend(ctx, time.Minute))
	fmt.Println("unlock:", attached.Unlock(ctx))

	_, err = b.Attach(ctx, "resource_name", "wrong-token")
	fmt.Println("wrong token:", errors.Is(err, redlock.ErrNotHeld))
	// Output:
	// attached: true
	// extend: <nil>
	// unlock: <nil>
	// wrong token: true
}

func Example_errNotAcquired() {
	ctx := context.Background()
	endpoints, stop := startInstances(3)
	defer stop()
	holder, _ := redlock.New(endpoints, redlock.Config{})
	defer holder.Close(ctx)
	m, _ := redlock.New(endpoints, redlock.Config{RetryCount: 2, RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
	defer m.Close(ctx)

	_, _ = holder.Lock(ctx, "resource_name")
	_, err := m.Lock(ctx, "resource_name", redlock.TTL(10*time.Second))
	switch {
	case errors.Is(err, redlock.ErrNotAcquired):
		fmt.Println("held by someone else")
	case errors.Is(err, redlock.ErrUnavailable):
		fmt.Println("too few instances answered")
	}
	// Per-instance causes.
	var ie *redlock.InstanceError
	if errors.As(err, &ie) {
		fmt.Println("an instance said:", ie.Err)
	}
	var qe *redlock.QuorumError
	if errors.As(err, &qe) {
		fmt.Printf("%d attempts, each short of a quorum of %d out of %d\n", qe.Attempts, qe.Quorum, qe.N)
	}
	// Output:
	// held by someone else
	// an instance said: held by another token
	// 2 attempts, each short of a quorum of 2 out of 3
}

func ExampleMetadata() {
	ctx := context.Background()
	m, stop := newExampleManager()
	defer stop()

	// Say who holds the lock: stored beside it, with its TTL, released with it.
	lock, err := m.Lock(ctx, "nightly-report", redlock.TTL(time.Minute),
		redlock.Metadata(`{"host":"worker-3","pid":4242}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lock.Unlock(ctx)

	// Anyone with the instances can ask who holds it.
	states, err := m.Inspect(ctx, "nightly-report")
	if err != nil {
		fmt.Println(err)
		return
	}
	holder, n := "", 0
	for _, st := range states {
		if st.Token == lock.Token() { // Lock returned at quorum: the last instance may lag
			holder, n = st.Metadata, n+1
		}
	}
	fmt.Println("held on a quorum:", n >= m.Quorum())
	fmt.Println("holder:", holder)
	fmt.Println("ours:", lock.Metadata() == holder)
	// Output:
	// held on a quorum: true
	// holder: {"host":"worker-3","pid":4242}
	// ours: true
}
