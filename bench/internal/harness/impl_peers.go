package harness

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

// implRedsync is go-redsync/redsync v4 over go-redis v9 pools, with its
// default retry delays (50-250ms). Each worker keeps one Mutex for its
// resource, as redsync intends (NewMutex once, Lock/Unlock repeatedly).
func implRedsync() *Impl {
	return &Impl{
		Key:   "redsync",
		Label: "redsync v4",
		Setup: func(addrs []string, p Params) (Target, error) {
			t := &redsyncTarget{p: p}
			pools := make([]redsyncredis.Pool, len(addrs))
			for i, a := range addrs {
				rc := newGoredisClient(a)
				t.rcs = append(t.rcs, rc)
				pools[i] = redsyncgoredis.NewPool(rc)
			}
			t.rs = redsync.New(pools...)
			return t, nil
		},
	}
}

type redsyncTarget struct {
	rs  *redsync.Redsync
	rcs []*redis.Client
	p   Params
}

func (t *redsyncTarget) NewWorker(resource string) Worker {
	opts := []redsync.Option{redsync.WithExpiry(t.p.TTL)}
	if t.p.Contended {
		// Retry until the cell's ctx ends, like LockWait.
		opts = append(opts, redsync.WithTries(math.MaxInt32))
	}
	return redsyncWorker{m: t.rs.NewMutex(resource, opts...)}
}

func (t *redsyncTarget) Close() error { return closeGoredis(t.rcs) }

type redsyncWorker struct{ m *redsync.Mutex }

func (w redsyncWorker) Lock(ctx context.Context) error { return w.m.LockContext(ctx) }

func (w redsyncWorker) Unlock(ctx context.Context) error {
	ok, err := w.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: unlock not confirmed by a quorum")
	}
	return err
}

// implRedislock is bsm/redislock: a lock on a single instance. Contended
// waiters retry with a linear 100ms backoff (its README's strategy) until
// the cell's ctx ends.
func implRedislock() *Impl {
	return &Impl{
		Key:        "redislock",
		Label:      "bsm/redislock",
		SingleOnly: true,
		Setup: func(addrs []string, p Params) (Target, error) {
			if len(addrs) != 1 {
				return nil, errors.New("bsm/redislock locks a single instance")
			}
			rc := newGoredisClient(addrs[0])
			t := &redislockTarget{rc: rc, c: redislock.New(rc), p: p}
			if p.Contended {
				t.opt = &redislock.Options{RetryStrategy: redislock.LinearBackoff(retryBackoffBSM)}
			}
			return t, nil
		},
	}
}

const retryBackoffBSM = 100 * time.Millisecond

type redislockTarget struct {
	rc  *redis.Client
	c   *redislock.Client
	p   Params
	opt *redislock.Options
}

func (t *redislockTarget) NewWorker(resource string) Worker {
	return &redislockWorker{t: t, resource: resource}
}

func (t *redislockTarget) Close() error { return t.rc.Close() }

type redislockWorker struct {
	t        *redislockTarget
	resource string
	held     *redislock.Lock
}

func (w *redislockWorker) Lock(ctx context.Context) error {
	var err error
	w.held, err = w.t.c.Obtain(ctx, w.resource, w.t.p.TTL, w.t.opt)
	return err
}

func (w *redislockWorker) Unlock(ctx context.Context) error {
	l := w.held
	w.held = nil
	if l == nil {
		return errNotHeld
	}
	return l.Release(ctx)
}
