package redistest

import (
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	st := time.Now()
	g := StartSentinel(t, 1, 3)
	t.Logf("start: %v", time.Since(st))
	st = time.Now()
	old := g.Master
	g.Failover(t)
	t.Logf("failover: %v", time.Since(st))
	st = time.Now()
	for {
		if r := old.Do(t, "ROLE"); len(r) > 5 && r[:5] == "slave" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("old demoted: %v", time.Since(st))
	st = time.Now()
	for {
		if r := old.Do(t, "INFO", "replication"); infoField(r, "master_link_status") == "up" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("old link up: %v", time.Since(st))
	st = time.Now()
	g.Failover(t)
	t.Logf("failover2: %v", time.Since(st))
}
