package rueidis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	rd "github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/clienttest"
	"github.com/redlock-go/redlock/internal/redistest"
	rueidisadapter "github.com/redlock-go/redlock/rueidis"
)

func TestMain(m *testing.M) {
	// rueidis closes the connections a cluster topology refresh replaced
	// after a fixed 5 s sleep, on a goroutine of its own.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}

var (
	_ redlock.Client       = (*rueidisadapter.Client)(nil)
	_ redlock.ScriptLoader = (*rueidisadapter.Client)(nil)
)

// newClient dials a single-node rueidis client with client-side caching
// off and its own timeouts far above the suite's context deadlines.
func newClient(t *testing.T, addr string) redlock.Client {
	t.Helper()
	rc, err := rd.NewClient(rd.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		ForceSingleClient: true,
		ConnWriteTimeout:  time.Minute,
		Dialer:            netDialer(),
	})
	if err != nil {
		t.Fatalf("rueidis.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(rc.Close)
	return rueidisadapter.New(rc)
}

func TestContract(t *testing.T) {
	clienttest.Run(t, newClient)
}

// TestCluster runs scripts through a rueidis cluster client: keys in one
// slot work, keys in different slots give a CROSSSLOT error (not a panic).
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rc, err := rd.NewClient(rd.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	c := rueidisadapter.New(rc)
	if got := c.String(); got != "cluster" {
		t.Errorf("String() = %q, want cluster", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const script = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[1]) return #KEYS"
	for _, keys := range [][]string{{"{res}:a", "{res}:b"}, {"{other}:a", "{other}:b"}} {
		if v, err := c.Eval(ctx, script, keys, []string{"tok"}); err != nil || v != int64(2) {
			t.Fatalf("keys %q in one slot: (%#v, %v), want (2, nil)", keys, v, err)
		}
	}
	// SCRIPT LOAD would reach one node: a cluster client does not load.
	if err := c.LoadScripts(ctx, []string{script}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LoadScripts on a cluster client: %v, want errors.ErrUnsupported", err)
	}
	for _, call := range []func() (any, error){
		func() (any, error) { return c.Eval(ctx, script, []string{"a", "b"}, []string{"tok"}) },
		func() (any, error) {
			return c.EvalSha(ctx, "0123456789abcdef0123456789abcdef01234567", []string{"a", "b"}, nil)
		},
	} {
		v, err := call()
		if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("keys in different slots: (%#v, %v), want a CROSSSLOT error", v, err)
		}
	}
}
