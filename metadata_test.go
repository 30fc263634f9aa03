package redlock_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// metaValue is what a metadata key holds for token and metadata: the
// token, length-prefixed, then the metadata (scripts/acquire.lua).
func metaValue(token, md string) string {
	return strconv.Itoa(len(token)) + ":" + token + "\n" + md
}

// bothPTTL reads the PTTL of key and of its metadata key in one script on
// s, so that both are read at the same moment.
func bothPTTL(t *testing.T, s *redistest.Server, key, meta string) (int64, int64) {
	t.Helper()
	out := s.Do(t, "EVAL", "return {redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2])}", "2", key, meta)
	a, b, ok := strings.Cut(out, "\n")
	if !ok {
		t.Fatalf("%s: PTTLs of %s and %s: %q", s, key, meta, out)
	}
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: PTTLs of %s and %s: %q", s, key, meta, out)
	}
	return x, y
}

// wantMetaBeside checks, on every server, that the metadata key meta holds
// md under l's token, with the TTL of the lock key (each is set from the
// other in one script: they differ by at most the millisecond the script
// may straddle; 5 ms allows for a slow machine), and that the lock key
// holds the token alone.
func wantMetaBeside(t *testing.T, servers []*redistest.Server, l *redlock.Lock, key, meta, md string) {
	t.Helper()
	wantKeyEverywhere(t, servers, key, l.Token(), time.Hour)
	for _, s := range servers {
		waitFor(t, 5*time.Second, s.String()+" to hold "+meta, func() bool { return get(t, s, meta) != "(nil)" })
		if got, want := get(t, s, meta), metaValue(l.Token(), md); got != want {
			t.Errorf("%s: GET %s = %q, want %q", s, meta, got, want)
		}
		if kp, mp := bothPTTL(t, s, key, meta); !sameTTL(kp, mp) {
			t.Errorf("%s: PTTL %s = %d, %s = %d: the metadata should expire with the lock", s, key, kp, meta, mp)
		}
	}
}

// sameTTL reports whether two PTTLs set in one script are positive and the
// same, give or take the few milliseconds the script may straddle.
func sameTTL(a, b int64) bool { return a > 0 && b > 0 && a-b <= 5 && b-a <= 5 }

// A lock with metadata stores it beside its key on every instance, with
// the key's TTL; Inspect, Attach and Lock.Metadata report it; Extend
// extends it (never shortens it); Unlock deletes it. The lock key holds the
// token alone.
func TestMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, prefix, resource, meta string
	}{
		{"plain", "", "job", "{job}:redlock-meta"},
		{"hash tag", "", "{user}:1", "{user}:1:redlock-meta"},
		{"KeyPrefix", "locks:", "job", "{locks:job}:redlock-meta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			servers := redistest.Start(t, 3)
			m := newManager(t, servers, redlock.Config{KeyPrefix: tc.prefix, NodeTimeout: 2 * time.Second})
			ctx := testCtx(t)
			key := tc.prefix + tc.resource
			md := `{"host":"h","pid":1}` + "\x00\xff binary is fine"

			l, err := m.Lock(ctx, tc.resource, redlock.TTL(20*time.Second), redlock.Metadata(md))
			if err != nil {
				t.Fatal(err)
			}
			if l.Metadata() != md {
				t.Errorf("Lock.Metadata() = %q, want %q", l.Metadata(), md)
			}
			wantMetaBeside(t, servers, l, key, tc.meta, md)

			states, err := m.Inspect(ctx, tc.resource)
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range states {
				if st.Token != l.Token() || st.Metadata != md || st.Err != nil || st.RTT <= 0 {
					t.Errorf("Inspect, instance %d: %+v; want the token, metadata %q and an RTT", i, st, md)
				}
			}

			a, err := m.Attach(ctx, tc.resource, l.Token())
			if err != nil {
				t.Fatal(err)
			}
			if a.Metadata() != md {
				t.Errorf("Attach: Metadata() = %q, want %q", a.Metadata(), md)
			}

			// A longer extension extends the metadata with the key; a shorter
			// one shortens neither.
			if err := l.Extend(ctx, 40*time.Second); err != nil {
				t.Fatal(err)
			}
			waitPTTLAbove(t, servers, key, 20_000)
			wantMetaBeside(t, servers, l, key, tc.meta, md)
			if err := l.Extend(ctx, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, s := range servers {
				if kp, mp := bothPTTL(t, s, key, tc.meta); kp <= 20_000 || mp <= 20_000 {
					t.Errorf("%s: after a shorter Extend, PTTL %d and %d: shortened", s, kp, mp)
				}
			}

			// The attached handle releases the metadata too.
			if err := a.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			wantNoKeys(t, servers)
		})
	}
}

