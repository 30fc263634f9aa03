package redistest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// portQuarantine is how long a port handed out by freePort stays reserved
// for the test that got it, across every test process of the machine.
//
// A test that stops a server expects its port to stay dead ("connection
// refused"): a Manager over it must see an outage. The kernel may hand that
// port to the next bind(":0") of another test binary (go test runs packages
// in parallel), whose redis-server would then answer in the stopped one's
// place, and a lock would be granted on a quorum that includes a server
// the test believes down (seen once in CI: TestNoRetryStormWithMajorityDown
// acquired with 2 of 3 instances stopped). Restart also wants the port
// back. So freePort skips ports that any process of this user handed out
// within the quarantine; the kernel's choice of a fresh port is not
// affected otherwise.
const portQuarantine = 30 * time.Minute

// portRegistry is the file, shared by the test processes of this user,
// that records the ports freePort handed out and when.
func portRegistry() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("redistest-ports-%d", os.Getuid()))
}

// claimPorts records ports in the registry at path unless one of them was
// recorded within the quarantine before now; it reports whether it did.
// Errors (an unwritable temp dir) claim nothing and say so: the caller
// falls back to the kernel's choice alone.
func claimPorts(path string, now time.Time, ports ...int) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, err
	}
	defer f.Close()
	unlock, err := lockFile(f)
	if err != nil {
		return false, err
	}
	defer unlock()
	live := map[int]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		p, err1 := strconv.Atoi(fields[0])
		at, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil || now.Sub(time.Unix(0, at)) >= portQuarantine {
			continue
		}
		live[p] = at
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	for _, p := range ports {
		if _, taken := live[p]; taken {
			return false, nil
		}
	}
	for _, p := range ports {
		live[p] = now.UnixNano()
	}
	var b strings.Builder
	for p, at := range live {
		fmt.Fprintf(&b, "%d %d\n", p, at)
	}
	if err := f.Truncate(0); err != nil {
		return false, err
	}
	if _, err := f.WriteAt([]byte(b.String()), 0); err != nil {
		return false, err
	}
	return true, nil
}
