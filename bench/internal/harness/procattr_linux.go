package harness

import "syscall"

// childProcAttr makes the kernel kill a node process if the harness dies
// without waiting for it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
