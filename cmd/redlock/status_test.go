package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

func statusJSONOf(t *testing.T, r result) statusJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json output is not JSON: %v\n%v", err, r)
	}
	return st
}

// status --json agrees with the library: Manager.IsLocked, the holder's
// token, and a TTL between two readings of Lock.TTL.
func TestStatusJSONMatchesLibrary(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	l := lockEverywhere(t, m, servers, "held")
	// A contended resource: a key on every instance, no token on a quorum.
	for i, s := range servers {
		s.Do(t, "SET", "split", "token-"+string(rune('a'+i)), "PX", "60000")
	}

	// Lock.TTL is the smallest PTTL among the first quorum to answer: an
	// upper bound of the smallest among all. Each instance's PTTL only falls.
	ttlBefore, err := l.TTL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var before []time.Duration
	for _, s := range servers {
		before = append(before, pttl(t, s, "held"))
	}
	r := cli(ctx, args(a("status", "--json"), redisFlags(servers), a("held", "free", "split"))...)
	var after []time.Duration
	for _, s := range servers {
		after = append(after, pttl(t, s, "held"))
	}
	if r.code != 0 {
		t.Fatalf("status: %v", r)
	}
	st := statusJSONOf(t, r)
	if st.Quorum != m.Quorum() || st.N != 3 || len(st.Resources) != 3 {
		t.Fatalf("status: quorum %d n %d resources %d; want %d, 3, 3\n%v", st.Quorum, st.N, len(st.Resources), m.Quorum(), r)
	}
	for _, rs := range st.Resources {
		locked, err := m.IsLocked(ctx, rs.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if rs.Locked != locked {
			t.Errorf("%s: status says locked=%v, Manager.IsLocked says %v", rs.Resource, rs.Locked, locked)
		}
		if len(rs.Instances) != 3 {
			t.Fatalf("%s: %d instances in the status", rs.Resource, len(rs.Instances))
		}
	}
	held, free, split := st.Resources[0], st.Resources[1], st.Resources[2]
	if held.Verdict != verdictHeld || held.Holder != l.Token() || held.Votes != 3 {
		t.Errorf("held: verdict %q holder %q votes %d; want held, %q, 3", held.Verdict, held.Holder, held.Votes, l.Token())
	}
	least := time.Duration(-1)
	for i, is := range held.Instances {
		ttl := time.Duration(is.TTLMillis) * time.Millisecond
		if is.State != "held" || is.Token != l.Token() || is.Error != "" || ttl > before[i] || ttl < after[i] {
			t.Errorf("held: instance %+v; PTTL read %v before and %v after", is, before[i], after[i])
		}
		if least < 0 || ttl < least {
			least = ttl
		}
	}
	if ttl := time.Duration(held.TTLMillis) * time.Millisecond; ttl != least || ttl > ttlBefore {
		t.Errorf("held: ttl %v; the instances' smallest is %v, Lock.TTL read %v before", ttl, least, ttlBefore)
	}
	if free.Verdict != verdictFree || free.Holder != "" || free.TTLMillis != 0 {
		t.Errorf("free: %+v", free)
	}
	if split.Verdict != verdictContended || split.Holder != "" {
		t.Errorf("split: %+v", split)
	}
	for i, ep := range m.Endpoints() {
		if held.Instances[i].Endpoint != ep {
			t.Errorf("instance %d is named %q, the library names it %q", i, held.Instances[i].Endpoint, ep)
		}
	}

	// The human form names the short token.
	r = cli(ctx, args(a("status"), redisFlags(servers), a("held"))...)
	if r.code != 0 || !strings.Contains(r.stdout, l.Token()[:8]) || strings.Contains(r.stdout, l.Token()) {
		t.Fatalf("status (human) should show the token's first 8 characters only: %v", r)
	}
}

// With too few instances answering, status says so and exits 69, as the
// library's IsLocked fails with ErrUnavailable.
func TestStatusUnavailable(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	lockEverywhere(t, m, servers, "r")
	servers[1].Kill(t)
	servers[2].Kill(t)
	r := cli(ctx, args(a("status", "--json", "--node-timeout", "300ms"), redisFlags(servers), a("r"))...)
	if r.code != exitUnavailable {
		t.Fatalf("want exit %d, got %v", exitUnavailable, r)
	}
	st := statusJSONOf(t, r)
	rs := st.Resources[0]
	if rs.Verdict != verdictUnavailable || rs.Locked || rs.Instances[0].State != "held" ||
		rs.Instances[1].State != "error" || rs.Instances[1].Error == "" {
		t.Fatalf("status: %+v", rs)
	}
	if _, err := m.IsLocked(ctx, "r"); !errors.Is(err, redlock.ErrUnavailable) {
		t.Fatalf("Manager.IsLocked: %v, want ErrUnavailable", err)
	}
}

// release --token frees a lock held under that token, and refuses another.
func TestReleaseToken(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	l := lockEverywhere(t, m, servers, "crashed-job")
	r := cli(ctx, args(a("release"), redisFlags(servers), a("crashed-job", "--token", "not-the-token"))...)
	if r.code != exitConflict {
		t.Fatalf("release with a wrong token: want exit %d, got %v", exitConflict, r)
	}
	if ok, err := l.IsLocked(ctx); err != nil || !ok {
		t.Fatalf("after a release with a wrong token, Lock.IsLocked = %v, %v", ok, err)
	}
	r = cli(ctx, args(a("release", "crashed-job"), redisFlags(servers), a("--token", l.Token()))...)
	if r.code != 0 {
		t.Fatalf("release --token: %v", r)
	}
	if locked, err := m.IsLocked(ctx, "crashed-job"); err != nil || locked {
		t.Fatalf("IsLocked after release = %v, %v", locked, err)
	}
	for _, s := range servers {
		if keys := s.Keys(t); len(keys) != 0 {
			t.Fatalf("%s still has %v", s, keys)
		}
	}
}

// release --force prints what it deletes and deletes it, whatever the
// token; with too few instances it exits 69.
func TestReleaseForce(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	l := lockEverywhere(t, m, servers, "stuck")
	r := cli(ctx, args(a("release", "--force"), redisFlags(servers), a("stuck"))...)
	if r.code != 0 {
		t.Fatalf("release --force: %v", r)
	}
	if n := strings.Count(r.stdout, l.Token()); n != 3 {
		t.Fatalf("release --force should name the deleted token once per instance, named it %d times: %v", n, r)
	}
	if ok, err := l.IsLocked(ctx); err != nil || ok {
		t.Fatalf("Lock.IsLocked after --force = %v, %v; want false", ok, err)
	}
	for _, s := range servers {
		if keys := s.Keys(t); len(keys) != 0 {
			t.Fatalf("%s still has %v", s, keys)
		}
	}

	r = cli(ctx, args(a("release", "--force"), redisFlags(servers), a("stuck"))...)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to delete") {
		t.Fatalf("release --force of a free lock: %v", r)
	}

	servers[0].Kill(t)
	servers[1].Kill(t)
	r = cli(ctx, args(a("release", "--force", "--node-timeout", "300ms"), redisFlags(servers), a("stuck"))...)
	if r.code != exitUnavailable {
		t.Fatalf("release --force without a quorum: want exit %d, got %v", exitUnavailable, r)
	}
}

