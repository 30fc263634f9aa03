package chaos

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/testhooks"
)

// Workload configures the workers. It is plain data so that it can be
// handed to worker subprocesses as JSON.
type Workload struct {
	// Endpoints are the addresses the workers lock on (the proxies).
	Endpoints []string
	// Resources are the contended resources.
	Resources []string
	// TTL is the lease of fixed-TTL locks and the DefaultTTL of
	// auto-extended ones.
	TTL time.Duration
	// NodeTimeout, RetryCount, RetryDelayMin and RetryDelayMax go to
	// redlock.Config.
	NodeTimeout                  time.Duration
	RetryCount                   int
	RetryDelayMin, RetryDelayMax time.Duration
	// AutoShare is the share of acquisitions that are auto-extended.
	AutoShare float64
	// HoldMax bounds a short critical section (uniform in [0, HoldMax]).
	HoldMax time.Duration
	// LongHoldP is the probability that an auto-extended lock is held for
	// 0.7 to 1.3 TTLs (through one or two auto-extensions).
	LongHoldP float64
	// ExtendP is the probability that a fixed-TTL holder calls Extend in
	// its critical section.
	ExtendP float64
	// HolderPauseP is the probability that a fixed-TTL holder sleeps for
	// HolderPause in its critical section (past its deadline when
	// HolderPause > TTL), then unlocks (or, one time in two, extends).
	HolderPauseP float64
	HolderPause  time.Duration
	// AcquirePauseP is the probability that an acquisition attempt sleeps
	// for AcquirePause after its replies arrived (testhooks.AfterReplies).
	AcquirePauseP float64
	AcquirePause  time.Duration
	// Fenced takes every lock with a fencing token (redlock.Fenced).
	Fenced bool
	// Race, when its Burst is set, replaces the critical sections above:
	// holders race manual extensions with the watchdog and re-lock by
	// token (see Race and holdRace).
	Race Race
	// QuorumHalf, IgnoreElapsed, PlainDelete and LatestReplyWins break the
	// algorithm on purpose (negative controls; see internal/testhooks).
	QuorumHalf, IgnoreElapsed, PlainDelete, LatestReplyWins bool
	// ReadShare, when above 0, makes every acquisition one of the
	// resource's read-write lock (redlock.RWMutex): a reader's share with
	// this probability, else the writer's lock (see rwmutex.go).
	ReadShare float64
	// ReadersIgnoreWriter breaks the readers on purpose (a negative
	// control): their acquisition script no longer looks at the writer's
	// key (rewritten by a wrapping client, see rwmutex.go).
	ReadersIgnoreWriter bool
	// Seed seeds the workers' choices (each worker mixes in its name).
	Seed uint64
	// MaxDuration bounds a worker's run.
	MaxDuration time.Duration
}

// hooks returns the test hooks the workload asks for, or nil. A pause in
// AfterReplies ends early when ctx ends; noted learns how long it lasted.
func (w *Workload) hooks(ctx context.Context, rng *rand.Rand, noted func(time.Duration)) *testhooks.Hooks {
	if !w.QuorumHalf && !w.IgnoreElapsed && !w.PlainDelete && !w.LatestReplyWins && w.AcquirePauseP == 0 {
		return nil
	}
	h := &testhooks.Hooks{IgnoreElapsed: w.IgnoreElapsed, PlainDelete: w.PlainDelete, LatestReplyWins: w.LatestReplyWins}
	if w.QuorumHalf {
		h.Quorum = func(n int) int { return n / 2 }
	}
	if w.AcquirePauseP > 0 {
		p, d := w.AcquirePauseP, w.AcquirePause
		// The hook runs on the goroutine that called Lock, which is the
		// worker's own: rng is not shared.
		h.AfterReplies = func(string) {
			var slept time.Duration
			if rng.Float64() < p {
				start := time.Now()
				t := time.NewTimer(d)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				slept = time.Since(start)
			}
			if noted != nil {
				noted(slept)
			}
		}
	}
	return h
}

// NewManager returns a Manager configured by w, with w's test hooks
// installed (rng feeds their random choices, ctx cuts their pauses short,
// noted learns of each pause).
func (w *Workload) NewManager(ctx context.Context, rng *rand.Rand, noted func(time.Duration)) (*redlock.Manager, error) {
	if w.ReadersIgnoreWriter {
		return nil, errors.New("chaos: ReadersIgnoreWriter needs newManager (its clients must be closed)")
	}
	m, _, err := w.newManager(ctx, rng, noted)
	return m, err
}

