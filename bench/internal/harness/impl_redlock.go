package harness

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/goredis"
)

// implRedlock is this library as most callers use it: redlock.New dials
// the endpoints with its default wire.
func implRedlock() *Impl {
	return &Impl{
		Key:   "redlock",
		Label: "redlock (this)",
		Setup: func(addrs []string, p Params) (Target, error) {
			m, err := redlock.New(addrs, redlock.Config{})
			if err != nil {
				return nil, err
			}
			return newRedlockTarget(m, p, nil), nil
		},
	}
}

// implRedlockGoredis is this library over go-redis v9 clients handed in
// with NewFromClients and the goredis adapter.
func implRedlockGoredis() *Impl {
	return &Impl{
		Key:   "redlock-goredis",
		Label: "redlock (go-redis adapter)",
		Setup: func(addrs []string, p Params) (Target, error) {
			rcs := make([]*redis.Client, len(addrs))
			clients := make([]redlock.Client, len(addrs))
			for i, a := range addrs {
				rcs[i] = newGoredisClient(a)
				clients[i] = goredis.New(rcs[i])
			}
			m, err := redlock.NewFromClients(clients, redlock.Config{})
			if err != nil {
				closeGoredis(rcs)
				return nil, err
			}
			return newRedlockTarget(m, p, func() error { return closeGoredis(rcs) }), nil
		},
	}
}

// newGoredisClient is the go-redis client every go-redis based
// implementation gets: the library defaults, as a caller would write it.
func newGoredisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr})
}

func closeGoredis(rcs []*redis.Client) error {
	var errs []error
	for _, rc := range rcs {
		errs = append(errs, rc.Close())
	}
	return errors.Join(errs...)
}

type redlockTarget struct {
	m         *redlock.Manager
	opts      []redlock.LockOption
	contended bool
	closeFn   func() error
}

func newRedlockTarget(m *redlock.Manager, p Params, closeFn func() error) *redlockTarget {
	return &redlockTarget{m: m, opts: []redlock.LockOption{redlock.TTL(p.TTL)}, contended: p.Contended, closeFn: closeFn}
}

func (t *redlockTarget) NewWorker(resource string) Worker {
	return &redlockWorker{t: t, resource: resource}
}

func (t *redlockTarget) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := t.m.Close(ctx)
	if t.closeFn != nil {
		err = errors.Join(err, t.closeFn())
	}
	return err
}

type redlockWorker struct {
	t        *redlockTarget
	resource string
	held     *redlock.Lock
}

func (w *redlockWorker) Lock(ctx context.Context) error {
	var err error
	if w.t.contended {
		w.held, err = w.t.m.LockWait(ctx, w.resource, w.t.opts...)
	} else {
		w.held, err = w.t.m.Lock(ctx, w.resource, w.t.opts...)
	}
	return err
}

func (w *redlockWorker) Unlock(ctx context.Context) error {
	l := w.held
	w.held = nil
	if l == nil {
		return errNotHeld
	}
	return l.Unlock(ctx)
}

var errNotHeld = errors.New("unlock without a held lock")
