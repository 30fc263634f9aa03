package redlock

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Endpoint describes one independent Redis instance to dial: a single
// server (over TCP or a unix socket), the master of a group monitored by
// Redis Sentinel (followed through failovers), or a whole Redis Cluster
// used as one instance. Exactly one of Addr, SentinelAddrs and ClusterAddrs
// is set. The zero value of each optional field means the default noted on
// it. ParseEndpoint builds an Endpoint from a string.
//
// An Endpoint is a plain value. String, and the %v and %#v formats, never
// show the passwords.
type Endpoint struct {
	// Network is "tcp" or "unix". With "unix", Addr is the path of the
	// socket. Default: "tcp".
	Network string

	// Addr is "host:port" of a single server (the socket path when Network
	// is "unix").
	Addr string

	// SentinelAddrs are "host:port" addresses of Redis Sentinels that
	// monitor the master named MasterName. The instance is whichever server
	// they name as master: after a failover, new connections go to the new
	// master (and the scripts are loaded there again on first use).
	// Replication is asynchronous: a lock key written just before a
	// failover may be missing on the new master, so this instance may
	// forget a lock; the quorum over independent instances still holds it.
	SentinelAddrs []string
	// MasterName is the name under which the Sentinels monitor the master.
	// Required with SentinelAddrs, not allowed otherwise.
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// themselves (Username and Password are for the master). Default: none.
	SentinelUsername string
	SentinelPassword string

	// ClusterAddrs are "host:port" addresses of some nodes of a Redis
	// Cluster; the others are discovered. The whole cluster counts as ONE
	// instance of the quorum: each lock key lives on one of its masters
	// (every script touches only the lock key, so no cross-slot error).
	ClusterAddrs []string

	// DB is the database number. Must be 0 with ClusterAddrs. Default: 0.
	DB int

	// Username and Password authenticate to the server (HELLO, or AUTH on
	// servers without HELLO): a Redis ACL user, or with Username empty the
	// default user or requirepass. Default: none.
	Username string
	Password string

	// TLS, when non-nil, makes every connection (to Sentinels and cluster
	// nodes too) use TLS with a clone of this configuration. An empty
	// ServerName is taken from the host dialed. Default: plain text.
	TLS *tls.Config
	// CAFile names a PEM file of CA certificates that verify the servers
	// instead of the system pool. It implies TLS. It is read when the
	// Manager is created. Default: none (the system pool, or TLS.RootCAs).
	CAFile string

	// DialTimeout bounds establishing one connection (TCP, TLS, HELLO).
	// Default: the larger of Config.NodeTimeout and 1s. A single server's
	// connection is made with all of it, on a goroutine of its own, while
	// the calls that need it wait within their own deadlines; a Sentinel
	// or cluster endpoint's connections are also cut by the deadline of
	// the call that dials them (at most Config.NodeTimeout).
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound waiting on one connection: the
	// larger of the two becomes rueidis's ConnWriteTimeout, after which the
	// connection is closed. Every call is also bounded by
	// Config.NodeTimeout. Default: rueidis's (10s).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is validated (at most MaxPoolSize) and accepted for
	// compatibility with URLs written for go-redis and aioredlock; the
	// rueidis wire pipelines every caller's commands on shared connections
	// and ignores it.
	PoolSize int
}

// MaxPoolSize is the largest Endpoint.PoolSize.
const MaxPoolSize = 1 << 16

// maxDB bounds database numbers (Redis keeps them in an int).
const maxDB = math.MaxInt32

const (
	defaultPort         = "6379"
	defaultSentinelPort = "26379"
	redacted            = "*******"
)

// endpointKind tells single servers, Sentinel groups and clusters apart.
type endpointKind int

const (
	kindSingle endpointKind = iota
	kindSentinel
	kindCluster
)

func (e *Endpoint) kind() endpointKind {
	switch {
	case len(e.SentinelAddrs) > 0:
		return kindSentinel
	case len(e.ClusterAddrs) > 0:
		return kindCluster
	}
	return kindSingle
}

func (e *Endpoint) isUnix() bool { return e.Network == "unix" }

func (e *Endpoint) usesTLS() bool { return e.TLS != nil || e.CAFile != "" }

