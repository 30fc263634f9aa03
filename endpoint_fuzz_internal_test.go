package redlock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseEndpoint: ParseEndpoint never panics; it returns either an
// error wrapping ErrInvalid that starts "redlock: ", or an endpoint that
// validates, whose String parses back to the same String and to the same
// instance (New rejects the two together, naming both), and whose String
// does not depend on the passwords (so it cannot show them).
//
//	go test -run '^$' -fuzz '^FuzzParseEndpoint$' -fuzztime 60s .
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{
		"",
		"localhost:6379",
		"[::1]:6379",
		"[fe80::1%eth0]:6379",
		"/var/run/redis.sock",
		"./redis.sock",
		"unix:///var/run/redis.sock?db=3",
		"unix://user:pw@/var/run/redis.sock?db=1&dial_timeout=1s",
		"redis://localhost:6379/2",
		"redis://:pw@host:6379/1",
		"redis://user:p@ss/w:d@host:6379/3",
		"redis://:p%40ss@host?db=3&pool_size=7&read_timeout=2&write_timeout=0.5s",
		"redis://[fe80::1%25eth0]:6379",
		"rediss://:pw@host:6380/5?ssl_cert_reqs=CERT_NONE",
		"rediss://host:6380?insecure_skip_verify=true&dial_timeout=250ms",
		"rediss://host:6380?ca_file=%2Fetc%2Fca.pem",
		"redis://h:26379/4?master=leader&encoding=utf-8",
		"rediss://:pw@h:26379/5?master=leader&encoding=utf-8&ssl_cert_reqs=CERT_NONE",
		"redis+sentinel://h1:26379,h2:26379/4?master=leader",
		"redis+sentinel://u:pw@h1?master=my%20m&sentinel_username=su&sentinel_password=spw",
		"redis+cluster://h1:7000,h2:7001",
		"rediss+cluster://u:pw@h1:7000?insecure_skip_verify=true&maxsize=3&minsize=1&timeout=2",
		"redis://h1:6379,h2:6379",
		"redis://host:6379/1?db=2",
		"redis://:secret?x@h:6379",
		"http://x",
		"redis://%zz@h",
		"127.0.0.1:07431",
		"127.000.000.001:6379",
		"127.1:6379",
		"[::ffff:127.0.0.1]:6379",
		"[0:0:0:0:0:0:0:1%lo]:06379",
		"[fe80::1%a,b?c#d]:6379",
		"redis://[fe80::1%25a%2Fb%40c]:6379",
		"unix://:p@/ss@/tmp/x.sock",
		"unix://u:p@./x%40/y.sock?db=2",
		"unix:///tmp/./a/../x.sock",
		"../x.sock",
		"redis+cluster://h:7000,H.:07001",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := ParseEndpoint(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseEndpoint(%q) = %v, not ErrInvalid", s, err)
			}
			if !strings.HasPrefix(err.Error(), "redlock: ") {
				t.Fatalf("ParseEndpoint(%q): error %q does not start with redlock: ", s, err)
			}
			return
		}
		if err := ep.validate(); err != nil {
			t.Fatalf("ParseEndpoint(%q) = %#v, which does not validate: %v", s, ep, err)
		}
		if err := checkDuplicates([]Endpoint{ep}); err != nil {
			t.Fatalf("ParseEndpoint(%q) = %#v, which checkDuplicates rejects: %v", s, ep, err)
		}
		name := ep.String()
		again, err := ParseEndpoint(name)
		if err != nil {
			t.Fatalf("ParseEndpoint(%q).String() = %q, which does not parse: %v", s, name, err)
		}
		if again.String() != name {
			t.Fatalf("ParseEndpoint(%q).String() = %q parses to %q", s, name, again.String())
		}
		if a, b := ep.identities(), again.identities(); !slices.Equal(a, b) {
			t.Fatalf("ParseEndpoint(%q) is instance %q, its String %q is %q", s, a, name, b)
		}
		err = checkEndpoints([]Endpoint{ep, again}, []string{s, name})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), nameRaw(s)) || !strings.Contains(err.Error(), nameRaw(name)) {
			t.Fatalf("New(%q, %q, its String) = %v, want ErrInvalid naming both", s, name, err)
		}
		// String must not depend on the password's value.
		other := ep
		if other.Password != "" {
			other.Password = "another password"
		}
		other.SentinelPassword = "another sentinel password"
		if other.String() != name || strings.Contains(name, "another") {
			t.Fatalf("String() depends on the password: %q vs %q", name, other.String())
		}
		if ep.Password != "" && !strings.Contains(name, redacted) {
			t.Fatalf("String() = %q: no ******* for the password", name)
		}
		if gs := other.GoString(); strings.Contains(gs, "another") {
			t.Fatalf("GoString() = %q shows a password", gs)
		}
	})
}

