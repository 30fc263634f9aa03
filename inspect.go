package redlock

import (
	"context"
	"strconv"
	"time"
)

// InstanceState is what one instance holds for a resource: the token in its
// lock key, the key's remaining time to live, the lock's metadata and the
// resource's fencing counter, and how long the instance took to answer.
// Manager.Inspect and Manager.ForceRelease return one per instance, in
// endpoint order. The zero value is an instance without the key (nor a
// counter), RTT aside.
type InstanceState struct {
	// Endpoint names the instance as Manager.Endpoints does: its redacted
	// address (never a password), or "client[i]" for NewFromClients.
	Endpoint string

	// Token is the token in the resource's lock key: the holder's token,
	// which Manager.Attach accepts. It is "" when the key is missing (a key
	// holding the empty string counts as missing: no lock has that token)
	// and when the instance did not answer.
	Token string

	// TTL is the key's remaining time to live as PTTL reports it, with
	// millisecond precision. A key without expiry (PTTL -1, which no lock
	// of this package leaves) has TTL -1ms: test TTL < 0. TTL is 0 when
	// Token is "".
	TTL time.Duration

	// Metadata is the metadata stored beside the lock key under Token (see
	// the Metadata option), "" when there is none: the lock was taken
	// without it, or what is there belongs to another token (left by an
	// earlier holder whose key was deleted by other means, it is not
	// reported).
	Metadata string

	// Fence is the resource's fencing counter on the instance: the fencing
	// token of the last fenced lock taken there (see Lock.Fence), whoever
	// holds the key now, and whether or not a key exists; 0 when the
	// resource was never locked with fencing there.
	Fence uint64

	// RTT is how long the inspection's call to the instance took (the
	// script call on the Manager's connection, until its reply or its
	// error: a refused connection fails fast), 0 when it had not returned
	// when Inspect did (a timeout, the context's end). ForceRelease
	// reports those of its inspection.
	RTT time.Duration

	// Err is why the instance did not answer usably: a network error, a
	// timeout (context.DeadlineExceeded), the caller's context error, a
	// Redis error reply (such as WRONGTYPE when the key holds something
	// else than a string), or an unexpected reply. Token, TTL, Metadata and
	// Fence are then zero for Inspect. ForceRelease documents the values
	// it adds.
	Err error
}

// Inspect asks every instance, in parallel and each within
// Config.NodeTimeout, who holds resource, and returns one state per
// instance in endpoint order (the order of Endpoints). It changes nothing.
//
// Unlike IsLocked it gives each instance's own answer, not the quorum's
// verdict: an instance that fails has its Err set, and the others are
// reported all the same. The returned error is ErrInvalid (a bad
// resource), ErrClosed, or the context's error when ctx ended: before the
// call (no states), or while instances had not answered yet (their Err is
// the context's error; the states are returned). Inspect is safe for
// concurrent use.
//
// Inspect reads the key of one resource: for a lock taken with LockMany,
// inspect each of its resources (each carries the lock's metadata). It
// reads the metadata and the fencing counter in the same script call,
// except for a key with a '}' but no hash tag (see Metadata), whose
// Metadata and Fence stay zero.
func (m *Manager) Inspect(ctx context.Context, resource string) ([]InstanceState, error) {
	return m.inspect(ctx, resource, false)
}

// inspect is Inspect; election says that resource is an election's lock,
// whose term counts only where its term record names it (see inspect.lua).
func (m *Manager) inspect(ctx context.Context, resource string, election bool) ([]InstanceState, error) {
	if err := m.begin(ctx, resource); err != nil {
		return nil, err
	}
	defer m.leave()
	key := m.cfg.KeyPrefix + resource
	var states []InstanceState
	var o *outcome
	if election {
		states, o = m.inspectKey(ctx, key, termKey(key))
	} else {
		states, o = m.inspectKey(ctx, key)
	}
	if o.ctxErr != nil {
		return states, o.ctxErr
	}
	return states, nil
}

