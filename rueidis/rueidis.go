// Package rueidis adapts rueidis clients (github.com/redis/rueidis: a
// single-node client, a Sentinel client or a cluster client) to
// redlock.Client.
//
// rueidis pipelines the commands of concurrent callers on a few shared
// connections (auto-pipelining), which makes it the faster wire when many
// locks are taken at once.
package rueidis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	rd "github.com/redis/rueidis"
)

// Client is a redlock.Client backed by a rueidis client. It is safe for
// concurrent use. It does not own the rueidis client: closing it is the
// caller's job.
type Client struct {
	rc rd.Client
}

// New returns a Client that runs scripts on rc. rc is used as it is; for
// locks, client-side caching is of no use (ClientOption.DisableCache).
func New(rc rd.Client) *Client { return &Client{rc: rc} }

// Rueidis returns the underlying rueidis client.
func (c *Client) Rueidis() rd.Client { return c.rc }

// EvalSha implements redlock.Client: it runs EVALSHA sha1 len(keys) keys...
// args... and returns the normalised reply. ctx bounds the call.
func (c *Client) EvalSha(ctx context.Context, sha1 string, keys []string, args []string) (v any, err error) {
	if len(keys) > 1 {
		defer crossSlot(&err)
	}
	cmd := c.rc.B().Evalsha().Sha1(sha1).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	return result(ctx, c.rc.Do(ctx, cmd))
}

// Eval implements redlock.Client: it runs EVAL script len(keys) keys...
// args... and returns the normalised reply. ctx bounds the call.
func (c *Client) Eval(ctx context.Context, script string, keys []string, args []string) (v any, err error) {
	if len(keys) > 1 {
		defer crossSlot(&err)
	}
	cmd := c.rc.B().Eval().Script(script).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	return result(ctx, c.rc.Do(ctx, cmd))
}

