package redlock

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseEndpoint: ParseEndpoint never panics; it returns either an
// error wrapping ErrInvalid that starts "redlock: ", or an endpoint that
// validates, whose String parses back to the same String, and whose String
// does not depend on the passwords (so it cannot show them).
//
//	go test -run X -fuzz FuzzParseEndpoint -fuzztime 60s .
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
