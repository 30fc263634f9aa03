package redlock

import (
	"context"
	"strings"
	"time"
)

// RWMutex is a read-write lock on the Manager's instances: any number of
// readers share it (RLock, TryRLock, RLockWait), or one writer holds it
// alone (Lock, TryLock, LockWait), never both. Each grant, shared or
// exclusive, needs a quorum (N/2+1) of the instances, as a mutex does; a
// reader's majority and a writer's majority meet in an instance whose
// script refused one of them (see docs/primitives.md for the argument).
//
// A writer that readers refuse marks the lock as wanted by a writer, and
// new readers wait while the mark lasts (readers that hold may extend), so
// a stream of readers does not starve a waiting writer. Each reader's
// share expires on its own by the instances' clocks: a reader that crashed
// stops holding at the end of its lease whatever the other readers do.
//
// The writer's key is the mutex key of the same name: a writer and a
// Manager.Lock of that name exclude each other (and other Redlock clients'
// locks on it), but a Manager.Lock does not look at readers; take the
// exclusive side through the RWMutex when readers may hold. The readers
// live in keys of their own (see docs/primitives.md), which only redlock
// clients read.
//
// An RWMutex is a name bound to a Manager, not a held lock: it holds no
// state, is safe for concurrent use, and each successful call returns a
// *Lock handle of its own. Its zero value is not usable; get one from
// Manager.RWMutex.
type RWMutex struct {
	m    *Manager
	name string
	err  error // why name cannot be a read-write lock (ErrInvalid); nil if it can

	// What every request of a side shares (never modified): the keys and
	// arguments of its scripts (a reader with metadata or a writer with
	// metadata gets a copy with more; see newRequest).
	reader, writer *rwKeys
}

// RWMutex returns the read-write lock called name. It never fails: a bad
// name (empty, too long, reserved, or one whose companion keys cannot share
// its Redis Cluster slot, such as "a}b") makes every call of the returned
// RWMutex fail with ErrInvalid. It builds the lock's key names once: keep
// the RWMutex rather than asking for it at every acquisition.
func (m *Manager) RWMutex(name string) *RWMutex {
	rw := &RWMutex{m: m, name: name}
	if err := m.checkResource(name); err != nil {
		rw.err = err
		return rw
	}
	key := m.cfg.KeyPrefix + name
	if !metaSameSlot(key) {
		rw.err = invalidf("read-write lock %s: its readers key %s would be in another Redis Cluster slot (a key with a '}' needs a hash tag, e.g. {job}:1)",
			quoteResource(key), quoteResource(companionKey(key, readersSuffix)))
		return rw
	}
	keys := []string{key, companionKey(key, readersSuffix), companionKey(key, wwaitSuffix), companionKey(key, rmetaSuffix)}
	rw.reader = &rwKeys{read: true, acquire: scriptRWReadAcquire, keys: keys}
	rw.writer = &rwKeys{acquire: scriptRWWriteAcquire, keys: keys[:3:3], markArg: fmtMillis(m.markTTL())}
	return rw
}

// Name returns the lock's name: the resource its writer locks.
func (rw *RWMutex) Name() string { return rw.name }

// Lock takes the lock exclusively (the writer) with the retry semantics of
// Manager.Lock: up to Config.RetryCount attempts. It is refused while
// another writer, a mutex of the same name, or any reader holds. The
// returned *Lock is a mutex lock on the name: Unlock, Extend,
// auto-extension (without the TTL option), Fenced, Metadata, Lost, Valid
// and Until work as for Manager.Lock. Errors are those of Manager.Lock.
func (rw *RWMutex) Lock(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.Lock", false, opts, retryCount)
}

// TryLock is Lock with a single attempt.
func (rw *RWMutex) TryLock(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.TryLock", false, opts, 1)
}

// LockWait is Lock retrying until it succeeds or ctx ends, like
// Manager.LockWait.
func (rw *RWMutex) LockWait(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.LockWait", false, opts, -1)
}

// RLock takes a share of the lock (a reader) with the retry semantics of
// Manager.Lock. It is refused while a writer (or a mutex of the same name)
// holds, and while a writer waits for the readers to leave. The returned
// *Lock is the reader's share: Unlock gives it up, Extend and the
// auto-extension (without the TTL option) extend it alone, and it expires
// on its own at the end of its lease. Metadata is stored per reader (see
// RWMutex.Inspect). Fenced is refused (ErrInvalid): readers are not ordered,
// so they get no fencing token (Lock.Fence returns 0, also under
// Config.Fencing). Lock.IsLocked and Lock.TTL ask about the share.
func (rw *RWMutex) RLock(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.RLock", true, opts, retryCount)
}

// TryRLock is RLock with a single attempt.
func (rw *RWMutex) TryRLock(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.TryRLock", true, opts, 1)
}

// RLockWait is RLock retrying until it succeeds or ctx ends, like
// Manager.LockWait.
func (rw *RWMutex) RLockWait(ctx context.Context, opts ...LockOption) (*Lock, error) {
	return rw.acquire(ctx, "RWMutex.RLockWait", true, opts, -1)
}