// status, release --force and run work over every endpoint form: a unix
// socket, a Sentinel-monitored master, and a cluster counted as one
// instance.
func TestEndpointForms(t *testing.T) {
	t.Parallel()
	sock := redistest.StartWith(t, redistest.Options{UnixSocket: true})
	group := redistest.StartSentinel(t, 0, 1)
	cluster := redistest.StartCluster(t, 3)
	eps := []string{
		"unix://" + sock.Socket(),
		"redis+sentinel://" + group.SentinelAddrs()[0] + "?master=" + group.MasterName,
		"redis+cluster://" + strings.Join(cluster.Addrs(), ","),
	}
	var flags []string
	for _, ep := range eps {
		flags = append(flags, "--redis", ep)
	}
	ctx := testCtx(t)
	m, err := redlock.New(eps, redlock.Config{NodeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	l, err := m.Lock(ctx, "forms", redlock.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := cli(ctx, args(a("status", "--json"), flags, a("forms"))...)
	if r.code != 0 {
		t.Fatalf("status: %v", r)
	}
	rs := statusJSONOf(t, r).Resources[0]
	if rs.Verdict != verdictHeld || rs.Holder != l.Token() || rs.Votes < m.Quorum() {
		t.Fatalf("status over %v: %+v", eps, rs)
	}
	if r := cli(ctx, args(a("run", "-n"), flags, a("forms", "--", "true"))...); r.code != exitConflict {
		t.Fatalf("run -n on a held lock: %v", r)
	}
	if r := cli(ctx, args(a("release", "--force"), flags, a("forms"))...); r.code != 0 {
		t.Fatalf("release --force: %v", r)
	}
	if locked, err := m.IsLocked(ctx, "forms"); err != nil || locked {
		t.Fatalf("IsLocked after release --force = %v, %v", locked, err)
	}
	if r := cli(ctx, args(a("run", "-n"), flags, a("forms", "--", "true"))...); r.code != 0 {
		t.Fatalf("run -n on a free lock: %v", r)
	}
}

// status gives each resource one verdict word, the same in the text
// (`"RESOURCE": WORD...`) and in --json: held, free, contended,
// unavailable (too few instances answered) and rejected (the instances
// answered with errors that no retry fixes: here WRONGTYPE, as the
// library's IsLocked says with ErrRejected). The last two exit 69 and 78,
// and name each failing instance and its cause on stderr.
func TestStatusVerdictWords(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	down := redistest.Start(t, 3)
	ctx := testCtx(t)
	m := manager(t, servers)
	lockEverywhere(t, m, servers, "held")
	for i, s := range servers {
		s.Do(t, "SET", "contended", "token-"+string(rune('a'+i)), "PX", "60000")
		s.Do(t, "HSET", "rejected", "field", "value")
	}
	down[1].Kill(t)
	down[2].Kill(t)
	if _, err := m.IsLocked(ctx, "rejected"); !errors.Is(err, redlock.ErrRejected) {
		t.Fatalf("Manager.IsLocked on a hash: %v, want ErrRejected", err)
	}
	for _, tc := range []struct {
		res, verdict string
		servers      []*redistest.Server
		code         int
		stderr       []string // each in stderr
	}{
		{"held", verdictHeld, servers, 0, nil},
		{"free", verdictFree, servers, 0, nil},
		{"contended", verdictContended, servers, 0, nil},
		{"rejected", verdictRejected, servers, exitConfig, []string{servers[0].URL() + ": WRONGTYPE", servers[2].URL() + ": WRONGTYPE"}},
		{"gone", verdictUnavailable, down, exitUnavailable, []string{down[1].URL() + ": ", down[2].URL() + ": ", "connection refused"}},
	} {
		flags := args(redisFlags(tc.servers), a("--node-timeout", "500ms", tc.res))
		r := cli(ctx, args(a("status", "--json"), flags)...)
		if r.code != tc.code {
			t.Errorf("%s: status --json: want exit %d, got %v", tc.res, tc.code, r)
			continue
		}
		if v := statusJSONOf(t, r).Resources[0].Verdict; v != tc.verdict {
			t.Errorf("%s: --json verdict %q, want %q", tc.res, v, tc.verdict)
		}
		text := cli(ctx, args(a("status"), flags)...)
		if text.code != tc.code || !strings.HasPrefix(text.stdout, quote(tc.res)+": "+tc.verdict) {
			t.Errorf("%s: status: want exit %d and a line starting %q, got %v", tc.res, tc.code, quote(tc.res)+": "+tc.verdict, text)
		}
		for _, rr := range []result{r, text} {
			for _, want := range tc.stderr {
				if !strings.Contains(rr.stderr, want) {
					t.Errorf("%s: stderr lacks %q: %v", tc.res, want, rr)
				}
			}
			if tc.stderr == nil && rr.stderr != "" {
				t.Errorf("%s: unexpected stderr: %v", tc.res, rr)
			}
		}
	}
}

// status --json, compared with a literal document: a token that is not
// UTF-8 comes out lossily in "holder" and "token" (U+FFFD, as
// encoding/json writes it) and losslessly in "holder_base64" and
// "token_base64"; release --token-base64 takes it back.
func TestStatusJSONGolden(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	ctx := testCtx(t)
	const token = "\xff\xfetok"
	for _, s := range servers[:2] {
		s.Do(t, "SET", "bin", token) // no expiry: ttl_ms -1
	}
	r := cli(ctx, args(a("status", "--json"), redisFlags(servers), a("bin"))...)
	if r.code != 0 {
		t.Fatalf("status --json: %v", r)
	}
	want := `{
  "quorum": 2,
  "n": 3,
  "resources": [
    {
      "resource": "bin",
      "key": "bin",
      "verdict": "held",
      "locked": true,
      "holder": "\ufffd\ufffdtok",
      "holder_base64": "//50b2s=",
      "votes": 2,
      "ttl_ms": -1,
      "instances": [
        {
          "endpoint": "` + servers[0].URL() + `",
          "state": "held",
          "token": "\ufffd\ufffdtok",
          "token_base64": "//50b2s=",
          "ttl_ms": -1,
          "error": "",
          "metadata": "",
          "fence": 0,
          "rtt_us": 0
        },
        {
          "endpoint": "` + servers[1].URL() + `",
          "state": "held",
          "token": "\ufffd\ufffdtok",
          "token_base64": "//50b2s=",
          "ttl_ms": -1,
          "error": "",
          "metadata": "",
          "fence": 0,
          "rtt_us": 0
        },
        {
          "endpoint": "` + servers[2].URL() + `",
          "state": "free",
          "token": "",
          "token_base64": "",
          "ttl_ms": 0,
          "error": "",
          "metadata": "",
          "fence": 0,
          "rtt_us": 0
        }
      ],
      "metadata": "",
      "holder_info": null,
      "fence": 0,
      "readers": [],
      "writer_waiting": 0
    }
  ]
}
`
	// Round-trip times vary: compared as 0.
	got := regexp.MustCompile(`"rtt_us": [0-9]+`).ReplaceAllString(r.stdout, `"rtt_us": 0`)
	if got != want {
		t.Fatalf("status --json:\n%s\nwant:\n%s", r.stdout, want)
	}

	// The lossy token does not release the lock; the base64 one does (a
	// lock has a TTL: Attach refuses keys without one).
	for _, s := range servers {
		s.Do(t, "SET", "bin", token, "PX", "60000")
	}
	var st struct {
		Resources []struct {
			Holder       string `json:"holder"`
			HolderBase64 string `json:"holder_base64"`
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if r := cli(ctx, args(a("release", "bin", "--token", st.Resources[0].Holder), redisFlags(servers))...); r.code != exitConflict {
		t.Fatalf("release --token with the U+FFFD token: want exit %d, got %v", exitConflict, r)
	}
	if r := cli(ctx, args(a("release", "bin", "--token-base64", st.Resources[0].HolderBase64), redisFlags(servers))...); r.code != 0 {
		t.Fatalf("release --token-base64: %v", r)
	}
	for _, s := range servers {
		if keys := s.Keys(t); len(keys) != 0 {
			t.Fatalf("%s still has %v", s, keys)
		}
	}
}

// release names each failing instance and its error on stderr: exit 69
// when too few answered, 78 when they answered with errors that no retry
// fixes (a WRONGTYPE key), with --token and with --force.
func TestReleaseReports(t *testing.T) {
	t.Parallel()
	servers := redistest.Start(t, 3)
	down := redistest.Start(t, 3)
	ctx := testCtx(t)
	for _, s := range servers {
		s.Do(t, "HSET", "hash", "field", "value")
	}
	down[1].Kill(t)
	down[2].Kill(t)
	for _, tc := range []struct {
		name string
		argv []string
		code int
		want []string
	}{
		// The one instance up holds "r" under "t", so that it answers yes:
		// a refusal there and one connection error would decide "not held"
		// before the second error arrives (the lock cannot be held on a
		// quorum either way), and which comes first is up to the machine.
		{"token, majority down", args(a("release", "r", "--token", "t"), redisFlags(down)), exitUnavailable,
			a(`no quorum for "r"`, down[1].URL()+": ", down[2].URL()+": ", "connection refused")},
		{"force, majority down", args(a("release", "r", "--force"), redisFlags(down)), exitUnavailable,
			a(`no quorum for "r"`, down[1].URL()+": ", down[2].URL()+": ", "connection refused")},
		{"token, WRONGTYPE", args(a("release", "hash", "--token", "t"), redisFlags(servers)), exitConfig,
			a(`"hash" rejected`, servers[0].URL()+": WRONGTYPE", servers[1].URL()+": WRONGTYPE", servers[2].URL()+": WRONGTYPE")},
		{"force, WRONGTYPE", args(a("release", "hash", "--force"), redisFlags(servers)), exitConfig,
			a(`"hash" rejected`, servers[0].URL()+": WRONGTYPE", servers[1].URL()+": WRONGTYPE", servers[2].URL()+": WRONGTYPE")},
	} {
		down[0].Do(t, "SET", "r", "t")
		r := cli(ctx, tc.argv...)
		if r.code != tc.code {
			t.Errorf("%s: want exit %d, got %v", tc.name, tc.code, r)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q: %v", tc.name, w, r)
			}
		}
	}
	for _, s := range servers {
		if got := s.Do(t, "TYPE", "hash"); got != "hash" {
			t.Errorf("%s: the hash became %q", s, got)
		}
	}
}
