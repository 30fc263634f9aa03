package redlock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The passwords of the redaction tests: long and distinctive, so that
// finding them in a text is never a coincidence.
const (
	testPassword         = "Pa55-w0rd-SECRET"
	testSentinelPassword = "S3ntinel-SECRET"
)

// sameEndpoint compares two endpoints field by field; of TLS it compares
// only whether it is set and InsecureSkipVerify.
func sameEndpoint(got, want Endpoint) string {
	if (got.TLS == nil) != (want.TLS == nil) {
		return fmt.Sprintf("TLS set = %v, want %v", got.TLS != nil, want.TLS != nil)
	}
	if got.TLS != nil && got.TLS.InsecureSkipVerify != want.TLS.InsecureSkipVerify {
		return fmt.Sprintf("InsecureSkipVerify = %v, want %v", got.TLS.InsecureSkipVerify, want.TLS.InsecureSkipVerify)
	}
	got.TLS, want.TLS = nil, nil
	if !reflect.DeepEqual(got, want) {
		type plain Endpoint // shows the passwords, which are test values here
		return fmt.Sprintf("got  %+v\nwant %+v", plain(got), plain(want))
	}
	return ""
}

var (
	verifyTLS = &tls.Config{}
	skipTLS   = &tls.Config{InsecureSkipVerify: true}
)

