package redlock_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/internal/redistest"
)

// logRecords is a slog.Handler that keeps the records, safe for concurrent
// use.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// matching returns the records with message msg, each rendered with its
// attributes.
func (h *logRecords) matching(msg string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if r.Message != msg {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// An instance that stops answering is logged once, with the cause, and
// once when it answers again: state changes, not a record per call. Seen
// failing before the change (no such records).
func TestInstanceHealthLogged(t *testing.T) {
	ctx := testCtx(t)
	servers := redistest.Start(t, 3)
	h := &logRecords{}
	m := newManager(t, servers, redlock.Config{Logger: slog.New(h), RetryDelayMin: time.Millisecond, RetryDelayMax: 2 * time.Millisecond})
	servers[2].Stop(t)
	for i := 0; i < 20; i++ {
		l, err := m.Lock(ctx, "health", redlock.TTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	down := h.matching("redlock: instance not answering")
	if len(down) != 1 {
		t.Fatalf("%d 'not answering' records after 20 lock+unlock with one instance down, want 1: %q", len(down), down)
	}
	if !strings.Contains(down[0], "WARN") || !strings.Contains(down[0], "connection refused") || !strings.Contains(down[0], servers[2].Addr()) {
		t.Errorf("record %q: want WARN with the instance and the cause", down[0])
	}
	servers[2].Restart(t)
	waitFor(t, 10*time.Second, "the 'answering again' record", func() bool {
		l, err := m.Lock(ctx, "health", redlock.TTL(time.Second))
		if err == nil {
			_ = l.Unlock(ctx)
		}
		return len(h.matching("redlock: instance answering again")) > 0
	})
	for i := 0; i < 20; i++ {
		l, err := m.Lock(ctx, "health", redlock.TTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Unlock(ctx)
	}
	up := h.matching("redlock: instance answering again")
	if len(up) != 1 || !strings.Contains(up[0], "INFO") {
		t.Errorf("'answering again' records %q, want one INFO", up)
	}
	if n := len(h.matching("redlock: instance not answering")); n != 1 {
		t.Errorf("%d 'not answering' records in all, want 1", n)
	}
}
