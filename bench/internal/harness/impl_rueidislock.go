package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
)

// rueidislockPrefix is rueidislock's default key prefix: a lock on name
// lives in "<prefix>:<i>:<name>", i < 2*KeyMajority-1.
const rueidislockPrefix = "rueidislock"

// implRueidislock is rueidislock (github.com/redis/rueidis/rueidislock, the
// rueidis module the library uses): keys on one deployment, so N=1 only,
// with KeyMajority 1 (one key, as its README sets it for a single
// deployment) and NoLoopTracking (redis-server ≥ 7.0.5), and TryNextAfter
// raised from 20 ms to the harness's call timeout: it bounds each attempt
// on a key, and with its default a loaded 2-core machine failed 489 calls
// of a run (64 callers: "context deadline exceeded"; a contended waiter
// whose attempt timed out then waited seconds for an invalidation). Its
// KeyValidity is
// the run's TTL; it extends held locks itself every KeyValidity/2 (the cells
// hold far less). Uncontended: TryWithContext; contended: WithContext, which
// waits for the client-side-caching invalidation of the key. Unlock is the
// cancel function, which returns once the key is deleted.
func implRueidislock() *Impl {
	return &Impl{
		Key:          "rueidislock",
		Label:        "rueidislock",
		SingleOnly:   true,
		OwnKeyFormat: true,
		Setup: func(addrs []string, p Params) (Target, error) {
			if len(addrs) != 1 {
				return nil, errors.New("rueidislock: one deployment")
			}
			l, err := rueidislock.NewLocker(rueidislock.LockerOption{
				ClientOption:   rueidis.ClientOption{InitAddress: addrs},
				KeyPrefix:      rueidislockPrefix,
				KeyValidity:    p.TTL,
				KeyMajority:    1,
				NoLoopTracking: true,
				TryNextAfter:   callTimeout,
			})
			if err != nil {
				return nil, err
			}
			return &rueidislockTarget{l: l, p: p}, nil
		},
	}
}

type rueidislockTarget struct {
	l rueidislock.Locker
	p Params
}

func (t *rueidislockTarget) NewWorker(resource string) Worker {
	return &rueidislockWorker{t: t, resource: resource}
}

func (t *rueidislockTarget) Close() error {
	t.l.Close()
	return nil
}

// Abandon leaves a lock on resource that nobody releases, as a holder that
// crashed would: rueidislock's own holders extend and release their keys
// from goroutines, so this writes its key (index 0 of KeyMajority 1)
// directly, with the SET NX PX its script uses.
func (t *rueidislockTarget) Abandon(ctx context.Context, resource string, ttl time.Duration) error {
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	c := t.l.Client()
	key := rueidislockPrefix + ":0:" + resource
	res := c.Do(ctx, c.B().Set().Key(key).Value(hex.EncodeToString(tok[:])).Nx().PxMilliseconds(ttl.Milliseconds()).Build())
	if err := res.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return errors.New("rueidislock: abandon: " + key + " is held (ttl " + strconv.FormatInt(ttl.Milliseconds(), 10) + " ms)")
		}
		return err
	}
	return nil
}

type rueidislockWorker struct {
	t        *rueidislockTarget
	resource string
	release  context.CancelFunc
}

func (w *rueidislockWorker) Lock(ctx context.Context) error {
	var err error
	if w.t.p.Contended {
		_, w.release, err = w.t.l.WithContext(ctx, w.resource)
	} else {
		_, w.release, err = w.t.l.TryWithContext(ctx, w.resource)
	}
	if err != nil {
		w.release = nil
	}
	return err
}

func (w *rueidislockWorker) Unlock(context.Context) error {
	r := w.release
	w.release = nil
	if r == nil {
		return errNotHeld
	}
	r()
	return nil
}