// TestParseEndpoint covers every accepted form: the parsed fields, and
// String (the redacted name, which must parse to the same name again).
func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in   string
		want Endpoint
		str  string // want String()
	}{
		// host:port, aioredlock's ('localhost', 6379).
		{"localhost:6379", Endpoint{Addr: "localhost:6379"}, "redis://localhost:6379"},
		{"127.0.0.1:6380", Endpoint{Addr: "127.0.0.1:6380"}, "redis://127.0.0.1:6380"},
		{"[::1]:6379", Endpoint{Addr: "[::1]:6379"}, "redis://[::1]:6379"},
		{"redis-0.redis.svc.cluster.local:6379", Endpoint{Addr: "redis-0.redis.svc.cluster.local:6379"}, "redis://redis-0.redis.svc.cluster.local:6379"},

		// redis:// URLs.
		{"redis://localhost:6379/2", Endpoint{Addr: "localhost:6379", DB: 2}, "redis://localhost:6379/2"},
		{"redis://localhost", Endpoint{Addr: "localhost:6379"}, "redis://localhost:6379"},
		{"redis://localhost/", Endpoint{Addr: "localhost:6379"}, "redis://localhost:6379"},
		{"REDIS://Host:6379/0", Endpoint{Addr: "Host:6379"}, "redis://Host:6379"},
		{"redis://:pw@host:6379/1", Endpoint{Addr: "host:6379", DB: 1, Password: "pw"}, "redis://:*******@host:6379/1"},
		{"redis://user:pw@host:6379/0", Endpoint{Addr: "host:6379", Username: "user", Password: "pw"}, "redis://user:*******@host:6379"},
		{"redis://user@host:6379", Endpoint{Addr: "host:6379", Username: "user"}, "redis://user@host:6379"},
		{"redis://user:@host:6379", Endpoint{Addr: "host:6379", Username: "user"}, "redis://user@host:6379"},
		{"redis://:p%40ss%3Aw%2Fd%3F@host:6379", Endpoint{Addr: "host:6379", Password: "p@ss:w/d?"}, "redis://:*******@host:6379"},
		{"redis://:p@ss/w:d@host:6379/3", Endpoint{Addr: "host:6379", DB: 3, Password: "p@ss/w:d"}, "redis://:*******@host:6379/3"},
		{"redis://:p#ss@host:6379", Endpoint{Addr: "host:6379", Password: "p#ss"}, "redis://:*******@host:6379"},
		{"redis://us%20er:pw@host:6379", Endpoint{Addr: "host:6379", Username: "us er", Password: "pw"}, "redis://us%20er:*******@host:6379"},
		{"redis://host:6379?db=3", Endpoint{Addr: "host:6379", DB: 3}, "redis://host:6379/3"},
		{"redis://[::1]:6379/1", Endpoint{Addr: "[::1]:6379", DB: 1}, "redis://[::1]:6379/1"},
		{"redis://[fe80::1%25eth0]:6379", Endpoint{Addr: "[fe80::1%eth0]:6379"}, "redis://[fe80::1%25eth0]:6379"},
		{"[fe80::1%eth0]:6379", Endpoint{Addr: "[fe80::1%eth0]:6379"}, "redis://[fe80::1%25eth0]:6379"},
		// A zone may hold characters that end a host in a URL (Linux
		// allows ',', '?', '#' and '@' in interface names): String
		// percent-encodes them.
		{"[fe80::1%a,b?c#d]:6379", Endpoint{Addr: "[fe80::1%a,b?c#d]:6379"}, "redis://[fe80::1%25a%2Cb%3Fc%23d]:6379"},
		{"redis://[fe80::1%25a%2Fb%40c%25]:6379", Endpoint{Addr: "[fe80::1%a/b@c%]:6379"}, "redis://[fe80::1%25a%2Fb%40c%25]:6379"},
		{"redis://host:6379/1?dial_timeout=250ms&read_timeout=2&write_timeout=0.5&pool_size=7",
			Endpoint{Addr: "host:6379", DB: 1, DialTimeout: 250 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: 500 * time.Millisecond, PoolSize: 7},
			"redis://host:6379/1"},
		// aioredlock's pool options: encoding and minsize ignored, maxsize
		// and timeout mapped.
		{"redis://host:6379?encoding=utf-8&minsize=1&maxsize=20&timeout=1.5",
			Endpoint{Addr: "host:6379", PoolSize: 20, DialTimeout: 1500 * time.Millisecond}, "redis://host:6379"},
		{"redis://host:6379?DB=4&Pool_Size=3", Endpoint{Addr: "host:6379", DB: 4, PoolSize: 3}, "redis://host:6379/4"},

		// TLS.
		{"rediss://host:6380", Endpoint{Addr: "host:6380", TLS: verifyTLS}, "rediss://host:6380"},
		{"rediss://:pw@host:6380/5?ssl_cert_reqs=CERT_NONE", Endpoint{Addr: "host:6380", DB: 5, Password: "pw", TLS: skipTLS}, "rediss://:*******@host:6380/5"},
		{"rediss://host:6380?ssl_cert_reqs=none", Endpoint{Addr: "host:6380", TLS: skipTLS}, "rediss://host:6380"},
		{"rediss://host:6380?ssl_cert_reqs=CERT_REQUIRED", Endpoint{Addr: "host:6380", TLS: verifyTLS}, "rediss://host:6380"},
		{"rediss://host:6380?insecure_skip_verify=true", Endpoint{Addr: "host:6380", TLS: skipTLS}, "rediss://host:6380"},
		{"rediss://host:6380?skip_verify=1", Endpoint{Addr: "host:6380", TLS: skipTLS}, "rediss://host:6380"},
		{"rediss://host:6380?insecure_skip_verify=false", Endpoint{Addr: "host:6380", TLS: verifyTLS}, "rediss://host:6380"},
		{"rediss://host:6380?ca_file=%2Fetc%2Fredis%2Fca.pem", Endpoint{Addr: "host:6380", TLS: verifyTLS, CAFile: "/etc/redis/ca.pem"}, "rediss://host:6380"},
		{"rediss://host:6380?ca_file=/etc/redis/ca.pem", Endpoint{Addr: "host:6380", TLS: verifyTLS, CAFile: "/etc/redis/ca.pem"}, "rediss://host:6380"},

		// Unix sockets.
		{"/var/run/redis/redis.sock", Endpoint{Network: "unix", Addr: "/var/run/redis/redis.sock"}, "unix:///var/run/redis/redis.sock"},
		{"./redis.sock", Endpoint{Network: "unix", Addr: "./redis.sock"}, "unix://./redis.sock"},
		{"unix:///var/run/redis.sock?db=3", Endpoint{Network: "unix", Addr: "/var/run/redis.sock", DB: 3}, "unix:///var/run/redis.sock?db=3"},
		{"unix://user:pw@/var/run/redis.sock?db=1&dial_timeout=1s", Endpoint{Network: "unix", Addr: "/var/run/redis.sock", DB: 1, Username: "user", Password: "pw", DialTimeout: time.Second}, "unix://user:*******@/var/run/redis.sock?db=1"},
		{"unix:///tmp/a%3Fb%23c%25d.sock", Endpoint{Network: "unix", Addr: "/tmp/a?b#c%d.sock"}, "unix:///tmp/a%3Fb%23c%25d.sock"},
		{"unix:///tmp/a@b/redis.sock", Endpoint{Network: "unix", Addr: "/tmp/a@b/redis.sock"}, "unix:///tmp/a@b/redis.sock"},
		// The user info ends at the last '@' that a path follows: a
		// password may hold "@/" as it is, and with user info a path
		// writes its '@' as %40.
		{"unix://:p@/ss@/tmp/x.sock", Endpoint{Network: "unix", Addr: "/tmp/x.sock", Password: "p@/ss"}, "unix://:*******@/tmp/x.sock"},
		{"unix://u:p@./s@/tmp/x.sock?db=2", Endpoint{Network: "unix", Addr: "/tmp/x.sock", DB: 2, Username: "u", Password: "p@./s"}, "unix://u:*******@/tmp/x.sock?db=2"},
		{"unix://u:p@/x%40/y.sock", Endpoint{Network: "unix", Addr: "/x@/y.sock", Username: "u", Password: "p"}, "unix://u:*******@/x%40/y.sock"},
		{"unix://u@./x%40/y.sock", Endpoint{Network: "unix", Addr: "./x@/y.sock", Username: "u"}, "unix://u@./x%40/y.sock"},

		// Sentinel: aioredlock's URL verbatim, master= making it Sentinel.
		{"redis://h:26379/4?master=leader&encoding=utf-8",
			Endpoint{SentinelAddrs: []string{"h:26379"}, MasterName: "leader", DB: 4},
			"redis+sentinel://h:26379/4?master=leader"},
		{"rediss://:pw@h:26379/5?master=leader&encoding=utf-8&ssl_cert_reqs=CERT_NONE",
			Endpoint{SentinelAddrs: []string{"h:26379"}, MasterName: "leader", DB: 5, Password: "pw", TLS: skipTLS},
			"rediss+sentinel://:*******@h:26379/5?master=leader"},
		{"redis://h?master=leader", Endpoint{SentinelAddrs: []string{"h:26379"}, MasterName: "leader"}, "redis+sentinel://h:26379?master=leader"},
		{"redis://h1:26379,h2:26380/0?master=m", Endpoint{SentinelAddrs: []string{"h1:26379", "h2:26380"}, MasterName: "m"}, "redis+sentinel://h1:26379,h2:26380?master=m"},
		{"redis+sentinel://h1:26379,h2:26379/4?master=leader",
			Endpoint{SentinelAddrs: []string{"h1:26379", "h2:26379"}, MasterName: "leader", DB: 4},
			"redis+sentinel://h1:26379,h2:26379/4?master=leader"},
		{"redis+sentinel://[fe80::1%25a%2Cb],h?master=m",
			Endpoint{SentinelAddrs: []string{"[fe80::1%a,b]:26379", "h:26379"}, MasterName: "m"},
			"redis+sentinel://[fe80::1%25a%2Cb]:26379,h:26379?master=m"},
		{"redis+sentinel://h1,h2,[::1]?master=leader",
			Endpoint{SentinelAddrs: []string{"h1:26379", "h2:26379", "[::1]:26379"}, MasterName: "leader"},
			"redis+sentinel://h1:26379,h2:26379,[::1]:26379?master=leader"},
		{"redis+sentinel://u:pw@h1:26379?master=my%20master&sentinel_username=su&sentinel_password=spw",
			Endpoint{SentinelAddrs: []string{"h1:26379"}, MasterName: "my master", Username: "u", Password: "pw", SentinelUsername: "su", SentinelPassword: "spw"},
			"redis+sentinel://u:*******@h1:26379?master=my+master"},
		{"rediss+sentinel://h1:26379?master=m&ca_file=/ca.pem",
			Endpoint{SentinelAddrs: []string{"h1:26379"}, MasterName: "m", TLS: verifyTLS, CAFile: "/ca.pem"},
			"rediss+sentinel://h1:26379?master=m"},

		// Cluster, as one instance.
		{"redis+cluster://h1:7000,h2:7001", Endpoint{ClusterAddrs: []string{"h1:7000", "h2:7001"}}, "redis+cluster://h1:7000,h2:7001"},
		{"redis+cluster://h1", Endpoint{ClusterAddrs: []string{"h1:6379"}}, "redis+cluster://h1:6379"},
		{"redis+cluster://h1:7000/0?pool_size=4", Endpoint{ClusterAddrs: []string{"h1:7000"}, PoolSize: 4}, "redis+cluster://h1:7000"},
		{"rediss+cluster://u:pw@h1:7000?insecure_skip_verify=true",
			Endpoint{ClusterAddrs: []string{"h1:7000"}, Username: "u", Password: "pw", TLS: skipTLS},
			"rediss+cluster://u:*******@h1:7000"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseEndpoint(tt.in)
			if err != nil {
				t.Fatalf("ParseEndpoint: %v", err)
			}
			if d := sameEndpoint(got, tt.want); d != "" {
				t.Errorf("ParseEndpoint(%q):\n%s", tt.in, d)
			}
			if got.TLS != nil && got.TLS.MinVersion < tls.VersionTLS12 {
				t.Errorf("TLS MinVersion %x, want at least TLS 1.2", got.TLS.MinVersion)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			again, err := ParseEndpoint(got.String())
			if err != nil {
				t.Fatalf("ParseEndpoint(String()) = %v", err)
			}
			if again.String() != got.String() {
				t.Errorf("String() does not parse back to itself: %q -> %q", got.String(), again.String())
			}
		})
	}
}

