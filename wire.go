package redlock

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The wire: the embedded Lua scripts (scripts/*.lua, each documenting its
// KEYS and ARGV), loading them on an instance (SCRIPT LOAD), call with its
// EVALSHA -> NOSCRIPT -> EVAL fallback, and every decoder of the scripts'
// replies (classify*, pairCode, toInt...). The default client is in
// wire_rueidis.go.

//go:embed scripts/*.lua
var scriptFS embed.FS

// script is a Lua script and its SHA1, computed once.
type script struct {
	name string
	src  string
	sha  string
	// primes is loaded, with an argument that makes it a no-op, whenever
	// this script had to be loaded on an instance (NOSCRIPT): the release
	// after an acquisition may reach the instance when its caller no
	// longer waits, and then gets no EVAL fallback of its own. Only for
	// instances that cannot load every script up front (a Client that is
	// not a ScriptLoader, a cluster, an ACL without SCRIPT LOAD; see
	// ensureScripts), and only a partial remedy there.
	primes *script
	// primeArgs are primes' arguments for the no-op call.
	primeArgs []string
	// classify reads its replies as votes, for the Observer's per-call
	// outcome (nil: any reply is ok).
	classify classifier
}

func loadScript(name string) *script { return loadScriptFS(scriptFS, "scripts/", name) }

// loadScriptFS reads the script name from dir in fsys.
func loadScriptFS(fsys embed.FS, dir, name string) *script {
	b, err := fsys.ReadFile(dir + name + ".lua")
	if err != nil {
		panic("redlock: missing embedded script " + name) // a build defect, not an input
	}
	sum := sha1.Sum(b)
	return &script{name: name, src: string(b), sha: hex.EncodeToString(sum[:])}
}

func init() {
	// The classifiers of the scripts' replies (see script.classify).
	for s, c := range map[*script]classifier{
		scriptAcquire: classifyAcquire, scriptExtend: classifyExtend, scriptRelease: classifyRelease,
		scriptPTTL: classifyPTTL, scriptInspect: classifyInspect, scriptAcquireMany: classifyAcquireMany,
		scriptExtendMany: classifyExtend, scriptReleaseMany: classifyReleaseMany, scriptPTTLMany: classifyPTTL,
		scriptFence: classifyFence,
	} {
		s.classify = c
	}
}

// priming sets s.primes and returns s.
func (s *script) priming(p *script, args ...string) *script {
	s.primes, s.primeArgs = p, args
	return s
}

// The scripts; each file documents its KEYS and ARGV.
var (
	scriptAcquire = loadScript("acquire").priming(scriptRelease, "") // a token no lock holds
	scriptExtend  = loadScript("extend")
	scriptRelease = loadScript("release")
	scriptPTTL    = loadScript("pttl")
	scriptInspect = loadScript("inspect")

	scriptAcquireMany = loadScript("acquire_many")
	scriptExtendMany  = loadScript("extend_many")
	scriptReleaseMany = loadScript("release_many")
	scriptPTTLMany    = loadScript("pttl_many")
	scriptFence       = loadScript("fence")
	scriptTopUp       = loadScript("topup")
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
// instance (the negative controls' scripts in scripts/controls/, built
// only with the redlock_controls tag, are not among them).
var allScripts = []*script{
	scriptAcquire, scriptExtend, scriptRelease, scriptPTTL, scriptInspect,
	scriptAcquireMany, scriptExtendMany, scriptReleaseMany, scriptPTTLMany, scriptFence,
	scriptExtendBatch, scriptTopUp,
	scriptRWWriteAcquire, scriptRWReadAcquire, scriptRWReadExtend, scriptRWReadRelease, scriptRWReadPTTL, scriptRWInspect,
	scriptElectionTerm,
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

// call runs a script on one instance: EVALSHA, then EVAL after NOSCRIPT
// (EVAL also puts the script back into the instance's cache). Before the
// first EVALSHA to an instance, and before the next one after a NOSCRIPT,
// it loads every script there if the client is a ScriptLoader (see
// ensureScripts); once they are loaded, that costs one atomic load.
func call(ctx context.Context, in *instance, s *script, keys, args []string) (v any, err error) {
	if in.obs != nil {
		start := time.Now()
		defer func() { in.observeCall(s, start, v, err) }()
	}
	var loading <-chan struct{}
	if st := in.scripts.Load(); st != scriptsLoaded && st != scriptsNoLoader {
		loading = in.ensureScripts(ctx)
	}
	v, err = in.client.EvalSha(ctx, s.sha, keys, args)
	if isNoScript(err) {
		prime := in.noScript()
		v, err = in.client.Eval(ctx, s.src, keys, args)
		if p := s.primes; p != nil && err == nil && prime {
			_, _ = in.client.Eval(ctx, p.src, keys[:1], s.primeArgs) // see script.primes
		}
	}
	if loading != nil {
		<-loading // bounded by ctx, like the load
	}
	in.observe(err)
	return v, err
}

// toInt reads an integer reply.
func toInt(v any) (int64, bool) {
	i, ok := v.(int64)
	return i, ok
}

// errBadReply is the cause recorded for a reply of an unexpected shape.
var errBadReply = errors.New("unexpected reply")

// errKeyMissing is the per-instance cause when the lock key is gone.
var errKeyMissing = errors.New("lock key missing")

// pairCode reads the status code of a {code, value} reply.
func pairCode(v any) (int64, bool) {
	a, ok := v.([]any)
	if !ok || len(a) < 2 || len(a) > 3 {
		return 0, false
	}
	return toInt(a[0])
}

// parseCounter reads a counter from a fence or acquire_many reply pair.
func parseCounter(v any) uint64 {
	var s any = v
	if a, ok := v.([]any); ok && len(a) == 2 {
		s = a[1]
	}
	switch x := s.(type) {
	case string:
		n, _ := strconv.ParseUint(x, 10, 64)
		return n
	case int64:
		if x > 0 {
			return uint64(x)
		}
	}
	return 0
}

// holderLeft returns what is left of the holder's lease in a refusal of
// the acquire scripts (-2 - PTTL, or {0, i, PTTL}), and false when the
// reply does not say (no TTL, or not a refusal).
func holderLeft(v any) (time.Duration, bool) {
	var ms int64
	switch x := v.(type) {
	case int64:
		if x > -2 {
			return 0, false
		}
		ms = -2 - x
	case []any:
		if len(x) != 3 {
			return 0, false
		}
		n, ok := toInt(x[2])
		if !ok || n < 0 {
			return 0, false
		}
		ms = n
	default:
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// pttlCode reads a pttl.lua reply: the code alone, or {code, metadata}.
func pttlCode(v any) (int64, bool) {
	if n, ok := toInt(v); ok {
		return n, true
	}
	return pairCode(v)
}

// pairString reads the second element of a {code, string} reply, "" when
// there is none.
func pairString(v any) string {
	if a, ok := v.([]any); ok && len(a) == 2 {
		s, _ := a[1].(string)
		return s
	}
	return ""
}

// metadataOf returns the metadata that the most yes votes of o (pttl.lua
// replies with the metadata key) carry, ties going to the first in
// endpoint order; "" when none carries any.
func metadataOf(o *outcome) string {
	best, bestN := "", 0
	for i, v := range o.vals {
		if o.votes[i] != voteYes {
			continue
		}
		md := pairString(v)
		if md == "" {
			continue
		}
		n := 0
		for j, w := range o.vals {
			if o.votes[j] == voteYes && pairString(w) == md {
				n++
			}
		}
		if n > bestN {
			best, bestN = md, n
		}
	}
	return best
}

func classifyAcquire(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	switch n, _ := toInt(v); {
	case n == 1, n == 2: // set a free key, or refreshed ours
		return voteYes, nil
	case n <= -1: // -2 - the holder's PTTL
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
}

func classifyAcquireMany(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pairCode(v)
	if !ok {
		return voteFailed, errBadReply
	}
	switch n {
	case 1, 2: // set a free key, or refreshed ours
		return voteYes, nil
	case 0:
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
}

func classifyFence(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pairCode(v)
	if !ok {
		return voteFailed, errBadReply
	}
	switch n {
	case 1:
		return voteYes, nil
	case 0:
		return voteRefused, errCounterAhead
	case -1:
		return voteFailed, errKeyMissing
	}
	return voteFailed, errBadReply
}

var errCounterAhead = errors.New("fencing counter ahead of the proposed token")

func classifyExtend(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	switch n, _ := toInt(v); n {
	case 1:
		return voteYes, nil
	case 0:
		return voteRefused, errKeyMissing
	case -1:
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
}

func classifyRelease(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	switch n, _ := toInt(v); n {
	case 1, 0:
		return voteYes, nil
	case -1:
		return voteRefused, ErrHeldByOther
	}
	return voteFailed, errBadReply
}

func classifyReleaseMany(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := toInt(v)
	switch {
	case !ok:
		return voteFailed, errBadReply
	case n >= 0:
		return voteYes, nil
	}
	return voteRefused, ErrHeldByOther
}

func classifyPTTL(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	n, ok := pttlCode(v)
	switch {
	case !ok:
		return voteFailed, errBadReply
	case n >= 0:
		return voteYes, nil
	case n == -1:
		return voteRefused, errNoTTL
	case n == -2:
		return voteRefused, errKeyMissing
	}
	return voteRefused, ErrHeldByOther
}

var errNoTTL = errors.New("lock key has no TTL")

func classifyInspect(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	a, ok := v.([]any)
	if !ok || len(a) < 2 {
		return voteFailed, errBadReply
	}
	if tok, _ := a[0].(string); tok != "" {
		return voteYes, nil
	}
	return voteRefused, errNotLocked
}

var errNotLocked = errors.New("not locked")

// classifyState reads an inspect.lua reply {token, pttl} or {token, pttl,
// metadata, counter}: yes when a token holds the key, refused when the key
// is missing.
func classifyState(v any, err error) (vote, error) {
	if err != nil {
		return voteFailed, err
	}
	a, ok := v.([]any)
	if !ok || (len(a) != 2 && len(a) != 4) {
		return voteFailed, errBadReply
	}
	tok, ok := a[0].(string)
	if _, isInt := a[1].(int64); !ok || !isInt {
		return voteFailed, errBadReply
	}
	if len(a) == 4 {
		_, ok1 := a[2].(string)
		_, ok2 := a[3].(string)
		if !ok1 || !ok2 {
			return voteFailed, errBadReply
		}
	}
	if tok == "" {
		return voteRefused, errKeyMissing
	}
	return voteYes, nil
}

// fmtMillis renders d in whole milliseconds, as PX and PEXPIRE take it.
func fmtMillis(d time.Duration) string {
	return strconv.FormatInt(int64(d/time.Millisecond), 10)
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