// ForceRelease deletes whatever holds resource on every instance, after a
// crash left a lock behind and its token is unknown (for a known token,
// Attach and Unlock are safer). It inspects every instance as Inspect
// does, then deletes on each instance the key only if it still holds the
// token seen there (the compare-and-delete of Unlock, which also wakes the
// callers waiting for the lock): a lock taken in between is left alone.
// The holder of the deleted lock, if it still runs, loses it at its next
// extension or when its validity ends; it is not told otherwise. The lock's
// metadata (see Metadata) is deleted with it.
//
// It returns one state per instance, in endpoint order:
//   - Token "" and Err nil: the instance had no key; nothing to delete.
//   - Token set and Err nil: the key holding Token (with TTL left then)
//     is gone: ForceRelease deleted it, or it expired just before.
//   - Token set and Err ErrHeldByOther: another token took the key after
//     the inspection; it was left alone (Inspect tells who holds it).
//   - Token set and another Err: the delete failed; the key expires with
//     its TTL.
//   - Token "" and Err set: the instance did not answer the inspection;
//     its key, if any, expires with its TTL.
//
// The returned error is nil when a quorum of instances answered both
// steps: whatever held the resource when ForceRelease started then holds
// it on too few instances to hold the lock (unless it is a state with
// ErrHeldByOther, a lock taken meanwhile). Otherwise it is a *QuorumError
// with ErrUnavailable (Op "force-release", Votes the instances that
// answered), also satisfying errors.Is with the context's error when ctx
// ended; the states are returned with it. ErrInvalid and ErrClosed come
// without states, and so does the context's error when ctx had ended
// before the call. ctx bounds the call: each instance's delete is also
// bounded by Config.NodeTimeout, and no delete is sent once ctx ended.
// ForceRelease is safe for concurrent use.
//
// ForceRelease never touches a fenced lock's counter: fencing tokens keep
// increasing across a forced release.
func (m *Manager) ForceRelease(ctx context.Context, resource string) ([]InstanceState, error) {
	if err := m.begin(ctx, resource); err != nil {
		return nil, err
	}
	defer m.leave()
	key := m.cfg.KeyPrefix + resource
	states, _ := m.inspectKey(ctx, key)
	keys := []string{key}
	if metaSameSlot(key) {
		keys = append(keys, metaKey(key)) // release.lua deletes it under the token
	}

	// The instances hold different tokens: one round, each instance with
	// its own token.
	answered := make([]bool, len(states))
	each := make([][]string, len(states))
	for i := range states {
		st := &states[i]
		switch {
		case st.Err != nil:
			continue
		case st.Token == "":
			answered[i] = true
			continue
		}
		if err := ctx.Err(); err != nil {
			st.Err = err
			continue
		}
		each[i] = []string{st.Token, ReleaseChannel}
	}
	r := m.fanoutEach(ctx, m.cfg.NodeTimeout, scriptRelease, keys, each)
	o := m.collect(ctx, r, 0, true, classifyRelease)
	for i := range states {
		if each[i] != nil {
			states[i].Err = o.errs[i]
			answered[i] = o.votes[i] == voteYes || o.votes[i] == voteRefused
		}
	}
	m.waits.wake(key) // local waiters need no message

	votes := 0
	for _, ok := range answered {
		if ok {
			votes++
		}
	}
	if votes >= m.quorum {
		return states, nil
	}
	e := &QuorumError{
		Op: "force-release", Resource: resource, Votes: votes, Quorum: m.quorum, N: len(m.inst),
		Attempts: 1, Err: ErrUnavailable, Ctx: ctx.Err(),
	}
	for _, st := range states {
		if st.Err != nil {
			e.Instances = append(e.Instances, &InstanceError{Endpoint: st.Endpoint, Err: st.Err})
		}
	}
	return states, e
}

// inspectKey runs scripts/inspect.lua for key (with its metadata key and
// fencing counter, when they share its slot) on every instance and waits
// for every answer (or the round's deadline, or ctx).
// An election passes its term record as term (see inspect.lua).
func (m *Manager) inspectKey(ctx context.Context, key string, term ...string) ([]InstanceState, *outcome) {
	keys := []string{key}
	if metaSameSlot(key) {
		// counterKey(key) shares metaKey(key)'s hash tag.
		keys = append(keys, metaKey(key), counterKey(key))
		keys = append(keys, term...)
	}
	rtt := make([]time.Duration, len(m.inst))
	r := m.fanoutTimed(ctx, m.cfg.NodeTimeout, scriptInspect, keys, rtt)
	o := m.collect(ctx, r, 0, true, classifyState)
	states := make([]InstanceState, len(m.inst))
	for i, in := range m.inst {
		st := InstanceState{Endpoint: in.name}
		if o.got[i] { // rtt[i] was written before the reply was sent
			st.RTT = rtt[i]
		}
		switch o.votes[i] {
		case voteYes, voteRefused: // classifyState checked the shape
			a := o.vals[i].([]any)
			if o.votes[i] == voteYes {
				st.Token = a[0].(string)
				st.TTL = time.Duration(a[1].(int64)) * time.Millisecond
			}
			if len(a) == 4 {
				st.Metadata, _ = a[2].(string)
				c, _ := a[3].(string)
				st.Fence, _ = strconv.ParseUint(c, 10, 64)
			}
		default:
			st.Err = o.errs[i]
		}
		states[i] = st
	}
	return states, o
}
