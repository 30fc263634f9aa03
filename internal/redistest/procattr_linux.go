package redistest

import "syscall"

// procAttr puts a process in its own group (signals reach its children too)
// and makes the kernel kill it if the process that started it dies without
// stopping it (a test binary killed by -timeout, a benchmark interrupted).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
