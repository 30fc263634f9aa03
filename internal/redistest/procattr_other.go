//go:build !linux

package redistest

import "syscall"

// procAttr puts a process in its own group (signals reach its children too).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
