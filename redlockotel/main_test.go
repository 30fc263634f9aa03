package redlockotel_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests, as the
// root module's tests do: every Manager is closed by its test.
func TestMain(m *testing.M) {
	// go-redis logs every failed dial to the instances the tests kill.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m,
		// go-redis keeps re-dialing an instance a test killed for about a
		// second after the client is closed.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
