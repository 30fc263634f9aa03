package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// mistakeHeader is the header of the operator mistakes table.
const mistakeHeader = "| mistake (on 2 of 3 instances) | error | Lock: attempts, time | LockWait: attempts, time | Close | keys left | goroutines, fds |\n" +
	"|---|---|---|---|---|---|---|"

// mistakeBound is the failure bound of one call: the times are reported.
const mistakeBound = 10 * time.Second

// mistakeRes is the resource every mistake locks.
const mistakeRes = "chaos:mistake"

// mistakeSecret is the password of the wrong-password cases; no error may
// show it.
const mistakeSecret = "chaos-Wr0ng-SECRET"

// mistake is one operator mistake: setup starts the servers, returns the
// endpoints (a majority of them wrong, the last one right) and the servers
// whose keys are checked afterwards.
type mistake struct {
	name  string
	want  error // ErrUnavailable or ErrRejected
	setup func(t *testing.T) (eps []string, servers []*redistest.Server)
}

// closedPort returns a loopback address on which nothing listens (a
// moment ago).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

var mistakes = []mistake{
	{"wrong port (nothing listening)", redlock.ErrUnavailable, func(t *testing.T) ([]string, []*redistest.Server) {
		good := redistest.StartWith(t, redistest.Options{})
		return []string{closedPort(t), closedPort(t), good.Addr()}, []*redistest.Server{good}
	}},
	{"TLS to a plain port", redlock.ErrUnavailable, func(t *testing.T) ([]string, []*redistest.Server) {
		s := redistest.Start(t, 3)
		return []string{"rediss://" + s[0].Addr() + "?insecure_skip_verify=true", "rediss://" + s[1].Addr() + "?insecure_skip_verify=true", s[2].Addr()}, s
	}},
	{"wrong password", redlock.ErrRejected, func(t *testing.T) ([]string, []*redistest.Server) {
		a := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "right-secret"}})
		b := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "right-secret"}})
		good := redistest.StartWith(t, redistest.Options{})
		return []string{"redis://:" + mistakeSecret + "@" + a.Addr(), "redis://:" + mistakeSecret + "@" + b.Addr(), good.Addr()}, []*redistest.Server{a, b, good}
	}},
	{"password missing", redlock.ErrRejected, func(t *testing.T) ([]string, []*redistest.Server) {
		a := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "right-secret"}})
		b := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "right-secret"}})
		good := redistest.StartWith(t, redistest.Options{})
		return []string{a.Addr(), b.Addr(), good.Addr()}, []*redistest.Server{a, b, good}
	}},
	{"WRONGTYPE key at the resource", redlock.ErrRejected, func(t *testing.T) ([]string, []*redistest.Server) {
		s := redistest.Start(t, 3)
		s[0].Do(t, "HSET", mistakeRes, "f", "v")
		s[1].Do(t, "HSET", mistakeRes, "f", "v")
		return []string{s[0].Addr(), s[1].Addr(), s[2].Addr()}, s
	}},
	{"ACL user without +evalsha", redlock.ErrRejected, func(t *testing.T) ([]string, []*redistest.Server) {
		s := redistest.Start(t, 3)
		for i, srv := range s {
			rule := "-evalsha"
			if i == 2 {
				rule = "+evalsha"
			}
			if got := srv.Do(t, "ACL", "SETUSER", "locker", "reset", "on", ">pw", "~*", "&*", "+@all", rule); got != "OK" {
				t.Fatalf("ACL SETUSER: %s", got)
			}
		}
		var eps []string
		for _, srv := range s {
			eps = append(eps, "redis://locker:pw@"+srv.Addr())
		}
		return eps, s
	}},
	{"replicas (READONLY)", redlock.ErrRejected, func(t *testing.T) ([]string, []*redistest.Server) {
		master := redistest.StartWith(t, redistest.Options{})
		of := []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port())}
		r1 := redistest.StartWith(t, redistest.Options{Args: of})
		r2 := redistest.StartWith(t, redistest.Options{Args: of})
		good := redistest.StartWith(t, redistest.Options{})
		for _, r := range []*redistest.Server{r1, r2} {
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(r.Do(t, "INFO", "replication"), "master_link_status:up") {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not in sync with its master after 20s", r)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		return []string{r1.Addr(), r2.Addr(), good.Addr()}, []*redistest.Server{master, r1, r2, good}
	}},
}

// TestOperatorMistakes: a majority of the endpoints misconfigured (the
// third one right) gives the documented error within a bounded time
// (failure bound 10 s per call; the times are reported): a wrong port or
// TLS to a plain port, ErrUnavailable from Lock after its attempts; a
// wrong or missing password, a key of another type at the resource, an
// ACL user without +evalsha, or replicas (READONLY), ErrRejected from
// Lock and LockWait after one attempt. Nothing is left behind: no lock
// key on any server (the operator's own keys stay), no goroutine nor
// file descriptor once the Manager is closed, and no error shows the
// password.
func TestOperatorMistakes(t *testing.T) {
	for _, mk := range mistakes {
		t.Run(mk.name, func(t *testing.T) { operatorMistake(t, mk) })
	}
}

