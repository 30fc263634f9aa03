package redisproc

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := CheckVersion("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("redis-server %s", v)
	servers, err := StartN(ctx, "redis-server", 2)
	if err != nil {
		t.Fatal(err)
	}
	if servers[0].Addr == servers[1].Addr {
		t.Fatalf("two servers on %s", servers[0].Addr)
	}
	for _, s := range servers {
		if err := ping(ctx, s.Addr); err != nil {
			t.Errorf("%s: %v", s.Addr, err)
		}
	}
	if err := StopAll(servers); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		select {
		case <-s.done:
		default:
			t.Errorf("%s: process not reaped after Stop", s.Addr)
		}
		if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: directory %s still there (%v)", s.Addr, s.dir, err)
		}
		if err := ping(ctx, s.Addr); err == nil {
			t.Errorf("%s: still answers PING after Stop", s.Addr)
		}
		if err := s.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	}
}

func TestMissingBinary(t *testing.T) {
	if _, err := CheckVersion("/nonexistent/redis-server"); err == nil {
		t.Fatal("CheckVersion of a missing binary succeeded")
	}
}
