package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/redlock-go/redlock"
)

// defaultKillGrace is how long a command gets between SIGTERM and SIGKILL
// once the lock is lost.
const defaultKillGrace = 10 * time.Second

// ioWaitDelay bounds how long run waits, after the command exited, for its
// output pipes to be closed by processes it left behind.
const ioWaitDelay = 5 * time.Second

type runOpts struct {
	conn      connFlags
	lock      lockFlags
	nonblock  bool
	wait      time.Duration
	conflict  int
	killGrace time.Duration
	quiet     bool
}

func newRunFlags() (*flag.FlagSet, *runOpts) {
	fs := newFlagSet("run")
	o := &runOpts{conflict: exitConflict, killGrace: defaultKillGrace}
	o.conn.register(fs)
	o.lock.register(fs)
	fs.BoolVar(&o.nonblock, "n", false, "")
	fs.BoolVar(&o.nonblock, "nonblock", false, "")
	fs.Var(seconds{&o.wait}, "w", "")
	fs.Var(seconds{&o.wait}, "wait", "")
	fs.IntVar(&o.conflict, "E", exitConflict, "")
	fs.IntVar(&o.conflict, "conflict-exit-code", exitConflict, "")
	fs.Var(seconds{&o.killGrace}, "kill-grace", "")
	fs.BoolVar(&o.quiet, "q", false, "")
	fs.BoolVar(&o.quiet, "quiet", false, "")
	return fs, o
}

// cmdRun is "redlock run". stderr is the caller's writer, handed to the
// command as it is (so that a terminal stays a terminal); errw serialises
// redlock's own writes to it.
func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr, errw io.Writer) int {
	// Never die of a write: with stderr on a closed pipe, a report would
	// otherwise kill redlock (SIGPIPE) and leave the command running
	// without the lock. The signal is dropped (the channel holds one and is
	// never read); the write fails, and its error is ignored.
	if len(pipeSignals) > 0 {
		pipec := make(chan os.Signal, 1)
		signal.Notify(pipec, pipeSignals...)
		defer signal.Stop(pipec)
	}
	fset, o := newRunFlags()
	pos, argv, dash, err := parseArgs(fset, args, 1)
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}
	waitSet := flagSet(fset, "w", "wait")
	retrySet := flagSet(fset, "retry-count")
	switch {
	case len(pos) == 0 && dash:
		err = usagef("missing RESOURCE before --")
	case len(pos) == 0:
		err = usagef("want RESOURCE -- COMMAND [ARG...]")
	case checkResource(pos[0]) != nil:
		err = checkResource(pos[0])
	case len(argv) == 0:
		err = usagef("missing COMMAND after RESOURCE")
	case o.nonblock && waitSet, o.nonblock && retrySet, waitSet && retrySet:
		err = usagef("-n, -w and --retry-count exclude each other")
	case o.wait < 0:
		err = usagef("-w %v is negative", o.wait)
	case o.conflict < 0 || o.conflict > 255:
		err = usagef("-E %d is outside 0..255", o.conflict)
	case o.killGrace < 0:
		err = usagef("--kill-grace %v is negative", o.killGrace)
	}
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}
	res := pos[0]
	cfg, err := o.conn.config(errw)
	if err == nil {
		err = o.lock.apply(&cfg)
	}
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}
	m, err := o.conn.newManager(cfg)
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}
	defer func() {
		cctx, cancel := boundedCtx(ctx, cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		cancel()
	}()

	// A command that cannot start should not take the lock.
	if _, err := exec.LookPath(argv[0]); err != nil {
		fmt.Fprintf(errw, "redlock: %s\n", msg(err))
		if errors.Is(err, fs.ErrPermission) {
			return exitCannotExec
		}
		return exitNotFound
	}

	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, forwardSignals...)
	defer signal.Stop(sigc)

	r := &runner{
		m: m, cfg: cfg, o: o, res: res, sigc: sigc, errw: errw,
		waitSet: waitSet, retrySet: retrySet,
	}
	l, code := r.acquire(ctx)
	if l == nil {
		return code
	}
	return r.supervise(ctx, l, argv, stdin, stdout, stderr)
}

