// Command quickstart runs the README's usage on three embedded Redis
// instances (miniredis, in-process): no Redis server needed.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/redlock-go/redlock"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	var endpoints []string
	for i := 0; i < 3; i++ {
		s := miniredis.NewMiniRedis()
		if err := s.Start(); err != nil {
			return err
		}
		defer s.Close()
		endpoints = append(endpoints, s.Addr())
	}

	m, err := redlock.New(endpoints, redlock.Config{})
	if err != nil {
		return err
	}
	defer m.Close(ctx)

	locked, err := m.IsLocked(ctx, "resource_name")
	fmt.Println("locked before:", locked, err)

	lock, err := m.Lock(ctx, "resource_name", redlock.TTL(10*time.Second))
	if errors.Is(err, redlock.ErrNotAcquired) {
		return fmt.Errorf("lock not acquired: %w", err)
	} else if err != nil {
		return err
	}
	fmt.Println("valid:", lock.Valid(), "for about", time.Until(lock.Until()).Round(time.Second))

	if err := lock.Extend(ctx, 10*time.Second); err != nil {
		return err
	}
	if err := lock.Unlock(ctx); err != nil {
		return err
	}
	fmt.Println("valid after unlock:", lock.Valid())

	err = m.Do(ctx, "resource_name", func(ctx context.Context) error {
		fmt.Println("inside Do: the lock is held and kept extended")
		return nil
	})
	fmt.Println("Do:", err)
	return nil
}
