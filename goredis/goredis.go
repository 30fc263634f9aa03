// Package goredis adapts go-redis v9 clients (redis.UniversalClient: a
// single-node client, a Sentinel failover client or a cluster client) to
// redlock.Client.
package goredis

import (
	"context"
	"errors"
	"io"

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
	return result(c.rc.EvalSha(ctx, sha1, keys, toAny(args)...).Result())
}

// Eval implements redlock.Client.
func (c *Client) Eval(ctx context.Context, script string, keys []string, args []string) (any, error) {
	return result(c.rc.Eval(ctx, script, keys, toAny(args)...).Result())
}

// String names the instance without its password.
func (c *Client) String() string {
	switch rc := c.rc.(type) {
	case *redis.Client:
		return rc.Options().Addr
	case *redis.ClusterClient:
		return "cluster"
	}
	return "go-redis"
}

func result(v any, err error) (any, error) {
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}

func toAny(args []string) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
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