// String names the endpoint as a URL that ParseEndpoint accepts, with the
// password replaced by ******* and without the options (timeouts, pool
// size, TLS verification, Sentinel credentials):
//
//	redis://[user:*******@]host:port[/db]           rediss:// with TLS
//	unix://[user:*******@]/path/to/redis.sock[?db=N]
//	redis+sentinel://host:port,host:port[/db]?master=NAME
//	redis+cluster://host:port,host:port
func (e Endpoint) String() string {
	var b strings.Builder
	scheme := "redis"
	if e.usesTLS() {
		scheme = "rediss"
	}
	switch {
	case e.isUnix():
		b.WriteString("unix://")
		ui := userinfo(e.Username, e.Password)
		b.WriteString(ui)
		p := e.Addr
		if !isPathForm(p) {
			p = "./" + p
		}
		p = escapePath(p)
		if ui != "" { // the user info would otherwise end at the path's last "@/"
			p = strings.ReplaceAll(p, "@", "%40")
		}
		b.WriteString(p)
		if e.DB != 0 {
			b.WriteString("?db=")
			b.WriteString(strconv.Itoa(e.DB))
		}
		return b.String()
	case e.kind() == kindSentinel:
		b.WriteString(scheme + "+sentinel://")
		b.WriteString(userinfo(e.Username, e.Password))
		b.WriteString(escapeHosts(e.SentinelAddrs))
	case e.kind() == kindCluster:
		b.WriteString(scheme + "+cluster://")
		b.WriteString(userinfo(e.Username, e.Password))
		b.WriteString(escapeHosts(e.ClusterAddrs))
	default:
		b.WriteString(scheme + "://")
		b.WriteString(userinfo(e.Username, e.Password))
		b.WriteString(escapeHosts([]string{e.Addr}))
	}
	if e.DB != 0 {
		b.WriteString("/")
		b.WriteString(strconv.Itoa(e.DB))
	}
	if e.kind() == kindSentinel {
		b.WriteString("?master=")
		b.WriteString(url.QueryEscape(e.MasterName))
	}
	return b.String()
}

// GoString implements fmt.GoStringer for %#v, with the passwords replaced
// by *******.
func (e Endpoint) GoString() string {
	type endpoint Endpoint // the same fields, without the methods
	c := endpoint(e)
	if c.Password != "" {
		c.Password = redacted
	}
	if c.SentinelPassword != "" {
		c.SentinelPassword = redacted
	}
	return strings.Replace(fmt.Sprintf("%#v", c), "redlock.endpoint{", "redlock.Endpoint{", 1)
}

// userinfo renders "user:*******@", "user@", ":*******@" or "".
func userinfo(user, password string) string {
	switch {
	case password != "":
		const mark = "PASSWORD"
		return strings.Replace(url.UserPassword(user, mark).String(), mark, redacted, 1) + "@"
	case user != "":
		return url.User(user).String() + "@"
	}
	return ""
}

// isPathForm reports whether s reads as a unix socket path.
func isPathForm(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../")
}

// escapeHosts joins addresses for a URL. Inside the brackets of an IPv6
// address it percent-encodes every byte but letters, digits, '-', '.',
// '_', '~' and ':': the '%' that starts a zone (%25), and the characters
// a zone may hold that would end the host (',', '/', '?', '#', '@').
func escapeHosts(addrs []string) string {
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteByte(',')
		}
		end := strings.IndexByte(a, ']')
		if !strings.HasPrefix(a, "[") || end < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteByte('[')
		for j := 1; j < end; j++ {
			c := a[j]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:", c) >= 0 {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		b.WriteString(a[end:])
	}
	return b.String()
}

// escapePath escapes the characters that would end a URL path.
func escapePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(p)
}

