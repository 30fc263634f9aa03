// Package goredis adapts go-redis v9 clients (redis.UniversalClient: a
// single-node client, a Sentinel failover client or a cluster client) to
// redlock.Client.
package goredis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Client is a redlock.Client backed by a go-redis client. It is safe for
// concurrent use. It does not own the go-redis client: closing it is the
// caller's job.
type Client struct {
	rc redis.UniversalClient
}

// New returns a Client that runs scripts on rc. rc is used as it is: set its
// timeouts (and ContextTimeoutEnabled) as you want them.
func New(rc redis.UniversalClient) *Client { return &Client{rc: rc} }

// Redis returns the underlying go-redis client.
func (c *Client) Redis() redis.UniversalClient { return c.rc }

// EvalSha implements redlock.Client.
func (c *Client) EvalSha(ctx context.Context, sha1 string, keys []string, args []string) (any, error) {
	return c.eval(ctx, "evalsha", sha1, keys, args)
}

// Eval implements redlock.Client.
func (c *Client) Eval(ctx context.Context, script string, keys []string, args []string) (any, error) {
	return c.eval(ctx, "eval", script, keys, args)
}

// eval runs EVAL or EVALSHA as go-redis's Eval and EvalSha do, but builds
// the command's arguments in one slice: going through EvalSha(...any)
// would cost a second slice and conversions on every call. name is a
// constant ("eval", "evalsha"), so boxing it does not allocate.
func (c *Client) eval(ctx context.Context, name any, body string, keys, args []string) (any, error) {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	for _, s := range args {
		a = append(a, s)
	}
	cmd := redis.NewCmd(ctx, a...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3) // routes the command by its first key on a cluster
	}
	_ = c.rc.Process(ctx, cmd)
	return result(cmd.Result())
}

// LoadScripts implements redlock.ScriptLoader: it runs SCRIPT LOAD for each
// script in one pipeline (one connection of the pool; the EVALSHA calls
// after it may take others) and returns the first error. A cluster or ring
// client loads nothing and returns an error that errors.Is
// errors.ErrUnsupported: SCRIPT LOAD would reach one node (shard).
func (c *Client) LoadScripts(ctx context.Context, scripts []string) error {
	switch c.rc.(type) {
	case *redis.ClusterClient, *redis.Ring:
		return errShardedLoad
	}
	if len(scripts) == 0 {
		return ctx.Err()
	}
	_, err := c.rc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range scripts {
			p.ScriptLoad(ctx, s)
		}
		return nil
	})
	return err
}

// errShardedLoad is LoadScripts' answer for a cluster or ring client.
var errShardedLoad = fmt.Errorf("redlock/goredis: SCRIPT LOAD on a cluster or ring: %w", errors.ErrUnsupported)

// String names the instance without its password: "host:port" (with
// "/db" for a database other than 0), "unix:///path" for a unix socket,
// "sentinel" for a Sentinel failover client, "cluster h1:p1,h2:p2" for a
// cluster client, "ring" for a ring.
func (c *Client) String() string {
	switch rc := c.rc.(type) {
	case *redis.Client:
		o := rc.Options()
		name := o.Addr
		switch {
		case o.Addr == "FailoverClient": // what redis.NewFailoverClient sets
			name = "sentinel"
		case o.Network == "unix":
			name = "unix://" + o.Addr
		}
		if o.DB != 0 {
			name += "/" + strconv.Itoa(o.DB)
		}
		return name
	case *redis.ClusterClient:
		return "cluster " + strings.Join(rc.Options().Addrs, ",")
	case *redis.Ring:
		return "ring"
	}
	return "go-redis"
}

func result(v any, err error) (any, error) {
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return nil, err
	}
	return normalise(v), nil
}

// normalise converts a RESP3 reply to what a RESP2 connection would see, as
// redlock.Client requires: booleans become 1 (true) and nil (false),
// doubles and big numbers their decimal text, maps a flat key, value, ...
// array in key order. Integers, strings and nil are returned as they are.
func normalise(v any) any {
	switch v := v.(type) {
	case int64, string, nil:
		return v
	case []any:
		for i, e := range v {
			v[i] = normalise(e)
		}
		return v
	case bool:
		if v {
			return int64(1)
		}
		return nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case *big.Int:
		return v.String()
	case map[any]any:
		keys := make([]string, 0, len(v))
		byKey := make(map[string]any, len(v))
		for k, e := range v {
			ks := fmt.Sprint(k)
			keys = append(keys, ks)
			byKey[ks] = e
		}
		sort.Strings(keys)
		out := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			out = append(out, k, normalise(byKey[k]))
		}
		return out
	}
	return v
}

// IsCluster reports whether the client talks to a Redis Cluster, where a
// multi-key script must keep its keys in one slot.
func (c *Client) IsCluster() bool {
	_, ok := c.rc.(*redis.ClusterClient)
	return ok
}

// Subscribe implements redlock.Subscriber on a dedicated pub/sub
// connection, which go-redis re-establishes after errors.
func (c *Client) Subscribe(ctx context.Context, channel string, onMessage func(payload string)) (io.Closer, error) {
	ps := c.rc.Subscribe(ctx, channel)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	msgs := ps.Channel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range msgs {
			onMessage(msg.Payload)
		}
	}()
	return &subscription{ps: ps, done: done}, nil
}

type subscription struct {
	ps   *redis.PubSub
	done chan struct{}
}

func (s *subscription) Close() error {
	err := s.ps.Close()
	<-s.done
	return err
}
