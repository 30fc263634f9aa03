package goredis_test

import (
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

var _ redlock.Client = (*goredis.Client)(nil)

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
