package redlock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

func TestSanityMini(t *testing.T) {
	var eps []string
	for i := 0; i < 3; i++ {
		s := miniredis.RunT(t)
		eps = append(eps, s.Addr())
	}
	m, err := New(eps, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := m.Lock(ctx, "res", TTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !l.Valid() {
		t.Fatal("not valid")
	}
	_, err = m.TryLock(ctx, "res")
	if !errors.Is(err, ErrNotAcquired) {
		t.Fatal(err)
	}
	t.Log(err)
	ok, err := m.IsLocked(ctx, "res")
	t.Log(ok, err)
	d, err := l.TTL(ctx)
	t.Log(d, err)
	if err := l.Extend(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log(l.Unlock(ctx))
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