// TestParseEndpointInvalid checks that malformed input gives ErrInvalid
// with a message that names the endpoint, its password replaced.
func TestParseEndpointInvalid(t *testing.T) {
	tests := []struct {
		in   string
		name string // how the message must name the endpoint; "" for in
	}{
		{"", "empty endpoint"},
		{"localhost", ""},
		{"localhost:", ""},
		{":6379", ""},
		{"localhost:abc", ""},
		{"localhost:0", ""},
		{"localhost:65536", ""},
		{"localhost:-1", ""},
		{"local host:6379", ""},
		{"::1:6379", ""},
		{"user:" + testPassword + "@host:6379", `"*******@host:6379"`},
		{"http://localhost:6379", ""},
		{"redis:/localhost:6379", ""},
		{"redis://", ""},
		{"redis://:6379/0", ""},
		{"redis://:" + testPassword + "@:6379", `"redis://:*******@:6379"`},
		{"redis://:" + testPassword + "@host:port/0", `"redis://:*******@host:port/0"`},
		{"redis://host:99999", ""},
		{"redis://host:", ""},
		{"redis://host:6379/x", ""},
		{"redis://host:6379/-1", ""},
		{"redis://host:6379/1/2", ""},
		{"redis://host:6379/99999999999", ""},
		{"redis://host:6379/1?db=2", ""},
		{"redis://host:6379?db=1&db=1", ""},
		{"redis://host:6379#frag", ""},
		{"redis://[::1:6379", ""},
		{"redis://[127.0.0.1]:6379", ""},
		{"redis://[::1]x:6379", ""},
		{"redis://[fe80::1%25a%0Ab]:6379", ""}, // a control character in the zone
		{"[::%[]:1", ""},                       // '[' in the zone, which net.SplitHostPort (the dialer) refuses
		{"redis://[fe80::1%25a%5Bb]:6379", ""},
		{"redis://[fe80::1%25a%7Fb]:6379", ""},
		{"redis://ho st:6379", ""},
		{"redis://h\n:6379", `"redis://h\n:6379"`},
		{"redis://h1:6379,h2:6379", ""},
		{"redis://h1:6379,:6380?master=m", ""},
		{"redis+sentinel://h:26379/4", ""},
		{"redis+sentinel://h:26379/4?master=", ""},
		{"redis+sentinel://:" + testPassword + "@h:26379/4?encoding=utf-8", `"redis+sentinel://:*******@h:26379/4?encoding=utf-8"`},
		{"redis+cluster://h1:7000/1", ""},
		{"redis+cluster://h1:7000?master=m", ""},
		{"redis+cluster://h1:7000,h1:7000", ""},
		{"redis+sentinel://h1:26379,H1:26379?master=m", ""},
		{"redis+cluster://h:7000,h:07000", `ClusterAddrs[1] "h:07000" repeats ClusterAddrs[0] "h:7000"`},
		{"redis+sentinel://[::ffff:127.0.0.1]:26379,localhost?master=m", `SentinelAddrs[1] "localhost:26379" repeats SentinelAddrs[0] "[::ffff:127.0.0.1]:26379"`},
		// IPv4 addresses as the C library reads them (127.0.0.1 each), and
		// names with an empty label: no server has such a name.
		{"127.000.000.001:6379", ""},
		{"127.1:6379", ""},
		{"2130706433:6379", ""},
		{"0x7f.0.0.1:6379", ""},
		{"0X7F000001:6379", ""},
		{"010.0.0.1:6379", ""},
		{"127.0.0.1.:6379", ""},
		{"redis://127.0.0.01", ""},
		{"redis+cluster://h:7000,127.0.1:7001", ""},
		{"host..example:6379", ""},
		{".host:6379", ""},
		{"redis://host..:6379", ""},
		{"redis://h:6379?foo=bar", ""},
		{"redis://h:6379?dial_timeout=-1s", ""},
		{"redis://h:6379?dial_timeout=abc", ""},
		{"redis://h:6379?read_timeout=NaN", ""},
		{"redis://h:6379?write_timeout=1e300", ""},
		{"redis://h:6379?pool_size=0", ""},
		{"redis://h:6379?pool_size=1000000", ""},
		{"redis://h:6379?timeout=1&dial_timeout=2", ""},
		{"redis://h:6379?ssl_cert_reqs=CERT_NONE", ""},
		{"redis://h:6379?ca_file=/ca.pem", ""},
		{"rediss://h:6379?ssl_cert_reqs=maybe", ""},
		{"rediss://h:6379?ca_file=", ""},
		{"rediss://h:6379?insecure_skip_verify=perhaps", ""},
		{"rediss://h:6379?ssl_cert_reqs=CERT_NONE&ca_file=/x", ""},
		{"rediss://h:6379?insecure_skip_verify=false&ssl_cert_reqs=CERT_NONE", ""},
		{"redis://h:6379?sentinel_password=" + testSentinelPassword, `"redis://h:6379?sentinel_password=*******"`},
		{"redis://:" + testPassword + "@h:6379?%zz=1", `"redis://:*******@h:6379?%zz=1"`},
		{"redis://:p%zz" + testPassword + "@h:6379", `"redis://:*******@h:6379"`},
		// A '?' in a password must be percent-encoded; unencoded, the
		// password is still hidden in the message.
		{"redis://:" + testPassword + "?x@h:6379", `"redis://:*******@h:6379"`},
		{"unix://relative/redis.sock", ""},
		{"unix://", ""},
		{"unix:///tmp/x.sock?master=m", ""},
		{"unix:///tmp/x.sock?ssl_cert_reqs=CERT_NONE", ""},
		{"unix:///tmp/x.sock?foo=1", ""},
		{"unix:///tmp/x.sock#y", ""},
		{"unix://:" + testPassword + "@/tmp/x.sock?db=x", `"unix://:*******@/tmp/x.sock?db=x"`},
		{"unix://:" + testPassword + "@/x@/tmp/x.sock?db=x", `"unix://:*******@/tmp/x.sock?db=x"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := ParseEndpoint(tt.in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseEndpoint(%q) = %v, %v; want ErrInvalid", tt.in, ep, err)
			}
			msg := err.Error()
			name := tt.name
			if name == "" {
				name = fmt.Sprintf("%q", tt.in)
			}
			if !strings.Contains(msg, name) {
				t.Errorf("error %q does not name the endpoint as %s", msg, name)
			}
			if !strings.HasPrefix(msg, "redlock: ") {
				t.Errorf("error %q does not start with redlock: ", msg)
			}
			if strings.Contains(msg, testPassword) || strings.Contains(msg, testSentinelPassword) {
				t.Errorf("error %q shows the password", msg)
			}
			t.Log(msg)
		})
	}
}

// TestEndpointValidate covers the struct form: what NewFromEndpoints
// rejects before dialing anything.
func TestEndpointValidate(t *testing.T) {
	valid := []Endpoint{
		{Addr: "h:1"},
		{Addr: "h:1", DB: 15, Username: "u", Password: testPassword, TLS: &tls.Config{}, CAFile: "/ca.pem"},
		{Network: "tcp", Addr: "[::1]:6379", PoolSize: MaxPoolSize, DialTimeout: time.Second},
		{Network: "unix", Addr: "/tmp/redis.sock", DB: 2},
		{Network: "unix", Addr: "redis.sock"},
		{SentinelAddrs: []string{"s1:26379", "s2:26379"}, MasterName: "m", DB: 3, Password: testPassword, SentinelPassword: testSentinelPassword, TLS: &tls.Config{InsecureSkipVerify: true}},
		{ClusterAddrs: []string{"c1:7000", "c2:7000"}, Password: testPassword},
	}
	for _, ep := range valid {
		if err := checkDuplicates([]Endpoint{ep}); err != nil {
			t.Errorf("%v: %v", ep, err)
		}
	}
	invalid := []Endpoint{
		{},
		{Addr: "h:1", ClusterAddrs: []string{"c:1"}},
		{SentinelAddrs: []string{"s:1"}, ClusterAddrs: []string{"c:1"}, MasterName: "m"},
		{Network: "udp", Addr: "h:1"},
		{Network: "unix"},
		{Network: "unix", Addr: "/x\x00"},
		{Network: "unix", Addr: "/x", TLS: &tls.Config{}},
		{Network: "unix", SentinelAddrs: []string{"s:1"}, MasterName: "m"},
		{Addr: "h"},
		{Addr: "h:0"},
		{Addr: "redis://h:1"},
		{SentinelAddrs: []string{"s:1"}},
		{SentinelAddrs: []string{"s:1", "S:1"}, MasterName: "m"},
		{SentinelAddrs: []string{"s"}, MasterName: "m"},
		{Addr: "h:1", MasterName: "m"},
		{Addr: "h:1", SentinelPassword: testSentinelPassword},
		{ClusterAddrs: []string{"c:1"}, DB: 1},
		{ClusterAddrs: []string{"c:1", ""}},
		{Addr: "h:1", DB: -1},
		{Addr: "h:1", PoolSize: -1},
		{Addr: "h:1", PoolSize: MaxPoolSize + 1},
		{Addr: "h:1", DialTimeout: -1},
		{Addr: "h:1", ReadTimeout: -1},
		{Addr: "h:1", WriteTimeout: -time.Second},
		{Addr: "h:1", Password: testPassword, CAFile: "/ca.pem", TLS: &tls.Config{InsecureSkipVerify: true}},
	}
	for _, ep := range invalid {
		err := checkDuplicates([]Endpoint{{Addr: "other:1"}, ep})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%#v: %v, want ErrInvalid", ep, err)
			continue
		}
		if want := "endpoint 1 (" + ep.String() + ")"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
		if strings.Contains(err.Error(), testPassword) || strings.Contains(err.Error(), testSentinelPassword) {
			t.Errorf("error %q shows the password", err)
		}
	}
}

// TestEndpointDuplicates: one instance must not vote twice, however spelled.
func TestEndpointDuplicates(t *testing.T) {
	tests := []struct {
		eps []string
		dup bool
	}{
		{[]string{"localhost:6379", "localhost:6380"}, false},
		{[]string{"localhost:6379", "redis://localhost:6379/0"}, true},
		{[]string{"localhost:6379", "redis://localhost"}, true},
		{[]string{"localhost:6379", "127.0.0.1:6379"}, true},
		{[]string{"127.0.0.1:6379", "[::1]:6379"}, true},
		{[]string{"127.0.0.1:6379", "127.0.0.2:6379"}, false},
		{[]string{"rediss://[::1]:6379", "[0:0:0:0:0:0:0:1]:6379"}, true},
		{[]string{"[::ffff:10.0.0.1]:6379", "10.0.0.1:6379"}, true},
		{[]string{"redis://Host.Example:6379", "host.example.:6379"}, true},
		{[]string{"h:6379", "redis://:pw@h:6379/1"}, true}, // two databases of one server
		{[]string{"h1:6379", "h2:6379", "h3:6379", "h2:6379"}, true},
		{[]string{"/tmp/r.sock", "unix:///tmp/r.sock?db=1"}, true},
		{[]string{"/tmp/r.sock", "unix:///tmp/../tmp/r.sock"}, true},
		{[]string{"/tmp/r.sock", "/tmp/s.sock"}, false},
		{[]string{"redis+cluster://a:7000,b:7001", "b:7001"}, true},
		{[]string{"redis+cluster://a:7000,b:7001", "redis+cluster://c:7002,B:7001"}, true},
		{[]string{"redis+cluster://a:7000", "a:7001", "a:7002"}, false},
		{[]string{"redis+sentinel://s1:26379,s2:26379?master=m", "redis://s2:26379/3?master=m"}, true},
		{[]string{"redis+sentinel://s1:26379?master=m1", "redis+sentinel://s1:26379?master=m2"}, false},
		{[]string{"redis+sentinel://s1:26379?master=m1", "s1:26379"}, false},
	}
	for _, tt := range tests {
		eps := make([]Endpoint, len(tt.eps))
		for i, s := range tt.eps {
			var err error
			if eps[i], err = ParseEndpoint(s); err != nil {
				t.Fatalf("ParseEndpoint(%q): %v", s, err)
			}
		}
		err := checkDuplicates(eps)
		if tt.dup != (err != nil) {
			t.Errorf("checkDuplicates(%q) = %v, want duplicate %v", tt.eps, err, tt.dup)
			continue
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("checkDuplicates(%q) = %v, want ErrInvalid", tt.eps, err)
		}
		if strings.Contains(err.Error(), ":pw@") {
			t.Errorf("error %q shows the password", err)
		}
		t.Log(err)
	}
}

// TestEndpointCollisions: two spellings of one server, given to New (with
// a third, distinct endpoint, so that the two would make the quorum) or to
// NewFromEndpoints, are rejected with ErrInvalid and an error that names
// both as the user gave them, without the password; spellings of different
// servers are accepted.
func TestEndpointCollisions(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(wd, "redlock-x.sock")
	up := "../" + filepath.Base(wd) + "/redlock-x.sock" // the same file, from the parent
	third := "unix://" + t.TempDir() + "/third.sock"

	colliding := []struct {
		a, b  string
		aName string // how the error names a; "" for a quoted
	}{
		{a: "127.0.0.1:7431", b: "127.0.0.1:07431"},
		{a: "redis://127.0.0.1:7431", b: "127.0.0.1:0007431"},
		{a: "localhost:6379", b: "redis://localhost:06379/1"},
		{a: "rediss://h.example:6380", b: "h.example:06380"},
		{a: "127.0.0.1:6379", b: "[::1]:6379"},
		{a: "[::1]:6379", b: "[0:0:0:0:0:0:0:1]:6379"},
		{a: "[::1]:6379", b: "[::1%lo]:6379"}, // the kernel ignores the zone of a loopback address
		{a: "[::ffff:127.0.0.1]:6379", b: "127.0.0.1:6379"},
		{a: "[::FFFF:7F00:1]:6379", b: "localhost:6379"},
		{a: "[::ffff:10.0.0.1]:6379", b: "10.0.0.1:06379"},
		{a: "[2001:DB8::1]:6379", b: "redis://[2001:db8:0:0::1]:6379"},
		{a: "[2001:db8::1%eth0]:6379", b: "[2001:db8::1]:6379"},
		{a: "[fe80::1%eth0]:6379", b: "redis://[FE80::1%25eth0]:6379"},
		{a: "0.0.0.0:6379", b: "127.0.0.1:6379"}, // dialing the unspecified address reaches the local host
		{a: "[::]:6379", b: "localhost:6379"},
		{a: "Host.Example.:6379", b: "redis://host.example"},
		{a: "redis://:" + testPassword + "@h:6379/1", b: "h:06379", aName: `"redis://:*******@h:6379/1"`},
		{a: "/tmp/redlock-x.sock", b: "unix:///tmp/./redlock-x.sock"},
		{a: "unix:///tmp//a/../redlock-x.sock?db=2", b: "/tmp/redlock-x.sock"},
		{a: "./redlock-x.sock", b: abs},
		{a: "unix://./redlock-x.sock?db=1", b: "unix://" + abs},
		{a: up, b: "./redlock-x.sock"},
		{a: "redis+sentinel://s1:26379,s2:26379?master=m", b: "redis://s2:026379/3?master=m"},
		{a: "redis+sentinel://[::1]:26379?master=m", b: "redis+sentinel://127.0.0.1:26379?master=m"},
		{a: "redis+cluster://a:7000,b:7001", b: "b:07001"},
		{a: "redis+cluster://a:7000", b: "redis+cluster://c:7002,A.:7000"},
	}
	for _, tt := range colliding {
		t.Run("collide/"+tt.a+"/"+tt.b, func(t *testing.T) {
			aName := tt.aName
			if aName == "" {
				aName = strconv.Quote(tt.a)
			}
			bName := strconv.Quote(tt.b)
			m, err := New([]string{tt.a, tt.b, third}, Config{})
			if m != nil {
				_ = m.Close(context.Background())
			}
			if !errors.Is(err, ErrInvalid) || m != nil {
				t.Fatalf("New(%q, %q, third) = %v, %v; want ErrInvalid", tt.a, tt.b, m, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, aName) || !strings.Contains(msg, bName) {
				t.Errorf("error %q does not name both %s and %s", msg, aName, bName)
			}
			if strings.Contains(msg, testPassword) {
				t.Errorf("error %q shows the password", msg)
			}

			// The same as structs: the error names them by String.
			var eps []Endpoint
			for _, s := range []string{tt.a, tt.b, third} {
				ep, err := ParseEndpoint(s)
				if err != nil {
					t.Fatalf("ParseEndpoint(%q): %v", s, err)
				}
				eps = append(eps, ep)
			}
			m, err = NewFromEndpoints(eps, Config{})
			if m != nil {
				_ = m.Close(context.Background())
			}
			if !errors.Is(err, ErrInvalid) || m != nil {
				t.Fatalf("NewFromEndpoints = %v, %v; want ErrInvalid", m, err)
			}
			msg = err.Error()
			if !strings.Contains(msg, eps[0].String()) || !strings.Contains(msg, eps[1].String()) {
				t.Errorf("error %q does not name both %s and %s", msg, eps[0], eps[1])
			}
			if strings.Contains(msg, testPassword) {
				t.Errorf("error %q shows the password", msg)
			}
			t.Log(msg)
		})
	}

	distinct := []struct{ a, b string }{
		{"127.0.0.1:7431", "127.0.0.1:7432"},
		{"127.0.0.1:7431", "127.0.0.1:17431"},
		{"127.0.0.1:6379", "127.0.0.2:6379"},
		{"10.0.0.1:6379", "[::ffff:10.0.0.2]:6379"},
		{"[2001:db8::1]:6379", "[2001:db8::2]:6379"},
		{"[fe80::1%eth0]:6379", "[fe80::1%eth1]:6379"},
		{"host-a:6379", "host-b:6379"},
		{"a.example:6379", "a.example.org:6379"},
		{"localhost:6379", "localhost:16379"},
		{"/tmp/redlock-a.sock", "/tmp/redlock-b.sock"},
		{"./redlock-x.sock", "/redlock-x.sock"},
		{"./redlock-x.sock", "../redlock-x.sock"},
		{"redis+sentinel://s1:26379?master=m1", "redis+sentinel://s1:26379?master=M1"}, // Sentinel master names are case-sensitive
		{"redis+sentinel://s1:26379?master=m", "s1:26379"},
		{"redis+cluster://a:7000", "a:7001"},
	}
	for _, tt := range distinct {
		t.Run("distinct/"+tt.a+"/"+tt.b, func(t *testing.T) {
			m, err := New([]string{tt.a, tt.b, third}, Config{})
			if err != nil {
				t.Fatalf("New(%q, %q, third) = %v; want a Manager", tt.a, tt.b, err)
			}
			if err := m.Close(context.Background()); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestEndpointNewRejects: New and NewFromEndpoints report bad and
// duplicated endpoints (and an unreadable CA file) with ErrInvalid.
func TestEndpointNewRejects(t *testing.T) {
	for _, eps := range [][]string{
		nil,
		{},
		{"h1:6379", ""},
		{"h1:6379", "redis://h1"},
		{"h1:6379", "h2:6379", "redis://:" + testPassword + "@h1:6379/2"},
	} {
		m, err := New(eps, Config{})
		if !errors.Is(err, ErrInvalid) || m != nil {
			t.Errorf("New(%q) = %v, %v; want ErrInvalid", eps, m, err)
		}
		if err != nil && strings.Contains(err.Error(), testPassword) {
			t.Errorf("error %q shows the password", err)
		}
	}
	missing := t.TempDir() + "/no-such-ca.pem"
	m, err := NewFromEndpoints([]Endpoint{{Addr: "127.0.0.1:1", CAFile: missing}}, Config{})
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) || m != nil {
		t.Errorf("missing CA file: %v, %v; want ErrInvalid and fs.ErrNotExist", m, err)
	}
	m, err = New([]string{"rediss://127.0.0.1:1?ca_file=" + missing}, Config{})
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) || m != nil {
		t.Errorf("missing ca_file: %v, %v; want ErrInvalid and fs.ErrNotExist", m, err)
	}
}

// redactionForms are endpoints of every form with a password (and a
// Sentinel password) in them, as strings and as structs.
func redactionForms(t *testing.T) []Endpoint {
	t.Helper()
	strs := []string{
		"redis://:" + testPassword + "@host:6379/1",
		"redis://user:" + testPassword + "@host:6379",
		"rediss://user:" + testPassword + "@host:6380/2?ssl_cert_reqs=CERT_NONE",
		"unix://user:" + testPassword + "@/tmp/redis.sock?db=3",
		"redis://:" + testPassword + "@h:26379/4?master=leader&encoding=utf-8",
		"rediss://:" + testPassword + "@h:26379/5?master=leader&encoding=utf-8&ssl_cert_reqs=CERT_NONE",
		"redis+sentinel://:" + testPassword + "@h1:26379,h2:26379/4?master=leader&sentinel_password=" + testSentinelPassword,
		"redis+cluster://u:" + testPassword + "@h1:7000,h2:7001",
		"rediss+cluster://u:" + testPassword + "@h1:7000?insecure_skip_verify=true",
	}
	var out []Endpoint
	for _, s := range strs {
		ep, err := ParseEndpoint(s)
		if err != nil {
			t.Fatalf("ParseEndpoint(%q): %v", s, err)
		}
		if ep.Password != testPassword {
			t.Fatalf("ParseEndpoint(%q): password %q not parsed", s, ep.Password)
		}
		out = append(out, ep)
	}
	return append(out,
		Endpoint{Addr: "host:6379", Password: testPassword},
		Endpoint{Addr: "host:6379", Username: "u", Password: testPassword, TLS: &tls.Config{}},
		Endpoint{Network: "unix", Addr: "/tmp/redis.sock", Password: testPassword},
		Endpoint{SentinelAddrs: []string{"s1:26379"}, MasterName: "m", Password: testPassword, SentinelPassword: testSentinelPassword},
		Endpoint{ClusterAddrs: []string{"c1:7000"}, Password: testPassword},
	)
}

// TestEndpointRedaction: no format of an Endpoint, of a Manager's
// instance names, of a failed operation's error, or of the log shows a
// password.
func TestEndpointRedaction(t *testing.T) {
	leak := func(what, text string) {
		t.Helper()
		if strings.Contains(text, testPassword) || strings.Contains(text, testSentinelPassword) {
			t.Errorf("%s shows a password: %s", what, text)
		}
	}
	forms := redactionForms(t)
	for _, ep := range forms {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
			leak(verb, fmt.Sprintf(verb, ep))
			leak(verb+" pointer", fmt.Sprintf(verb, &ep))
			leak(verb+" slice", fmt.Sprintf(verb, []Endpoint{ep}))
		}
		if !strings.Contains(ep.String(), redacted) {
			t.Errorf("String() = %q: no ******* where the password was", ep.String())
		}
		if !strings.Contains(ep.GoString(), `Password:"*******"`) {
			t.Errorf("GoString() = %q: no ******* where the password was", ep.GoString())
		}
	}

	// A Manager over all of them (each dialed lazily, none reachable in
	// time): its names, its errors and its log.
	var logBuf strings.Builder // slog handlers serialise their writes
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var eps []Endpoint
	for _, ep := range forms {
		// Point every endpoint at a closed port (or socket), one each.
		ep.TLS = ep.TLS.Clone()
		port := closedPort(t)
		switch {
		case ep.Network == "unix":
			ep.Addr = t.TempDir() + "/none.sock"
		case len(ep.SentinelAddrs) > 0:
			ep.SentinelAddrs = []string{"127.0.0.1:" + port}
		case len(ep.ClusterAddrs) > 0:
			ep.ClusterAddrs = []string{"127.0.0.1:" + port}
		default:
			ep.Addr = "127.0.0.1:" + port
		}
		eps = append(eps, ep)
	}
	m, err := NewFromEndpoints(eps, Config{Logger: logger, NodeTimeout: 200 * time.Millisecond, RetryCount: 2, RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewFromEndpoints: %v", err)
	}
	for _, name := range m.Endpoints() {
		leak("Endpoints()", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = m.Lock(ctx, "res", TTL(time.Second))
	var qe *QuorumError
	if !errors.As(err, &qe) || !errors.Is(err, ErrUnavailable) || len(qe.Instances) == 0 {
		t.Fatalf("Lock on closed ports = %v, want a QuorumError (ErrUnavailable) with instance errors", err)
	}
	leak("Lock error", err.Error())
	leak("Lock error %+v", fmt.Sprintf("%+v", err))
	for _, ie := range qe.Instances {
		if !strings.Contains(ie.Endpoint, redacted) {
			t.Errorf("instance %q: no ******* where the password was", ie.Endpoint)
		}
	}
	_, err = m.IsLocked(ctx, "res")
	leak("IsLocked error", fmt.Sprint(err))
	if err := m.Close(ctx); err != nil {
		leak("Close error", err.Error())
	}
	leak("log", logBuf.String())
}

// closedPort returns a loopback port that was free a moment ago: nothing
// listens there, so connecting is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
