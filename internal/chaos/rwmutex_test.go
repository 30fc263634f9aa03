package chaos

import (
	"fmt"
	"testing"
)

// readShare is the share of readers in the read-write lock scenarios.
const readShare = 0.6

// rwNemeses are the scenarios (by name, from scenarios) whose faults the
// read-write lock runs under in full mode: pause, crash with AOF, latency
// and black holes.
var rwNemeses = []string{
	"minority paused (SIGSTOP ≤ 2.5×TTL)",
	"crash + immediate restart (AOF always)",
	"latency 0-100ms",
	"minority black-holed (per client group)",
}

// buildOf returns the build function of the scenario called name.
func buildOf(t *testing.T, name string) func(*Scenario) {
	for _, s := range scenarios {
		if s.name == name {
			return s.build
		}
	}
	t.Fatalf("no scenario %q", name)
	return nil
}

// TestRWScenarios runs the workload on read-write locks (60% readers, the
// rest writers) under faults, at N=5 and N=3: no writer's window may
// overlap a reader's or a writer's. Short mode runs one bounded scenario,
// the mix of all faults (pause, crash with AOF, kill without persistence
// restarted after a TTL, latency, black holes, resets, paused holders), at
// each N; full mode runs each fault kind on its own too.
func TestRWScenarios(t *testing.T) {
	names := []string{"mix of all"}
	if full() {
		names = append(rwNemeses, names...)
	}
	for i, name := range names {
		for _, n := range []int{5, 3} {
			t.Run(fmt.Sprintf("rw: %s/N=%d", name, n), func(t *testing.T) {
				sc := baseScenario("rw: "+name, n, uint64(7000+100*i+n))
				buildOf(t, name)(&sc)
				sc.Workload.ReadShare = readShare
				res := runScenario(t, sc)
				reads := 0
				for _, r := range res.Records {
					if r.OK && r.Read {
						reads++
					}
				}
				if reads == 0 || reads == res.Acquisitions {
					t.Errorf("%d of %d acquisitions were readers': want both kinds", reads, res.Acquisitions)
				}
				t.Logf("readers: %d of %d acquisitions", reads, res.Acquisitions)
			})
		}
	}
}

// TestControlReadersIgnoreWriter: readers whose acquisition script ignores
// the writer's key must make the checker see a writer overlapping a
// reader.
func TestControlReadersIgnoreWriter(t *testing.T) {
	sc := baseScenario("control: rw readers ignore the writer", 5, 0)
	sc.Workload.ReadShare = 0.5
	sc.Workload.ReadersIgnoreWriter = true
	runControl(t, sc)
}

// read is held for a reader's share.
func read(w string, ret, dl, rel int64) Record {
	r := held(w, ret, dl, rel)
	r.Read = true
	return r
}

func TestCheckExclusionReaders(t *testing.T) {
	cases := []struct {
		name string
		recs []Record
		want int // overlaps
	}{
		{"readers share", []Record{read("a", 0, 100, 0), read("b", 10, 100, 0), read("c", 50, 300, 0)}, 0},
		{"writer after the readers", []Record{read("a", 0, 100, 0), read("b", 10, 150, 120), held("w", 120, 300, 0)}, 0},
		{"readers after the writer", []Record{held("w", 0, 100, 50), read("a", 50, 300, 0), read("b", 60, 300, 0)}, 0},
		{"writer inside a reader", []Record{read("a", 0, 100, 0), held("w", 50, 200, 0)}, 1},
		{"writer inside the second reader", []Record{read("a", 0, 100, 40), read("b", 10, 300, 0), held("w", 50, 200, 0)}, 1},
		{"reader inside the writer", []Record{held("w", 0, 100, 0), read("a", 99, 200, 0)}, 1},
		{"reader inside an earlier writer, after a reader that ends last", []Record{read("a", 0, 1000, 0), held("w", 10, 100, 0), read("b", 50, 60, 0)}, 2},
		{"writers still exclude each other", []Record{held("w", 0, 100, 0), held("v", 50, 200, 0)}, 1},
	}
	for _, c := range cases {
		if got := kinds(CheckExclusion(c.recs))["overlap"]; got != c.want {
			t.Errorf("%s: %d overlaps, want %d: %v", c.name, got, c.want, CheckExclusion(c.recs))
		}
	}
}
