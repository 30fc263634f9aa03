package chaos

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	rd "github.com/redis/rueidis"

	"github.com/redlock-go/redlock"
	rueidisadapter "github.com/redlock-go/redlock/rueidis"
)

// Read-write locks in the fault suite. With Workload.ReadShare > 0 every
// acquisition is one of the resource's redlock.RWMutex: a reader's share
// (Record.Read) or the writer's lock. CheckExclusion lets readers' windows
// overlap each other and nothing else: no writer may overlap a reader or a
// writer. The negative control ReadersIgnoreWriter removes the writer check
// from the readers' acquisition script, in a client that wraps rueidis
// and rewrites that one script on its way to the servers: the sabotaged
// script exists only here, in the fault suite's own module, never in the
// library.

// mode is how a record's holder held the lock, for violation details.
func (r *Record) mode() string {
	if r.Read {
		return " (reader)"
	}
	return ""
}

// lock takes res as the workload says: with ReadShare, the read-write
// lock's reader (read) or writer; otherwise the mutex (Manager.Lock).
func (w *Workload) lock(ctx context.Context, m *redlock.Manager, res string, read bool, opts []redlock.LockOption) (*redlock.Lock, error) {
	switch {
	case w.ReadShare <= 0:
		return m.Lock(ctx, res, opts...)
	case read:
		return m.RWMutex(res).RLock(ctx, opts...)
	}
	return m.RWMutex(res).Lock(ctx, opts...)
}

// readerWriterCheck is the part of rw_read_acquire.lua that the control
// removes: the refusal while the writer's key exists.
const readerWriterCheck = `if redis.call('EXISTS', KEYS[1]) == 1 then
  return -2 - redis.call('PTTL', KEYS[1])
end
`

// sabotagedReaderScript returns the library's rw_read_acquire script,
// read from the repository (this file's ../../scripts), its SHA1, and the
// script without its writer check.
func sabotagedReaderScript() (orig, sha, src string, err error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return "", "", "", errors.New("chaos: cannot locate the scripts directory")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "scripts", "rw_read_acquire.lua"))
	if err != nil {
		return "", "", "", err
	}
	orig = string(b)
	if !strings.Contains(orig, readerWriterCheck) {
		return "", "", "", errors.New("chaos: rw_read_acquire.lua has no writer check to remove: update readerWriterCheck")
	}
	sum := sha1.Sum(b)
	return orig, hex.EncodeToString(sum[:]), strings.Replace(orig, readerWriterCheck, "", 1), nil
}

// ignoringClient is a rueidis Client that runs the sabotaged reader
// script in place of the real one.
type ignoringClient struct {
	*rueidisadapter.Client
	sha, src string // the real script's SHA1, and the sabotaged source
	orig     string // the real script's source (for the EVAL fallback)
}

func (c *ignoringClient) EvalSha(ctx context.Context, sha string, keys, args []string) (any, error) {
	if sha == c.sha {
		return c.Client.Eval(ctx, c.src, keys, args)
	}
	return c.Client.EvalSha(ctx, sha, keys, args)
}

func (c *ignoringClient) Eval(ctx context.Context, script string, keys, args []string) (any, error) {
	if script == c.orig {
		script = c.src
	}
	return c.Client.Eval(ctx, script, keys, args)
}

// newSabotagedManager returns a Manager over ignoringClients for
// w.Endpoints, and a function that closes them.
func (w *Workload) newSabotagedManager() (*redlock.Manager, func(), error) {
	orig, sha, src, err := sabotagedReaderScript()
	if err != nil {
		return nil, nil, err
	}
	var rcs []rd.Client
	closeAll := func() {
		for _, rc := range rcs {
			rc.Close()
		}
	}
	clients := make([]redlock.Client, len(w.Endpoints))
	for i, ep := range w.Endpoints {
		// As redlock.New dials (dial_rueidis.go): pipelined, so that a
		// call that times out does not cost a reconnect (go-redis, which
		// closes the connection then, ran out of loopback ports under
		// -race here).
		rc, err := rd.NewClient(rd.ClientOption{
			InitAddress: []string{ep}, DisableCache: true, DisableRetry: true,
			ClientSetInfo: rd.DisableClientSetInfo, AlwaysPipelining: true,
			ForceSingleClient: true, PipelineMultiplex: -1,
		})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		rcs = append(rcs, rc)
		clients[i] = &ignoringClient{Client: rueidisadapter.New(rc), sha: sha, src: src, orig: orig}
	}
	m, err := redlock.NewFromClients(clients, redlock.Config{
		RetryCount:    w.RetryCount,
		RetryDelayMin: w.RetryDelayMin,
		RetryDelayMax: w.RetryDelayMax,
		DefaultTTL:    w.TTL,
		NodeTimeout:   w.NodeTimeout,
	})
	if err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("chaos: sabotaged manager: %w", err)
	}
	return m, closeAll, nil
}