// FuzzEndpointIdentity: New rejects two endpoints together exactly when
// they address a common server, as told by an oracle built on the net
// package's own parsing (the dialer's): a literal IP as net.ResolveTCPAddr
// reads it (no DNS), a port as net.LookupPort reads it, a host name
// compared without case or final dot, a socket path joined to the working
// directory. Its policy is canonAddr's: 127.0.0.1, ::1, localhost and the
// unspecified addresses are one loopback server, and a zone counts only on
// a link-local address (the kernel ignores the others').
//
//	go test -run '^$' -fuzz '^FuzzEndpointIdentity$' -fuzztime 60s .
func FuzzEndpointIdentity(f *testing.F) {
	for _, p := range [][2]string{
		{"127.0.0.1:7431", "127.0.0.1:07431"},
		{"127.0.0.1:7431", "127.0.0.1:7432"},
		{"localhost:6379", "redis://localhost/1"},
		{"127.0.0.1:6379", "[::1]:6379"},
		{"[::1]:6379", "[0:0:0:0:0:0:0:1%lo]:6379"},
		{"[::ffff:127.0.0.1]:6379", "0.0.0.0:6379"},
		{"[::ffff:10.0.0.1]:6379", "10.0.0.1:06379"},
		{"[2001:DB8::1]:6379", "redis://[2001:db8:0:0::1]:6379"},
		{"[fe80::1%eth0]:6379", "redis://[FE80::1%25eth0]:6379"},
		{"[fe80::1%eth0]:6379", "[fe80::1%eth1]:6379"},
		{"[::ffff:169.254.1.1%eth0]:6379", "169.254.1.1:6379"},
		{"Host.Example.:6379", "redis://host.example"},
		{"/tmp/x.sock", "unix:///tmp/./x.sock"},
		{"./x.sock", "unix://u:p@./a/../x.sock"},
		{"../x.sock", "./x.sock"},
		{"redis+sentinel://s1:26379,s2:26379?master=m", "redis://s2:026379/3?master=m"},
		{"redis+sentinel://s1?master=m", "redis+sentinel://s1?master=M"},
		{"redis+sentinel://s1?master=m", "s1:26379"},
		{"redis+cluster://a:7000,b:7001", "b:07001"},
	} {
		f.Add(p[0], p[1])
	}
	wd, err := os.Getwd()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, err := ParseEndpoint(a)
		if err != nil {
			return
		}
		eb, err := ParseEndpoint(b)
		if err != nil {
			return
		}
		same := false
		ta, tb := oracleTargets(t, wd, ea), oracleTargets(t, wd, eb)
		for _, x := range ta {
			same = same || slices.Contains(tb, x)
		}
		err = checkEndpoints([]Endpoint{ea, eb}, []string{a, b})
		if same != (err != nil) {
			t.Fatalf("%q (servers %q) and %q (servers %q): New = %v, want a collision %v", a, ta, b, tb, err, same)
		}
		if err != nil && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), nameRaw(a)) || !strings.Contains(err.Error(), nameRaw(b))) {
			t.Fatalf("%q and %q: error %v, want ErrInvalid naming both", a, b, err)
		}
	})
}

// oracleTargets lists the servers (for Sentinel: the Sentinels, with the
// master name) that an endpoint would dial, independently of canonAddr
// and canonPath.
func oracleTargets(t *testing.T, wd string, ep Endpoint) []string {
	if ep.isUnix() {
		p := ep.Addr
		if !filepath.IsAbs(p) {
			p = wd + "/" + p
		}
		return []string{"unix " + filepath.Clean(p)}
	}
	prefix, addrs := "tcp ", []string{ep.Addr}
	switch {
	case len(ep.SentinelAddrs) > 0:
		prefix, addrs = "sentinel "+ep.MasterName+" ", ep.SentinelAddrs
	case len(ep.ClusterAddrs) > 0:
		addrs = ep.ClusterAddrs
	}
	var out []string
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("address %q: %v", a, err)
		}
		p, err := net.LookupPort("tcp", port)
		if err != nil {
			t.Fatalf("address %q: port: %v", a, err)
		}
		ipPart, _, _ := strings.Cut(host, "%")
		if net.ParseIP(ipPart) != nil {
			ta, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatalf("address %q: %v", a, err)
			}
			ip, zone := ta.IP, ta.Zone
			if ip4 := ip.To4(); ip4 != nil {
				ip, zone = ip4, "" // dialed over IPv4, which has no zones
			}
			if !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() {
				zone = ""
			}
			host = ip.String()
			if zone != "" {
				host += "%" + zone
			}
			if ip.IsUnspecified() || ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback) {
				host = "loopback"
			}
		} else {
			host = strings.ToLower(strings.TrimSuffix(host, "."))
			if host == "localhost" {
				host = "loopback"
			}
		}
		out = append(out, net.JoinHostPort(prefix+host, strconv.Itoa(p)))
	}
	return out
}
