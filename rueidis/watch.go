package rueidis

import (
	"context"
	"errors"
	"fmt"
	"sync"

	rd "github.com/redis/rueidis"
)

// keyWatch is the interface of redlock.KeyWatch (an alias of this literal).
type keyWatch = interface {
	Watch(ctx context.Context, key string) (exists bool, err error)
	Close() error
}

// WatchKeys implements redlock.KeyWatcher with CLIENT TRACKING (RESP3,
// Redis 6 or later) on one dedicated connection: each Watch is an EXISTS
// on it, which makes the server send an invalidation for the key when it
// is next deleted, expires, is evicted or written (a new expiry time
// too); onChange gets it. The pipelined connections are not tracked. A
// cluster client, or a server that refuses CLIENT TRACKING, gives an error
// wrapping errors.ErrUnsupported.
func (c *Client) WatchKeys(ctx context.Context, onChange func(key string)) (keyWatch, error) {
	if c.rc.Mode() == rd.ClientModeCluster {
		return nil, fmt.Errorf("redlock: key watch on a cluster client: %w", errors.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dc, release := c.rc.Dedicate()
	w := &watch{dc: dc, release: release, onChange: onChange, done: make(chan struct{})}
	lost := dc.SetOnInvalidations(w.invalidated)
	if err := dc.Do(ctx, dc.B().ClientTracking().On().Build()).Error(); err != nil {
		dc.SetOnInvalidations(nil)
		release()
		if _, isReply := rd.IsRedisErr(err); isReply {
			return nil, fmt.Errorf("redlock: CLIENT TRACKING: %w (%w)", errors.ErrUnsupported, err)
		}
		return nil, withCtx(ctx, err)
	}
	go func() {
		defer close(w.done)
		<-lost // closed when invalidations stop: the connection is gone, or Close
		w.mu.Lock()
		closing := w.closing
		w.mu.Unlock()
		if !closing {
			onChange("")
		}
	}()
	return w, nil
}

type watch struct {
	dc       rd.DedicatedClient
	release  func()
	onChange func(string)
	done     chan struct{}

	mu      sync.Mutex
	closing bool
}

// invalidated receives the server's invalidation messages: a nil slice
// means every key (FLUSHALL, or the tracking state was lost).
func (w *watch) invalidated(msgs []rd.RedisMessage) {
	if msgs == nil {
		w.onChange("")
		return
	}
	for i := range msgs {
		if k, err := msgs[i].ToString(); err == nil {
			w.onChange(k)
		}
	}
}

// Watch implements redlock.KeyWatch.
func (w *watch) Watch(ctx context.Context, key string) (bool, error) {
	n, err := w.dc.Do(ctx, w.dc.B().Exists().Key(key).Build()).AsInt64()
	if err != nil {
		return false, withCtx(ctx, err)
	}
	return n > 0, nil
}

// Close implements redlock.KeyWatch: the connection goes back to rueidis's
// pool (which turns tracking off on it).
func (w *watch) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		<-w.done
		return nil
	}
	w.closing = true
	w.mu.Unlock()
	w.dc.SetOnInvalidations(nil)
	w.release()
	<-w.done
	return nil
}