// ParseEndpoint parses one endpoint. The forms (aioredlock's, plus Go
// spellings) are:
//
//	host:port                                  a single server
//	redis://[[user]:password@]host[:port][/db]  the same; port 6379 by default
//	rediss://...                               TLS, verified with the system pool
//	/path/to/redis.sock                        a unix socket ("./x", "../x" too)
//	unix://[[user]:password@]/path[?db=N]      the same, with a database and credentials
//	redis://host:26379/4?master=NAME           the master named NAME, found through a Sentinel
//	redis+sentinel://h1:26379,h2:26379/4?master=NAME   several Sentinels (port 26379 by default)
//	redis+cluster://h1:6379,h2:6379            a Redis Cluster, as one instance
//
// rediss+sentinel:// and rediss+cluster:// use TLS. URL options:
//
//	db=N                                  database (instead of /N)
//	master=NAME                           Sentinel master name (makes redis:// a Sentinel endpoint)
//	dial_timeout, read_timeout, write_timeout   Go durations ("250ms") or seconds ("0.25")
//	pool_size=N                           connections per server, 1..MaxPoolSize
//	ca_file=PATH                          CA certificates (PEM) to verify the server with
//	ssl_cert_reqs=CERT_NONE               skip TLS verification (aioredlock); CERT_REQUIRED verifies
//	insecure_skip_verify=true             the same, Go spelling (also skip_verify)
//	sentinel_username, sentinel_password  credentials for the Sentinels themselves
//	encoding, minsize                     accepted for aioredlock URLs and ignored
//	maxsize, timeout                      aioredlock's names for pool_size and dial_timeout
//
// A host is a DNS name, an IPv4 address in dotted decimal without leading
// zeros (the other spellings that C's inet_aton accepts, such as 127.1, are
// rejected), or an IPv6 address in brackets, with an optional zone (in a
// URL percent-encoded, its '%' as %25: redis://[fe80::1%25eth0]:6379).
//
// Unknown options, a missing host, a bad port or database, a Sentinel URL
// without master, and other malformed input give an error wrapping
// ErrInvalid that names the endpoint with its password replaced by
// *******. In the user info, '%' and '?' must be percent-encoded (%25,
// %3F); '/', ':', '@' and '#' may appear as they are. It ends at the last
// '@' (in a unix:// URL, the last one that a path follows): a socket path
// after user info writes its '@' as %40.
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, invalidf("empty endpoint")
	}
	ep, err := parseEndpoint(s)
	if err == nil {
		err = ep.validate()
	}
	if err != nil {
		return Endpoint{}, invalidf("endpoint %s: %v", nameRaw(s), err)
	}
	return ep, nil
}

func parseEndpoint(s string) (Endpoint, error) {
	if strings.ContainsFunc(s, isControl) {
		return Endpoint{}, errors.New("control character")
	}
	i := strings.Index(s, "://")
	if i < 0 {
		if isPathForm(s) {
			return Endpoint{Network: "unix", Addr: s}, nil
		}
		if strings.Contains(s, "@") {
			return Endpoint{}, errors.New("credentials need a URL: redis://user:password@host:port")
		}
		if c := strings.Index(s, ":/"); c > 0 && safeWord(strings.ToLower(s[:c])) {
			return Endpoint{}, errors.New("malformed URL (want scheme://...)")
		}
		addr, err := parseHostPort(s, "", false)
		if err != nil && !strings.Contains(s, ":") {
			return Endpoint{}, fmt.Errorf("%v (want host:port, a redis:// URL or a socket path)", err)
		}
		if err != nil {
			return Endpoint{}, err
		}
		return Endpoint{Addr: addr}, nil
	}
	scheme, rest := strings.ToLower(s[:i]), s[i+3:]
	var ep Endpoint
	kind := kindSingle
	secure := false
	switch scheme {
	case "redis":
	case "rediss":
		secure = true
	case "redis+sentinel":
		kind = kindSentinel
	case "rediss+sentinel":
		kind, secure = kindSentinel, true
	case "redis+cluster":
		kind = kindCluster
	case "rediss+cluster":
		kind, secure = kindCluster, true
	case "unix":
		return parseUnix(rest)
	default:
		if safeWord(scheme) {
			return ep, fmt.Errorf("unknown scheme %q (want redis, rediss, unix, redis+sentinel, redis+cluster)", scheme)
		}
		return ep, errors.New("unknown scheme (want redis, rediss, unix, redis+sentinel, redis+cluster)")
	}

	// Credentials end at the last '@' before the query.
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		q = len(rest)
	}
	if at := strings.LastIndexByte(rest[:q], '@'); at >= 0 {
		var err error
		if ep.Username, ep.Password, err = parseUserinfo(rest[:at]); err != nil {
			return ep, err
		}
		rest = rest[at+1:]
	}
	if strings.Contains(rest, "#") {
		return ep, errors.New("unexpected '#' (percent-encode it as %23)")
	}
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	hosts, rest := rest[:hostEnd], rest[hostEnd:]
	path, query, _ := strings.Cut(rest, "?")

	o, err := parseOptions(query, false)
	if err != nil {
		return ep, err
	}
	if o.masterSet && kind == kindSingle {
		kind = kindSentinel
	}

	// Database from the path.
	if p := strings.TrimPrefix(path, "/"); p != "" {
		db, err := parseDB(p)
		if err != nil {
			return ep, err
		}
		if o.dbSet {
			return ep, errors.New("database given twice (path and db option)")
		}
		ep.DB = db
	}
	if o.dbSet {
		ep.DB = o.db
	}

	defPort := defaultPort
	if kind == kindSentinel {
		defPort = defaultSentinelPort
	}
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		a, err := parseHostPort(h, defPort, true)
		if err != nil {
			return ep, err
		}
		addrs = append(addrs, a)
	}
	switch kind {
	case kindSingle:
		if len(addrs) > 1 {
			return ep, errors.New("several hosts: use redis+cluster:// for a cluster, or master=NAME for Sentinels")
		}
		ep.Addr = addrs[0]
	case kindSentinel:
		if !o.masterSet {
			return ep, errors.New("a Sentinel endpoint needs master=NAME")
		}
		ep.SentinelAddrs = addrs
		ep.MasterName = o.master
		ep.SentinelUsername, ep.SentinelPassword = o.sentinelUser, o.sentinelPassword
	case kindCluster:
		if o.masterSet {
			return ep, errors.New("master is for Sentinel endpoints, not redis+cluster://")
		}
		ep.ClusterAddrs = addrs
	}
	if kind != kindSentinel && (o.sentinelUser != "" || o.sentinelPassword != "") {
		return ep, errors.New("sentinel_username and sentinel_password are for Sentinel endpoints")
	}
	if !secure && o.tlsOption != "" {
		return ep, fmt.Errorf("option %s needs TLS (rediss://)", o.tlsOption)
	}
	if secure {
		ep.TLS = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.skipVerify}
		ep.CAFile = o.caFile
	}
	o.apply(&ep)
	return ep, nil
}

