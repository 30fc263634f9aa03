package redlock

import (
	"context"
	"errors"
	"strconv"
)

// ErrNoLeader is returned by Election.Leader when the election has no
// leader: no pair of holder and term is held by a quorum of the instances.
var ErrNoLeader = errors.New("redlock: no leader")

// electionSuffix ends the resource name of an election's lock (see
// Manager.Election).
const electionSuffix = ":redlock-election"

// termSuffix ends the key of an election's term record, beside its lock
// key (as metaKey places the metadata key).
const termSuffix = ":redlock-term"

var scriptElectionTerm = loadScript("election_term")

// termKey names the term record of the election lock key key.
func termKey(key string) string {
	if hashTag(key) != "" {
		return key + termSuffix
	}
	return "{" + key + "}" + termSuffix
}

// Election is a leader election over the Manager's instances, etcd's
// concurrency.Election on Redlock: Campaign blocks until the caller leads,
// Leader tells who leads, Observe follows the leaders. Manager.Election
// returns it; it holds no state of its own besides its name (every call
// goes to the instances) and is safe for concurrent use. The zero value is
// not usable.
//
// Leadership is a fenced Redlock mutex (see Fenced) whose metadata (see
// Metadata) is the leader's value: at most one leader at a time under the
// mutex's own assumptions (see the package documentation), and the term,
// the lock's fencing token, is strictly larger than every earlier leader's.
// A leader that acts on something outside the election should pass its
// term along and have the resource refuse lower terms: a leader that
// paused past its lease cannot otherwise tell that it is no longer one.
type Election struct {
	m        *Manager
	name     string
	resource string // the lock's resource: "{NAME}:redlock-election"
	err      error
}

