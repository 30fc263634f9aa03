package redlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Loading the scripts on an instance (ScriptLoader).
//
// A call sends EVALSHA and falls back to EVAL after NOSCRIPT, but only while
// its caller still waits: a call to a paused or stalled instance whose round
// ended stays queued on the connection, and if its EVALSHA then meets
// NOSCRIPT on the resumed server, nobody sends the EVAL. A release lost that
// way leaves the lock key for a whole TTL. So every script is loaded (SCRIPT
// LOAD) on an instance before the first EVALSHA sent to it, and again after
// any NOSCRIPT from it, when its Client is a ScriptLoader.

// The states of instance.scripts.
const (
	scriptsUnloaded int32 = iota // the next call loads the scripts first
	scriptsLoading               // a call is loading them; others go ahead
	scriptsReload                // loading, and a NOSCRIPT came meanwhile: load again after
	scriptsLoaded                // loaded (until a NOSCRIPT says otherwise)
	scriptsNoLoader              // the client cannot load them: script.primes instead
)

// allScripts is every script the Manager runs, loaded together on an
// instance (the negative controls' scripts, unsafe_delete and
// extend_reset, are not among them).
var allScripts = []*script{
	scriptAcquire, scriptExtend, scriptRelease, scriptPTTL, scriptInspect,
	scriptAcquireMany, scriptExtendMany, scriptReleaseMany, scriptPTTLMany, scriptFence,
	scriptExtendBatch, scriptTopUp,
	scriptRWWriteAcquire, scriptRWReadAcquire, scriptRWReadExtend, scriptRWReadRelease, scriptRWReadPTTL, scriptRWInspect,
}

// allScriptSources are the sources of allScripts, as LoadScripts takes them.
var allScriptSources = func() []string {
	out := make([]string, len(allScripts))
	for i, s := range allScripts {
		out[i] = s.src
	}
	return out
}()

// ensureScripts starts loading every script on in unless that is done,
// being done by another call (which goes first: this one goes ahead, the
// EVAL fallback covers it), or impossible. ctx is the call's. It waits
// until the load is answered or half of ctx's remaining time has passed,
// so that the call's own command can still be sent within ctx when the
// instance does not answer (paused, stalled); the load itself, and the
// dial that the first command to an instance makes, keep the whole of ctx.
// It returns nil, or a channel closed once the load has returned: the call
// waits for it before it returns (ctx bounds both).
//
// Ordering: with New's rueidis clients (one pipelined connection per
// instance: AlwaysPipelining, PipelineMultiplex -1, see dialRueidis) a load
// that is queued on the connection reaches the server before the calls
// queued after it, however late the server answers. Not guaranteed: while
// the first connection is still being made (a dial or a lazy Sentinel
// lookup that takes over half the deadline) the load and the call's
// EVALSHA can be queued in either order, and so can a call that goes ahead
// while another one's load starts. Clients with a connection pool
// (go-redis) may carry the EVALSHA on another connection; then the load is
// done first only when it was answered in time. In those cases the EVAL
// fallback remains, for callers still waiting.
func (in *instance) ensureScripts(ctx context.Context) <-chan struct{} {
	if t := in.loadAfter.Load(); t != 0 && time.Now().UnixNano() < t {
		return nil
	}
	if !in.scripts.CompareAndSwap(scriptsUnloaded, scriptsLoading) {
		return nil
	}
	sl, ok := in.client.(ScriptLoader)
	if !ok {
		in.scripts.Store(scriptsNoLoader)
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.loaded(sl.LoadScripts(ctx, allScriptSources))
	}()
	dl, ok := ctx.Deadline()
	if !ok {
		<-done
		return done
	}
	t := time.NewTimer(time.Until(dl) / 2)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	return done
}

// scriptLoadRetry is how long an instance's calls do not load the scripts
// after a load failed (not answered in time, a connection error, an error
// reply that cannot tell it will last): a paused instance, or a proxy that
// refuses SCRIPT LOAD with a reply of its own, gets at most a few batches a
// second instead of one per call. A batch not answered in time still
// reaches a paused instance before the calls sent after it.
const scriptLoadRetry = 100 * time.Millisecond

// loaded records how a load ended.
func (in *instance) loaded(err error) {
	if err != nil {
		in.loadAfter.Store(time.Now().Add(scriptLoadRetry).UnixNano())
	}
	switch {
	case err != nil && cannotLoad(err):
		in.scripts.Store(scriptsNoLoader)
	case err == nil && in.scripts.CompareAndSwap(scriptsLoading, scriptsLoaded):
	default:
		// Not answered in time, a connection error, or a NOSCRIPT came
		// meanwhile (scriptsReload: it may be from after the load): the
		// next call loads again.
		in.scripts.Store(scriptsUnloaded)
	}
}

// noScript records that in answered NOSCRIPT: the scripts are loaded again
// before the next call (after the running load, if any: not two at once).
// It reports whether in's client cannot load them (the caller then primes,
// see script.primes).
func (in *instance) noScript() (prime bool) {
	for {
		st := in.scripts.Load()
		var next int32
		switch st {
		case scriptsNoLoader:
			return true
		case scriptsLoaded:
			next = scriptsUnloaded
		case scriptsLoading:
			next = scriptsReload
		default: // scriptsUnloaded, scriptsReload
			return false
		}
		if in.scripts.CompareAndSwap(st, next) {
			return false
		}
	}
}

// cannotLoad reports whether a LoadScripts error says that loading will
// not work on this instance, now or later: the client does not support it
// (a Redis Cluster), the ACL user may not run SCRIPT LOAD, or the server
// does not know the command. Such an instance is not asked again; its calls
// rely on the EVAL fallback and script.primes, as with a Client that is not
// a ScriptLoader.
func cannotLoad(err error) bool {
	if errors.Is(err, errors.ErrUnsupported) {
		return true
	}
	msg := err.Error()
	// NOPERM about SCRIPT LOAD only ("'script|load'" in Redis 7, "'script'"
	// in 6): the first load also dials, and a denied handshake (a SELECT
	// the ACL lacks, fixed later) must not turn loading off for good.
	return (strings.HasPrefix(msg, "NOPERM") && strings.Contains(strings.ToLower(msg), "'script")) ||
		strings.HasPrefix(msg, "ERR unknown command") || strings.HasPrefix(msg, "ERR unknown subcommand")
}

// LoadScripts implements ScriptLoader once the client is built. A cluster
// client does not load scripts (errors.ErrUnsupported, as the rueidis
// adapter answers for a cluster): SCRIPT LOAD would reach one node only.
func (l *lazyRueidis) LoadScripts(ctx context.Context, scripts []string) error {
	if l.cluster {
		return fmt.Errorf("redlock: SCRIPT LOAD on a Redis Cluster: %w", errors.ErrUnsupported)
	}
	c, err := l.client(ctx)
	if err != nil {
		return err
	}
	return c.LoadScripts(ctx, scripts)
}
