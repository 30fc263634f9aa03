package redisproc

import "syscall"

// sysProcAttr makes the kernel kill the server if the harness dies without
// stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
