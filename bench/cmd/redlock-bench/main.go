// Command redlock-bench compares this library with redsync, bsm/redislock, rueidislock,
// node-redlock (in node, when node and npm are available) and the raw
// go-redis and rueidis round-trip floors on redis-servers it starts itself,
// and writes a markdown table and an SVG chart.
//
//	go -C bench run ./cmd/redlock-bench          # defaults: N=3, 2 rounds of 3s cells (~2.5 min)
//	go -C bench run ./cmd/redlock-bench -quick   # about a minute
//	go -C bench run ./cmd/redlock-bench -n 1,3,5 -procs 1
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