// Election returns the leader election name. It does not contact the
// instances. A bad name (see Lock) does not panic: every method of the
// returned Election then fails with ErrInvalid.
//
// The leadership is a lock on the resource "{NAME}:redlock-election"
// ("NAME:redlock-election" when KeyPrefix+NAME already has a hash tag),
// with its fencing counter and metadata keys beside it (see Fenced and
// Metadata). Other Redlock clients do not know this shape: an election
// excludes only the campaigners of this package's Election with the same
// name, and a plain Lock of NAME is another lock altogether.
func (m *Manager) Election(name string) *Election {
	e := &Election{m: m, name: name}
	if err := m.checkResource(name); err != nil {
		e.err = err
		return e
	}
	e.resource = "{" + name + "}" + electionSuffix
	if hashTag(m.cfg.KeyPrefix+name) != "" {
		e.resource = name + electionSuffix
	}
	if err := m.checkResource(e.resource); err != nil {
		e.err = err
	}
	return e
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Campaign blocks until the caller is the leader, with value as its value
// (what Leader and Observe report: a host name, an address), or until ctx
// ends, retrying as Manager.LockWait does. It returns the leadership as a
// *Lock: its Fence is the term, strictly larger than every earlier
// leader's; its Metadata is value; it is extended automatically (Lost
// tells the leader it no longer leads: the lease could not be extended on
// a quorum, or it ran out); Unlock resigns. The errors are those of
// LockWait: ErrInvalid (a bad election, or value over MaxMetadataLen
// bytes), ErrRejected, ErrClosed, or ctx's error joined with the last
// attempt's. value may be "" (reported as "").
func (e *Election) Campaign(ctx context.Context, value string) (*Lock, error) {
	if e.err != nil {
		return nil, e.err
	}
	req, err := e.m.newRequest(e.resource, []LockOption{Fenced(), Metadata(value)})
	if err != nil {
		return nil, err
	}
	l, err := e.m.acquireReq(ctx, "Election.Campaign", req, -1)
	if err != nil {
		return nil, err
	}
	e.recordTerm(ctx, l)
	return l, nil
}

// recordTerm writes the term record of leadership l (election_term.lua)
// on every instance where l's key holds its token, and waits for a quorum
// or Config.NodeTimeout: until a quorum has it, Leader and Observe report
// no leader (a new leader's key is set before its fencing round raises the
// counter, so the counter alone could pair it with the previous term). A
// leader is a leader without it: Campaign returns l either way.
func (e *Election) recordTerm(ctx context.Context, l *Lock) {
	m := e.m
	if !m.enter() {
		return
	}
	defer m.leave()
	key := l.ks.keys[0]
	r := m.fanout(ctx, m.cfg.NodeTimeout, nil, scriptElectionTerm, []string{key, termKey(key)}, []string{l.token, strconv.FormatUint(l.fence, 10)})
	m.collect(ctx, r, m.quorum, false, classifyExtend) // the same replies: 1 held and written, 0 not held
}

// Leader returns the current leader's value and term, as a quorum of the
// instances report them: the holder of the election's lock and the
// fencing counter held together by a quorum. It changes nothing. It
// returns ErrNoLeader when there is no leader (too few instances hold any
// one pair, even counting those that did not answer: a leader that is
// still being elected, whose term is not yet agreed, is none), a
// *QuorumError with ErrUnavailable when too few instances answered to
// tell, and ErrInvalid, ErrClosed or ctx's error otherwise. ctx bounds the
// call; each instance is also bounded by Config.NodeTimeout.
func (e *Election) Leader(ctx context.Context) (value string, term uint64, err error) {
	if e.err != nil {
		return "", 0, e.err
	}
	states, err := e.m.inspect(ctx, e.resource, true)
	if err != nil && states == nil {
		return "", 0, err
	}
	return leaderOf(e.m, e.resource, states, ctx.Err())
}

// leaderOf finds the leader in one inspection of the election's lock.
func leaderOf(m *Manager, resource string, states []InstanceState, ctxErr error) (string, uint64, error) {
	type pair struct {
		token string
		term  uint64
	}
	var counts [smallN]int
	var pairs [smallN]pair
	ps, cs := pairs[:0], counts[:0]
	failed := 0
	var errs []*InstanceError
	best := 0
	for _, st := range states {
		if st.Err != nil {
			failed++
			errs = append(errs, &InstanceError{Endpoint: st.Endpoint, Err: st.Err})
			continue
		}
		if st.Token == "" || st.Fence == 0 {
			continue
		}
		p := pair{st.Token, st.Fence}
		j := 0
		for j < len(ps) && ps[j] != p {
			j++
		}
		if j == len(ps) {
			ps, cs = append(ps, p), append(cs, 0)
		}
		cs[j]++
		if cs[j] >= m.quorum {
			for _, s := range states {
				if s.Err == nil && s.Token == p.token && s.Fence == p.term {
					return s.Metadata, p.term, nil
				}
			}
		}
		best = max(best, cs[j])
	}
	if best+failed < m.quorum {
		return "", 0, ErrNoLeader
	}
	return "", 0, &QuorumError{Op: "leader", Resource: resource, Votes: len(states) - failed, Quorum: m.quorum,
		N: len(m.inst), Attempts: 1, Err: ErrUnavailable, Ctx: ctxErr, Instances: errs}
}

// Leadership is one leader of an Election, as Observe reports it.
type Leadership struct {
	// Value is the leader's value (see Election.Campaign).
	Value string
	// Term is the leader's term: its lock's fencing token.
	Term uint64
}

// Observe follows the election's leaders: the returned channel receives
// the current leader (once there is one), then each later leader, each
// once and in the order of their terms, and is closed when ctx ends or the
// Manager is closed. The leaders are read as Leader does, when a release
// of the election's lock is seen (on ReleaseChannel, or by this Manager)
// and otherwise every retry delay (a random wait in [RetryDelayMin,
// RetryDelayMax], growing while instances are unavailable): a leadership
// shorter than that, or that began and ended while the receiver was not
// receiving, may be missed; the absence of a leader is not reported.
// Observe starts one goroutine, which ends with the channel; an invalid
// election gives a closed channel.
func (e *Election) Observe(ctx context.Context) <-chan Leadership {
	ch := make(chan Leadership)
	m := e.m
	if e.err != nil || !m.enter() {
		close(ch)
		return ch
	}
	go func() {
		defer m.leave()
		defer close(ch)
		m.subscribe()
		key := m.cfg.KeyPrefix + e.resource
		// A queue of its own, so that it never stands before a Campaign of
		// this Manager; the releases of key wake it (see waitSet.nudge).
		w := m.waits.join([]string{"\x00observe:" + newToken(), key}, m.waits.releases.Load())
		defer m.waits.leave(w, true)
		var last uint64
		unavailable := 0
		for {
			states, _ := m.inspectKey(ctx, key, termKey(key))
			if ctx.Err() != nil {
				return
			}
			value, term, err := leaderOf(m, e.resource, states, nil)
			switch {
			case err == nil:
				unavailable = 0
				if term > last {
					select {
					case ch <- Leadership{Value: value, Term: term}:
						last = term
					case <-ctx.Done():
						return
					case <-m.closing:
						return
					}
				}
			case errors.Is(err, ErrNoLeader):
				unavailable = 0
			default:
				unavailable++
			}
			if m.waitTurn(ctx, w, m.backoff(unavailable)) != nil {
				return
			}
		}
	}()
	return ch
}