// runner is one "redlock run".
type runner struct {
	m        *redlock.Manager
	cfg      redlock.Config
	o        *runOpts
	res      string
	sigc     chan os.Signal
	errw     io.Writer
	waitSet  bool
	retrySet bool
}

type acquired struct {
	l   *redlock.Lock
	err error
}

// acquire takes the lock as the flags say, with a fencing token (see
// REDLOCK_FENCE). It returns the lock, or nil and the exit code. A signal
// while waiting gives up (exit 128+N).
func (r *runner) acquire(ctx context.Context) (*redlock.Lock, int) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	resc := make(chan acquired, 1)
	go func() {
		var a acquired
		fenced := redlock.Fenced()
		switch o := r.o; {
		case o.nonblock || (r.waitSet && o.wait == 0):
			a.l, a.err = r.m.TryLock(actx, r.res, fenced)
		case r.waitSet:
			wctx, wcancel := context.WithTimeout(actx, o.wait)
			a.l, a.err = r.m.LockWait(wctx, r.res, fenced)
			wcancel()
		case r.retrySet:
			a.l, a.err = r.m.Lock(actx, r.res, fenced)
		default:
			a.l, a.err = r.m.LockWait(actx, r.res, fenced)
		}
		resc <- a
	}()

	var line *waitLine
	var tick <-chan time.Time
	if !r.o.quiet && !r.o.nonblock && isTerminal(r.errw) {
		line = &waitLine{r: r, start: time.Now()}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	var interrupted os.Signal
	for {
		select {
		case a := <-resc:
			line.close()
			return r.acquired(ctx, a, interrupted)
		case s := <-r.sigc:
			if interrupted == nil {
				interrupted = s
				cancel()
			}
		case <-tick:
			line.update(actx)
		}
	}
}

// acquired turns the outcome of acquire into the lock or an exit code.
func (r *runner) acquired(ctx context.Context, a acquired, interrupted os.Signal) (*redlock.Lock, int) {
	if interrupted == nil && ctx.Err() != nil {
		interrupted = termSignal
	}
	if interrupted != nil {
		if a.l != nil {
			uctx, cancel := boundedCtx(ctx, r.cfg.NodeTimeout+timeoutSlack)
			_ = a.l.Unlock(uctx)
			cancel()
		}
		fmt.Fprintf(r.errw, "redlock: interrupted while waiting for %s\n", quote(r.res))
		return nil, exitSignalBase + signalNumber(interrupted)
	}
	err := a.err
	switch {
	case err == nil:
		return a.l, exitOK
	case errors.Is(err, redlock.ErrNotAcquired):
		if r.o.conn.verbose || (!r.o.quiet && isTerminal(r.errw)) {
			fmt.Fprintf(r.errw, "redlock: %s is held by someone else; not running the command\n", quote(r.res))
		}
		if r.o.conn.verbose {
			fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
		}
		return nil, r.o.conflict
	case errors.Is(err, redlock.ErrUnavailable):
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
		return nil, exitUnavailable
	case errors.Is(err, redlock.ErrInvalid):
		fmt.Fprintf(r.errw, "redlock run: %s\nRun 'redlock help run' for usage.\n", msg(err))
		return nil, exitUsage
	}
	fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
	return nil, exitSoftware
}