// Without metadata a lock makes no metadata key, and Inspect reports none.
func TestMetadataNone(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	ctx := testCtx(t)
	for _, opts := range [][]redlock.LockOption{nil, {redlock.Metadata("")}} {
		l := holdEverywhere(t, m, servers, "plain", "plain", opts...)
		if err := l.Extend(ctx, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		for _, s := range servers {
			if keys := s.Keys(t); len(keys) != 1 || keys[0] != "plain" {
				t.Errorf("%s: keys %q, want the lock key alone", s, keys)
			}
		}
		states, err := m.Inspect(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range states {
			if st.Token != l.Token() || st.Metadata != "" || st.Fence != 0 {
				t.Errorf("instance %d: %+v", i, st)
			}
		}
		if a, err := m.Attach(ctx, "plain", l.Token()); err != nil || a.Metadata() != "" {
			t.Fatalf("Attach = %v, %v; want a handle without metadata", a, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		wantNoKeys(t, servers)
	}
}

// Bad metadata and reserved names fail with ErrInvalid before anything is
// sent: metadata over MaxMetadataLen, a resource whose key has the shape
// of a metadata key (with or without KeyPrefix; such a lock could
// overwrite another lock's metadata), and metadata for a key whose
// metadata key cannot share its cluster slot.
func TestMetadataInvalid(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	for _, prefix := range []string{"", "app:"} {
		m, cs := newCountingManager(t, servers, redlock.Config{KeyPrefix: prefix, NodeTimeout: 2 * time.Second})
		ctx := testCtx(t)
		big := strings.Repeat("x", redlock.MaxMetadataLen+1)
		tries := []struct {
			name string
			do   func() error
		}{
			{"metadata over MaxMetadataLen", func() error {
				_, err := m.Lock(ctx, "job", redlock.Metadata(big))
				return err
			}},
			{"LockMany, metadata over MaxMetadataLen", func() error {
				_, err := m.LockMany(ctx, []string{"a", "b"}, redlock.Metadata(big))
				return err
			}},
			{"metadata for a key with '}' and no hash tag", func() error {
				_, err := m.Lock(ctx, "a}b", redlock.Metadata("x"))
				return err
			}},
			{"metadata for a key with an empty hash tag", func() error {
				_, err := m.Lock(ctx, "x{}y", redlock.Metadata("x"))
				return err
			}},
		}
		for _, res := range []string{"{job}:redlock-meta", "job:redlock-meta", "{user}:1:redlock-meta"} {
			tries = append(tries,
				struct {
					name string
					do   func() error
				}{"Lock(" + res + ")", func() error {
					_, err := m.Lock(ctx, res, redlock.Token(metaValue("t", "x")))
					return err
				}},
				struct {
					name string
					do   func() error
				}{"LockMany(" + res + ")", func() error {
					_, err := m.LockMany(ctx, []string{"ok", res})
					return err
				}},
				struct {
					name string
					do   func() error
				}{"ForceRelease(" + res + ")", func() error {
					_, err := m.ForceRelease(ctx, res)
					return err
				}},
				struct {
					name string
					do   func() error
				}{"Inspect(" + res + ")", func() error {
					_, err := m.Inspect(ctx, res)
					return err
				}},
				struct {
					name string
					do   func() error
				}{"Attach(" + res + ")", func() error {
					_, err := m.Attach(ctx, res, "t")
					return err
				}},
			)
		}
		for _, tr := range tries {
			if err := tr.do(); !errors.Is(err, redlock.ErrInvalid) {
				t.Errorf("prefix %q: %s: %v, want ErrInvalid", prefix, tr.name, err)
			}
		}
		if n := cs.total(); n != 0 {
			t.Errorf("prefix %q: %d script calls for invalid requests, want none", prefix, n)
		}
		// At the limit it works; and a key with '}' works without metadata.
		l, err := m.Lock(ctx, "job", redlock.TTL(time.Minute), redlock.Metadata(big[1:]))
		if err != nil {
			t.Fatalf("metadata of MaxMetadataLen bytes: %v", err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		l, err = m.Lock(ctx, "a}b", redlock.TTL(time.Minute))
		if err != nil {
			t.Fatalf("a key with '}' without metadata: %v", err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		wantNoKeys(t, servers)
	}
}

// A re-lock with the same token replaces the metadata (refresh); one
// without Metadata leaves it. Metadata stored under another token (left by
// an earlier holder whose key was deleted by other means) is not reported
// as the new holder's, and a fresh lock with metadata replaces it.
func TestMetadataRefreshAndStale(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	ctx := testCtx(t)

	l1 := holdEverywhere(t, m, servers, "r", "r", redlock.Metadata("first"))
	l2, err := m.Lock(ctx, "r", redlock.TTL(time.Minute), redlock.Token(l1.Token()), redlock.Metadata("second"))
	if err != nil {
		t.Fatal(err)
	}
	wantMetaBeside(t, servers, l2, "r", "{r}:redlock-meta", "second")
	if _, err := m.Lock(ctx, "r", redlock.TTL(time.Minute), redlock.Token(l1.Token())); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if got := get(t, s, "{r}:redlock-meta"); got != metaValue(l1.Token(), "second") {
			t.Errorf("%s: after a re-lock without Metadata: %q", s, got)
		}
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoKeys(t, servers)

	// Stale metadata of another token, and a key of another type.
	servers[0].Do(t, "SET", "{s}:redlock-meta", metaValue("old-token", "old holder"), "PX", "60000")
	servers[1].Do(t, "LPUSH", "{s}:redlock-meta", "not a string")
	servers[2].Do(t, "SET", "{s}:redlock-meta", "garbage", "PX", "60000")
	l := holdEverywhere(t, m, servers, "s", "s")
	states, err := m.Inspect(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if st.Token != l.Token() || st.Metadata != "" || st.Err != nil {
			t.Errorf("instance %d: %+v; want the token and no metadata", i, st)
		}
	}
	if err := l.Extend(ctx, 2*time.Minute); err != nil {
		t.Fatalf("Extend with a foreign metadata key: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The lock had no metadata: the foreign keys are left alone.
	if got := get(t, servers[0], "{s}:redlock-meta"); got != metaValue("old-token", "old holder") {
		t.Errorf("stale metadata changed: %q", got)
	}
	// Unlock returns at quorum: the next Lock's acquire could otherwise
	// reach the last instance before this release and be refused there.
	for _, s := range servers {
		waitFor(t, 5*time.Second, s.String()+" to release s", func() bool { return get(t, s, "s") == "(nil)" })
	}
	l = holdEverywhere(t, m, servers, "s", "s", redlock.Metadata("new"))
	wantMetaBeside(t, servers, l, "s", "{s}:redlock-meta", "new")
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoKeys(t, servers)
}

// A failed attempt's clean-up deletes the metadata it set; a top-up after
// an extension restores it with the key; ForceRelease deletes it.
func TestMetadataCleanupTopUpForceRelease(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second})
	ctx := testCtx(t)

	// Another token on two instances: the attempt sets the key and the
	// metadata on the third only, and its clean-up (which TryLock waits
	// for there) deletes both.
	servers[0].Do(t, "SET", "c", "other", "PX", "60000")
	servers[1].Do(t, "SET", "c", "other", "PX", "60000")
	if _, err := m.TryLock(ctx, "c", redlock.Metadata("md")); !errors.Is(err, redlock.ErrNotAcquired) {
		t.Fatalf("TryLock: %v, want ErrNotAcquired", err)
	}
	if keys := servers[2].Keys(t); len(keys) != 0 {
		t.Errorf("after the failed attempt's clean-up: %q", keys)
	}
	for _, s := range servers[:2] {
		s.Do(t, "DEL", "c")
	}

	// Top-up: an instance that lost both keys gets both back.
	l := holdEverywhere(t, m, servers, "t", "t", redlock.Metadata("md"))
	servers[1].Do(t, "FLUSHALL")
	if err := l.Extend(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the metadata back on the flushed instance", func() bool {
		return get(t, servers[1], "{t}:redlock-meta") == metaValue(l.Token(), "md")
	})
	if kp, mp := bothPTTL(t, servers[1], "t", "{t}:redlock-meta"); !sameTTL(kp, mp) {
		t.Errorf("restored keys' PTTL %d and %d, want equal and positive", kp, mp)
	}

	// ForceRelease deletes the metadata with the key.
	states, err := m.ForceRelease(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if st.Token != l.Token() || st.Err != nil {
			t.Errorf("ForceRelease, instance %d: %+v", i, st)
		}
	}
	wantNoKeysNow(t, servers)
}

// An auto-extended lock with metadata keeps it extended (by a timer of
// its own: the batched extender does not carry metadata keys). TTL 2s: an
// extension may be 780ms late (0.4×TTL less the drift) before the lease
// runs out; with TTL 1s a loaded -race run overran the 388ms once (the
// lock lost, "timed out after 20s waiting for three automatic extensions").
func TestMetadataAutoExtend(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	rec := &recorder{}
	m := newManager(t, servers, redlock.Config{DefaultTTL: 2 * time.Second, NodeTimeout: loadedNodeTimeout, Observer: rec})
	ctx := testCtx(t)
	l, err := m.Lock(ctx, "auto", redlock.Metadata("md"))
	if err != nil {
		t.Fatal(err)
	}
	wantMetaBeside(t, servers, l, "auto", "{auto}:redlock-meta", "md")
	// Three automatic extensions: without the metadata's, it would have
	// expired after its first two seconds.
	waitFor(t, 20*time.Second, "three automatic extensions", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, e := range rec.extended {
			if e.Auto && e.Outcome == redlock.OutcomeOK {
				n++
			}
		}
		return n >= 3
	})
	if !l.Valid() {
		t.Fatal("lock lost")
	}
	wantMetaBeside(t, servers, l, "auto", "{auto}:redlock-meta", "md")
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoKeys(t, servers)
}

// LockMany stores the metadata beside each of its keys, fenced or not;
// Inspect reports it for each resource; extensions and Unlock keep and
// delete every one.
func TestMetadataLockMany(t *testing.T) {
	t.Parallel()
	for _, fenced := range []bool{false, true} {
		t.Run(fmt.Sprintf("fenced=%v", fenced), func(t *testing.T) {
			t.Parallel()
			servers := redistest.Start(t, 3)
			m := newManager(t, servers, redlock.Config{NodeTimeout: 2 * time.Second, Fencing: fenced})
			ctx := testCtx(t)
			res := []string{"{o}:a", "{o}:b", "{o}:c"}
			l, err := m.LockMany(ctx, res, redlock.TTL(20*time.Second), redlock.Metadata("many"))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				wantMetaBeside(t, servers, l, r, r+":redlock-meta", "many")
				states, err := m.Inspect(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				for i, st := range states {
					if st.Token != l.Token() || st.Metadata != "many" {
						t.Errorf("%s, instance %d: %+v", r, i, st)
					}
					if fenced && st.Fence != l.Fence() && st.Fence != 0 {
						t.Errorf("%s, instance %d: fence %d, the lock's %d", r, i, st.Fence, l.Fence())
					}
				}
			}
			if err := l.Extend(ctx, 40*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				waitPTTLAbove(t, servers, r, 20_000)
				wantMetaBeside(t, servers, l, r, r+":redlock-meta", "many")
			}
			// Top-up of the whole set.
			servers[2].Do(t, "FLUSHALL")
			if err := l.Extend(ctx, 40*time.Second); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the set back on the flushed instance", func() bool {
				for _, r := range res {
					if get(t, servers[2], r+":redlock-meta") != metaValue(l.Token(), "many") {
						return false
					}
				}
				return true
			})
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			for _, s := range servers {
				waitFor(t, 5*time.Second, "no lock or metadata key", func() bool {
					for _, k := range s.Keys(t) {
						if !strings.HasSuffix(k, ":redlock-fence") {
							return false
						}
					}
					return true
				})
			}
		})
	}
}

// Inspect reports each instance's fencing counter and round-trip time: 0
// for an instance that did not answer.
func TestInspectFenceAndRTT(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	m := newManager(t, servers, redlock.Config{NodeTimeout: 500 * time.Millisecond})
	ctx := testCtx(t)
	l := holdEverywhere(t, m, servers, "f", "f", redlock.Fenced())
	want := strconv.FormatUint(l.Fence(), 10)
	for _, s := range servers {
		waitFor(t, 5*time.Second, "the counter on "+s.String(), func() bool { return get(t, s, "{f}:redlock-fence") == want })
	}
	states, err := m.Inspect(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if st.Fence != l.Fence() || st.RTT <= 0 || st.Token != l.Token() {
			t.Errorf("instance %d: %+v; want fence %d and an RTT", i, st, l.Fence())
		}
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The counter outlives the lock.
	servers[1].Kill(t)
	states, err = m.Inspect(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		switch {
		case i == 1 && (st.Err == nil || st.Fence != 0):
			t.Errorf("instance down: %+v; want Err", st)
		case i != 1 && (st.Token != "" || st.Fence != l.Fence() || st.RTT <= 0):
			t.Errorf("instance %d after Unlock: %+v; want no token, fence %d", i, st, l.Fence())
		}
	}
}