// newManager is NewManager; close closes what the Manager does not own
// (the clients of ReadersIgnoreWriter), after the Manager's Close.
func (w *Workload) newManager(ctx context.Context, rng *rand.Rand, noted func(time.Duration)) (m *redlock.Manager, close func(), err error) {
	if w.ReadersIgnoreWriter {
		m, close, err = w.newSabotagedManager()
		if err != nil {
			return nil, nil, err
		}
		if h := w.hooks(ctx, rng, noted); h != nil {
			testhooks.Install(m, h)
		}
		return m, close, nil
	}
	m, err = redlock.New(w.Endpoints, redlock.Config{
		RetryCount:    w.RetryCount,
		RetryDelayMin: w.RetryDelayMin,
		RetryDelayMax: w.RetryDelayMax,
		DefaultTTL:    w.TTL,
		NodeTimeout:   w.NodeTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	if h := w.hooks(ctx, rng, noted); h != nil {
		testhooks.Install(m, h)
	}
	return m, func() {}, nil
}

// Barrier makes workers start together, once connected: each calls Ready
// after a warm-up lock (which dials its connections and loads the
// scripts), then waits for Start to close.
type Barrier struct {
	Ready func()
	Start <-chan struct{}
}

// RunWorker runs one worker until ctx ends or w.MaxDuration passes,
// recording every Lock call in rec. With b, it warms up and waits for the
// barrier first. It returns an error only when the Manager cannot be
// built.
func RunWorker(ctx context.Context, name string, w Workload, rec *Recorder, b *Barrier) error {
	readied := false
	ready := func() { // exactly once, on every path: the starter waits for it
		if b != nil && !readied {
			readied = true
			b.Ready()
		}
	}
	defer ready()
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(w.Seed, h.Sum64()))
	// The hook runs on this goroutine, inside m.Lock: no locking needed.
	// It runs in every attempt that reached a quorum, so when Lock
	// succeeds, last is the pause of the attempt that won.
	var total, last time.Duration
	m, closeClients, err := w.newManager(ctx, rng, func(d time.Duration) { total, last = total+d, d })
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*w.NodeTimeout+time.Second)
		_ = m.Close(cctx)
		cancel()
		closeClients()
	}()
	ctx, cancel := context.WithTimeout(ctx, w.MaxDuration)
	defer cancel()
	if b != nil {
		warm := []redlock.LockOption{redlock.TTL(w.TTL)}
		if w.Fenced {
			warm = append(warm, redlock.Fenced())
		}
		if l, err := m.TryLock(ctx, "chaos:warm-up:"+name, warm...); err == nil {
			_ = l.Unlock(ctx)
		}
		ready()
		select {
		case <-b.Start:
		case <-ctx.Done():
			return nil
		}
	}
	raceMode := w.Race.Burst > 0
	var tok string // a token of the worker's choosing, for all its locks
	if raceMode && rng.Float64() < w.Race.TokenShare {
		tok = fmt.Sprintf("chaos-token:%s:%d", name, w.Seed)
	}
	cool := map[string]time.Time{} // with tok: when each resource may be locked again
	for ctx.Err() == nil {
		res := w.Resources[rng.IntN(len(w.Resources))]
		if tok != "" && time.Now().Before(cool[res]) {
			if len(cool) == len(w.Resources) && allCool(cool) {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		auto := rng.Float64() < w.AutoShare
		r := Record{Worker: name, Resource: res, Auto: auto, TTL: int64(w.TTL)}
		var opts []redlock.LockOption
		if !auto {
			opts = append(opts, redlock.TTL(w.TTL))
		}
		if w.Fenced {
			opts = append(opts, redlock.Fenced())
		}
		if tok != "" {
			opts = append(opts, redlock.Token(tok))
		}
		if w.ReadShare > 0 {
			r.Read = rng.Float64() < w.ReadShare
		}
		total, last = 0, 0
		r.Invoke = Mono()
		l, err := w.lock(ctx, m, res, r.Read, opts) // rwmutex.go
		r.Return = Mono()
		r.AcqPaused, r.AcqPausedLast = int64(total), int64(last)
		if err != nil {
			r.Err, r.ErrText = Classify(err), err.Error()
			rec.Add(r)
			if tok != "" {
				cool[res] = time.Now().Add(w.Race.Cooldown)
			}
			continue
		}
		r.OK, r.Token, r.Deadline = true, l.Token(), MonoOf(l.Until())
		if f := l.Fence(); f != 0 { // 0: taken without fencing
			r.Fence = &f
		}
		if raceMode {
			w.holdRace(ctx, m, l, &r, rng, tok, rec)
			if tok != "" {
				cool[res] = time.Now().Add(w.Race.Cooldown)
			}
		} else {
			w.hold(ctx, l, &r, rng)
		}
		rec.Add(r)
	}
	return nil
}

// allCool reports whether every resource in cool is cooling down.
func allCool(cool map[string]time.Time) bool {
	now := time.Now()
	for _, t := range cool {
		if !now.Before(t) {
			return false
		}
	}
	return true
}

// holder tracks what a holder knows about its lock.
type holder struct {
	l    *redlock.Lock
	r    *Record
	dl   int64 // latest deadline seen
	last int64 // deadline seen last (holdRace: it can move back)
}

// observe looks at the lock as a careful holder would before acting, and
// reports whether it may act (Valid).
func (h *holder) observe() bool {
	now := Mono() // before Valid: Valid at t means t < Until(t) <= Until read later
	valid := h.l.Valid()
	u := MonoOf(h.l.Until())
	h.last = u
	if u > h.dl+int64(time.Millisecond) { // below 1ms: conversion noise, not an extension
		h.r.Extensions = append(h.r.Extensions, Extension{Invoke: now, Return: now, Auto: true, OK: true, Prev: h.dl, Deadline: u})
		h.dl = u
	}
	if !valid {
		if h.r.InvalidSeen == 0 {
			h.r.InvalidSeen = now
		}
		return false
	}
	if h.r.InvalidSeen != 0 && h.r.Revived == 0 {
		h.r.Revived = now
	}
	if now > u+int64(time.Millisecond) && h.r.ValidLate == 0 { // 1ms: conversion slack
		h.r.ValidLate = now
	}
	return true
}

// sleep waits d while looking at the lock every step; false if ctx ended.
func (h *holder) sleep(ctx context.Context, d, step time.Duration) bool {
	end := time.Now().Add(d)
	for {
		h.observe()
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, step))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// extend calls Extend and records it.
func (h *holder) extend(nodeTimeout time.Duration) error {
	e := Extension{Prev: h.dl}
	ctx, cancel := context.WithTimeout(context.Background(), 2*nodeTimeout)
	e.Invoke = Mono()
	err := h.l.Extend(ctx, 0)
	e.Return = Mono()
	cancel()
	e.OK, e.Err = err == nil, Classify(err)
	e.Deadline = MonoOf(h.l.Until())
	if e.OK && e.Deadline > h.dl {
		h.dl = e.Deadline
	}
	h.r.Extensions = append(h.r.Extensions, e)
	return err
}

// hold runs the critical section and releases the lock.
func (w *Workload) hold(ctx context.Context, l *redlock.Lock, r *Record, rng *rand.Rand) {
	h := &holder{l: l, r: r, dl: r.Deadline}
	short := func() time.Duration { return time.Duration(rng.Int64N(int64(w.HoldMax) + 1)) }
	const step = 10 * time.Millisecond
	switch {
	case r.Auto && rng.Float64() < w.LongHoldP:
		// Past the first auto-extension (at 0.6×TTL), sometimes the second.
		h.sleep(ctx, w.TTL*7/10+time.Duration(rng.Int64N(int64(w.TTL)*6/10)), 25*time.Millisecond)
	case !r.Auto && rng.Float64() < w.HolderPauseP:
		if h.sleep(ctx, short()/4, step) {
			h.pause(ctx, w.HolderPause)
		}
		if r.Paused != 0 && rng.IntN(2) == 0 {
			// The late holder tries to extend instead of unlocking first.
			_ = h.extend(w.NodeTimeout)
		}
	case !r.Auto && rng.Float64() < w.ExtendP:
		if h.sleep(ctx, short(), step) {
			_ = h.extend(w.NodeTimeout)
			h.sleep(ctx, short(), step)
		}
	default:
		h.sleep(ctx, short(), step)
	}
	h.observe()
	r.FinalDeadline = h.dl
	uctx, cancel := context.WithTimeout(context.Background(), 2*w.NodeTimeout+time.Second)
	r.Release = Mono()
	err := l.Unlock(uctx)
	cancel()
	r.ReleaseErr = Classify(err)
}

// pause sleeps d without looking at the lock (a GC pause, a swapped-out
// process), then checks that the holder is told its lock is gone.
func (h *holder) pause(ctx context.Context, d time.Duration) {
	before := h.dl
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-t.C:
	}
	now := Mono()
	if now <= before+int64(time.Millisecond) {
		return
	}
	h.r.Paused = int64(d)
	valid := h.l.Valid()
	lost := false
	wait := time.NewTimer(time.Second) // Lost closes at the deadline, which passed
	select {
	case <-h.l.Lost():
		lost = true
	case <-wait.C:
	}
	wait.Stop()
	h.r.LostNoticed = !valid && lost
	if !valid && h.r.InvalidSeen == 0 {
		h.r.InvalidSeen = now
	}
}

// Classify names the class of a redlock error for the history: its
// sentinel, or "ctx" when the caller's context ended the call.
func Classify(err error) string {
	var qe *redlock.QuorumError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &qe) && qe.Ctx != nil:
		return "ctx"
	case errors.Is(err, redlock.ErrNotAcquired):
		return "not-acquired"
	case errors.Is(err, redlock.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, redlock.ErrNotHeld):
		return "not-held"
	case errors.Is(err, redlock.ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "ctx"
	}
	return "other"
}