func operatorMistake(t *testing.T, mk mistake) {
	eps, servers := mk.setup(t)
	keysBefore := make([][]string, len(servers))
	for i, s := range servers {
		keysBefore[i] = s.Keys(t)
	}
	// The baseline: the servers run, no Manager yet.
	fds := OpenFDs()
	goroutines := goleak.IgnoreCurrent()

	m, err := redlock.New(eps, redlock.Config{DefaultTTL: ttl})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = m.Close(context.Background())
		}
	}()
	others := []error{redlock.ErrUnavailable, redlock.ErrRejected, redlock.ErrNotAcquired, redlock.ErrInvalid, redlock.ErrClosed}
	call := func(method string, f func(context.Context) (*redlock.Lock, error)) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*mistakeBound)
		defer cancel()
		start := time.Now()
		l, err := f(ctx)
		took := time.Since(start)
		if err == nil {
			_ = l.Unlock(context.Background())
			t.Fatalf("%s acquired through %s", method, mk.name)
		}
		if !errors.Is(err, mk.want) {
			t.Errorf("%s: %v, want %v", method, err, mk.want)
		}
		for _, o := range others {
			if o != mk.want && errors.Is(err, o) {
				t.Errorf("%s: %v is also %v", method, err, o)
			}
		}
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, mk.want) {
			t.Errorf("%s ran until its ctx ended: %v", method, err)
		}
		if took > mistakeBound {
			t.Errorf("%s took %v, over %v", method, took, mistakeBound)
		}
		if strings.Contains(fmt.Sprintf("%v %+v", err, err), mistakeSecret) {
			t.Errorf("%s: the error shows the password: %v", method, err)
		}
		var qe *redlock.QuorumError
		attempts := 0
		if errors.As(err, &qe) {
			attempts = qe.Attempts
		}
		if mk.want == redlock.ErrRejected && attempts != 1 {
			t.Errorf("%s: %d attempts, want 1 (no retry fixes a rejection): %v", method, attempts, err)
		}
		t.Logf("%s: %v after %d attempt(s): %v", method, took.Round(time.Millisecond), attempts, err)
		return fmt.Sprintf("%d, %v", attempts, took.Round(time.Millisecond)), err
	}
	lockRes, lockErr := call("Lock", func(ctx context.Context) (*redlock.Lock, error) {
		return m.Lock(ctx, mistakeRes, redlock.TTL(ttl))
	})
	waitRes := "- (retries until its ctx ends)"
	if mk.want == redlock.ErrRejected {
		waitRes, _ = call("LockWait", func(ctx context.Context) (*redlock.Lock, error) {
			return m.LockWait(ctx, mistakeRes, redlock.TTL(ttl))
		})
	}
	cctx, cancel := context.WithTimeout(context.Background(), mistakeBound)
	start := time.Now()
	if err := m.Close(cctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	closeTook := time.Since(start)
	cancel()
	closed = true

	// No lock key anywhere: every server back to the keys it had.
	var left []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		left = left[:0]
		for i, s := range servers {
			if got := strings.Join(s.Keys(t), " "); got != strings.Join(keysBefore[i], " ") {
				left = append(left, fmt.Sprintf("%s: keys %q, had %q", s, got, keysBefore[i]))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
	leak := goleak.Find(goroutines)
	if leak != nil {
		t.Errorf("goroutines left after Close: %v", leak)
	}
	extra := NewFDs(fds)
	for wait := time.Now().Add(5 * time.Second); len(extra) > 0 && time.Now().Before(wait); extra = NewFDs(fds) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(extra) > 0 {
		t.Errorf("file descriptors left after Close: %v", extra)
	}
	sentinel := "ErrUnavailable"
	if errors.Is(lockErr, redlock.ErrRejected) {
		sentinel = "ErrRejected"
	}
	cause := "-"
	var ie *redlock.InstanceError
	if errors.As(lockErr, &ie) {
		cause = ie.Err.Error()
		if len(cause) > 60 {
			cause = cause[:60] + "…"
		}
		cause = strings.ReplaceAll(cause, "|", "/")
	}
	row := fmt.Sprintf("| %s | %s (%s) | %s | %s | %v | %d | %s |", mk.name, sentinel, cause, lockRes, waitRes,
		closeTook.Round(time.Millisecond), len(left), map[bool]string{true: "back to baseline", false: "LEFT"}[leak == nil && len(extra) == 0])
	report.Add("Operator mistakes: the library's errors (TestOperatorMistakes)", mistakeHeader, row)
	t.Logf("\n%s\n%s", mistakeHeader, row)
}
