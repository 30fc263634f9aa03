package redlock_test

// Sixth attack review: commit 5540eab, whose refresh paths (acquire,
// rw_write_acquire, rw_read_acquire and the extensions) always write the
// lease back (PEXPIRE to max(PTTL, TTL); a reader's share re-added with
// the larger score) so that a read-only replica answers READONLY instead
// of voting yes.
//
// Findings:
//   TestAttack6RefreshNeverMovesDeadlineEarlier
//                       none: every refresh path keeps the key's deadline to the
//                       millisecond (PEXPIRETIME; a reader's score exactly); seen
//                       failing with extend.lua's PEXPIRE of the TTL restored
//   TestAttack6ScriptClockWriteBack
//                       doc: Redis 7.0 does not freeze a script's clock for PTTL and
//                       PEXPIRE; the write-back gains the time between the calls,
//                       never loses it (design.md said frozen, and "lose")
//   TestAttack6WaiterWakesPerRefresh
//                       cost, no storm: with CLIENT TRACKING a refresh asking for no
//                       longer a lease (re-lock by token, shorter Extend) now wakes
//                       the waiters behind it, as every lengthening extension does:
//                       8 refreshes, 48 acquire calls of a waiter over 3 instances
//                       (0 with the scripts of 5540eab~1)
//   TestAttack6ReplicaNeverVotesYesMore
//                       none left: Semaphore, Election, fenced Lock, metadata paths,
//                       and the extensions of held handles (extend_many,
//                       rw_read_extend, extend for a writer, the watchdog's
//                       extend_batch) are all refused by both replicas; the
//                       extensions were granted with the scripts of 5540eab~1 (seen
//                       failing there: "LockMany.Extend over a master and its
//                       replicas: granted", and the watchdog lock never lost)

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
	rueidisadapter "github.com/redlock-go/redlock/rueidis"
)

// wakeCounter is a Client and KeyWatcher over the rueidis adapter (CLIENT
// TRACKING: any write of a watched key, a new expiry time too, is a
// change) that counts its script calls per SHA1 and the watches it starts.
type wakeCounter struct {
	*rueidisadapter.Client
	mu      sync.Mutex
	bySHA   map[string]int
	watches atomic.Int32
}

func (c *wakeCounter) count(sha string) {
	c.mu.Lock()
	if c.bySHA == nil {
		c.bySHA = make(map[string]int)
	}
	c.bySHA[sha]++
	c.mu.Unlock()
}

func (c *wakeCounter) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	c.count(sha)
	return c.Client.EvalSha(ctx, sha, keys, args)
}

func (c *wakeCounter) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	h := sha1.Sum([]byte(script))
	c.count(hex.EncodeToString(h[:]))
	return c.Client.Eval(ctx, script, keys, args)
}

func (c *wakeCounter) calls(script string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySHA[redlock.ScriptSHA(script)]
}

func (c *wakeCounter) WatchKeys(ctx context.Context, onChange func(string)) (redlock.KeyWatch, error) {
	kw, err := c.Client.WatchKeys(ctx, onChange)
	if err != nil {
		return nil, err
	}
	return &wakeCountedWatch{KeyWatch: kw, c: c}, nil
}

type wakeCountedWatch struct {
	redlock.KeyWatch
	c *wakeCounter
}

func (w *wakeCountedWatch) Watch(ctx context.Context, key string) (bool, error) {
	w.c.watches.Add(1)
	return w.KeyWatch.Watch(ctx, key)
}

// newWakeCounterManager builds a Manager over rueidis clients wrapped in
// wakeCounters.
func newWakeCounterManager(t *testing.T, servers []*redistest.Server, cfg redlock.Config) (*redlock.Manager, []*wakeCounter) {
	t.Helper()
	ws := make([]*wakeCounter, len(servers))
	clients := make([]redlock.Client, len(servers))
	for i, s := range servers {
		rc, err := rd.NewClient(rd.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rc.Close)
		ws[i] = &wakeCounter{Client: rueidisadapter.New(rc)}
		clients[i] = ws[i]
	}
	m, err := redlock.NewFromClients(clients, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeQuietly(t, m) })
	return m, ws
}

// settle polls (bounded) until f's value has not changed for quiet, or
// limit passed; it returns the value. It measures, it asserts nothing.
func settle(f func() int, quiet, limit time.Duration) int {
	end := time.Now().Add(limit)
	v, since := f(), time.Now()
	for time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
		if n := f(); n != v {
			v, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			break
		}
	}
	return v
}

