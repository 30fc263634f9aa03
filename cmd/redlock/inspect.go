package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
)

// The library answers per lock, by quorum; status and release --force need
// each instance's own answer. Until the library exposes that (see the
// report of issue 4), this file dials the instances itself and runs the
// same scripts as the library's scripts/inspect.lua and scripts/release.lua.

// inspectScript is scripts/inspect.lua: {token, pttl_ms}; token "" and pttl
// -2 when the key is missing.
const inspectScript = `local v = redis.call('GET', KEYS[1])
if v == false then
  return {'', -2}
end
return {v, redis.call('PTTL', KEYS[1])}`

// releaseScript is scripts/release.lua: delete the key only when it holds
// ARGV[1]. 1 deleted, 0 already gone, -1 another token holds it.
const releaseScript = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if v == false then
  return 0
end
return -1`

// rawInstance is one instance dialed by this command.
type rawInstance struct {
	name   string // redacted, as Manager.Endpoints names it
	client redlock.Client
	rc     io.Closer
}

// rawInstances is the set of instances of one invocation.
type rawInstances struct {
	inst    []rawInstance
	timeout time.Duration // per call
}

// errUnsupportedEndpoint: the endpoint uses a field of redlock.Endpoint
// that dialRaw does not know (one added to the library after this file).
var errUnsupportedEndpoint = errors.New("redlock: per-instance inspection does not support this endpoint form yet")

// dialRaw dials one go-redis client per endpoint, as the library's
// (unexported) dial does: a single server over TCP or a unix socket, a
// Sentinel-monitored master, or a cluster counted as one instance. It
// contacts no instance. An endpoint that uses a field of redlock.Endpoint
// unknown here is refused rather than dialed wrongly.
func dialRaw(endpoints []string, nodeTimeout time.Duration) (*rawInstances, error) {
	r := &rawInstances{timeout: nodeTimeout}
	for _, s := range endpoints {
		ep, err := redlock.ParseEndpoint(s)
		if err != nil {
			r.close()
			return nil, err
		}
		rc, err := dialEndpoint(ep, nodeTimeout)
		if err != nil {
			r.close()
			return nil, err
		}
		r.inst = append(r.inst, rawInstance{name: ep.String(), client: goredis.New(rc), rc: rc})
	}
	return r, nil
}

func dialEndpoint(ep redlock.Endpoint, nodeTimeout time.Duration) (redis.UniversalClient, error) {
	known := ep
	known.Network, known.Addr, known.SentinelAddrs, known.MasterName = "", "", nil, ""
	known.SentinelUsername, known.SentinelPassword, known.ClusterAddrs, known.DB = "", "", nil, 0
	known.Username, known.Password, known.TLS, known.CAFile = "", "", nil, ""
	known.DialTimeout, known.ReadTimeout, known.WriteTimeout, known.PoolSize = 0, 0, 0, 0
	if !reflect.ValueOf(known).IsZero() {
		return nil, fmt.Errorf("%w: %s", errUnsupportedEndpoint, ep)
	}
	tlsCfg, err := endpointTLS(ep)
	if err != nil {
		return nil, fmt.Errorf("redlock: endpoint %s: %w", ep, err)
	}
	dialTimeout := ep.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = max(nodeTimeout, time.Second)
	}
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	switch {
	case len(ep.SentinelAddrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: ep.MasterName, SentinelAddrs: ep.SentinelAddrs,
			SentinelUsername: ep.SentinelUsername, SentinelPassword: ep.SentinelPassword,
			Username: ep.Username, Password: ep.Password, DB: ep.DB, TLSConfig: tlsCfg,
			DialTimeout: dialTimeout, DialerRetries: 1, ReadTimeout: ep.ReadTimeout, WriteTimeout: ep.WriteTimeout,
			PoolSize: ep.PoolSize, PipelinePoolSize: -1, ContextTimeoutEnabled: true, MaxRetries: -1,
			DisableIdentity: true,
		}), nil
	case len(ep.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: ep.ClusterAddrs, Username: ep.Username, Password: ep.Password, TLSConfig: tlsCfg,
			DialTimeout: dialTimeout, DialerRetries: 1, ReadTimeout: ep.ReadTimeout, WriteTimeout: ep.WriteTimeout,
			PoolSize: ep.PoolSize, PipelinePoolSize: -1, ContextTimeoutEnabled: true, MaxRetries: -1,
			DisableIdentity: true, MaintNotificationsConfig: noMaint, DisableRoutingPolicies: true,
		}), nil
	}
	network := ep.Network
	if network == "" {
		network = "tcp"
	}
	return redis.NewClient(&redis.Options{
		Network: network, Addr: ep.Addr, Username: ep.Username, Password: ep.Password, DB: ep.DB,
		TLSConfig: tlsCfg, DialTimeout: dialTimeout, DialerRetries: 1, ReadTimeout: ep.ReadTimeout,
		WriteTimeout: ep.WriteTimeout, PoolSize: ep.PoolSize, PipelinePoolSize: -1,
		ContextTimeoutEnabled: true, MaxRetries: -1, DisableIdentity: true, MaintNotificationsConfig: noMaint,
	}), nil
}

// endpointTLS is the TLS configuration of ep: a clone of ep.TLS (or a new
// one) trusting the CAs of ep.CAFile; nil for plain text.
func endpointTLS(ep redlock.Endpoint) (*tls.Config, error) {
	if ep.TLS == nil && ep.CAFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ep.TLS != nil {
		c = ep.TLS.Clone()
	}
	if ep.CAFile != "" {
		pem, err := os.ReadFile(ep.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CAFile %q holds no PEM certificate", ep.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

func (r *rawInstances) close() {
	for _, in := range r.inst {
		_ = in.rc.Close()
	}
}

// instState is what one instance holds for a key.
type instState struct {
	Endpoint string
	Token    string        // "" when the key is missing
	TTL      time.Duration // PTTL; negative for a key without expiry
	Err      error         // the instance did not answer usably
}

// inspect asks every instance, in parallel and each within the node
// timeout, who holds key. It returns in endpoint order once all answered.
func (r *rawInstances) inspect(ctx context.Context, key string) []instState {
	out := make([]instState, len(r.inst))
	var wg sync.WaitGroup
	for i, in := range r.inst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = inspectOne(ctx, in, key, r.timeout)
		}()
	}
	wg.Wait()
	return out
}

func inspectOne(ctx context.Context, in rawInstance, key string, timeout time.Duration) instState {
	st := instState{Endpoint: in.name}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := in.client.Eval(ctx, inspectScript, []string{key}, nil)
	if err != nil {
		st.Err = err
		return st
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		st.Err = fmt.Errorf("unexpected reply %v", v)
		return st
	}
	tok, ok1 := a[0].(string)
	ms, ok2 := a[1].(int64)
	if !ok1 || !ok2 {
		st.Err = fmt.Errorf("unexpected reply %v", v)
		return st
	}
	st.Token = tok
	if tok != "" {
		st.TTL = time.Duration(ms) * time.Millisecond
		if ms < 0 {
			st.TTL = -1
		}
	}
	return st
}

// releaseOne deletes key on one instance if it still holds token. It
// returns 1 deleted, 0 already gone, -1 another token holds it now.
func releaseOne(ctx context.Context, in rawInstance, key, token string, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := in.client.Eval(ctx, releaseScript, []string{key}, []string{token})
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("unexpected reply %v", v)
	}
	return n, nil
}

// Verdicts of a resource.
const (
	verdictHeld        = "held"        // one token holds the key on a quorum
	verdictFree        = "free"        // too few instances hold the key for anyone to hold the lock
	verdictContended   = "contended"   // the key is on a quorum but no token is known to hold one
	verdictUnavailable = "unavailable" // too few instances answered to tell
)

// summary is the quorum's view of one resource.
type summary struct {
	Verdict  string
	Locked   bool          // as Manager.IsLocked: the key is on a quorum, under any token
	Holder   string        // the token that holds a quorum, if any
	Votes    int           // instances holding Holder (or, without a holder, the most common token)
	TTL      time.Duration // the smallest TTL among the holder's keys
	Present  int           // instances with the key
	Absent   int           // instances without it
	Failed   int           // instances that did not answer
	N        int
	Quorum   int
	topToken string // the most common token, for the waiting line
}

// summarize computes the verdict the library would give: Manager.IsLocked
// is true when a quorum has the key (under any token) and false when more
// than N-quorum instances lack it.
func summarize(states []instState, quorum int) summary {
	s := summary{N: len(states), Quorum: quorum}
	votes := map[string]int{}
	for _, st := range states {
		switch {
		case st.Err != nil:
			s.Failed++
		case st.Token == "":
			s.Absent++
		default:
			s.Present++
			votes[st.Token]++
		}
	}
	for _, st := range states { // endpoint order: ties resolve the same way each time
		if st.Err == nil && st.Token != "" && votes[st.Token] > s.Votes {
			s.topToken, s.Votes = st.Token, votes[st.Token]
		}
	}
	switch {
	case s.Votes >= quorum:
		s.Verdict, s.Locked, s.Holder = verdictHeld, true, s.topToken
		s.TTL = -1
		for _, st := range states {
			if st.Err == nil && st.Token == s.Holder && st.TTL >= 0 && (s.TTL < 0 || st.TTL < s.TTL) {
				s.TTL = st.TTL
			}
		}
	case s.Present >= quorum:
		s.Verdict, s.Locked = verdictContended, true
	case s.Absent > s.N-quorum:
		s.Verdict = verdictFree
	default:
		s.Verdict = verdictUnavailable
	}
	return s
}