// parseUnix parses what follows "unix://".
func parseUnix(rest string) (Endpoint, error) {
	ep := Endpoint{Network: "unix"}
	if !isPathForm(rest) {
		// The user info ends at the last '@' before the query that a path
		// follows: a password may hold "@/" (String writes a path's '@'
		// as %40 after user info).
		q := strings.IndexByte(rest, '?')
		if q < 0 {
			q = len(rest)
		}
		at := -1
		for i := q - 1; i >= 0; i-- {
			if rest[i] == '@' && isPathForm(rest[i+1:]) {
				at = i
				break
			}
		}
		if at < 0 {
			return ep, errors.New("want unix:///absolute/path/to/redis.sock")
		}
		var err error
		if ep.Username, ep.Password, err = parseUserinfo(rest[:at]); err != nil {
			return ep, err
		}
		rest = rest[at+1:]
	}
	path, query, _ := strings.Cut(rest, "?")
	if strings.Contains(path, "#") {
		return ep, errors.New("unexpected '#' (percent-encode it as %23)")
	}
	p, err := url.PathUnescape(path)
	if err != nil {
		return ep, errors.New("bad percent-encoding in the socket path")
	}
	if strings.ContainsFunc(p, isControl) {
		// As in the rest of an endpoint: String would write it raw.
		return ep, errors.New("control character in the socket path")
	}
	if !isPathForm(p) {
		return ep, errors.New("want unix:///absolute/path/to/redis.sock")
	}
	ep.Addr = p
	o, err := parseOptions(query, true)
	if err != nil {
		return ep, err
	}
	if o.dbSet {
		ep.DB = o.db
	}
	o.apply(&ep)
	return ep, nil
}

// parseUserinfo splits and unescapes "user:password".
func parseUserinfo(ui string) (user, password string, err error) {
	user, password, _ = strings.Cut(ui, ":")
	u, err1 := url.PathUnescape(user)
	p, err2 := url.PathUnescape(password)
	if err1 != nil || err2 != nil {
		return "", "", errors.New("bad percent-encoding in user:password")
	}
	return u, p, nil
}

