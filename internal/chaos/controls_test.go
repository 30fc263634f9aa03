package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Negative controls: the algorithm broken on purpose (test hooks, or a
// server restarting without its data); each run must produce violations,
// proving that the exclusion checker can fail.

// controlSeeds returns the seeds a control runs with: 5 in full mode, 1
// in short mode.
func controlSeeds() []uint64 {
	if full() {
		return []uint64{101, 102, 103, 104, 105}
	}
	return []uint64{101}
}

// controlBudget is how long a control may run before it counts as not
// detected: the 10s in full mode; 60s in short mode, which runs in
// CI next to other packages on 2 cores (the detection time is reported
// either way). A control's run ends at its first expected violation, so
// the budget costs time only when detection is slow: at 30s the amnesia
// control missed in 3 of 4 runs beside busy loops (538 acquisitions, many
// calls timing out), and caught it in 15.6s in the fourth.
func controlBudget() time.Duration {
	if full() {
		return 10 * time.Second
	}
	return 60 * time.Second
}

// runControl runs sc once per seed and asserts that each run produced a
// violation of an expected kind (by default two holders' windows
// overlapping) within controlBudget.
func runControl(t *testing.T, sc Scenario) {
	for _, seed := range controlSeeds() {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			base := OpenFDs()
			t.Cleanup(func() { checkFDs(t, base) })
			sc := sc
			sc.Seed, sc.Control = seed, true
			sc.MinAcquisitions, sc.MinDuration, sc.MaxDuration = 0, 0, controlBudget()
			res := Execute(t, sc)
			report.Add("Negative controls (violations expected)", TableHeader, res.Row())
			t.Logf("\n%s\n%s", TableHeader, res.Row())
			if res.Expected == 0 {
				t.Fatalf("negative control %q: no violation of the kinds %v within %v (%d acquisitions; other violations: %v): the checker cannot see this failure; failed calls by message:\n%s",
					sc.Name, sc.Expect, controlBudget(), res.Acquisitions, kinds(res.Violations), strings.Join(res.FailureSummary(15), "\n"))
			}
			t.Logf("first %s after %v; violations by kind: %v", res.ExpectedKind, res.ExpectedAt, kinds(res.Violations))
		})
	}
}

func TestControlQuorumHalf(t *testing.T) {
	sc := baseScenario("control: quorum N/2", 5, 0)
	sc.Workload.QuorumHalf = true
	runControl(t, sc)
}

func TestControlIgnoreElapsed(t *testing.T) {
	sc := baseScenario("control: validity ignores elapsed", 5, 0)
	sc.Workload.IgnoreElapsed = true
	sc.Workload.AcquirePauseP, sc.Workload.AcquirePause = 0.1, ttl*3/2
	runControl(t, sc)
}

func TestControlPlainDelete(t *testing.T) {
	sc := baseScenario("control: unlock by plain DEL", 5, 0)
	sc.Workload.PlainDelete = true
	sc.Workload.HolderPauseP, sc.Workload.HolderPause = 0.1, ttl*3/2
	runControl(t, sc)
}

// TestControlLatestReplyWins: the deadline rule before sequencing (every
// manual extension's reply sets Until when it arrives, the watchdog's moves
// it forward, a shorter extension does not lower it when sent) must let a
// racing holder act past the lease its instances hold.
func TestControlLatestReplyWins(t *testing.T) {
	sc := baseScenario("control: latest reply wins (racing Extends, one instance slow)", 5, 0)
	racing(&sc)
	sc.Workload.LatestReplyWins = true
	runControl(t, sc)
}

func TestControlAmnesia(t *testing.T) {
	sc := baseScenario("control: immediate restart without persistence", 5, 0)
	sc.Nemesis = amnesia
	runControl(t, sc)
}

// TestControlFencingAmnesia: fencing counters lost with the keys (a
// majority restarted without persistence) must make the fencing checker
// see duplicate or decreasing tokens.
func TestControlFencingAmnesia(t *testing.T) {
	sc := baseScenario("control: fenced locks, counters lost (restart without persistence)", 5, 0)
	sc.Workload.Fenced = true
	sc.Expect = []string{"fence-duplicate", "fence-order"}
	sc.Nemesis = amnesia
	runControl(t, sc)
}

// amnesia kills and at once restarts, without persistence, a random
// majority of the servers every 300ms.
func amnesia(r *Run) {
	majority := r.C.N()/2 + 1
	for r.Sleep(300 * time.Millisecond) {
		for _, i := range r.Rng.Perm(r.C.N())[:majority] {
			r.C.Kill(r.T, i)
			r.C.Restart(r.T, i)
			r.Fault("kill+restart")
		}
	}
}
