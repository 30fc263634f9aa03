package goredis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/clienttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	_ redlock.Client       = (*goredis.Client)(nil)
	_ redlock.ScriptLoader = (*goredis.Client)(nil)
)

// newClient dials a go-redis client that honours context deadlines, with
// its own timeouts far above the suite's context deadlines.
func newClient(t *testing.T, addr string) redlock.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{
		Addr:                  addr,
		DialTimeout:           time.Minute,
		ReadTimeout:           time.Minute,
		WriteTimeout:          time.Minute,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	t.Cleanup(func() { _ = rc.Close() })
	return goredis.New(rc)
}

func TestContract(t *testing.T) {
	clienttest.Run(t, newClient)
}

// TestLoadScriptsSharded: a cluster or ring client does not load scripts
// (SCRIPT LOAD would reach one node) and says so without contacting it.
func TestLoadScriptsSharded(t *testing.T) {
	for _, rc := range []redis.UniversalClient{
		redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}),
		redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}),
	} {
		err := goredis.New(rc).LoadScripts(context.Background(), []string{"return 1"})
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%T: LoadScripts = %v, want errors.ErrUnsupported", rc, err)
		}
		_ = rc.Close()
	}
}
