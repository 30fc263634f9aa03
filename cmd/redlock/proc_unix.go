//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// forwardSignals are the signals that run forwards to the command.
var forwardSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// pipeSignals are caught (and dropped) by run, so that a write to a closed
// stderr fails with EPIPE instead of killing redlock while its command runs.
// Caught, not ignored: an ignored signal would stay ignored in the command.
var pipeSignals = []os.Signal{syscall.SIGPIPE}

// termSignal asks the command to stop; killSignal forces it.
var (
	termSignal os.Signal = syscall.SIGTERM
	killSignal os.Signal = syscall.SIGKILL
)

// prepareCommand puts the command in a process group of its own, so that
// signals reach its children too, and a Ctrl-C on the terminal reaches
// redlock only (which forwards it once).
func prepareCommand(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalCommand sends sig to the command's process group. It is called
// while the group is known to exist: before Wait returned (the leader is at
// worst a zombie), or after groupAlive said so. While a group has members
// its id cannot be taken by another process.
func signalCommand(cmd *exec.Cmd, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return cmd.Process.Signal(sig)
	}
	return syscall.Kill(-cmd.Process.Pid, s)
}

// exitStatus is the shell's view of how the command ended: its exit code,
// or 128+N when signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalBase + int(ws.Signal())
	}
	return ps.ExitCode()
}

// signalNumber is N in the exit code 128+N.
func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return int(syscall.SIGTERM)
}

// groupAlive reports whether the command's process group still has a
// process that is not a zombie. Its zombies do not count: an orphan stays
// one where init does not reap (in a container whose PID 1 is not an init,
// or is redlock itself), and waiting for it would hold the lock forever.
func groupAlive(cmd *exec.Cmd) bool {
	pgid := cmd.Process.Pid
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return liveMember(pgid)
}