// urlOptions are the query options of an endpoint URL.
type urlOptions struct {
	db                                     int
	dbSet                                  bool
	master                                 string
	masterSet                              bool
	dialTimeout, readTimeout, writeTimeout time.Duration
	poolSize                               int
	tlsOption                              string // the name of a TLS option given, if any
	skipVerify, verify                     bool
	caFile                                 string
	sentinelUser, sentinelPassword         string
}

func (o *urlOptions) apply(ep *Endpoint) {
	ep.DialTimeout, ep.ReadTimeout, ep.WriteTimeout = o.dialTimeout, o.readTimeout, o.writeTimeout
	ep.PoolSize = o.poolSize
}

// optionAliases maps aioredlock's option names to ours.
var optionAliases = map[string]string{
	"timeout":     "dial_timeout",
	"maxsize":     "pool_size",
	"skip_verify": "insecure_skip_verify",
}

// parseOptions parses a URL query. unix allows only the options that make
// sense on a unix socket.
func parseOptions(query string, unix bool) (urlOptions, error) {
	var o urlOptions
	seen := make(map[string]bool)
	for _, pair := range strings.Split(query, "&") {
		if pair == "" {
			continue
		}
		rk, rv, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(rk)
		v, err2 := url.QueryUnescape(rv)
		if err1 != nil || err2 != nil {
			return o, errors.New("bad percent-encoding in the options")
		}
		k = strings.ToLower(k)
		name := k
		if a, ok := optionAliases[k]; ok {
			name = a
		}
		if seen[name] {
			return o, fmt.Errorf("option %s given twice", showKey(k))
		}
		seen[name] = true
		var err error
		switch name {
		case "db":
			o.db, err = parseDB(v)
			o.dbSet = true
		case "encoding", "minsize":
			// aioredlock/aioredis pool options that mean nothing here.
		case "dial_timeout":
			o.dialTimeout, err = parseDuration(v)
		case "read_timeout":
			o.readTimeout, err = parseDuration(v)
		case "write_timeout":
			o.writeTimeout, err = parseDuration(v)
		case "pool_size":
			o.poolSize, err = strconv.Atoi(v)
			if err != nil || o.poolSize < 1 || o.poolSize > MaxPoolSize {
				err = fmt.Errorf("%s must be an integer in [1, %d]", k, MaxPoolSize)
			}
		case "master", "ssl_cert_reqs", "insecure_skip_verify", "ca_file", "sentinel_username", "sentinel_password":
			if unix {
				return o, fmt.Errorf("option %s does not apply to a unix socket", k)
			}
			err = o.parseNetOption(k, name, v)
		default:
			if unix {
				return o, fmt.Errorf("unknown option %s (known: db, dial_timeout, read_timeout, write_timeout, pool_size)", showKey(k))
			}
			return o, fmt.Errorf("unknown option %s (known: db, master, dial_timeout, read_timeout, write_timeout, pool_size, ca_file, ssl_cert_reqs, insecure_skip_verify, sentinel_username, sentinel_password)", showKey(k))
		}
		if err != nil {
			return o, err
		}
	}
	if o.skipVerify && o.verify {
		return o, errors.New("TLS verification both skipped and required")
	}
	if o.skipVerify && o.caFile != "" {
		return o, errors.New("ca_file with TLS verification skipped")
	}
	return o, nil
}

// parseNetOption parses the options about the network: Sentinel and TLS.
func (o *urlOptions) parseNetOption(k, name, v string) error {
	switch name {
	case "master":
		if v == "" {
			return errors.New("empty master name")
		}
		o.master, o.masterSet = v, true
	case "sentinel_username":
		o.sentinelUser = v
	case "sentinel_password":
		o.sentinelPassword = v
	case "ssl_cert_reqs":
		o.tlsOption = k
		switch strings.TrimPrefix(strings.ToLower(v), "cert_") {
		case "none":
			o.skipVerify = true
		case "required", "optional":
			o.verify = true
		default:
			return errors.New("ssl_cert_reqs must be CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED")
		}
	case "insecure_skip_verify":
		o.tlsOption = k
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s must be true or false", k)
		}
		if b {
			o.skipVerify = true
		} else {
			o.verify = true
		}
	case "ca_file":
		o.tlsOption = k
		if v == "" {
			return errors.New("empty ca_file")
		}
		o.caFile = v
	}
	return nil
}

