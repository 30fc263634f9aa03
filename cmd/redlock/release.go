package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/redlock-go/redlock"
)

type releaseOpts struct {
	conn     connFlags
	token    string
	tokenB64 string
	force    bool
}

func newReleaseFlags() (*flag.FlagSet, *releaseOpts) {
	fs := newFlagSet("release")
	o := &releaseOpts{}
	o.conn.register(fs)
	fs.StringVar(&o.token, "token", "", "")
	fs.StringVar(&o.tokenB64, "token-base64", "", "")
	fs.BoolVar(&o.force, "force", false, "")
	return fs, o
}

func cmdRelease(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, o := newReleaseFlags()
	pos, tail, _, err := parseArgs(fs, args, -1)
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	pos = append(pos, tail...)
	tokenSet, b64Set := flagSet(fs, "token"), flagSet(fs, "token-base64")
	switch {
	case len(pos) != 1:
		err = usagef("want exactly one RESOURCE, got %d", len(pos))
	case checkResource(pos[0]) != nil:
		err = checkResource(pos[0])
	case btoi(tokenSet)+btoi(b64Set)+btoi(o.force) > 1:
		err = usagef("--token, --token-base64 and --force exclude each other")
	case !tokenSet && !b64Set && !o.force:
		err = usagef("want --token TOKEN, --token-base64 B64, or --force to delete whatever holds the lock")
	case tokenSet && o.token == "":
		err = usagef("empty --token")
	case b64Set:
		// The token as status --json gives it in holder_base64 (standard
		// base64): byte for byte, also when it is not UTF-8.
		var b []byte
		if b, err = base64.StdEncoding.DecodeString(o.tokenB64); err != nil {
			err = usagef("--token-base64: %v", err)
		} else if len(b) == 0 {
			err = usagef("empty --token-base64")
		}
		o.token = string(b)
	}
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	res := pos[0]
	cfg, err := o.conn.config(stderr)
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	m, err := o.conn.newManager(cfg, stderr)
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	defer func() {
		cctx, cancel := boundedCtx(ctx, cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		cancel()
	}()
	if o.force {
		return forceRelease(ctx, m, cfg.KeyPrefix+res, res, stdout, stderr)
	}

	l, err := m.Attach(ctx, res, o.token)
	if err == nil {
		err = l.Unlock(ctx)
	}
	switch {
	case err == nil:
		if o.conn.verbose {
			fmt.Fprintf(stderr, "redlock release: released %s (token %s)\n", quote(res), shortToken(o.token))
		}
		return exitOK
	case errors.Is(err, redlock.ErrNotHeld):
		fmt.Fprintf(stderr, "redlock release: %s is not held under token %s (it expired, was released, or another token holds it): %s\n",
			quote(res), shortToken(o.token), msg(err))
		return exitConflict
	case errors.Is(err, redlock.ErrRejected), errors.Is(err, redlock.ErrUnavailable):
		what, code := whyNoQuorum(ctx, m, res, err)
		fmt.Fprintf(stderr, "redlock release: %s\n", what)
		return code
	case errors.Is(err, redlock.ErrInvalid):
		return reportUsage("release", err, stdout, stderr)
	}
	fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
	return exitSoftware
}

// forceRelease deletes the key of res on every instance, whatever token it
// holds, and prints what it found and deleted on each. Each deletion
// compares the token printed, so a lock taken meanwhile is left alone
// (exit 1). It succeeds when a quorum answered: the lock that was there
// then holds too few instances to be held.
func forceRelease(ctx context.Context, m *redlock.Manager, key, res string, stdout, stderr io.Writer) int {
	states, err := m.ForceRelease(ctx, res)
	if states == nil {
		// ctx ended before the call (or a bug): nothing was sent.
		fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
		if ctx.Err() != nil {
			return exitUnavailable
		}
		return exitSoftware
	}
	held, changed := 0, 0
	for _, st := range states {
		switch {
		case st.Token == "" && st.Err != nil:
			fmt.Fprintf(stdout, "%s: not answering (its key, if any, expires with its TTL): %v\n", st.Endpoint, st.Err)
		case st.Token == "":
			fmt.Fprintf(stdout, "%s: no key %s\n", st.Endpoint, quote(key))
		case st.Err == nil:
			held++
			fmt.Fprintf(stdout, "%s: deleted key %s held by token %q (ttl %s)\n", st.Endpoint, quote(key), st.Token, fmtTTL(st.TTL))
		case errors.Is(st.Err, redlock.ErrHeldByOther):
			held++
			changed++
			fmt.Fprintf(stdout, "%s: not deleted: key %s held by token %q, but another token took it meanwhile\n", st.Endpoint, quote(key), st.Token)
		default:
			held++
			fmt.Fprintf(stdout, "%s: key %s held by token %q (ttl %s): delete failed (it expires with its TTL): %v\n",
				st.Endpoint, quote(key), st.Token, fmtTTL(st.TTL), st.Err)
		}
	}
	var qe *redlock.QuorumError
	rejections := 0
	for _, c := range stateFailures(states) {
		if isRejection(c.err) {
			rejections++
		}
	}
	switch {
	case errors.As(err, &qe) && rejections > 0 && qe.N-rejections < qe.Quorum:
		fmt.Fprintf(stderr, "redlock release: %s\n", rejected(res, stateFailures(states)))
		return exitConfig
	case errors.As(err, &qe) && errors.Is(err, redlock.ErrUnavailable):
		fmt.Fprintf(stderr, "redlock release: %s: the lock may still be held\n", noQuorum(res, false, qe.N, qe.Quorum, forceFailures(states)))
		return exitUnavailable
	case err != nil:
		fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
		return exitSoftware
	case changed > 0:
		fmt.Fprintf(stderr, "redlock release: %s was taken again while it was being deleted; run status to see who holds it\n", quote(res))
		return exitConflict
	case held == 0:
		fmt.Fprintf(stdout, "nothing to delete: no instance holds %s\n", quote(key))
	}
	return exitOK
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// forceFailures returns the instances of a ForceRelease that did not
// answer: its inspection, or its delete.
func forceFailures(states []redlock.InstanceState) []cause {
	var out []cause
	for _, st := range states {
		if st.Err != nil && !errors.Is(st.Err, redlock.ErrHeldByOther) {
			out = append(out, cause{st.Endpoint, st.Err})
		}
	}
	return out
}

// whyNoQuorum words err, a call about res that got no quorum
// (ErrUnavailable or ErrRejected), naming each failing instance, and gives
// the exit code. A call stops at the first sign that it failed, without
// the replies still to come: the instances' causes come from one Inspect,
// which waits for every answer (or, if it found every instance answering,
// from err).
func whyNoQuorum(ctx context.Context, m *redlock.Manager, res string, err error) (string, int) {
	var qe *redlock.QuorumError
	if !errors.As(err, &qe) {
		return msg(err), exitSoftware
	}
	var cs []cause
	if ctx.Err() == nil {
		ictx, cancel := context.WithTimeout(ctx, m.Config().NodeTimeout+timeoutSlack)
		states, _ := m.Inspect(ictx, res)
		cancel()
		cs = stateFailures(states)
	}
	if len(cs) == 0 {
		cs = failures(qe)
	}
	if errors.Is(err, redlock.ErrRejected) {
		return rejected(res, cs), exitConfig
	}
	return noQuorum(res, false, qe.N, qe.Quorum, cs), exitUnavailable
}
