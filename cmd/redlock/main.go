// Command redlock is a distributed flock(1): it runs a command while holding
// a Redlock lock on N independent Redis instances, so that of many hosts
// running the same cron job only one runs it at a time. It also shows who
// holds a lock (status), releases a lock left behind (release), and shows
// the algorithm at work on embedded instances, with no Redis installed
// (demo).
//
//	go install github.com/redlock-go/redlock/cmd/redlock@latest
//	redlock demo
//	redlock run -n nightly-report -- ./report.sh
//
// Run "redlock help" for the subcommands, their flags and the exit codes.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
