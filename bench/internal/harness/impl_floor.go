package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// The raw floors are the least work Redlock can do: one SET NX PX sent to
// every instance in parallel, then one compare-and-delete script sent to
// every instance in parallel, each time waiting for all the replies. They
// generate a random token per cycle (crypto/rand), do no retry, no validity
// arithmetic and no quorum counting: every instance must say yes.

// releaseScript deletes the key if it holds the token (the common release
// script of redsync, node-redlock and aioredlock).
const releaseScript = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`

var (
	errFloorNotSet      = errors.New("SET NX refused: key exists")
	errFloorNotReleased = errors.New("compare-and-delete deleted nothing")
)

// floorOps is what a floor worker does on one instance.
type floorOps interface {
	set(ctx context.Context, i int, key, token string) error
	del(ctx context.Context, i int, key, token string) error
}

// floorWorker fans one operation out to every instance: instances 1..N-1
// on goroutines, instance 0 on the caller's.
type floorWorker struct {
	ops   floorOps
	n     int
	key   string
	token string
	buf   [32]byte
	errs  []error
	wg    sync.WaitGroup
}

func newFloorWorker(ops floorOps, n int, key string) *floorWorker {
	return &floorWorker{ops: ops, n: n, key: key, errs: make([]error, n)}
}

func (w *floorWorker) fan(ctx context.Context, del bool) error {
	for i := 1; i < w.n; i++ {
		w.wg.Add(1)
		go w.one(ctx, i, del)
	}
	w.errs[0] = w.call(ctx, 0, del)
	w.wg.Wait()
	for i, err := range w.errs {
		if err != nil {
			return fmt.Errorf("instance %d: %w", i, err)
		}
	}
	return nil
}

func (w *floorWorker) one(ctx context.Context, i int, del bool) {
	defer w.wg.Done()
	w.errs[i] = w.call(ctx, i, del)
}

func (w *floorWorker) call(ctx context.Context, i int, del bool) error {
	if del {
		return w.ops.del(ctx, i, w.key, w.token)
	}
	return w.ops.set(ctx, i, w.key, w.token)
}

func (w *floorWorker) Lock(ctx context.Context) error {
	var b [16]byte
	_, _ = rand.Read(b[:])
	hex.Encode(w.buf[:], b[:])
	w.token = string(w.buf[:])
	return w.fan(ctx, false)
}

func (w *floorWorker) Unlock(ctx context.Context) error { return w.fan(ctx, true) }

// implGoredisFloor is the raw floor on go-redis v9 (default options).
func implGoredisFloor() *Impl {
	return &Impl{
		Key:   "goredis-floor",
		Label: "raw go-redis floor",
		Floor: true,
		Setup: func(addrs []string, p Params) (Target, error) {
			t := &goredisFloor{p: p, script: redis.NewScript(releaseScript)}
			for _, a := range addrs {
				t.rcs = append(t.rcs, newGoredisClient(a))
			}
			return t, nil
		},
	}
}

type goredisFloor struct {
	rcs    []*redis.Client
	script *redis.Script
	p      Params
}

func (t *goredisFloor) NewWorker(resource string) Worker {
	return newFloorWorker(t, len(t.rcs), resource)
}

func (t *goredisFloor) Close() error { return closeGoredis(t.rcs) }

func (t *goredisFloor) set(ctx context.Context, i int, key, token string) error {
	ok, err := t.rcs[i].SetNX(ctx, key, token, t.p.TTL).Result()
	if err == nil && !ok {
		err = errFloorNotSet
	}
	return err
}

func (t *goredisFloor) del(ctx context.Context, i int, key, token string) error {
	n, err := t.script.Run(ctx, t.rcs[i], []string{key}, token).Int64()
	if err == nil && n != 1 {
		err = errFloorNotReleased
	}
	return err
}

// implRueidisFloor is the raw floor on rueidis (auto-pipelining, one
// client per instance).
func implRueidisFloor() *Impl {
	return &Impl{
		Key:   "rueidis-floor",
		Label: "raw rueidis floor",
		Floor: true,
		Setup: func(addrs []string, p Params) (Target, error) {
			t := &rueidisFloor{p: p, script: rueidis.NewLuaScript(releaseScript), ttlMS: p.TTL.Milliseconds()}
			for _, a := range addrs {
				c, err := rueidis.NewClient(rueidis.ClientOption{
					InitAddress:       []string{a},
					DisableCache:      true,
					ForceSingleClient: true,
				})
				if err != nil {
					_ = t.Close()
					return nil, err
				}
				t.cs = append(t.cs, c)
			}
			return t, nil
		},
	}
}

type rueidisFloor struct {
	cs     []rueidis.Client
	script *rueidis.Lua
	ttlMS  int64
	p      Params
}

func (t *rueidisFloor) NewWorker(resource string) Worker {
	return newFloorWorker(t, len(t.cs), resource)
}

func (t *rueidisFloor) Close() error {
	for _, c := range t.cs {
		c.Close()
	}
	return nil
}

func (t *rueidisFloor) set(ctx context.Context, i int, key, token string) error {
	c := t.cs[i]
	err := c.Do(ctx, c.B().Set().Key(key).Value(token).Nx().PxMilliseconds(t.ttlMS).Build()).Error()
	if rueidis.IsRedisNil(err) {
		err = errFloorNotSet
	}
	return err
}

func (t *rueidisFloor) del(ctx context.Context, i int, key, token string) error {
	n, err := t.script.Exec(ctx, t.cs[i], []string{key}, []string{token}).AsInt64()
	if err == nil && n != 1 {
		err = errFloorNotReleased
	}
	return err
}
