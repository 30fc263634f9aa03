//go:build !linux

package harness

func sampleCPU(pids []int) cpuSample { return cpuSample{} }
