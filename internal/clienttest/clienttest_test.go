package clienttest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// brokenEnv selects the broken adapter TestBrokenChild runs the suite with.
const brokenEnv = "REDLOCK_CLIENTTEST_BROKEN"

// broken is a go-redis based adapter with one defect, to show that the
// suite catches it.
type broken struct {
	rc     *redis.Client
	defect string
}

func (b *broken) EvalSha(ctx context.Context, sha1 string, keys, args []string) (any, error) {
	return b.fix(b.rc.EvalSha(ctx, sha1, keys, anys(args)...).Result())
}

func (b *broken) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	if b.defect == "eval-is-evalsha" {
		return b.EvalSha(ctx, sha(script), keys, args)
	}
	return b.fix(b.rc.Eval(ctx, script, keys, anys(args)...).Result())
}

// LoadScripts pipelines SCRIPT LOAD, or with the "load-nothing" defect
// claims success without loading anything.
func (b *broken) LoadScripts(ctx context.Context, scripts []string) error {
	if b.defect == "load-nothing" {
		return ctx.Err()
	}
	_, err := b.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range scripts {
			p.ScriptLoad(ctx, s)
		}
		return nil
	})
	return err
}

func (b *broken) fix(v any, err error) (any, error) {
	switch {
	case b.defect == "nil-is-error":
		return v, err
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil && b.defect == "trims-err":
		return nil, errors.New(strings.TrimPrefix(err.Error(), "ERR "))
	case err != nil && b.defect == "hides-ctx":
		return nil, errors.New("call failed")
	case err != nil:
		return nil, err
	case b.defect == "bool-ints":
		if i, ok := v.(int64); ok && i == 1 {
			return true, nil
		}
	}
	return v, err
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func newBroken(defect string) NewClientFunc {
	return func(t *testing.T, addr string) redlock.Client {
		rc := redis.NewClient(&redis.Options{
			Addr: addr, DialTimeout: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute,
			ContextTimeoutEnabled: true, DisableIdentity: true,
		})
		t.Cleanup(func() { _ = rc.Close() })
		return &broken{rc: rc, defect: defect}
	}
}

// TestBrokenChild runs the suite with a broken adapter when
// TestNegativeControls starts this test binary again; otherwise it does
// nothing.
func TestBrokenChild(t *testing.T) {
	defect := os.Getenv(brokenEnv)
	if defect == "" {
		return
	}
	Run(t, newBroken(defect))
}

// TestNegativeControls shows that the suite can fail: each defective
// adapter must fail the subtest that covers its defect.
func TestNegativeControls(t *testing.T) {
	cases := []struct{ defect, subtest string }{
		{"nil-is-error", "Replies"},
		{"bool-ints", "Replies"},
		{"trims-err", "ErrorReplies"},
		{"eval-is-evalsha", "ScriptFlush"},
		{"load-nothing", "LoadScripts"},
		{"hides-ctx", "DeadlinePausedServer"},
		{"hides-ctx", "CancelledBeforeCall"},
	}
	for _, tc := range cases {
		t.Run(tc.defect+"/"+tc.subtest, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestBrokenChild$/^"+tc.subtest+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+tc.defect)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite with defect %q: want a failing exit, got %v\n%s", tc.defect, err, out)
			}
			if want := "--- FAIL: TestBrokenChild/" + tc.subtest; !strings.Contains(string(out), want) {
				t.Fatalf("the suite with defect %q: output lacks %q\n%s", tc.defect, want, out)
			}
		})
	}
}