// Do runs fn while holding the lock exclusively, as Manager.Do does: it
// locks as Lock does, runs fn with a context cancelled with cause ErrLost
// if the lock is lost, keeps it extended meanwhile (unless the TTL option
// fixes its lease), and unlocks afterwards, even if fn panics. The error is
// Lock's, or fn's joined with the unlock's (and ErrLost when the lock was
// lost while fn ran).
func (rw *RWMutex) Do(ctx context.Context, fn func(ctx context.Context) error, opts ...LockOption) error {
	return rw.do(ctx, "RWMutex.Do", false, fn, opts)
}

// RDo is Do for a reader's share: it takes the share as RLock does.
func (rw *RWMutex) RDo(ctx context.Context, fn func(ctx context.Context) error, opts ...LockOption) error {
	return rw.do(ctx, "RWMutex.RDo", true, fn, opts)
}

func (rw *RWMutex) do(ctx context.Context, method string, read bool, fn func(ctx context.Context) error, opts []LockOption) error {
	if fn == nil {
		return invalidf("nil function")
	}
	l, err := rw.acquire(ctx, method, read, opts, retryCount)
	if err != nil {
		return err
	}
	return rw.m.runHeld(ctx, l, l.resource, fn)
}

// retryCount, as acquire's attempts, means Config.RetryCount.
const retryCount = 0

// acquire makes up to attempts attempts (retryCount: Config.RetryCount;
// forever when attempts < 0).
func (rw *RWMutex) acquire(ctx context.Context, method string, read bool, opts []LockOption, attempts int) (*Lock, error) {
	req, err := rw.newRequest(read, opts)
	if err != nil {
		return nil, err
	}
	if attempts == retryCount {
		attempts = rw.m.cfg.RetryCount
	}
	return rw.m.acquireReq(ctx, method, req, attempts)
}

// The suffixes of a read-write lock's companion keys. No resource's key
// may end with them (Manager.checkResource), so no lock can address them.
const (
	readersSuffix = ":redlock-readers" // ZSET: reader token -> expiry (ms, server clock)
	wwaitSuffix   = ":redlock-wwait"   // string: the waiting writer's token, short PX
	rmetaSuffix   = ":redlock-rmeta"   // HASH: reader token -> metadata
)

// companionKey names a key beside key with the hash-tag rule of metaKey:
// "{user}:1" → "{user}:1" + suffix, "jobs" → "{jobs}" + suffix.
func companionKey(key, suffix string) string {
	if hashTag(key) != "" {
		return key + suffix
	}
	return "{" + key + "}" + suffix
}

// isRWKey reports whether key has the shape of a read-write lock's
// companion key.
func isRWKey(key string) bool {
	return strings.HasSuffix(key, readersSuffix) || strings.HasSuffix(key, wwaitSuffix) || strings.HasSuffix(key, rmetaSuffix)
}

// rwKeys is what a read-write lock adds to its keyset (keyset.rw). It is
// shared between requests and never modified.
type rwKeys struct {
	read     bool
	acquire  *script
	keys     []string // writer key, readers, mark, then the writer's metadata key or the readers' metadata hash
	metadata string   // a reader's metadata ("" when none); a writer's is in keyset.meta
	markArg  string   // the writer-waiting mark's lifetime, ms
}

// rwRead reports whether ks is a reader's share.
func (ks *keyset) rwRead() bool { return ks.rw != nil && ks.rw.read }

// lockKeys returns the keys of the one-key scripts without metadata
// (extend, pttl): the lock key, or a reader's keys.
func (ks *keyset) lockKeys() []string {
	if ks.rwRead() {
		return ks.rw.keys
	}
	return ks.keys
}

// acquireArgs returns the arguments of ks.rw.acquire.
func (rk *rwKeys) acquireArgs(ks *keyset, token, ttl string) []string {
	if rk.read {
		if rk.metadata != "" {
			return []string{token, ttl, rk.metadata}
		}
		return []string{token, ttl}
	}
	if ks.meta != nil {
		return []string{token, ttl, rk.markArg, ks.meta.metadata}
	}
	return []string{token, ttl, rk.markArg}
}

// markTTL is how long a writer's writer-waiting mark lasts: longer than the
// retry delay between its attempts, which refresh it, so that it does not
// lapse while the writer waits (it may, while instances are unavailable and
// the delay grows), and short, so that a writer that gave up does not keep
// readers out for long.
func (m *Manager) markTTL() time.Duration {
	return 2*m.cfg.RetryDelayMax + m.cfg.NodeTimeout
}

// errZeroRWMutex is the error of a zero RWMutex's methods.
var errZeroRWMutex = invalidf("zero RWMutex: get one from Manager.RWMutex")

