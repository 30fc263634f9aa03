package goredis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// keyWatch is the interface of redlock.KeyWatch (an alias of this literal).
type keyWatch = interface {
	Watch(ctx context.Context, key string) (exists bool, err error)
	Close() error
}

// maxWatched bounds the keyspace channels one session stays subscribed
// to: past it, the session ends (onChange("")) and the Manager opens a
// new one.
const maxWatched = 4096

// WatchKeys implements redlock.KeyWatcher with keyspace notifications,
// which must be enabled on the server: notify-keyspace-events with K and
// g and x (or KA), for example "Kgx". Each Watch subscribes to the key's
// keyspace channel on one dedicated pub/sub connection (and stays
// subscribed while the session lasts) and reads EXISTS; del, expired and
// evicted events reach onChange. go-redis has no hook for the server's
// RESP3 invalidation pushes on an idle connection, so CLIENT TRACKING is
// not used here. A cluster client, or a server where the notifications are
// off or CONFIG GET is not allowed, gives an error wrapping
// errors.ErrUnsupported.
func (c *Client) WatchKeys(ctx context.Context, onChange func(key string)) (keyWatch, error) {
	rc, ok := c.rc.(*redis.Client)
	if !ok {
		return nil, fmt.Errorf("redlock: key watch needs a single-node or Sentinel go-redis client: %w", errors.ErrUnsupported)
	}
	cfg, err := rc.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOPERM") || strings.HasPrefix(err.Error(), "ERR") {
			return nil, fmt.Errorf("redlock: key watch: %w (%w)", errors.ErrUnsupported, err)
		}
		return nil, err
	}
	if ev := cfg["notify-keyspace-events"]; !keyspaceEnabled(ev) {
		return nil, fmt.Errorf("redlock: key watch: notify-keyspace-events is %q, needs K with g and x (or A): %w", ev, errors.ErrUnsupported)
	}
	prefix := "__keyspace@" + strconv.Itoa(rc.Options().DB) + "__:"
	ps := rc.Subscribe(ctx)
	w := &watch{rc: rc, ps: ps, prefix: prefix, onChange: onChange, subs: make(map[string]struct{}), done: make(chan struct{})}
	msgs := ps.ChannelWithSubscriptions()
	go func() {
		defer close(w.done)
		// go-redis resubscribes by itself after its connection dropped,
		// and an event published meanwhile is lost; the confirmation of a
		// channel confirmed before is how such a resubscription shows.
		confirmed := make(map[string]bool)
		for v := range msgs {
			switch m := v.(type) {
			case *redis.Subscription:
				key, ok := strings.CutPrefix(m.Channel, prefix)
				if !ok || m.Kind != "subscribe" {
					continue
				}
				if confirmed[key] {
					onChange(key) // a deletion may have been missed
				}
				confirmed[key] = true
			case *redis.Message:
				key, ok := strings.CutPrefix(m.Channel, prefix)
				if !ok {
					continue
				}
				switch m.Payload {
				case "del", "expired", "evicted":
					onChange(key)
				}
			}
		}
	}()
	return w, nil
}

// keyspaceEnabled reports whether flags (notify-keyspace-events) publish
// the del, expired and evicted events on keyspace channels.
func keyspaceEnabled(flags string) bool {
	if !strings.Contains(flags, "K") {
		return false
	}
	return strings.Contains(flags, "A") || strings.Contains(flags, "g") && strings.Contains(flags, "x")
}

var errTooManyKeys = errors.New("redlock: key watch session full; open a new one")

type watch struct {
	rc       *redis.Client
	ps       *redis.PubSub
	prefix   string
	onChange func(string)
	done     chan struct{}

	mu   sync.Mutex
	subs map[string]struct{}
}

// Watch implements redlock.KeyWatch: it subscribes to the key's channel
// (once per session), then reads whether the key exists.
func (w *watch) Watch(ctx context.Context, key string) (bool, error) {
	w.mu.Lock()
	_, subscribed := w.subs[key]
	if !subscribed && len(w.subs) >= maxWatched {
		// The session ends rather than grow without bound; the caller
		// opens a new one.
		w.mu.Unlock()
		w.onChange("")
		return false, errTooManyKeys
	}
	if !subscribed {
		if err := w.ps.Subscribe(ctx, w.prefix+key); err != nil {
			w.mu.Unlock()
			return false, err
		}
		w.subs[key] = struct{}{}
	}
	w.mu.Unlock()
	n, err := w.rc.Exists(ctx, key).Result()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// Close implements redlock.KeyWatch.
func (w *watch) Close() error {
	err := w.ps.Close()
	<-w.done
	return err
}
