//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// forwardSignals are the signals that run forwards to the command.
var forwardSignals = []os.Signal{os.Interrupt}

// pipeSignals: no SIGPIPE here.
var pipeSignals []os.Signal

// termSignal asks the command to stop; killSignal forces it.
var (
	termSignal = os.Interrupt
	killSignal = os.Kill
)

// prepareCommand: without process groups the command is signalled alone.
func prepareCommand(cmd *exec.Cmd) {}

// signalCommand sends sig to the command, and kills it where sig cannot be
// delivered.
func signalCommand(cmd *exec.Cmd, sig os.Signal) error {
	if err := cmd.Process.Signal(sig); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}

// exitStatus is the command's exit code.
func exitStatus(ps *os.ProcessState) int { return ps.ExitCode() }

// signalNumber is N in the exit code 128+N (SIGINT's 2 for an interrupt,
// SIGTERM's 15 otherwise).
func signalNumber(sig os.Signal) int {
	if sig == os.Interrupt {
		return 2
	}
	return 15
}

// groupAlive: without process groups, nothing outlives the command.
func groupAlive(cmd *exec.Cmd) bool { return false }
