package redlock_test

// Every endpoint form on real servers (internal/redistest): plain forms,
// unix sockets, TLS, a restricted ACL user, Sentinel with a failover,
// Redis Cluster as one instance, and existing go-redis clients; and no
// password in any error or log line.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
	"github.com/redlock-go/redlock/internal/redistest"
)

// connWrongPassword is the password that the redaction checks look for.
const connWrongPassword = "Wr0ng-Pa55w0rd-SECRET"

// connCfg is the configuration of the connection tests: short retries.
var connCfg = redlock.Config{RetryCount: 2, RetryDelayMin: 10 * time.Millisecond, RetryDelayMax: 20 * time.Millisecond}

// connFailCfg is connCfg with a 5 s NodeTimeout, for the tests that want a
// connection's own error (a certificate refused, a protocol mismatch) and
// not a timeout: a call waits for its connection's dial within its
// deadline, and on a loaded machine a failing TLS dial took longer than
// the default 500 ms (the call then reported "context deadline exceeded").
// The dial itself is bounded by the dial timeout, max(NodeTimeout, 1 s).
var connFailCfg = func() redlock.Config { c := connCfg; c.NodeTimeout = 5 * time.Second; return c }()

// connCtx bounds one connection test.
func connCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connClose closes m with a bounded context.
func connClose(t *testing.T, m *redlock.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil && !errors.Is(err, redlock.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

// connNewEndpoints is redlock.NewFromEndpoints, closed in t.Cleanup.
func connNewEndpoints(t *testing.T, endpoints []redlock.Endpoint, cfg redlock.Config) *redlock.Manager {
	t.Helper()
	m, err := redlock.NewFromEndpoints(endpoints, cfg)
	if err != nil {
		t.Fatalf("NewFromEndpoints(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { connClose(t, m) })
	return m
}

// connParse is redlock.ParseEndpoint that fails the test on an error.
func connParse(t *testing.T, s string) redlock.Endpoint {
	t.Helper()
	ep, err := redlock.ParseEndpoint(s)
	if err != nil {
		t.Fatalf("ParseEndpoint(%q): %v", s, err)
	}
	return ep
}

// connExercise runs every operation of the library on resource through m:
// lock, is-locked (manager and handle), ttl, extend, attach, unlock. While
// the lock is held it calls held (if non-nil) with the lock, to look at the
// servers. It returns the first failure.
func connExercise(ctx context.Context, m *redlock.Manager, resource string, held func(l *redlock.Lock) error) error {
	l, err := m.Lock(ctx, resource, redlock.TTL(10*time.Second))
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if ok, err := m.IsLocked(ctx, resource); err != nil || !ok {
		return fmt.Errorf("manager is-locked = %v, %w", ok, err)
	}
	if ok, err := l.IsLocked(ctx); err != nil || !ok {
		return fmt.Errorf("lock is-locked = %v, %w", ok, err)
	}
	if d, err := l.TTL(ctx); err != nil || d <= 0 || d > 10*time.Second {
		return fmt.Errorf("ttl = %v, %w", d, err)
	}
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	// Lock and Extend return once a quorum agreed: the other instances
	// catch up a moment later.
	err = connEventually(ctx, func() error {
		if d, err := l.TTL(ctx); err != nil || d <= 10*time.Second {
			return fmt.Errorf("ttl after extend = %v, %w", d, err)
		}
		if held != nil {
			return held(l)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a, err := m.Attach(ctx, resource, l.Token())
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := l.Unlock(ctx); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if err := a.Unlock(ctx); err != nil { // the key is gone: still a success
		return fmt.Errorf("unlock attached: %w", err)
	}
	if ok, err := m.IsLocked(ctx, resource); err != nil || ok {
		return fmt.Errorf("is-locked after unlock = %v, %w", ok, err)
	}
	return nil
}

// connEventually calls check until it returns nil, for at most 5s (or
// until ctx ends), and returns its last error.
func connEventually(ctx context.Context, check func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connWantKey returns an error unless key holds value in database db of
// every server.
func connWantKey(t *testing.T, db int, key, value string, servers ...*redistest.Server) error {
	t.Helper()
	for _, s := range servers {
		if got := getDB(t, s, db, key); got != value {
			return fmt.Errorf("%s db %d: %s = %q, want %q", s, db, key, got, value)
		}
	}
	return nil
}

// connNoSecret fails the test if text shows connWrongPassword.
func connNoSecret(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, connWrongPassword) {
		t.Errorf("%s shows the password: %s", what, text)
	}
}

// connWrongPasswordFails checks a Manager over one endpoint whose password
// is connWrongPassword: locking fails with ErrUnavailable, and neither the
// error, nor the instance names, nor the log show the password.
func connWrongPasswordFails(t *testing.T, endpoint string) {
	t.Helper()
	ctx := connCtx(t)
	var log strings.Builder // slog handlers serialise their writes
	cfg := connCfg
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := newManagerAt(t, []string{endpoint}, cfg)
	_, err := m.Lock(ctx, "redaction", redlock.TTL(time.Second))
	if !errors.Is(err, redlock.ErrRejected) {
		t.Fatalf("Lock with a wrong password = %v, want ErrRejected", err)
	}
	var ie *redlock.InstanceError
	if !errors.As(err, &ie) || errors.Is(ie.Err, context.DeadlineExceeded) {
		t.Errorf("Lock with a wrong password = %v: want the server's refusal, not a timeout", err)
	}
	t.Logf("wrong password: %v", err)
	connNoSecret(t, "Lock error", err.Error())
	connNoSecret(t, "Lock error %+v", fmt.Sprintf("%+v", err))
	_, err = m.IsLocked(ctx, "redaction")
	connNoSecret(t, "IsLocked error", fmt.Sprint(err))
	connNoSecret(t, "Endpoints", strings.Join(m.Endpoints(), " "))
	connClose(t, m)
	connNoSecret(t, "log", log.String())
}

// TestConnPlainForms: host:port, redis:// with a password and database,
// redis:// with an ACL user, and the struct form, on three servers.
func TestConnPlainForms(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	s0 := redistest.StartWith(t, redistest.Options{})
	s1 := redistest.StartWith(t, redistest.Options{Args: []string{"--requirepass", "pw-one"}})
	s2 := redistest.StartWith(t, redistest.Options{})
	s2.Do(t, "ACL", "SETUSER", "app", "on", ">pw-two", "~*", "+@all")
	servers := []*redistest.Server{s0, s1, s2}

	held := func(l *redlock.Lock) error {
		if err := connWantKey(t, 0, l.Resource(), l.Token(), s0); err != nil {
			return err
		}
		if err := connWantKey(t, 2, l.Resource(), l.Token(), s1); err != nil {
			return err
		}
		return connWantKey(t, 3, l.Resource(), l.Token(), s2)
	}
	t.Run("strings", func(t *testing.T) {
		m := newManagerAt(t, []string{
			s0.Addr(),
			"redis://:pw-one@" + s1.Addr() + "/2",
			"redis://app:pw-two@" + s2.Addr() + "?db=3&dial_timeout=2s&read_timeout=1s&write_timeout=1s&pool_size=4",
		}, connCfg)
		if err := connExercise(ctx, m, "plain-strings", held); err != nil {
			t.Fatal(err)
		}
		for i, name := range m.Endpoints() {
			if strings.Contains(name, "pw-") {
				t.Errorf("Endpoints()[%d] = %q shows a password", i, name)
			}
		}
	})
	t.Run("structs", func(t *testing.T) {
		m := connNewEndpoints(t, []redlock.Endpoint{
			connParse(t, s0.Addr()),
			{Addr: s1.Addr(), DB: 2, Password: "pw-one"},
			{Network: "tcp", Addr: s2.Addr(), DB: 3, Username: "app", Password: "pw-two", PoolSize: 2, DialTimeout: time.Second},
		}, connCfg)
		if err := connExercise(ctx, m, "plain-structs", held); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		connWrongPasswordFails(t, "redis://:"+connWrongPassword+"@"+s1.Addr()+"/2")
		connWrongPasswordFails(t, "redis://app:"+connWrongPassword+"@"+s2.Addr())
		connWrongPasswordFails(t, "redis://nobody:"+connWrongPassword+"@"+s0.Addr())
	})
	wantNoKeys(t, servers)
}

// TestConnUnixSocket: "/path/to/redis.sock" and "unix:///path?db=N".
func TestConnUnixSocket(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	s0 := redistest.StartWith(t, redistest.Options{UnixSocket: true})
	s1 := redistest.StartWith(t, redistest.Options{UnixSocket: true})
	s2 := redistest.StartWith(t, redistest.Options{UnixSocket: true, Args: []string{"--requirepass", "pw-unix"}})
	eps := []string{
		s0.Socket(),
		"unix://" + s1.Socket() + "?db=2",
		"unix://:pw-unix@" + s2.Socket() + "?db=5&dial_timeout=1s",
	}
	m := newManagerAt(t, eps, connCfg)
	err := connExercise(ctx, m, "unix", func(l *redlock.Lock) error {
		if err := connWantKey(t, 0, l.Resource(), l.Token(), s0); err != nil {
			return err
		}
		if err := connWantKey(t, 2, l.Resource(), l.Token(), s1); err != nil {
			return err
		}
		return connWantKey(t, 5, l.Resource(), l.Token(), s2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Endpoints()[0]; got != "unix://"+s0.Socket() {
		t.Errorf("Endpoints()[0] = %q, want unix://%s", got, s0.Socket())
	}
	// The socket and the TCP port of one server are not detected as the
	// same instance; the same socket twice is.
	if _, err := redlock.New([]string{s0.Socket(), "unix://" + s0.Socket() + "?db=1"}, connCfg); !errors.Is(err, redlock.ErrInvalid) {
		t.Errorf("the same socket twice: %v, want ErrInvalid", err)
	}
	connWrongPasswordFails(t, "unix://:"+connWrongPassword+"@"+s2.Socket())
}

// TestConnTLS: rediss:// verified with a CA file (URL option and struct
// field) and with verification skipped (aioredlock's ssl_cert_reqs and the
// Go spelling); the system pool rejects the test CA; plain text to a TLS
// port, and TLS to a plain port, fail at once with an error.
func TestConnTLS(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	files, _ := redistest.GenerateTLS(t)
	servers := []*redistest.Server{
		redistest.StartWith(t, redistest.Options{TLS: files}),
		redistest.StartWith(t, redistest.Options{TLS: files}),
		redistest.StartWith(t, redistest.Options{TLS: files, Args: []string{"--requirepass", "pw-tls"}}),
	}
	ca := url.QueryEscape(files.CAFile)
	held := func(l *redlock.Lock) error { return connWantKey(t, 1, l.Resource(), l.Token(), servers...) }

	t.Run("ca_file", func(t *testing.T) {
		m := newManagerAt(t, []string{
			"rediss://" + servers[0].Addr() + "/1?ca_file=" + ca,
			"rediss://localhost:" + strconv.Itoa(servers[1].Port()) + "/1?ca_file=" + ca + "&ssl_cert_reqs=CERT_REQUIRED",
			"rediss://:pw-tls@" + servers[2].Addr() + "/1?ca_file=" + ca,
		}, connCfg)
		if err := connExercise(ctx, m, "tls-ca-file", held); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("struct CAFile and RootCAs", func(t *testing.T) {
		m := connNewEndpoints(t, []redlock.Endpoint{
			{Addr: servers[0].Addr(), DB: 1, CAFile: files.CAFile},
			{Addr: servers[1].Addr(), DB: 1, TLS: servers[1].ClientTLSConfig()},
			{Addr: servers[2].Addr(), DB: 1, Password: "pw-tls", TLS: &tls.Config{MinVersion: tls.VersionTLS13}, CAFile: files.CAFile},
		}, connCfg)
		if err := connExercise(ctx, m, "tls-struct", held); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("verification skipped", func(t *testing.T) {
		m := connNewEndpoints(t, []redlock.Endpoint{
			connParse(t, "rediss://"+servers[0].Addr()+"/1?ssl_cert_reqs=CERT_NONE"),
			connParse(t, "rediss://"+servers[1].Addr()+"/1?insecure_skip_verify=true"),
			{Addr: servers[2].Addr(), DB: 1, Password: "pw-tls", TLS: &tls.Config{InsecureSkipVerify: true}},
		}, connCfg)
		if err := connExercise(ctx, m, "tls-skip", held); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("system pool rejects the test CA", func(t *testing.T) {
		// TTL 10 s: an attempt is never longer than the lock's TTL.
		m := newManagerAt(t, []string{"rediss://" + servers[0].Addr()}, connFailCfg)
		_, err := m.TryLock(ctx, "tls-untrusted", redlock.TTL(10*time.Second))
		var cve *tls.CertificateVerificationError
		if !errors.Is(err, redlock.ErrUnavailable) || !errors.As(err, &cve) {
			t.Fatalf("TryLock with an untrusted certificate = %v, want ErrUnavailable from a certificate verification error", err)
		}
	})
	t.Run("plain text to the TLS port", func(t *testing.T) {
		m := newManagerAt(t, []string{"redis://" + servers[0].Addr()}, connFailCfg)
		connFailsFast(ctx, t, m)
	})
	t.Run("TLS to a plain port", func(t *testing.T) {
		// The server waits for the end of an inline command that never
		// comes: this one is a timeout, bounded by NodeTimeout.
		plain := redistest.StartWith(t, redistest.Options{})
		m := newManagerAt(t, []string{"rediss://" + plain.Addr() + "?insecure_skip_verify=true"}, connCfg)
		if _, err := m.TryLock(ctx, "mismatch", redlock.TTL(time.Minute)); !errors.Is(err, redlock.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("TryLock = %v, want ErrUnavailable", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		connWrongPasswordFails(t, "rediss://:"+connWrongPassword+"@"+servers[2].Addr()+"?ca_file="+ca)
	})
}

// connFailsFast checks that a lock through m fails with an error from the
// connection, not by running out of time (the call does not hang).
func connFailsFast(ctx context.Context, t *testing.T, m *redlock.Manager) {
	t.Helper()
	_, err := m.TryLock(ctx, "mismatch", redlock.TTL(time.Minute))
	var ie *redlock.InstanceError
	if !errors.Is(err, redlock.ErrUnavailable) || !errors.As(err, &ie) {
		t.Fatalf("TryLock = %v, want ErrUnavailable with an instance error", err)
	}
	if errors.Is(ie.Err, context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryLock = %v: timed out instead of failing", err)
	}
	t.Logf("mismatch: %v", err)
}

// connMinimalACL is the ACL rule a locking user needs, besides its
// password and key pattern (see TestConnACL).
var connMinimalACL = []string{"-@all", "+evalsha", "+eval", "+get", "+set", "+pexpire", "+del", "+pttl"}

// connQuietACL are the rules that keep the ACL LOG empty without being
// needed for locking: rueidis's keep-alive PING, the release announcement
// that wakes waiters (without it they poll), and SCRIPT LOAD of every
// script on first contact (without it, queued calls rely on the EVAL
// fallback alone; see redlock.ScriptLoader).
var connQuietACL = []string{"+ping", "+publish", "&" + redlock.ReleaseChannel, "+script|load"}

// connSetUser creates (or resets) user with password pw, keys ~lock:* and
// the given command rules on s, and clears the ACL log.
func connSetUser(t *testing.T, s *redistest.Server, user, pw string, rules []string) {
	t.Helper()
	args := append([]string{"ACL", "SETUSER", user, "reset", "on", ">" + pw, "~lock:*", "~{lock:*", "resetchannels"}, rules...)
	args = append(args, connQuietACL...)
	if got := s.Do(t, args...); got != "OK" {
		t.Fatalf("%s: ACL SETUSER %q: %s", s, args, got)
	}
}

// TestConnACL: a user limited to EVALSHA and EVAL (and the commands the
// scripts run: GET SET PEXPIRE DEL PTTL) on keys ~lock:* can do everything
// with KeyPrefix "lock:", including after SCRIPT FLUSH; the server logs no
// denied command (so go-redis sends nothing else); and each rule of the
// minimal ACL is needed.
func TestConnACL(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	servers := redistest.Start(t, 3)
	for _, s := range servers {
		connSetUser(t, s, "locker", "pw-acl", connMinimalACL)
		s.Do(t, "ACL", "LOG", "RESET")
	}
	var eps []string
	for _, s := range servers {
		eps = append(eps, "redis://locker:pw-acl@"+s.Addr())
	}
	cfg := connCfg
	cfg.KeyPrefix = "lock:"
	m := newManagerAt(t, eps, cfg)
	held := func(l *redlock.Lock) error {
		return connWantKey(t, 0, "lock:"+l.Resource(), l.Token(), servers...)
	}
	for round, flush := range []bool{false, true, true} {
		if flush { // as an operator would: the scripts come back through EVAL
			for _, s := range servers {
				s.Do(t, "SCRIPT", "FLUSH")
			}
		}
		if err := connExercise(ctx, m, "acl-"+strconv.Itoa(round), held); err != nil {
			t.Fatalf("round %d (SCRIPT FLUSH %v): %v", round, flush, err)
		}
	}
	// Fenced locks (their counters match ~{lock:*) and multi-resource
	// locks work too.
	fl, err := m.Lock(ctx, "acl-fenced", redlock.Fenced(), redlock.TTL(time.Minute))
	if err != nil {
		t.Fatalf("fenced lock: %v", err)
	}
	if fl.Fence() == 0 {
		t.Fatal("fenced lock without a fence")
	}
	if err := fl.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ml, err := m.LockMany(ctx, []string{"acl-a", "acl-b"}, redlock.Fenced())
	if err != nil {
		t.Fatalf("LockMany: %v", err)
	}
	if err := ml.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Do (an auto-extended lock) works too.
	// The lock returns at quorum: a majority holds the key (the last
	// instance may still be setting it).
	holding := 0
	if err := m.Do(ctx, "acl-do", func(ctx context.Context) error {
		for _, s := range servers {
			if v := getDB(t, s, 0, "lock:acl-do"); v != "" && v != "(nil)" {
				holding++
			}
		}
		return nil
	}); err != nil {
		t.Errorf("Do: %v", err)
	}
	if holding < len(servers)/2+1 {
		t.Errorf("Do: lock:acl-do set on %d of %d instances while held", holding, len(servers))
	}
	for _, s := range servers {
		if log := s.Do(t, "ACL", "LOG"); log != "" {
			t.Errorf("%s: ACL LOG shows denied commands:\n%s", s, log)
		}
	}

	// Negative control: the key pattern is enforced. Without the prefix,
	// locking fails and the server logs the denied key.
	cfg.KeyPrefix = ""
	bare := newManagerAt(t, eps, cfg)
	if _, err := bare.TryLock(ctx, "acl-bare", redlock.TTL(time.Second)); !errors.Is(err, redlock.ErrRejected) {
		t.Errorf("TryLock outside ~lock:* = %v, want ErrRejected", err)
	}
	if !connACLDenied(t, servers[0], "locker", "key", "acl-bare") {
		t.Errorf("ACL LOG has no denial of key acl-bare for locker")
	}

	// Each command rule is needed: without it, some operation fails and
	// the server logs that command as denied.
	s := servers[0]
	for i, rule := range connMinimalACL[1:] {
		cmd := strings.TrimPrefix(rule, "+")
		user := "without-" + cmd
		rules := append(append([]string{}, connMinimalACL[:i+1]...), connMinimalACL[i+2:]...)
		connSetUser(t, s, user, "pw", rules)
		// Without SCRIPT LOAD (denied once, then not asked again), so
		// that the EVAL fallback is needed after the flush.
		s.Do(t, "ACL", "SETUSER", user, "-script|load")
		cfg := connCfg
		cfg.KeyPrefix = "lock:"
		cfg.RetryCount = 1
		m := newManagerAt(t, []string{"redis://" + user + ":pw@" + s.Addr()}, cfg)
		s.Do(t, "SCRIPT", "FLUSH") // so that EVAL is needed
		if err := connExercise(ctx, m, "acl-"+user, nil); !errors.Is(err, redlock.ErrRejected) {
			t.Errorf("user %s (rules %q): %v, want ErrRejected", user, rules, err)
		}
		if !connACLDenied(t, s, user, "command", cmd) {
			t.Errorf("user %s: ACL LOG has no denial of %s:\n%s", user, cmd, s.Do(t, "ACL", "LOG"))
		}
		// Close releases what the exercise left held, which may fail too.
		if err := m.Close(ctx); err != nil && !errors.Is(err, redlock.ErrUnavailable) && !errors.Is(err, redlock.ErrRejected) {
			t.Errorf("user %s: Close: %v", user, err)
		}
		s.Do(t, "DEL", "lock:acl-"+user)
	}
}

// connACLDenied reports whether the ACL LOG of s has an entry for user
// with the given reason ("command" or "key") and object (the command or
// key name).
func connACLDenied(t *testing.T, s *redistest.Server, user, reason, object string) bool {
	t.Helper()
	// Do flattens the entries (field, value, field, value, ...) into lines.
	lines := strings.Split(s.Do(t, "ACL", "LOG"), "\n")
	var fields map[string]string
	match := func() bool {
		return fields != nil && fields["username"] == user && fields["reason"] == reason && fields["object"] == object
	}
	for i := 0; i+1 < len(lines); i += 2 {
		if lines[i] == "count" { // the first field of an entry
			if match() {
				return true
			}
			fields = map[string]string{}
		}
		if fields != nil {
			fields[lines[i]] = lines[i+1]
		}
	}
	return match()
}

// TestConnSentinel: one master, one replica, three Sentinels. Locks
// through the Sentinel endpoint in aioredlock's URL, the redis+sentinel://
// URL, the struct form, an existing failover client, and as a restricted
// ACL user; then SENTINEL FAILOVER; locking keeps working against the new
// master, whose script cache was empty.
func TestConnSentinel(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	g := redistest.StartSentinel(t, 1, 3)
	sentinels := g.SentinelAddrs()
	plain := redistest.Start(t, 2)
	// ACL users are not replicated: create the user on every server. A
	// database other than 0 needs SELECT.
	for _, s := range append([]*redistest.Server{g.Master}, g.Replicas...) {
		connSetUser(t, s, "locker", "pw-acl", append(append([]string{}, connMinimalACL...), "+select", "+role"))
		s.Do(t, "ACL", "LOG", "RESET")
	}
	aclCfg := connCfg
	aclCfg.KeyPrefix = "lock:"

	existing := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: g.MasterName, SentinelAddrs: sentinels, DB: 4, MaxRetries: -1, DisableIdentity: true,
	})
	t.Cleanup(func() { existing.Close() })
	em, err := redlock.NewFromClients([]redlock.Client{goredis.New(existing)}, connCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connClose(t, em) })
	if got := em.Endpoints()[0]; got != "client[0] sentinel/4" {
		t.Errorf("existing failover client named %q", got)
	}

	// All but the struct form are the only instance of their Manager:
	// locking works only if the Sentinel endpoint does.
	managers := []struct {
		name   string
		m      *redlock.Manager
		prefix string
	}{
		{"aioredlock URL", newManagerAt(t, []string{"redis://" + sentinels[0] + "/4?master=" + g.MasterName + "&encoding=utf-8"}, connCfg), ""},
		{"redis+sentinel", newManagerAt(t, []string{"redis+sentinel://" + strings.Join(sentinels, ",") + "/4?master=" + g.MasterName}, connCfg), ""},
		{"struct among plain servers", connNewEndpoints(t, []redlock.Endpoint{
			{SentinelAddrs: sentinels, MasterName: g.MasterName, DB: 4},
			{Addr: plain[0].Addr(), DB: 4},
			{Addr: plain[1].Addr(), DB: 4},
		}, connCfg), ""},
		{"existing failover client", em, ""},
		{"ACL user", newManagerAt(t, []string{"redis+sentinel://locker:pw-acl@" + sentinels[1] + "/4?master=" + g.MasterName}, aclCfg), "lock:"},
	}

	oldMaster := g.Master
	for _, tm := range managers {
		err := connExercise(ctx, tm.m, "sentinel-before", func(l *redlock.Lock) error {
			return connWantKey(t, 4, tm.prefix+l.Resource(), l.Token(), g.Master)
		})
		if err != nil {
			t.Fatalf("%s, before the failover: %v", tm.name, err)
		}
	}

	newAddr := g.Failover(t)
	if g.Master == oldMaster {
		t.Fatalf("failover kept the master %s", newAddr)
	}
	// Make sure the new master cannot run a script by SHA1 (replicas do
	// not get the script cache in Redis 7 anyway).
	sha := redlock.ScriptSHA("acquire")
	g.Master.Do(t, "SCRIPT", "FLUSH")
	if got := g.Master.Do(t, "SCRIPT", "EXISTS", sha); got != "0" {
		t.Fatalf("SCRIPT EXISTS on the new master after FLUSH = %s", got)
	}

	// Connections to the old master fail (it is a replica now, or not yet
	// told): locking may fail for a while, and must succeed within a bound.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, tm := range managers {
		start := time.Now()
		key := tm.prefix + "sentinel-after"
		l, err := tm.m.LockWait(wctx, "sentinel-after", redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatalf("%s: no lock within 30s of the failover: %v", tm.name, err)
		}
		t.Logf("%s: locked %v after the failover to %s", tm.name, time.Since(start).Round(time.Millisecond), newAddr)
		// With plain servers besides, the quorum may not have needed the
		// Sentinel endpoint: lock again until the new master holds the key.
		err = connEventually(ctx, func() error {
			if err := connWantKey(t, 4, key, l.Token(), g.Master); err == nil {
				return nil
			}
			if err := l.Unlock(ctx); err != nil {
				return fmt.Errorf("unlock: %w", err)
			}
			l, err = tm.m.Lock(ctx, "sentinel-after", redlock.TTL(10*time.Second))
			if err != nil {
				return err
			}
			return connWantKey(t, 4, key, l.Token(), g.Master)
		})
		if err != nil {
			t.Errorf("%s: %v", tm.name, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Errorf("%s: unlock: %v", tm.name, err)
		}
		if err := connExercise(ctx, tm.m, "sentinel-after-"+strings.ReplaceAll(tm.name, " ", "-"), nil); err != nil {
			t.Errorf("%s, after the failover: %v", tm.name, err)
		}
	}
	if got := g.Master.Do(t, "SCRIPT", "EXISTS", sha); got != "1" {
		t.Errorf("SCRIPT EXISTS acquire on the new master = %s: the script was not loaded again", got)
	}
	for _, s := range append([]*redistest.Server{g.Master}, g.Replicas...) {
		if log := s.Do(t, "ACL", "LOG"); log != "" {
			t.Errorf("%s: ACL LOG shows denied commands:\n%s", s, log)
		}
	}

	// The servers have no password: the default user takes any, so the
	// wrong one goes with a user that does not exist.
	connWrongPasswordFails(t, "redis+sentinel://nobody:"+connWrongPassword+"@"+sentinels[0]+"?master="+g.MasterName)
	connWrongPasswordFails(t, "redis+sentinel://"+sentinels[0]+"?master="+g.MasterName+"&sentinel_username=nobody&sentinel_password="+connWrongPassword)
}

// TestConnCluster: a three-master Redis Cluster as one instance among two
// plain servers; the locked resources land on every master.
func TestConnCluster(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	c := redistest.StartCluster(t, 3)
	plain := redistest.Start(t, 2)
	// One seed node: the others are discovered. A release returns at a
	// quorum and the cluster's call finishes within NodeTimeout; after
	// SCRIPT FLUSH that call is an EVALSHA, its NOSCRIPT and an EVAL (a
	// cluster gets no SCRIPT LOAD), and on a loaded CI machine it once
	// outlived the default 500 ms: its key stayed for its TTL ("keys left:
	// cluster-2"). This test is about connection forms, not deadlines.
	cfg := connCfg
	cfg.NodeTimeout = 5 * time.Second
	// The cluster's calls and the test's steps, shown when the test fails
	// (diagnostic: the "keys left: cluster-2" failure is a top-up of the
	// lock's late extension after the release through the Attach handle,
	// TestTopUpAfterReleaseThroughAttach).
	var evMu sync.Mutex
	var events []string
	note := func(f string, a ...any) {
		evMu.Lock()
		events = append(events, time.Now().Format("15:04:05.000000 ")+fmt.Sprintf(f, a...))
		evMu.Unlock()
	}
	cfg.Observer = &callHook{onCall: func(e redlock.InstanceCallEvent) {
		if strings.Contains(e.Endpoint, "cluster") {
			note("call %s %s %v", e.Endpoint, e.Outcome, e.Duration)
		}
	}}
	t.Cleanup(func() {
		if t.Failed() {
			evMu.Lock()
			t.Logf("events:\n%s", strings.Join(events, "\n"))
			evMu.Unlock()
		}
	})
	m := newManagerAt(t, []string{"redis+cluster://" + c.Masters[0].Addr(), plain[0].Addr(), plain[1].Addr()}, cfg)

	// Lock resources until every master holds one.
	var locks []*redlock.Lock
	covered := func() bool {
		for _, s := range c.Masters {
			if len(s.Keys(t)) == 0 {
				return false
			}
		}
		return true
	}
	for i := 0; !covered(); i++ {
		if i == 64 {
			t.Fatalf("64 resources and still a master without a key")
		}
		l, err := m.Lock(ctx, "cluster-"+strconv.Itoa(i), redlock.TTL(20*time.Second))
		if err != nil {
			t.Fatalf("lock: %v", err)
		}
		locks = append(locks, l)
	}
	var onMasters []string
	for _, s := range c.Masters {
		onMasters = append(onMasters, s.Keys(t)...)
	}
	if len(onMasters) != len(locks) {
		t.Errorf("the masters hold %d keys %q for %d locks: each lock key must live on one master", len(onMasters), onMasters, len(locks))
	}
	// A lock returns at quorum: its call to the last instance may still be
	// on its way (under load this read "(nil)" on a plain instance).
	for _, l := range locks {
		if err := connEventually(ctx, func() error { return connWantKey(t, 0, l.Resource(), l.Token(), plain...) }); err != nil {
			t.Error(err)
		}
	}
	// Every operation on every lock (so on every master), after the
	// scripts were flushed everywhere.
	for _, s := range c.Masters {
		s.Do(t, "SCRIPT", "FLUSH")
	}
	for _, l := range locks {
		note("%s: is-locked, extend", l.Resource())
		if ok, err := m.IsLocked(ctx, l.Resource()); err != nil || !ok {
			t.Errorf("%s: is-locked = %v, %v", l.Resource(), ok, err)
		}
		if err := l.Extend(ctx, 30*time.Second); err != nil {
			t.Errorf("%s: extend: %v", l.Resource(), err)
		}
		err := connEventually(ctx, func() error { // the third instance catches up
			if d, err := l.TTL(ctx); err != nil || d <= 20*time.Second {
				return fmt.Errorf("%s: ttl after extend = %v, %w", l.Resource(), d, err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		note("%s: attach", l.Resource())
		a, err := m.Attach(ctx, l.Resource(), l.Token())
		if err != nil {
			t.Errorf("%s: attach: %v", l.Resource(), err)
			continue
		}
		note("%s: unlock", l.Resource())
		if err := a.Unlock(ctx); err != nil {
			t.Errorf("%s: unlock: %v", l.Resource(), err)
		}
		note("%s: unlocked", l.Resource())
	}
	note("wantNoKeys")
	wantNoKeys(t, append(append([]*redistest.Server{}, c.Masters...), plain...))

	// The struct form, the cluster alone, as a restricted ACL user (which
	// also needs CLUSTER SLOTS); and an existing cluster client.
	for _, s := range c.Masters {
		connSetUser(t, s, "locker", "pw-acl", append(append([]string{}, connMinimalACL...), "+cluster|slots"))
		s.Do(t, "ACL", "LOG", "RESET")
	}
	aclCfg := connCfg
	aclCfg.KeyPrefix = "lock:"
	alone := connNewEndpoints(t, []redlock.Endpoint{{ClusterAddrs: c.Addrs(), Username: "locker", Password: "pw-acl", PoolSize: 2}}, aclCfg)
	for i := 0; i < 6; i++ {
		if err := connExercise(ctx, alone, "cluster-alone-"+strconv.Itoa(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.Masters {
		if log := s.Do(t, "ACL", "LOG"); log != "" {
			t.Errorf("%s: ACL LOG shows denied commands:\n%s", s, log)
		}
	}
	existing := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()[:1], MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { existing.Close() })
	em, err := redlock.NewFromClients([]redlock.Client{goredis.New(existing)}, connCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { connClose(t, em) })
	if got, want := em.Endpoints()[0], "client[0] cluster "+c.Masters[0].Addr(); got != want {
		t.Errorf("existing cluster client named %q, want %q", got, want)
	}
	if err := connExercise(ctx, em, "cluster-existing", nil); err != nil {
		t.Fatal(err)
	}

	connWrongPasswordFails(t, "redis+cluster://nobody:"+connWrongPassword+"@"+c.Masters[1].Addr())
}

// TestConnExistingClients: go-redis clients the caller made work through
// NewFromClients(goredis.New(...)), and Close leaves them open.
func TestConnExistingClients(t *testing.T) {
	t.Parallel()
	ctx := connCtx(t)
	servers := redistest.Start(t, 3)
	var clients []redlock.Client
	var rcs []*redis.Client
	for i, s := range servers {
		rc := redis.NewClient(&redis.Options{Addr: s.Addr(), DB: i, MaxRetries: -1, DisableIdentity: true})
		t.Cleanup(func() { rc.Close() })
		rcs = append(rcs, rc)
		clients = append(clients, goredis.New(rc))
	}
	m, err := redlock.NewFromClients(clients, connCfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Endpoints()[1], "client[1] "+servers[1].Addr()+"/1"; got != want {
		t.Errorf("Endpoints()[1] = %q, want %q", got, want)
	}
	if err := connExercise(ctx, m, "existing", nil); err != nil {
		t.Fatal(err)
	}
	connClose(t, m)
	for i, rc := range rcs {
		if err := rc.Ping(ctx).Err(); err != nil {
			t.Errorf("client %d after Close: %v (Close must not close clients it did not dial)", i, err)
		}
	}
}

// ExampleParseEndpoint shows the endpoint forms and how they are named in
// errors and logs: as URLs, the password replaced by *******.
func ExampleParseEndpoint() {
	for _, s := range []string{
		"localhost:6379",
		"redis://:secret@localhost:6380/2",
		"redis://user:secret@localhost:6381/0?dial_timeout=250ms&pool_size=4",
		"rediss://:secret@redis.example.com:6380?ssl_cert_reqs=CERT_NONE",
		"rediss://redis.example.com:6380?ca_file=/etc/redis/ca.pem",
		"/var/run/redis/redis.sock",
		"unix:///var/run/redis/redis.sock?db=3",
		"redis://sentinel:26379/4?master=leader&encoding=utf-8",
		"redis+sentinel://s1:26379,s2:26379,s3:26379/4?master=leader",
		"redis+cluster://node1:7000,node2:7000",
	} {
		ep, err := redlock.ParseEndpoint(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(ep)
	}
	_, err := redlock.ParseEndpoint("redis://:secret@localhost:6379/x")
	fmt.Println(err)
	// Output:
	// redis://localhost:6379
	// redis://:*******@localhost:6380/2
	// redis://user:*******@localhost:6381
	// rediss://:*******@redis.example.com:6380
	// rediss://redis.example.com:6380
	// unix:///var/run/redis/redis.sock
	// unix:///var/run/redis/redis.sock?db=3
	// redis+sentinel://sentinel:26379/4?master=leader
	// redis+sentinel://s1:26379,s2:26379,s3:26379/4?master=leader
	// redis+cluster://node1:7000,node2:7000
	// redlock: invalid argument: endpoint "redis://:*******@localhost:6379/x": bad database number (want a non-negative integer)
}