// showKey quotes an option name for an error message, unless it does not
// look like one (it might then be part of a password).
func showKey(k string) string {
	if safeWord(k) {
		return strconv.Quote(k)
	}
	return "(name not shown)"
}

// safeWord reports whether s is a short identifier-like word.
func safeWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// parseDB parses a database number: decimal digits, in [0, maxDB].
func parseDB(s string) (int, error) {
	if s == "" || len(s) > 10 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("bad database number (want a non-negative integer)")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxDB {
		return 0, errors.New("database number out of range")
	}
	return int(n), nil
}

// parseDuration parses a Go duration ("250ms") or a number of seconds
// ("0.25", go-redis and redis-py style). Negative values are errors.
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return 0, errors.New("negative timeout")
		}
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*float64(time.Second) >= math.MaxInt64 || strings.ContainsAny(s, "xXpP_") {
		return 0, errors.New("bad timeout (want a duration such as 250ms, or seconds)")
	}
	return time.Duration(f * float64(time.Second)), nil
}

// parseHostPort checks "host[:port]" and returns "host:port"; an empty
// defPort makes the port required. IPv6 addresses go in brackets; inURL
// unescapes them ("[fe80::1%25eth0]").
func parseHostPort(hp, defPort string, inURL bool) (string, error) {
	var host, port string
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", errors.New("bad IPv6 address (missing ']')")
		}
		host = hp[1:end]
		switch rest := hp[end+1:]; {
		case rest == "":
			port = defPort
		case rest[0] == ':':
			port = rest[1:]
		default:
			return "", errors.New("bad address after ']'")
		}
		if inURL { // a zone is written %25zone
			h, err := url.PathUnescape(host)
			if err != nil {
				return "", errors.New("bad IPv6 address")
			}
			host = h
		}
		if strings.ContainsFunc(host, isControl) {
			return "", errors.New("control character in the IPv6 zone")
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return "", errors.New("bad IPv6 address")
		}
	} else {
		host, port = hp, defPort
		if c := strings.LastIndexByte(hp, ':'); c >= 0 {
			host, port = hp[:c], hp[c+1:]
		}
		if strings.Contains(host, ":") {
			return "", errors.New("an IPv6 address must be in brackets: [::1]:6379")
		}
		if host != "" && !validHostname(host) {
			return "", errors.New("bad host name")
		}
		if host != "" && numericHost(host) {
			if ip, err := netip.ParseAddr(host); err != nil || !ip.Is4() {
				return "", errors.New("bad IPv4 address (want four decimal numbers without leading zeros: 127.0.0.1)")
			}
		}
	}
	if host == "" {
		return "", errors.New("missing host")
	}
	if port == "" {
		return "", errors.New("missing port")
	}
	// Leading zeros are allowed: the dialer reads the port in decimal.
	if digits := strings.TrimLeft(port, "0"); len(digits) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", errors.New("bad port (want a number in [1, 65535])")
	}
	if p, _ := strconv.Atoi(strings.TrimLeft(port, "0")); p < 1 || p > 65535 {
		return "", errors.New("port out of range (want [1, 65535])")
	}
	hp = net.JoinHostPort(host, port)
	// The dialer splits the address again: it refuses a '[' in a zone.
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return "", errors.New("bad IPv6 address")
	}
	return hp, nil
}

// validHostname accepts DNS names and IPv4 addresses: letters, digits,
// '-', '_' and '.', no empty label (but an optional final dot), at most
// 253 bytes.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" {
			return false
		}
	}
	return true
}

// numericHost reports whether every label of the host name h is a number
// as C's inet_aton reads it (decimal, octal with a leading 0, hex with 0x).
// Such a name is no DNS name: Go's resolver fails on it, while the C
// library's reads it as an IPv4 address ("127.1", "127.000.000.001",
// "2130706433" and "0x7f.0.0.1" are all 127.0.0.1), so the same server
// would have spellings that no canonical form catches. parseHostPort
// accepts only the standard spelling of an IPv4 address among them.
func numericHost(h string) bool {
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		digits := "0123456789"
		if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
			label, digits = label[2:], "0123456789abcdefABCDEF"
		} else if label == "" {
			return false
		}
		if strings.Trim(label, digits) != "" {
			return false
		}
	}
	return true
}

