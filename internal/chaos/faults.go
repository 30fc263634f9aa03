package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/redlock-go/redlock/internal/redistest"
)

// ClusterOptions configures NewCluster.
type ClusterOptions struct {
	// N is the number of redis-servers.
	N int
	// AOF gives every server an append-only file with appendfsync always,
	// so a killed server restarts with its keys.
	AOF bool
	// Groups is the number of client groups; each group reaches the
	// servers through proxies of its own, so a fault can cut one group off
	// a server while another still reaches it (a partition). Default 1.
	Groups int
}

// Cluster is N redis-servers, each behind one toxiproxy proxy per client
// group (toxiproxy's toxics, our accept loop: see faultProxy), and the faults that can be injected into them. Methods that take
// no testing.TB are safe for concurrent use; the others must be called from
// the test goroutine.
type Cluster struct {
	Servers []*redistest.Server
	opts    ClusterOptions
	api     *toxiproxy.ApiServer
	proxies [][]*faultProxy // [group][server]

	mu     sync.Mutex
	paused []bool
	down   []bool
	seq    int // toxic names
}

// NewCluster starts the servers and their proxies; t.Cleanup stops them.
func NewCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Groups == 0 {
		opts.Groups = 1
	}
	c := &Cluster{opts: opts, paused: make([]bool, opts.N), down: make([]bool, opts.N)}
	for i := 0; i < opts.N; i++ {
		c.Servers = append(c.Servers, redistest.StartWith(t, redistest.Options{AOF: opts.AOF}))
	}
	c.api = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	c.proxies = make([][]*faultProxy, opts.Groups)
	t.Cleanup(func() {
		for _, ps := range c.proxies {
			for _, p := range ps {
				p.Close()
			}
		}
	})
	for g := range c.proxies {
		for i, s := range c.Servers {
			p, err := startProxy(c.api, fmt.Sprintf("g%d-s%d", g, i), s.Addr())
			if err != nil {
				t.Fatalf("chaos: start proxy for %s: %v", s, err)
			}
			c.proxies[g] = append(c.proxies[g], p)
		}
	}
	return c
}

// N returns the number of servers.
func (c *Cluster) N() int { return c.opts.N }

// Endpoints returns the proxy addresses that clients of group g use, one
// per server.
func (c *Cluster) Endpoints(g int) []string {
	out := make([]string, len(c.proxies[g]))
	for i, p := range c.proxies[g] {
		out[i] = p.Addr()
	}
	return out
}

// Pause freezes server i with SIGSTOP.
func (c *Cluster) Pause(t testing.TB, i int) {
	t.Helper()
	c.Servers[i].Pause(t)
	c.mu.Lock()
	c.paused[i] = true
	c.mu.Unlock()
}

// Resume continues server i with SIGCONT.
func (c *Cluster) Resume(t testing.TB, i int) {
	t.Helper()
	c.Servers[i].Resume(t)
	c.mu.Lock()
	c.paused[i] = false
	c.mu.Unlock()
}

// Kill kills server i with SIGKILL.
func (c *Cluster) Kill(t testing.TB, i int) {
	t.Helper()
	c.Servers[i].Kill(t)
	c.mu.Lock()
	c.down[i], c.paused[i] = true, false
	c.mu.Unlock()
}

// Restart starts server i again on its port (with its AOF, if any).
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.Servers[i].Restart(t)
	c.mu.Lock()
	c.down[i], c.paused[i] = false, false
	c.mu.Unlock()
}

// Toxic adds a toxic of type typ ("latency", "timeout", "reset_peer", ...)
// on stream ("upstream": client to server, "downstream": server to client)
// to the proxy of server i in group g (g < 0: every group). It returns the
// toxic's name for RemoveToxic.
func (c *Cluster) Toxic(g, i int, typ, stream string, attrs map[string]any) (string, error) {
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s-%s-%d", typ, stream, c.seq)
	c.mu.Unlock()
	body, err := json.Marshal(map[string]any{
		"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		return "", err
	}
	for _, p := range c.groupProxies(g, i) {
		if _, err := p.tp.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
			return "", fmt.Errorf("chaos: add %s toxic to %s: %w", typ, p.tp.Name, err)
		}
	}
	return name, nil
}

// RemoveToxic removes the toxic named name from the proxy of server i in
// group g (g < 0: every group).
func (c *Cluster) RemoveToxic(g, i int, name string) error {
	for _, p := range c.groupProxies(g, i) {
		if err := p.tp.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("chaos: remove toxic %s from %s: %w", name, p.tp.Name, err)
		}
	}
	return nil
}

func (c *Cluster) groupProxies(g, i int) []*faultProxy {
	if g >= 0 {
		return []*faultProxy{c.proxies[g][i]}
	}
	var out []*faultProxy
	for _, ps := range c.proxies {
		out = append(out, ps[i])
	}
	return out
}

// ClearToxics removes every toxic from every proxy.
func (c *Cluster) ClearToxics() {
	for _, ps := range c.proxies {
		for _, p := range ps {
			p.tp.Toxics.ResetToxics(context.Background())
		}
	}
}

// Heal removes every toxic, resumes paused servers and restarts killed
// ones.
func (c *Cluster) Heal(t testing.TB) {
	t.Helper()
	c.ClearToxics()
	for i := range c.Servers {
		c.mu.Lock()
		paused, down := c.paused[i], c.down[i]
		c.mu.Unlock()
		switch {
		case down:
			c.Restart(t, i)
		case paused:
			c.Resume(t, i)
		}
	}
}
