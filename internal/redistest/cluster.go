package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
)

// Cluster is a Redis Cluster of masters only (no replicas), started by
// StartCluster.
type Cluster struct {
	// Masters are the cluster nodes; together they own all 16384 slots.
	Masters []*Server
}

// StartCluster starts `masters` (at least 3) redis-servers with
// cluster-enabled yes and a cluster-config-file in their temp dirs, on ports
// whose cluster bus port (port+10000) was also free, joins them with
// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, and
// waits until every node reports cluster_state:ok, all slots assigned and
// all nodes known. Nodes are stopped in t.Cleanup.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: StartCluster needs at least 3 masters, got %d", masters)
	}
	cli := findBinary(t, "redis-cli")
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		s := startServer(t, Options{}, []string{
			"cluster-enabled yes",
			"cluster-config-file nodes.conf",
			"cluster-node-timeout 2000",
		}, true)
		c.Masters = append(c.Masters, s)
	}

	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: %s %q: %v\n%s", cli, args, err, out)
	}

	want := strconv.Itoa(masters)
	waitFor(t, topologyTimeout, "cluster_state:ok on all nodes", func() (bool, string) {
		for _, s := range c.Masters {
			info := formatReply(s.in.do(t, "CLUSTER", "INFO"))
			state := infoField(info, "cluster_state")
			assigned := infoField(info, "cluster_slots_assigned")
			known := infoField(info, "cluster_known_nodes")
			if state != "ok" || assigned != "16384" || known != want {
				return false, fmt.Sprintf("%s: cluster_state=%s cluster_slots_assigned=%s cluster_known_nodes=%s",
					s.Addr(), state, assigned, known)
			}
		}
		return true, ""
	}, serverLogs(c.Masters)...)
	return c
}

// Addrs returns the "127.0.0.1:PORT" addresses of all nodes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Masters))
	for i, s := range c.Masters {
		out[i] = s.Addr()
	}
	return out
}