// validate checks an endpoint (both parsed and struct forms).
func (e *Endpoint) validate() error {
	n := 0
	for _, set := range []bool{e.Addr != "", len(e.SentinelAddrs) > 0, len(e.ClusterAddrs) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("no address (set Addr, SentinelAddrs or ClusterAddrs)")
	case n > 1:
		return errors.New("set only one of Addr, SentinelAddrs and ClusterAddrs")
	}
	switch e.Network {
	case "", "tcp":
	case "unix":
		if e.Addr == "" {
			return errors.New(`Network "unix" needs Addr, the socket path`)
		}
		if strings.ContainsRune(e.Addr, 0) {
			return errors.New("NUL in the socket path")
		}
		if e.usesTLS() {
			return errors.New("Redis does not serve TLS on a unix socket")
		}
	default:
		return errors.New(`unknown Network (want "tcp" or "unix")`)
	}
	if e.Addr != "" && !e.isUnix() {
		if _, err := parseHostPort(e.Addr, "", false); err != nil {
			return fmt.Errorf("Addr: %v", err)
		}
	}
	if err := checkAddrs("SentinelAddrs", e.SentinelAddrs); err != nil {
		return err
	}
	if err := checkAddrs("ClusterAddrs", e.ClusterAddrs); err != nil {
		return err
	}
	if e.kind() == kindSentinel {
		if e.MasterName == "" {
			return errors.New("SentinelAddrs needs MasterName")
		}
	} else if e.MasterName != "" || e.SentinelUsername != "" || e.SentinelPassword != "" {
		return errors.New("MasterName, SentinelUsername and SentinelPassword need SentinelAddrs")
	}
	if e.DB < 0 || e.DB > maxDB {
		return errors.New("database number out of range")
	}
	if e.kind() == kindCluster && e.DB != 0 {
		return errors.New("a Redis Cluster has only database 0")
	}
	if e.DialTimeout < 0 || e.ReadTimeout < 0 || e.WriteTimeout < 0 {
		return errors.New("negative timeout")
	}
	if e.PoolSize < 0 || e.PoolSize > MaxPoolSize {
		return fmt.Errorf("PoolSize out of range [0, %d]", MaxPoolSize)
	}
	if strings.ContainsRune(e.CAFile, 0) {
		return errors.New("NUL in CAFile")
	}
	if e.CAFile != "" && e.TLS != nil && e.TLS.InsecureSkipVerify {
		return errors.New("CAFile with TLS.InsecureSkipVerify: the CA would not be checked")
	}
	return nil
}

// checkAddrs validates a list of "host:port" addresses without repeats.
func checkAddrs(field string, addrs []string) error {
	seen := make(map[string]int, len(addrs))
	for i, a := range addrs {
		if _, err := parseHostPort(a, "", false); err != nil {
			return fmt.Errorf("%s[%d]: %v", field, i, err)
		}
		k := canonAddr(a)
		if j, ok := seen[k]; ok {
			return fmt.Errorf("%s[%d] %q repeats %s[%d] %q", field, i, a, field, j, addrs[j])
		}
		seen[k] = i
	}
	return nil
}

// canonAddr is a valid "host:port" in a canonical spelling, so that two
// spellings of one address compare equal: the port in decimal without
// leading zeros; an IP address in its shortest form with lower-case hex,
// an IPv4-mapped IPv6 address as IPv4, and the zone kept only on the
// addresses the kernel uses it for (link-local ones); a host name in lower
// case without a final dot; localhost, 127.0.0.1, ::1 and the unspecified
// addresses 0.0.0.0 and :: (a connection to which reaches the local host)
// as one loopback name (Redis listens on both loopback addresses by
// default).
func canonAddr(hp string) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	if p, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(p)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if !ip.IsLinkLocalUnicast() && !ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() {
			ip = ip.WithZone("")
		}
		host = ip.String()
		if ip.IsUnspecified() || ip == netip.IPv6Loopback() || ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
			host = "localhost"
		}
	} else {
		host = strings.TrimSuffix(strings.ToLower(host), ".")
	}
	return net.JoinHostPort(host, port)
}