// supervise runs the command while the library's watchdog extends l, and
// releases l once the command exited. It stops the command (SIGTERM, then
// SIGKILL after --kill-grace) if the lock is lost or ctx ends, and forwards
// the signals redlock receives.
func (r *runner) supervise(ctx context.Context, l *redlock.Lock, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "REDLOCK_RESOURCE="+r.res, "REDLOCK_TOKEN="+l.Token(),
		"REDLOCK_FENCE="+strconv.FormatUint(l.Fence(), 10))
	// The command is not in the terminal's foreground process group: reading
	// the terminal would stop it (SIGTTIN) while the watchdog keeps the lock
	// held. It reads /dev/null instead, and sees end-of-file.
	if stdin != nil && !isTerminal(stdin) {
		cmd.Stdin = stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if _, ok := stderr.(*os.File); !ok {
		cmd.Stderr = r.errw
	}
	cmd.WaitDelay = ioWaitDelay
	prepareCommand(cmd)
	if err := cmd.Start(); err != nil {
		r.release(ctx, l)
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
		if errors.Is(err, fs.ErrNotExist) {
			return exitNotFound
		}
		return exitCannotExec
	}

	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()
	lostc, donec := l.Lost(), ctx.Done()
	var kill *time.Timer
	var killc <-chan time.Time
	stop := func() {
		_ = signalCommand(cmd, termSignal)
		if kill == nil {
			kill = time.NewTimer(r.o.killGrace)
			killc = kill.C
		}
	}
	lost := false
	var werr error
wait:
	for {
		select {
		case werr = <-waitc:
			break wait
		case <-lostc:
			lostc, lost = nil, true
			stop() // first: the report below may fail, or block
			fmt.Fprintf(r.errw, "redlock: lost the lock on %s while the command ran; stopping it (SIGKILL in %v)\n", quote(r.res), r.o.killGrace)
		case <-donec:
			donec = nil
			stop()
		case s := <-r.sigc:
			_ = signalCommand(cmd, s)
		case <-killc:
			killc = nil
			_ = signalCommand(cmd, killSignal)
			fmt.Fprintf(r.errw, "redlock: the command did not exit within %v; sent SIGKILL\n", r.o.killGrace)
		}
	}
	if kill != nil {
		kill.Stop()
	}
	select {
	case <-l.Lost(): // lost as the command ended: its end was not protected
		lost = true
	default:
	}
	uerr := r.release(ctx, l)

	status := exitSoftware
	if cmd.ProcessState != nil {
		status = exitStatus(cmd.ProcessState)
	} else {
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(werr))
	}
	if lost {
		fmt.Fprintf(r.errw, "redlock: the command ended (status %d) after the lock on %s was lost\n", status, quote(r.res))
		return exitLost
	}
	if uerr != nil {
		fmt.Fprintf(r.errw, "redlock: releasing %s: %v (the keys expire within --ttl)\n", quote(r.res), uerr)
	}
	return status
}

// release unlocks l with a fresh bounded context.
func (r *runner) release(ctx context.Context, l *redlock.Lock) error {
	uctx, cancel := boundedCtx(ctx, r.cfg.NodeTimeout+timeoutSlack)
	defer cancel()
	return l.Unlock(uctx)
}

// waitLine is the status line shown on a terminal while run waits.
type waitLine struct {
	r     *runner
	start time.Time
	shown bool
}

func (w *waitLine) update(ctx context.Context) {
	if w == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "redlock: waiting for %s", quote(w.r.res))
	if states, _ := w.r.m.Inspect(ctx, w.r.res); states != nil {
		s := summarize(states, w.r.m.Quorum())
		switch s.Verdict {
		case verdictHeld:
			fmt.Fprintf(&b, " (held by %s, ttl %s)", shortToken(s.Holder), fmtTTL(s.TTL))
		case verdictContended:
			fmt.Fprintf(&b, " (contended)")
		case verdictUnavailable:
			fmt.Fprintf(&b, " (%d/%d instances answering, quorum %d)", s.N-s.Failed, s.N, s.Quorum)
		}
	}
	fmt.Fprintf(&b, ", %v", time.Since(w.start).Round(time.Second))
	fmt.Fprintf(w.r.errw, "\r%s\x1b[K", b.String())
	w.shown = true
}

func (w *waitLine) close() {
	if w == nil {
		return
	}
	if w.shown {
		fmt.Fprint(w.r.errw, "\r\x1b[K")
	}
}