// LoadScripts implements redlock.ScriptLoader: it runs SCRIPT LOAD for each
// script, all in one DoMulti batch. rueidis writes a batch to one
// connection in order, ahead of the commands issued after it; with a single
// pipelined connection per server (as redlock.New dials), the server runs
// the batch before any later EVALSHA, even one sent while this call still
// waits or after it stopped waiting. It returns the first error, a reply
// error with its full text ("NOPERM ..."). A cluster client loads nothing
// and returns an error that errors.Is errors.ErrUnsupported: SCRIPT LOAD
// would reach one node.
func (c *Client) LoadScripts(ctx context.Context, scripts []string) error {
	if c.rc.Mode() == rd.ClientModeCluster {
		return errClusterLoad
	}
	if len(scripts) == 0 {
		return ctx.Err()
	}
	cmds := make(rd.Commands, len(scripts))
	for i, s := range scripts {
		cmds[i] = c.rc.B().ScriptLoad().Script(s).Build()
	}
	for _, r := range c.rc.DoMulti(ctx, cmds...) {
		if _, err := result(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// errClusterLoad is LoadScripts' answer for a cluster client.
var errClusterLoad = fmt.Errorf("redlock/rueidis: SCRIPT LOAD on a Redis Cluster: %w", errors.ErrUnsupported)

// crossSlotPanic is how rueidis's command builder of a cluster client
// rejects keys in different hash slots.
const crossSlotPanic = "multi key command with different key slots"

// errCrossSlot is what a cluster would answer to such a command.
var errCrossSlot = errors.New("CROSSSLOT Keys in request don't hash to the same slot")

// crossSlot turns the builder's cross-slot panic into the error a cluster
// would reply with; other panics continue.
func crossSlot(err *error) {
	if p := recover(); p != nil {
		if s, ok := p.(string); ok && strings.HasPrefix(s, crossSlotPanic) {
			*err = errCrossSlot
			return
		}
		panic(p)
	}
}

// String names the instance without its password: the address of a
// single-node client, the current master's address for a Sentinel client,
// "cluster" for a cluster client.
func (c *Client) String() string {
	if c.rc.Mode() == rd.ClientModeCluster {
		return "cluster"
	}
	nodes := c.rc.Nodes()
	if len(nodes) == 1 {
		for addr := range nodes {
			return addr
		}
	}
	return "rueidis"
}

// replyError is a Redis error reply. rueidis strips the "ERR " prefix from
// error replies; replyError keeps the text as the server sent it, as
// redlock.Client requires, and unwraps to the *rueidis.RedisError.
type replyError struct {
	text string
	err  *rd.RedisError
}

func (e *replyError) Error() string { return e.text }
func (e *replyError) Unwrap() error { return e.err }

// result turns a rueidis result into a redlock reply: a nil reply is
// (nil, nil), a Redis error reply an error with its full text, a transport
// error is returned as it is (joined with ctx.Err() when ctx has ended, so
// that errors.Is finds the context error), any other reply is normalised.
func result(ctx context.Context, r rd.RedisResult) (any, error) {
	msg, err := r.ToMessage()
	if err != nil {
		if rd.IsRedisNil(err) {
			return nil, nil
		}
		if re, ok := rd.IsRedisErr(err); ok {
			return nil, newReplyError(&msg, re)
		}
		return nil, withCtx(ctx, err)
	}
	return normalise(&msg)
}

func newReplyError(m *rd.RedisMessage, re *rd.RedisError) error {
	text, _ := m.ToString() // for an error reply: the untrimmed text
	if text == "" {
		text = re.Error()
	}
	return &replyError{text: text, err: re}
}

// withCtx makes the context error visible to errors.Is when ctx has ended
// and err does not already say so.
func withCtx(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return &ctxError{ctx: cerr, err: err}
	}
	return err
}

// ctxError is a transport error that happened because the context ended.
type ctxError struct{ ctx, err error }

func (e *ctxError) Error() string   { return e.ctx.Error() + ": " + e.err.Error() }
func (e *ctxError) Unwrap() []error { return []error{e.ctx, e.err} }

// normalise converts a reply that is not an error to int64, string, []any
// or nil, the way a RESP2 connection would see it: RESP3 booleans become 1
// (true) and nil (false), doubles and big numbers their decimal text, maps
// a flat key, value, ... array in key order.
func normalise(m *rd.RedisMessage) (any, error) {
	switch {
	case m.IsInt64():
		return m.AsInt64()
	case m.IsString():
		return m.ToString()
	case m.IsNil():
		return nil, nil
	case m.IsArray():
		elems, err := m.ToArray()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(elems))
		for i := range elems {
			out[i], err = element(&elems[i])
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	case m.IsBool():
		if b, _ := m.AsBool(); b {
			return int64(1), nil
		}
		return nil, nil
	case m.IsFloat64():
		f, err := m.ToFloat64()
		if err != nil {
			return nil, err
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	case m.IsMap():
		kv, err := m.AsMap()
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]any, 0, 2*len(keys))
		for _, k := range keys {
			v := kv[k]
			e, err := element(&v)
			if err != nil {
				return nil, err
			}
			out = append(out, k, e)
		}
		return out, nil
	}
	// Big numbers and verbatim strings: their text.
	return m.ToString()
}

// element normalises an array element; an error reply inside an array
// becomes an error value in the array, as go-redis does.
func element(m *rd.RedisMessage) (any, error) {
	if err := m.Error(); err != nil {
		if re, ok := rd.IsRedisErr(err); ok {
			return newReplyError(m, re), nil
		}
		return nil, nil // a nil element
	}
	return normalise(m)
}

// IsCluster reports whether the client talks to a Redis Cluster, where a
// multi-key script must keep its keys in one slot.
func (c *Client) IsCluster() bool { return c.rc.Mode() == rd.ClientModeCluster }

// resubscribeDelay is the pause before a lost subscription is renewed.
const resubscribeDelay = 100 * time.Millisecond

// Subscribe implements redlock.Subscriber. It subscribes to channel on a
// dedicated connection (the pipelined ones stay free of subscriber mode,
// which some servers, like miniredis, keep exclusive even under RESP3),
// returns once the server confirmed the subscription, and keeps it, renewed
// after errors, until the returned Closer is closed.
func (c *Client) Subscribe(ctx context.Context, channel string, onMessage func(payload string)) (io.Closer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	subscribe := func(ctx context.Context) (<-chan error, func(), error) {
		dc, release := c.rc.Dedicate()
		confirmed := make(chan struct{}, 1)
		lost := dc.SetPubSubHooks(rd.PubSubHooks{
			OnMessage: func(m rd.PubSubMessage) { onMessage(m.Message) },
			OnSubscription: func(s rd.PubSubSubscription) {
				if s.Kind == "subscribe" {
					select {
					case confirmed <- struct{}{}:
					default:
					}
				}
			},
		})
		if err := dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error(); err != nil {
			release()
			return nil, nil, err
		}
		select {
		case <-confirmed:
			return lost, release, nil
		case err := <-lost:
			release()
			if err == nil {
				err = errors.New("redlock: subscription closed")
			}
			return nil, nil, err
		case <-ctx.Done():
			release()
			return nil, nil, ctx.Err()
		}
	}
	lost, release, err := subscribe(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &subscription{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-sctx.Done():
				release()
				return
			case <-lost:
			}
			release()
			// Renew after a pause, until it works or Close.
			for {
				t := time.NewTimer(resubscribeDelay)
				select {
				case <-sctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				rctx, rcancel := context.WithTimeout(sctx, 5*time.Second)
				lost, release, err = subscribe(rctx)
				rcancel()
				if err == nil {
					break
				}
			}
		}
	}()
	return s, nil
}

type subscription struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *subscription) Close() error {
	s.cancel()
	<-s.done
	return nil
}
