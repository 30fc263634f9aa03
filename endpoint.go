package redlock

import (
	"crypto/tls"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock/goredis"
)

// Endpoint describes one independent Redis instance to dial. The zero
// values of the optional fields mean the client library's defaults.
type Endpoint struct {
	// Addr is host:port.
	Addr string
	// DB is the database number.
	DB int
	// Username and Password authenticate (Redis ACL, or AUTH with a password only).
	Username string
	Password string
	// TLS, when non-nil, makes the connection use TLS with this configuration.
	TLS *tls.Config
}

// String names the endpoint as a URL with the password replaced by *******.
func (e Endpoint) String() string {
	scheme := "redis"
	if e.TLS != nil {
		scheme = "rediss"
	}
	u := url.URL{Scheme: scheme, Host: e.Addr}
	if e.Username != "" || e.Password != "" {
		if e.Password != "" {
			u.User = url.UserPassword(e.Username, "*******")
		} else {
			u.User = url.User(e.Username)
		}
	}
	if e.DB != 0 {
		u.Path = "/" + strconv.Itoa(e.DB)
	}
	return strings.Replace(u.String(), "%2A%2A%2A%2A%2A%2A%2A", "*******", 1)
}

// ParseEndpoint parses one endpoint: "host:port", or a URL
// "redis://[user:password@]host[:port][/db]" ("rediss://" for TLS). Errors
// wrap ErrInvalid and name the endpoint without its password.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, invalidf("empty endpoint")
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" {
			return Endpoint{}, invalidf("endpoint %q: want host:port or a redis:// URL", s)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return Endpoint{}, invalidf("endpoint %q: bad port", s)
		}
		return Endpoint{Addr: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, invalidf("endpoint %s: not a URL", redactURL(s))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return Endpoint{}, invalidf("endpoint %s: unknown scheme %q", redactURL(s), u.Scheme)
	}
	opt, err := redis.ParseURL(s)
	if err != nil {
		return Endpoint{}, invalidf("endpoint %s: %s", redactURL(s), strings.ReplaceAll(err.Error(), s, redactURL(s)))
	}
	return Endpoint{Addr: opt.Addr, DB: opt.DB, Username: opt.Username, Password: opt.Password, TLS: opt.TLSConfig}, nil
}

// redactURL hides the password of a URL-like string.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			if j := strings.Index(s, "://"); j >= 0 && j < i {
				return s[:j+3] + "*******" + s[i:]
			}
			return "*******" + s[i:]
		}
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "*******")
	}
	return strings.Replace(u.String(), "%2A%2A%2A%2A%2A%2A%2A", "*******", 1)
}

func checkDuplicates(eps []Endpoint) error {
	seen := make(map[string]int, len(eps))
	for i, ep := range eps {
		k := ep.Addr + "/" + strconv.Itoa(ep.DB)
		if j, ok := seen[k]; ok {
			return invalidf("endpoint %d (%s) repeats endpoint %d: one instance would vote twice", i, ep, j)
		}
		seen[k] = i
	}
	return nil
}

// dial builds the client for one endpoint.
func dial(ep Endpoint, cfg Config) (Client, io.Closer, error) {
	if ep.Addr == "" {
		return nil, nil, invalidf("endpoint with no address")
	}
	rc := redis.NewClient(&redis.Options{
		Addr:                  ep.Addr,
		DB:                    ep.DB,
		Username:              ep.Username,
		Password:              ep.Password,
		TLSConfig:             ep.TLS,
		DialTimeout:           max(cfg.NodeTimeout, time.Second),
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
		MaxRetries:            -1,
	})
	return goredis.New(rc), rc, nil
}