// canonPath is a socket path in a canonical spelling: absolute (relative
// to the working directory), cleaned of "." and ".." elements and repeated
// separators. Symbolic links are not followed: the socket need not exist
// yet.
func canonPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// identities returns the keys under which two endpoints are the same
// instance: the server's canonical address (whatever the database:
// databases of one server fail together), the socket's canonical path,
// every cluster node, or every Sentinel together with the master name
// (which Sentinel compares case-sensitively).
func (e *Endpoint) identities() []string {
	switch {
	case e.isUnix():
		return []string{"unix:" + canonPath(e.Addr)}
	case e.kind() == kindSentinel:
		out := make([]string, len(e.SentinelAddrs))
		for i, a := range e.SentinelAddrs {
			out[i] = "sentinel:" + e.MasterName + "@" + canonAddr(a)
		}
		return out
	case e.kind() == kindCluster:
		out := make([]string, len(e.ClusterAddrs))
		for i, a := range e.ClusterAddrs {
			out[i] = "tcp:" + canonAddr(a)
		}
		return out
	}
	return []string{"tcp:" + canonAddr(e.Addr)}
}

// checkDuplicates validates every endpoint and rejects two that name the
// same instance: the same server however spelled (see canonAddr and
// canonPath; different databases of one server are one, as they fail
// together), a node of a cluster listed twice or on its own, or the same
// Sentinel master. The same server reached both over TCP and a socket, or
// both directly and through Sentinel, is not detected, nor a host name and
// an address it resolves to. Errors name the endpoints by String.
func checkDuplicates(eps []Endpoint) error {
	return checkEndpoints(eps, nil)
}

// checkEndpoints is checkDuplicates; raw, when not nil, holds the strings
// that eps were parsed from, by which errors then name the endpoints (with
// their passwords hidden).
func checkEndpoints(eps []Endpoint, raw []string) error {
	name := func(i int) string {
		if raw != nil {
			return nameRaw(raw[i])
		}
		return "(" + eps[i].String() + ")"
	}
	owner := make(map[string]int)
	for i := range eps {
		ep := &eps[i]
		if err := ep.validate(); err != nil {
			return invalidf("endpoint %d %s: %v", i, name(i), err)
		}
		for _, k := range ep.identities() {
			j, dup := owner[k]
			if dup && j != i {
				hint := ""
				if ep.DB != eps[j].DB {
					hint = " (two databases of one server fail together: they are one instance)"
				}
				return invalidf("endpoint %d %s and endpoint %d %s are the same instance, which would vote twice%s", j, name(j), i, name(i), hint)
			}
			owner[k] = i
		}
	}
	return nil
}

// nameRaw names an endpoint string for an error message: quoted, with
// anything that may be a password replaced by *******, and shortened.
func nameRaw(s string) string {
	r := redactRaw(s)
	const max = 200
	if len(r) > max {
		return strconv.Quote(r[:max]) + "…"
	}
	return strconv.Quote(r)
}

// redactRaw hides what may be a password in an endpoint string that may
// not parse: everything after the first ':' of the user info (taken up to
// the last '@'; all of it when it has no ':'), and the values of options
// whose name mentions a password. It errs on the side of hiding more.
func redactRaw(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		if at := strings.LastIndexByte(s, '@'); at >= 0 {
			return redacted + s[at:]
		}
		return s
	}
	head, rest := s[:i+3], s[i+3:]
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		ui := rest[:at]
		if c := strings.IndexByte(ui, ':'); c >= 0 {
			ui = ui[:c+1] + redacted
		} else {
			ui = redacted
		}
		rest = ui + rest[at:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		pairs := strings.Split(rest[q+1:], "&")
		for j, p := range pairs {
			k, _, hasValue := strings.Cut(p, "=")
			if hasValue && strings.Contains(strings.ToLower(k), "pass") {
				pairs[j] = k + "=" + redacted
			}
		}
		rest = rest[:q+1] + strings.Join(pairs, "&")
	}
	return head + rest
}

// tlsConfig returns the TLS configuration to dial with: a clone of e.TLS
// (or a new one), trusting the CAs of e.CAFile if set; nil for plain text.
func (e *Endpoint) tlsConfig() (*tls.Config, error) {
	if !e.usesTLS() {
		return nil, nil
	}
	var c *tls.Config
	if e.TLS != nil {
		c = e.TLS.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CAFile %q holds no PEM certificate", e.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}