// TestAttack6WaiterWakesPerRefresh measures the acquire calls of a
// waiter (LockWait, 30 s retry delay, so every attempt after the first is
// a wake-up) blocked behind a holder on another Manager that refreshes its
// lease K times, per kind of refresh. With CLIENT TRACKING every write of
// the lock key wakes the waiter; the write-back makes the refreshes that
// ask for less than the key has (a re-lock by token, an Extend, shorter)
// writes. The assertion is on counts only: no storm, at most one retry
// per instance's invalidation per refresh (N×N acquire calls).
func TestAttack6WaiterWakesPerRefresh(t *testing.T) {
	const k = 8
	kinds := []struct {
		name    string
		ttl     time.Duration // the holder's lease
		refresh func(ctx context.Context, t *testing.T, holder *redlock.Manager, l *redlock.Lock, res, tok string)
	}{
		{"relock-shorter", time.Minute, func(ctx context.Context, t *testing.T, holder *redlock.Manager, l *redlock.Lock, res, tok string) {
			if _, err := holder.Lock(ctx, res, redlock.Token(tok), redlock.TTL(5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}},
		{"extend-shorter", time.Minute, func(ctx context.Context, t *testing.T, holder *redlock.Manager, l *redlock.Lock, res, tok string) {
			if err := l.Extend(ctx, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}},
		// The lease (30 s) outlasts the set-up before the first refresh
		// (the waiter's watches, at most 20 s, and a settle of at most
		// 2 s): a shorter one could run out on a loaded machine and let
		// the waiter in.
		{"extend-longer", 30 * time.Second, func(ctx context.Context, t *testing.T, holder *redlock.Manager, l *redlock.Lock, res, tok string) {
			// what an auto-extension does: the lease is renewed to the TTL
			if err := l.Extend(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			servers := redistest.Start(t, 3)
			// 5 s NodeTimeout: the refreshes must not time out on a
			// loaded machine (the test counts wake-ups, not deadlines).
			holder := newManager(t, servers, redlock.Config{NodeTimeout: 5 * time.Second})
			const tok = "attack6-wake-token-0123456789abcdef"
			res := "wake6-" + kind.name
			l, err := holder.Lock(ctx, res, redlock.Token(tok), redlock.TTL(kind.ttl))
			if err != nil {
				t.Fatal(err)
			}
			waiter, ws := newWakeCounterManager(t, servers, redlock.Config{RetryDelayMin: 30 * time.Second, RetryDelayMax: 30 * time.Second, NodeTimeout: 5 * time.Second})
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if wl, err := waiter.LockWait(wctx, res, redlock.TTL(10*time.Second)); err == nil {
					t.Errorf("the waiter acquired while the holder holds: %v", wl)
				}
			}()
			t.Cleanup(func() { cancel(); <-done })
			watches := func() int {
				n := 0
				for _, w := range ws {
					n += int(w.watches.Load())
				}
				return n
			}
			acquires := func() int {
				n := 0
				for _, w := range ws {
					n += w.calls("acquire")
				}
				return n
			}
			waitFor(t, 20*time.Second, "the waiter's watches on a quorum", func() bool { return watches() >= 2 })
			base := settle(acquires, 200*time.Millisecond, 2*time.Second)
			for i := 0; i < k; i++ {
				kind.refresh(ctx, t, holder, l, res, tok)
				settle(acquires, 200*time.Millisecond, 2*time.Second)
			}
			got := settle(acquires, 200*time.Millisecond, 2*time.Second) - base
			t.Logf("MEASURE %s: %d refreshes, waiter acquire calls %d (first attempt %d), watches %d", kind.name, k, got, base, watches())
			if limit := k * len(servers) * len(servers); got > limit {
				t.Errorf("%s: the waiter made %d acquire calls over %d refreshes, more than %d (one retry per instance's invalidation per refresh): a wake-up storm", kind.name, got, k, limit)
			}
		})
	}
}

// TestAttack6ReplicaNeverVotesYesMore extends TestReplicaNeverVotesYes to
// the API paths it does not cover, over the same misconfiguration (a
// Manager over a master and two of its replicas): the acquisitions whose
// scripts find a free key or another token (Semaphore, Election, a fenced
// Lock), and the extensions of handles the misconfigured Manager holds
// (LockMany's extend_many, a reader's rw_read_extend, the watchdog's
// extend_batch). For those, the three servers start as independent
// masters; the handles are taken on all three, then refreshed on the
// first alone to a longer lease by token (so that the refresh paths find
// a lease already long enough), and only then do the other two become its
// replicas. Every extension must then be refused READONLY by both.
func TestAttack6ReplicaNeverVotesYesMore(t *testing.T) {
	t.Run("acquisitions", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		master := redistest.Start(t, 1)[0]
		replicas := replicasOf(t, master, 2)
		// 5 s NodeTimeout: the holds on the master alone must not time
		// out on a loaded machine (the test is about votes, not deadlines).
		one := newManager(t, []*redistest.Server{master}, redlock.Config{RetryCount: 1, NodeTimeout: 5 * time.Second})
		mis := newMisconfiguredManager(t, master, replicas)
		const tok = "attack6-replica-token-0123456789abcdef"
		if _, err := one.Semaphore("sem6", 2).Acquire(ctx, redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Lock(ctx, "fenced6", redlock.Token(tok), redlock.Fenced(), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Lock(ctx, "fenced6-meta", redlock.Token(tok), redlock.Fenced(), redlock.Metadata("m"), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.RWMutex("rwmeta6").Lock(ctx, redlock.Token(tok), redlock.Metadata("m"), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.RWMutex("rrmeta6").RLock(ctx, redlock.Token(tok), redlock.Metadata("m"), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		waitReplicated(t, master, replicas)
		tries := []struct {
			name string
			try  func(ctx context.Context) error
		}{
			{"Semaphore.Acquire", func(ctx context.Context) error {
				_, err := mis.Semaphore("sem6", 2).Acquire(ctx, redlock.TTL(10*time.Second))
				return err
			}},
			{"Semaphore.Acquire-free", func(ctx context.Context) error {
				_, err := mis.Semaphore("sem6-free", 2).Acquire(ctx, redlock.TTL(10*time.Second))
				return err
			}},
			{"Election.Campaign", func(ctx context.Context) error {
				_, err := mis.Election("elect6").Campaign(ctx, "v")
				return err
			}},
			{"Lock-fenced", func(ctx context.Context) error {
				_, err := mis.Lock(ctx, "fenced6", redlock.Token(tok), redlock.Fenced(), redlock.TTL(10*time.Second))
				return err
			}},
			{"Lock-fenced-metadata", func(ctx context.Context) error {
				_, err := mis.Lock(ctx, "fenced6-meta", redlock.Token(tok), redlock.Fenced(), redlock.Metadata("m"), redlock.TTL(10*time.Second))
				return err
			}},
			{"RWMutex.Lock-metadata", func(ctx context.Context) error {
				_, err := mis.RWMutex("rwmeta6").Lock(ctx, redlock.Token(tok), redlock.Metadata("m"), redlock.TTL(10*time.Second))
				return err
			}},
			{"RWMutex.RLock-metadata", func(ctx context.Context) error {
				_, err := mis.RWMutex("rrmeta6").RLock(ctx, redlock.Token(tok), redlock.Metadata("m"), redlock.TTL(10*time.Second))
				return err
			}},
		}
		for _, c := range tries {
			// bounded: a waiting path (Campaign) ends with ctx
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.try(cctx)
			cancel()
			if err == nil {
				t.Errorf("%s over a master and its replicas: granted", c.name)
				continue
			}
			t.Logf("%s: %v", c.name, err)
		}
	})
	t.Run("extensions", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		servers := redistest.Start(t, 3)
		// mis's Close fails to release through the replicas: not what this
		// tests. 5 s NodeTimeout (a call is still never longer than its
		// lock's TTL): the handles must be taken on a loaded machine, and
		// the test is about votes, not deadlines.
		mis, err := redlock.New(addrs(servers), redlock.Config{RetryCount: 1, DefaultTTL: 3 * time.Second, NodeTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mis.Close(context.Background()) })
		one := newManager(t, servers[:1], redlock.Config{RetryCount: 1, NodeTimeout: 5 * time.Second})
		const tok = "attack6-replica-ext-token-0123456789ab"
		many, err := mis.LockMany(ctx, []string{"many6-a", "many6-b"}, redlock.Token(tok), redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		reader, err := mis.RWMutex("rw6").RLock(ctx, redlock.Token(tok), redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		writer, err := mis.RWMutex("rw6-w").Lock(ctx, redlock.Token(tok), redlock.TTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		auto, err := mis.Lock(ctx, "auto6", redlock.Token(tok)) // auto-extended: DefaultTTL 3 s
		if err != nil {
			t.Fatal(err)
		}
		// On the first instance alone, the leases become longer than any
		// extension below asks for.
		if _, err := one.LockMany(ctx, []string{"many6-a", "many6-b"}, redlock.Token(tok), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.RWMutex("rw6").RLock(ctx, redlock.Token(tok), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.RWMutex("rw6-w").Lock(ctx, redlock.Token(tok), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Lock(ctx, "auto6", redlock.Token(tok), redlock.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, r := range servers[1:] {
			r.Do(t, "REPLICAOF", "127.0.0.1", fmt.Sprint(servers[0].Port()))
		}
		for _, r := range servers[1:] {
			waitFor(t, 20*time.Second, r.String()+" in sync with its master", func() bool {
				return strings.Contains(r.Do(t, "INFO", "replication"), "master_link_status:up")
			})
		}
		waitReplicated(t, servers[0], servers[1:])
		for _, c := range []struct {
			name string
			l    *redlock.Lock
		}{{"LockMany.Extend", many}, {"RLock.Extend", reader}, {"RWMutex.Lock.Extend", writer}} {
			err := c.l.Extend(ctx, 10*time.Second)
			if err == nil {
				t.Errorf("%s over a master and its replicas: granted", c.name)
				continue
			}
			t.Logf("%s: %v", c.name, err)
		}
		// The watchdog extends auto6 every 1.8 s; refused by both
		// replicas, the lock runs out within its 3 s lease.
		waitClosed(t, auto.Lost(), 20*time.Second, "the auto-extended lock lost (its watchdog's extensions refused by both replicas)")
	})
}

// waitReplicated waits until every replica has every write of master so
// far.
func waitReplicated(t *testing.T, master *redistest.Server, replicas []*redistest.Server) {
	t.Helper()
	want := replOffset(t, master, "master_repl_offset")
	for _, r := range replicas {
		waitFor(t, 20*time.Second, r.String()+" at the master's offset", func() bool {
			return replOffset(t, r, "slave_repl_offset") >= want
		})
	}
}

// TestAttack6RefreshNeverMovesDeadlineEarlier: the write-back of every
// refresh path, to the millisecond (PEXPIRETIME, and a reader's score
// exactly): a re-lock by token or an extension asking for less than the
// key has leaves the key's deadline where it was or later, never
// earlier, for each script that now writes the lease back: acquire (with
// and without metadata), rw_write_acquire, extend, extend_many,
// extend_batch (the watchdog), rw_read_acquire and rw_read_extend.
func TestAttack6RefreshNeverMovesDeadlineEarlier(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 1)
	s := servers[0]
	if v := s.Do(t, "PEXPIRETIME", "none"); v != "-2" {
		t.Skipf("no PEXPIRETIME (Redis < 7): %q", v)
	}
	// 5 s NodeTimeout: no refresh (and no watchdog extension of dl-auto,
	// whose calls its 2 s TTL bounds) may time out on a loaded machine;
	// the test is about deadlines on the server, not the client's.
	m, cs := newCountingManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: 5 * time.Second})
	const tok = "attack6-deadline-token-0123456789abcd"
	hour, second := redlock.TTL(time.Hour), redlock.TTL(time.Second)
	deadline := func(key string) int64 {
		t.Helper()
		n, err := strconv.ParseInt(s.Do(t, "PEXPIRETIME", key), 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("PEXPIRETIME %s: %d, %v", key, n, err)
		}
		return n
	}
	// check runs refresh, then wants every key's deadline no earlier.
	check := func(what string, keys []string, refresh func() error) {
		t.Helper()
		before := make([]int64, len(keys))
		for i, k := range keys {
			before[i] = deadline(k)
		}
		if err := refresh(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for i, k := range keys {
			if after := deadline(k); after < before[i] {
				t.Errorf("%s: %s's deadline moved %d ms earlier", what, k, before[i]-after)
			} else {
				t.Logf("%s: %s's deadline moved %d ms later", what, k, after-before[i])
			}
		}
	}

	l, err := m.Lock(ctx, "dl-lock", redlock.Token(tok), hour)
	if err != nil {
		t.Fatal(err)
	}
	check("acquire", []string{"dl-lock"}, func() error { _, err := m.Lock(ctx, "dl-lock", redlock.Token(tok), second); return err })
	check("extend", []string{"dl-lock"}, func() error { return l.Extend(ctx, time.Second) })

	lm, err := m.Lock(ctx, "dl-meta", redlock.Token(tok), redlock.Metadata("m"), hour)
	if err != nil {
		t.Fatal(err)
	}
	check("acquire+metadata", []string{"dl-meta", "{dl-meta}:redlock-meta"}, func() error {
		_, err := m.Lock(ctx, "dl-meta", redlock.Token(tok), redlock.Metadata("m"), second)
		return err
	})
	check("extend+metadata", []string{"dl-meta", "{dl-meta}:redlock-meta"}, func() error { return lm.Extend(ctx, time.Second) })

	w, err := m.RWMutex("dl-rw").Lock(ctx, redlock.Token(tok), hour)
	if err != nil {
		t.Fatal(err)
	}
	check("rw_write_acquire", []string{"dl-rw"}, func() error { _, err := m.RWMutex("dl-rw").Lock(ctx, redlock.Token(tok), second); return err })
	check("extend (writer)", []string{"dl-rw"}, func() error { return w.Extend(ctx, time.Second) })

	many, err := m.LockMany(ctx, []string{"dl-a", "dl-b"}, redlock.Token(tok), hour)
	if err != nil {
		t.Fatal(err)
	}
	check("acquire_many", []string{"dl-a", "dl-b"}, func() error {
		_, err := m.LockMany(ctx, []string{"dl-a", "dl-b"}, redlock.Token(tok), second)
		return err
	})
	check("extend_many", []string{"dl-a", "dl-b"}, func() error { return many.Extend(ctx, time.Second) })

	r, err := m.RWMutex("dl-r").RLock(ctx, redlock.Token(tok), hour)
	if err != nil {
		t.Fatal(err)
	}
	readers := "{dl-r}:redlock-readers"
	score0 := s.Do(t, "ZSCORE", readers, tok)
	check("rw_read_acquire", []string{readers}, func() error { _, err := m.RWMutex("dl-r").RLock(ctx, redlock.Token(tok), second); return err })
	check("rw_read_extend", []string{readers}, func() error { return r.Extend(ctx, time.Second) })
	if score := s.Do(t, "ZSCORE", readers, tok); score != score0 {
		t.Errorf("the reader's share: score %s after the refreshes, was %s", score, score0)
	}

	// The watchdog: an auto-extended lock (2 s) whose key a re-lock by
	// token made last an hour; its next extend_batch must keep the hour.
	auto, err := m.Lock(ctx, "dl-auto", redlock.Token(tok+"-auto"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock(ctx, "dl-auto", redlock.Token(tok+"-auto"), hour); err != nil {
		t.Fatal(err)
	}
	check("extend_batch", []string{"dl-auto"}, func() error {
		n := cs.calls("extend_batch")
		waitFor(t, 20*time.Second, "a watchdog extension returned", func() bool {
			return cs.calls("extend_batch") > n && cs[0].returned.Load() == cs[0].evalsha.Load()
		})
		return nil
	})
	_ = auto
}

// TestAttack6ScriptClockWriteBack checks the premise of the write-back on
// the server under test: a PTTL read in a script and written back with
// PEXPIRE later in the same script moves the deadline later by the time
// between the two calls (PEXPIRE counts from a clock no earlier than the
// one PTTL read), never earlier. design.md said that Redis 7 freezes a
// script's clock so that the deadline stays where it was, and that older
// servers could lose the millisecond between the calls: on Redis 7.0 the
// clock is not frozen (the busy loop below shows in the deadline), and the
// time is gained, not lost.
func TestAttack6ScriptClockWriteBack(t *testing.T) {
	s := redistest.Start(t, 1)[0]
	if v := s.Do(t, "PEXPIRETIME", "none"); v != "-2" {
		t.Skipf("no PEXPIRETIME (Redis < 7): %q", v)
	}
	s.Do(t, "SET", "clock", "v", "PX", "600000")
	const script = `local e0 = redis.call('PEXPIRETIME', KEYS[1])
local keep = redis.call('PTTL', KEYS[1])
local x = 0
for i = 1, 3000000 do x = x + i end
redis.call('PEXPIRE', KEYS[1], keep)
return {e0, redis.call('PEXPIRETIME', KEYS[1])}`
	out := strings.Fields(s.Do(t, "EVAL", script, "1", "clock"))
	if len(out) != 2 {
		t.Fatalf("EVAL: %q", out)
	}
	e0, err0 := strconv.ParseInt(out[0], 10, 64)
	e1, err1 := strconv.ParseInt(out[1], 10, 64)
	if err0 != nil || err1 != nil {
		t.Fatalf("EVAL: %q", out)
	}
	if e1 < e0 {
		t.Fatalf("PTTL then PEXPIRE in one script moved the deadline %d ms earlier", e0-e1)
	}
	t.Logf("PTTL then PEXPIRE of it, a busy loop between, moved the deadline %d ms later", e1-e0)
}
