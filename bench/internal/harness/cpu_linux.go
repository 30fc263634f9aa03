package harness

import (
	"bytes"
	"os"
	"strconv"
)

// userHZ is the unit of the CPU times in /proc (USER_HZ, 100 on Linux).
const userHZ = 100

// sampleCPU reads the machine's cumulative busy CPU time and the CPU time of
// this process and of pids (the redis-servers), in seconds.
func sampleCPU(pids []int) cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return cpuSample{}
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal: all but idle and iowait.
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseUint(string(f[i]), 10, 64)
		busy += v
	}
	ours, ok := procCPU("self")
	if !ok {
		return cpuSample{}
	}
	for _, pid := range pids {
		v, ok := procCPU(strconv.Itoa(pid))
		if !ok {
			return cpuSample{}
		}
		ours += v
	}
	return cpuSample{busy: float64(busy) / userHZ, ours: float64(ours) / userHZ, ok: true}
}

// procCPU returns utime+stime of /proc/<pid>/stat in ticks.
func procCPU(pid string) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	// After "pid (comm)": state is field 3, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	return u + s, err1 == nil && err2 == nil
}
