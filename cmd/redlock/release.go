package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/redlock-go/redlock"
)

type releaseOpts struct {
	conn  connFlags
	token string
	force bool
}

func newReleaseFlags() (*flag.FlagSet, *releaseOpts) {
	fs := newFlagSet("release")
	o := &releaseOpts{}
	o.conn.register(fs)
	fs.StringVar(&o.token, "token", "", "")
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
	tokenSet := flagSet(fs, "token")
	switch {
	case len(pos) != 1:
		err = usagef("want exactly one RESOURCE, got %d", len(pos))
	case pos[0] == "":
		err = usagef("empty RESOURCE")
	case tokenSet && o.force:
		err = usagef("--token and --force exclude each other")
	case !tokenSet && !o.force:
		err = usagef("want --token TOKEN, or --force to delete whatever holds the lock")
	case tokenSet && o.token == "":
		err = usagef("empty --token")
	}
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	res := pos[0]
	cfg, err := o.conn.config(stderr)
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	m, eps, err := o.conn.newManager(cfg)
	if err != nil {
		return reportUsage("release", err, stdout, stderr)
	}
	defer func() {
		cctx, cancel := boundedCtx(ctx, cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		cancel()
	}()
	if o.force {
		return forceRelease(ctx, eps, cfg, m.Quorum(), res, stdout, stderr)
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
	case errors.Is(err, redlock.ErrUnavailable):
		fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
		return exitUnavailable
	case errors.Is(err, redlock.ErrInvalid):
		return reportUsage("release", err, stdout, stderr)
	}
	fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
	return exitSoftware
}

// forceRelease deletes the key of res on every instance, whatever token it
// holds, after printing what it deletes. Each deletion compares the token it
// printed, so a lock taken meanwhile is left alone (exit 1). It succeeds
// when a quorum answered: no token can then hold a quorum.
func forceRelease(ctx context.Context, eps []string, cfg redlock.Config, quorum int, res string, stdout, stderr io.Writer) int {
	raw, err := dialRaw(eps, cfg.NodeTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "redlock release: %s\n", msg(err))
		return exitSoftware
	}
	defer raw.close()
	key := cfg.KeyPrefix + res
	states := raw.inspect(ctx, key)
	held := 0
	for _, st := range states {
		switch {
		case st.Err != nil:
			fmt.Fprintf(stdout, "%s: not answering (its key, if any, expires with its TTL): %v\n", st.Endpoint, st.Err)
		case st.Token == "":
			fmt.Fprintf(stdout, "%s: no key %s\n", st.Endpoint, quote(key))
		default:
			held++
			fmt.Fprintf(stdout, "%s: deleting key %s held by token %q (ttl %s)\n", st.Endpoint, quote(key), st.Token, fmtTTL(st.TTL))
		}
	}

	type result struct {
		n   int64
		err error
	}
	results := make([]result, len(states))
	var wg sync.WaitGroup
	for i, st := range states {
		if st.Err != nil || st.Token == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := releaseOne(ctx, raw.inst[i], key, st.Token, raw.timeout)
			results[i] = result{n, err}
		}()
	}
	wg.Wait()

	answered, changed := 0, 0
	for i, st := range states {
		if st.Err != nil {
			continue
		}
		if st.Token == "" {
			answered++
			continue
		}
		switch r := results[i]; {
		case r.err != nil:
			fmt.Fprintf(stdout, "%s: delete failed: %v\n", st.Endpoint, r.err)
		case r.n == 1:
			answered++
			fmt.Fprintf(stdout, "%s: deleted\n", st.Endpoint)
		case r.n == 0:
			answered++
			fmt.Fprintf(stdout, "%s: already gone\n", st.Endpoint)
		default:
			answered++
			changed++
			fmt.Fprintf(stdout, "%s: not deleted: another token took the key meanwhile\n", st.Endpoint)
		}
	}
	switch {
	case answered < quorum:
		fmt.Fprintf(stderr, "redlock release: only %d/%d instances answered (quorum %d): the lock may still be held\n", answered, len(states), quorum)
		return exitUnavailable
	case changed > 0:
		fmt.Fprintf(stderr, "redlock release: %s was taken again while it was being deleted; run status to see who holds it\n", quote(res))
		return exitConflict
	case held == 0:
		fmt.Fprintf(stdout, "nothing to delete: no instance holds %s\n", quote(key))
	}
	return exitOK
}