// newRequest validates a request for a reader's share (read) or the
// writer's lock.
func (rw *RWMutex) newRequest(read bool, opts []LockOption) (request, error) {
	if rw.m == nil {
		return request{}, errZeroRWMutex
	}
	if rw.err != nil {
		return request{}, rw.err
	}
	m := rw.m
	if read {
		var o lockOptions
		for _, opt := range opts {
			if opt != nil {
				opt(&o)
			}
		}
		if o.fenced {
			return request{}, invalidf("read-write lock %s: readers get no fencing token (Fenced is for the writer)", quoteResource(rw.name))
		}
	}
	req, err := m.newRequestMany([]string{rw.name}, opts)
	if err != nil {
		return request{}, err
	}
	if read {
		req.fenced, req.ks.counters = false, nil
		rk := rw.reader
		if req.ks.meta != nil {
			rk = &rwKeys{read: true, acquire: scriptRWReadAcquire, keys: rk.keys, metadata: req.ks.meta.metadata}
			req.ks.meta = nil
		}
		req.ks.rw = rk
		return req, nil
	}
	rk := rw.writer
	if req.ks.meta != nil {
		rk = &rwKeys{acquire: scriptRWWriteAcquire, keys: append(rk.keys[:3:3], req.ks.meta.keys[0]), markArg: rk.markArg}
	}
	req.ks.rw = rk
	return req, nil
}

// The read-write lock's scripts; each file documents its KEYS and ARGV.
var (
	scriptRWWriteAcquire = loadScript("rw_write_acquire").priming(scriptRelease, "")
	scriptRWReadAcquire  = loadScript("rw_read_acquire").priming(scriptRWReadRelease, "")
	scriptRWReadExtend   = loadScript("rw_read_extend")
	scriptRWReadRelease  = loadScript("rw_read_release")
	scriptRWReadPTTL     = loadScript("rw_read_pttl")
	scriptRWInspect      = loadScript("rw_inspect")
)

func init() {
	scriptRWWriteAcquire.classify = classifyAcquire
	scriptRWReadAcquire.classify = classifyAcquire
	scriptRWReadExtend.classify = classifyExtend
	scriptRWReadRelease.classify = classifyRelease
	scriptRWReadPTTL.classify = classifyPTTL
}

// RWState is what one instance holds for a read-write lock (see
// RWMutex.Inspect). The zero value is an instance where it is free.
type RWState struct {
	// Endpoint names the instance as Manager.Endpoints does.
	Endpoint string
	// Writer is the writer's token ("" when no writer, nor a mutex of the
	// same name, holds), WriterTTL its key's remaining time to live.
	Writer    string
	WriterTTL time.Duration
	// WriterWaiting reports a writer-waiting mark: new readers wait.
	WriterWaiting bool
	// Readers are the live readers' shares, longest-lasting last.
	Readers []ReaderState
	// Err is why the instance did not answer usably (see
	// InstanceState.Err); the other fields are then zero.
	Err error
}

// ReaderState is one reader's share on one instance.
type ReaderState struct {
	Token    string        // the reader's token
	TTL      time.Duration // what is left of the share, by the instance's clock
	Metadata string        // the reader's metadata (see the Metadata option), "" when none
}

// Inspect asks every instance, in parallel and each within
// Config.NodeTimeout, who holds the lock, and returns one state per
// instance in endpoint order. It changes nothing. For the writer's metadata
// use Manager.Inspect on the name (the writer's key is the mutex key).
// Errors are those of Manager.Inspect; it is safe for concurrent use.
func (rw *RWMutex) Inspect(ctx context.Context) ([]RWState, error) {
	m := rw.m
	if m == nil {
		return nil, errZeroRWMutex
	}
	if rw.err != nil {
		return nil, rw.err
	}
	if err := m.begin(ctx, rw.name); err != nil {
		return nil, err
	}
	defer m.leave()
	r := m.fanout(ctx, m.cfg.NodeTimeout, nil, scriptRWInspect, rw.reader.keys, nil)
	o := m.collect(ctx, r, 0, true, func(v any, err error) (vote, error) {
		if err != nil {
			return voteFailed, err
		}
		return voteYes, nil
	})
	out := make([]RWState, len(m.inst))
	for i, in := range m.inst {
		out[i].Endpoint = in.name
		if o.votes[i] != voteYes {
			out[i].Err = o.errs[i]
			if out[i].Err == nil {
				out[i].Err = errBadReply
			}
			continue
		}
		a, ok := o.vals[i].([]any)
		if !ok || len(a) < 3 || (len(a)-3)%3 != 0 {
			out[i].Err = errBadReply
			continue
		}
		out[i].Writer, _ = a[0].(string)
		if p, _ := toInt(a[1]); out[i].Writer != "" {
			out[i].WriterTTL = time.Duration(p) * time.Millisecond
		}
		if p, _ := toInt(a[2]); p != -2 {
			out[i].WriterWaiting = true
		}
		for j := 3; j < len(a); j += 3 {
			tok, _ := a[j].(string)
			ms, _ := toInt(a[j+1])
			md, _ := a[j+2].(string)
			out[i].Readers = append(out[i].Readers, ReaderState{Token: tok, TTL: time.Duration(ms) * time.Millisecond, Metadata: md})
		}
	}
	if o.ctxErr != nil {
		return out, o.ctxErr
	}
	return out, nil
}
