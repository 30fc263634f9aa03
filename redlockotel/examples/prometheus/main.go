// Command prometheus serves the redlock metrics of a Manager under a small
// load on /metrics, for Prometheus to scrape, through the OpenTelemetry
// Prometheus exporter and redlockotel.
//
//	go run . [-endpoints host:port,host:port,host:port] [-listen 127.0.0.1:9464]
//	         [-workers 4] [-resources 2] [-hold 5ms] [-pause 20ms] [-ops 0]
//
// Without -endpoints it starts three embedded Redis instances (miniredis,
// in this process), so it runs with no Redis at all. The workers contend
// for a few resources ("job:0", "job:1", ...): each takes one with Lock,
// holds it for -hold, unlocks it and pauses for -pause; every fourth
// operation is a TryLock instead. -ops bounds the operations per worker
// (0: until interrupted). The metrics carry the resource attribute
// redlock.resource, normalised to the part of the name before ':'.
//
// It runs until interrupted (SIGINT, SIGTERM).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/redlock-go/redlock"
	"github.com/redlock-go/redlock/redlockotel"
)

// options are the command's flags.
type options struct {
	endpoints []string // empty: three embedded instances
	listen    string
	workers   int
	resources int
	hold      time.Duration
	pause     time.Duration
	ops       int // per worker; 0: unbounded
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(command(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command parses args and runs; it returns the exit code.
func command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("prometheus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var endpoints string
	fs.StringVar(&endpoints, "endpoints", "", "comma-separated Redis endpoints (host:port or redis:// URLs); default: three embedded instances (miniredis)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9464", "address to serve /metrics on")
	fs.IntVar(&o.workers, "workers", 4, "concurrent workers")
	fs.IntVar(&o.resources, "resources", 2, "number of resources the workers contend for")
	fs.DurationVar(&o.hold, "hold", 5*time.Millisecond, "how long a worker holds a lock")
	fs.DurationVar(&o.pause, "pause", 20*time.Millisecond, "pause between a worker's operations")
	fs.IntVar(&o.ops, "ops", 0, "operations per worker (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if endpoints != "" {
		o.endpoints = strings.Split(endpoints, ",")
	}
	if o.workers < 1 || o.resources < 1 || o.ops < 0 || o.hold < 0 || o.pause < 0 {
		fmt.Fprintln(stderr, "prometheus: -workers and -resources must be at least 1; -ops, -hold and -pause not negative")
		return 2
	}
	err := run(ctx, o, stderr, func(addr string) {
		fmt.Fprintf(stdout, "serving http://%s/metrics\n", addr)
	}, nil)
	if err != nil {
		fmt.Fprintf(stderr, "prometheus: %v\n", err)
		return 1
	}
	return 0
}

// run serves /metrics on o.listen and runs the load until ctx ends. ready,
// if set, is called with the listening address once it serves; loadDone,
// if set, once every worker finished its o.ops operations (never when
// o.ops is 0). run returns after everything it started has stopped.
func run(ctx context.Context, o options, logw io.Writer, ready func(addr string), loadDone func()) (err error) {
	endpoints := o.endpoints
	if len(endpoints) == 0 {
		for range 3 {
			s := miniredis.NewMiniRedis()
			s.ClockTTL(true) // keys expire in real time, as in Redis
			if err := s.StartAddr("127.0.0.1:0"); err != nil {
				return fmt.Errorf("starting an embedded instance: %w", err)
			}
			defer s.Close()
			endpoints = append(endpoints, s.Addr())
		}
	}

	// The OpenTelemetry side: a meter provider whose reader is the
	// Prometheus exporter, registered on a registry of our own.
	reg := promclient.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { err = errors.Join(err, mp.Shutdown(context.Background())) }()
	obs := redlockotel.NewObserver(
		redlockotel.WithMeterProvider(mp),
		redlockotel.WithTracerProvider(tracenoop.NewTracerProvider()), // metrics only
		redlockotel.WithResourceAttribute(func(r string) string {
			kind, _, _ := strings.Cut(r, ":")
			return kind
		}),
	)

	m, err := redlock.New(endpoints, redlock.Config{
		Observer:      obs,
		RetryDelayMin: 5 * time.Millisecond,
		RetryDelayMax: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = errors.Join(err, m.Close(cctx))
	}()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}()
	if ready != nil {
		ready(ln.Addr().String())
	}

	var wg sync.WaitGroup
	for w := range o.workers {
		wg.Go(func() { work(ctx, m, o, w, logw) })
	}
	if o.ops > 0 {
		wg.Wait()
		if loadDone != nil {
			loadDone()
		}
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// work is one worker's loop.
func work(ctx context.Context, m *redlock.Manager, o options, w int, logw io.Writer) {
	for i := 0; o.ops == 0 || i < o.ops; i++ {
		if ctx.Err() != nil {
			return
		}
		resource := "job:" + strconv.Itoa((w+i)%o.resources)
		var l *redlock.Lock
		var err error
		if i%4 == 3 {
			l, err = m.TryLock(ctx, resource)
		} else {
			l, err = m.Lock(ctx, resource)
		}
		if err == nil {
			sleep(ctx, o.hold)
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			err = l.Unlock(uctx)
			cancel()
		}
		// Contention is part of the load; anything else is worth a line.
		if err != nil && !errors.Is(err, redlock.ErrNotAcquired) && ctx.Err() == nil {
			fmt.Fprintf(logw, "worker %d: %v\n", w, err)
		}
		sleep(ctx, o.pause)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
