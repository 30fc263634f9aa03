package redlock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// instance is one independent Redis instance.
type instance struct {
	client Client
	name   string // redacted endpoint, for errors and logs
	pool   pool   // the workers that run its calls
	// scripts says whether every script is loaded on the instance
	// (scriptsUnloaded, ...; see ensureScripts in scriptload.go).
	scripts atomic.Int32
	// loadAfter (Unix nanoseconds) holds back the next load after one
	// failed: see scriptLoadRetry.
	loadAfter atomic.Int64
	// down says that the instance's last call found it not answering
	// (see observe); log gets one record per change.
	down atomic.Bool
	log  *slog.Logger
	obs  Observer // Config.Observer; nil: no events
}

// observe records the outcome of a call to the instance and logs when
// that changes whether it answers: one WARN, with the cause, when it stops
// (a network error, a timeout, a refused password), one INFO when it
// answers again; nothing per call. An error reply is an answer.
func (in *instance) observe(err error) {
	down := isOutage(err)
	if err != nil && !down && errors.Is(err, context.Canceled) {
		return // says nothing about the instance
	}
	if in.down.Load() == down || !in.down.CompareAndSwap(!down, down) {
		return
	}
	if in.obs != nil {
		ev := InstanceStateEvent{Endpoint: in.name, Up: !down}
		if down {
			ev.Err = err
		}
		in.obs.InstanceState(ev)
	}
	if in.log == nil {
		return
	}
	if down {
		in.log.Warn("redlock: instance not answering", "instance", in.name, "err", err)
	} else {
		in.log.Info("redlock: instance answering again", "instance", in.name)
	}
}

// isOutage reports whether err says that the instance did not answer
// usably: a network error, a timeout, a closed connection, a refused
// password. Error replies (WRONGTYPE, NOSCRIPT, ...) are answers.
func isOutage(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, errOutOfOrder):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") {
		return true
	}
	return !isErrorReply(msg)
}

// isErrorReply reports whether msg reads as a Redis error reply: an
// upper-case code of two letters or more, then a space or the end.
func isErrorReply(msg string) bool {
	i := 0
	for i < len(msg) && msg[i] >= 'A' && msg[i] <= 'Z' {
		i++
	}
	return i >= 2 && (i == len(msg) || msg[i] == ' ')
}

// job is one call of a round to one instance, run by a worker.
type job struct {
	r    *round
	i    int
	s    *script
	keys []string
}

// workerIdle is how long a worker waits for a call before it exits.
const workerIdle = 10 * time.Second

// pool holds an instance's parked call workers. Workers are long-lived
// goroutines owned by the Manager: a call costs no goroutine start and no
// allocation, and a parked worker waits on its own channel alone (no select,
// no timer per call: under load the select of a shared work channel, a quit
// channel and an idle timer cost a tenth of the CPU). Parked workers form a
// stack, the most recently parked on top, so that the busy ones stay warm
// and the bottom ones are the idle ones: those idle for workerIdle exit, as
// found when a worker parks or by one timer per pool. There is one worker
// per call in flight at the peak.
type pool struct {
	mu     sync.Mutex
	parked []*worker // parked[len-1] parked last
	timer  *time.Timer
	armed  bool // timer will run reap
	closed bool
	idle   time.Duration // workerIdle (tests shorten it)
	starts int           // workers started so far (for tests)
	live   int           // workers started and not told to exit (for tests)
}

// worker is one call worker; it receives its next job (nil: exit) on jobs.
type worker struct {
	jobs  chan *job // buffered 1: a worker gets at most one job per parking
	since time.Time // when it parked; guarded by pool.mu
}

// dispatch hands j to a parked worker of in, or starts a worker for it.
// The caller holds an operation (m.ops), so the Manager is not closed yet.
func (m *Manager) dispatch(in *instance, j *job) {
	p := &in.pool
	p.mu.Lock()
	if n := len(p.parked); n > 0 {
		w := p.parked[n-1]
		p.parked[n-1] = nil
		p.parked = p.parked[:n-1]
		p.mu.Unlock()
		w.jobs <- j
		return
	}
	p.starts++
	p.live++
	p.mu.Unlock()
	m.workers.Add(1)
	go m.work(p, &worker{jobs: make(chan *job, 1)}, j)
}

// work runs jobs until it is told to exit (idle too long, or Close).
func (m *Manager) work(p *pool, w *worker, j *job) {
	defer m.workers.Done()
	for j != nil {
		j.r.run(m, j.i, j.s, j.keys)
		if !p.park(w) {
			return
		}
		j = <-w.jobs
	}
}

// park puts w on top of the stack; it returns false if the pool is closed
// (w exits). Parking also retires the workers idle for workerIdle.
func (p *pool) park(w *worker) bool {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.live--
		return false
	}
	w.since = now
	p.parked = append(p.parked, w)
	p.reapLocked(now)
	return true
}

// reapLocked tells the workers idle for workerIdle to exit, and makes sure
// the timer will look again when the oldest remaining one is due.
func (p *pool) reapLocked(now time.Time) {
	n := 0
	for n < len(p.parked) && now.Sub(p.parked[n].since) >= p.idle {
		p.parked[n].jobs <- nil
		n++
	}
	p.live -= n
	if n > 0 {
		k := copy(p.parked, p.parked[n:])
		clear(p.parked[k:])
		p.parked = p.parked[:k]
	}
	if len(p.parked) == 0 || p.armed {
		return
	}
	d := p.idle - now.Sub(p.parked[0].since)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.reap)
	} else {
		p.timer.Reset(d)
	}
	p.armed = true
}

// reap is the timer's callback.
func (p *pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if !p.closed {
		p.reapLocked(time.Now())
	}
}

// close tells every parked worker to exit; busy ones exit when they park.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.parked {
		w.jobs <- nil
	}
	p.live -= len(p.parked)
	p.parked = nil
	if p.timer != nil {
		p.timer.Stop()
	}
}
