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
	"sync"
	"sync/atomic"
	"time"

	"github.com/redlock-go/redlock"
)

// The command must not run past the lock's validity deadline (Until). run
// extends the lock itself (a fixed lease renewed by Extend, not the
// library's watchdog), timed against the two points where it has to act
// should the extensions fail: SIGTERM to the command's process group at
// Until − margin − grace, SIGKILL at Until − margin. Each extension is sent
// halfway to the SIGTERM point, so that failed ones can be retried before
// it.

// maxKillMargin caps killMargin.
const maxKillMargin = 250 * time.Millisecond

// killMargin is how long before the lock's validity deadline the process
// group gets SIGKILL: room for the signal to take effect. A tenth of the
// TTL, at most maxKillMargin.
func killMargin(ttl time.Duration) time.Duration { return min(ttl/10, maxKillMargin) }

// maxKillGrace is what --kill-grace must stay under: the SIGTERM point must
// come after the lock is taken. The TTL less the drift allowance (see
// redlock.Config.DriftFactor: TTL×DriftFactor + 2ms) and killMargin.
func maxKillGrace(ttl time.Duration, driftFactor float64) time.Duration {
	drift := time.Duration(float64(ttl)*driftFactor) + 2*time.Millisecond
	return ttl - drift - killMargin(ttl)
}

// defaultKillGrace is --kill-grace when not given: a third of the TTL (or
// half of what fits, for a TTL so short that a third does not).
func defaultKillGrace(ttl time.Duration, driftFactor float64) time.Duration {
	return min(ttl/3, maxKillGrace(ttl, driftFactor)/2)
}

// ioWaitDelay bounds how long run waits for the command's output pipes to
// be closed, once its process group is gone (by a process that left the
// group, a daemon) or, with --no-wait-group, once the command exited.
const ioWaitDelay = 5 * time.Second

type runOpts struct {
	conn      connFlags
	lock      lockFlags
	nonblock  bool
	wait      time.Duration
	conflict  int
	killGrace time.Duration
	quiet     bool
	noWait    bool   // --no-wait-group
	metadata  string // --metadata; when not given, runMetadata
	permits   int    // --permits: one of N holders (a redlock.Semaphore); 0: a plain lock
	shared    bool   // -s, --shared: a reader of RESOURCE's read-write lock (shared.go)

	unavailableTimeout time.Duration
}

func newRunFlags() (*flag.FlagSet, *runOpts) {
	fs := newFlagSet("run")
	o := &runOpts{conflict: exitConflict}
	o.conn.register(fs)
	o.lock.register(fs)
	fs.BoolVar(&o.nonblock, "n", false, "")
	fs.BoolVar(&o.nonblock, "nonblock", false, "")
	fs.Var(seconds{&o.wait}, "w", "")
	fs.Var(seconds{&o.wait}, "wait", "")
	fs.IntVar(&o.conflict, "E", exitConflict, "")
	fs.IntVar(&o.conflict, "conflict-exit-code", exitConflict, "")
	fs.Var(seconds{&o.killGrace}, "kill-grace", "")
	o.unavailableTimeout = defaultUnavailableTimeout
	fs.Var(seconds{&o.unavailableTimeout}, "unavailable-timeout", "")
	fs.BoolVar(&o.noWait, "no-wait-group", false, "")
	fs.StringVar(&o.metadata, "metadata", "", "")
	fs.IntVar(&o.permits, "permits", 0, "")
	fs.BoolVar(&o.quiet, "q", false, "")
	fs.BoolVar(&o.quiet, "quiet", false, "")
	fs.BoolVar(&o.shared, "s", false, "")
	fs.BoolVar(&o.shared, "shared", false, "")
	return fs, o
}

// cmdRun is "redlock run". stderr is the caller's writer, handed to the
// command as it is (so that a terminal stays a terminal); errw serialises
// redlock's own writes to it.
func cmdRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr, errw io.Writer) int {
	started := time.Now()
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
		err = usagef("%s %v is negative", spelled(args, "w", "wait"), o.wait)
	case o.conflict < 0 || o.conflict > 255:
		err = usagef("%s %d is outside 0..255", spelled(args, "E", "conflict-exit-code"), o.conflict)
	case o.killGrace < 0:
		err = usagef("--kill-grace %v is negative", o.killGrace)
	case o.unavailableTimeout < 0:
		err = usagef("--unavailable-timeout %v is negative", o.unavailableTimeout)
	case len(o.metadata) > redlock.MaxMetadataLen:
		err = usagef("--metadata is %d bytes, over %d", len(o.metadata), redlock.MaxMetadataLen)
	case flagSet(fset, "permits") && (o.permits < 1 || o.permits > redlock.MaxPermits):
		err = usagef("--permits %d is outside 1..%d", o.permits, redlock.MaxPermits)
	case o.shared && flagSet(fset, "permits"):
		err = usagef("%s and --permits exclude each other", spelled(args, "s", "shared"))
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
	if o.conn.verbose {
		cfg.Observer = &verboseObserver{w: errw, res: res}
	}
	m, err := o.conn.newManager(cfg, warnTo(errw, !o.quiet))
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}
	defer func() {
		cctx, cancel := boundedCtx(ctx, cfg.NodeTimeout+timeoutSlack)
		_ = m.Close(cctx)
		cancel()
	}()
	// The TTL is valid (New checked it: TTL > 2×drift, so fit > 0). Does
	// the grace fit in it?
	ttl, fit := o.lock.ttl, maxKillGrace(o.lock.ttl, o.lock.driftFactor)
	switch {
	case !flagSet(fset, "kill-grace"):
		o.killGrace = defaultKillGrace(ttl, o.lock.driftFactor)
	case o.killGrace >= fit:
		err = usagef("--kill-grace %v does not fit in --ttl %v: the command must be stopped within the lock's validity, so it must be under %v (the TTL less the drift allowance and a %v SIGKILL margin)",
			o.killGrace, ttl, fit, killMargin(ttl))
	}
	if err != nil {
		return reportUsage("run", err, stdout, errw)
	}

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

	md := o.metadata
	if !flagSet(fset, "metadata") && canCarryMetadata(cfg.KeyPrefix+res) {
		md = runMetadata(argv[0], started)
	}
	r := &runner{
		m: m, cfg: cfg, o: o, res: res, sigc: sigc, errw: errw,
		waitSet: waitSet, retrySet: retrySet, metadata: md,
		// Reports while run waits and while the command runs: a stuck
		// stderr must hold up neither.
		say: newReporter(errw),
	}
	if o.permits > 0 {
		r.sem = m.Semaphore(res, o.permits)
	}
	defer r.say.close()
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
	say      *reporter // reports made while waiting or supervising; final words go to errw
	waitSet  bool
	retrySet bool
	metadata string             // who holds the lock (redlock.Metadata)
	sem      *redlock.Semaphore // --permits: take one of its permits instead of the lock
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
	var line *waitLine
	var tick <-chan time.Time
	if !r.o.quiet && !r.o.nonblock && isTerminal(r.errw) {
		line = &waitLine{r: r, start: time.Now()}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	go func() {
		var a acquired
		switch o := r.o; {
		case o.nonblock || (r.waitSet && o.wait == 0):
			a.l, a.err = r.lockLoop(actx, actx, 1, false)
		case r.waitSet:
			wctx, wcancel := context.WithTimeout(actx, o.wait)
			a.l, a.err = r.lockLoop(wctx, actx, 0, line != nil)
			wcancel()
		case r.retrySet:
			a.l, a.err = r.lockLoop(actx, actx, o.lock.retryCount, line != nil)
		default:
			a.l, a.err = r.lockLoop(actx, actx, 0, line != nil)
		}
		resc <- a
	}()

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
	if a.l == nil || interrupted != nil {
		r.say.close() // the reports first, then the final words
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
	var timeout *unavailableTimeout
	var d *described
	switch {
	case err == nil:
		return a.l, exitOK
	case errors.As(err, &timeout):
		fmt.Fprintf(r.errw, "redlock: %s\n", timeout.Error())
		return nil, exitUnavailable
	case errors.As(err, &d) && errors.Is(err, redlock.ErrRejected):
		fmt.Fprintf(r.errw, "redlock: %s\n", d.what)
		return nil, exitConfig
	case errors.As(err, &d) && errors.Is(err, redlock.ErrUnavailable):
		fmt.Fprintf(r.errw, "redlock: %s\n", d.what)
		return nil, exitUnavailable
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
	case errors.Is(err, redlock.ErrRejected):
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
		return nil, exitConfig
	case errors.Is(err, redlock.ErrInvalid):
		fmt.Fprintf(r.errw, "redlock run: %s\nRun 'redlock help run' for usage.\n", msg(err))
		return nil, exitUsage
	}
	fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
	return nil, exitSoftware
}

// supervise runs the command while it keeps l extended, and releases l
// once the command's process group is gone (with --no-wait-group: once the
// command exited). It stops the group (SIGTERM, then SIGKILL) before l's
// validity ends if the extensions fail, and when l is lost or ctx ends; it
// forwards the signals redlock receives.
func (r *runner) supervise(ctx context.Context, l *redlock.Lock, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "REDLOCK_RESOURCE="+l.Resource(), "REDLOCK_TOKEN="+l.Token(),
		"REDLOCK_FENCE="+strconv.FormatUint(l.Fence(), 10))
	// The command is not in the terminal's foreground process group: reading
	// the terminal would stop it (SIGTTIN) while the lock is kept held. It
	// reads /dev/null instead, and sees end-of-file.
	if stdin != nil && !isTerminal(stdin) {
		cmd.Stdin = stdin
	}
	if _, ok := stderr.(*os.File); !ok {
		stderr = r.errw
	}
	s := &supervisor{r: r, l: l, cmd: cmd, margin: killMargin(r.o.lock.ttl), grace: r.o.killGrace}
	var err error
	if cmd.Stdout, err = s.output(stdout); err == nil {
		cmd.Stderr, err = s.output(stderr)
	}
	cmd.WaitDelay = ioWaitDelay // for stdin, when it is not a file
	prepareCommand(cmd)
	if err == nil {
		err = cmd.Start()
	}
	for _, w := range s.writers {
		w.Close() // the command's processes have them
	}
	if err != nil {
		s.drain()
		r.release(ctx, l)
		r.say.close()
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(err))
		if errors.Is(err, fs.ErrNotExist) {
			return exitNotFound
		}
		return exitCannotExec
	}
	return s.run(ctx)
}

// output returns what the command gets for w: w itself if it is a file (or
// nil: /dev/null), else a pipe that a goroutine copies into w. run makes
// the pipe rather than leaving it to os/exec, whose Wait closes it
// WaitDelay after the command exited: processes left in its group keep
// their output until they end.
func (s *supervisor) output(w io.Writer) (io.Writer, error) {
	if w == nil {
		return nil, nil
	}
	if f, ok := w.(*os.File); ok {
		return f, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n]) // a failed write loses output, nothing worse
			}
			if err != nil {
				return
			}
		}
	}()
	s.writers = append(s.writers, pw)
	s.copies = append(s.copies, copier{r: pr, done: done})
	return pw, nil
}

// copier is the reading end of an output pipe and the end of its copying.
type copier struct {
	r    *os.File
	done chan struct{}
}

// drain waits until the output pipes have no writer left, at most
// ioWaitDelay, then closes them.
func (s *supervisor) drain() {
	end := time.NewTimer(ioWaitDelay)
	defer end.Stop()
	for _, c := range s.copies {
		select {
		case <-c.done:
		case <-end.C:
			end.Reset(0) // for the next pipes too
		}
		c.r.Close()
		<-c.done
	}
}

// supervisor is the state of one supervise.
type supervisor struct {
	r             *runner
	l             *redlock.Lock
	cmd           *exec.Cmd
	margin, grace time.Duration

	writers []*os.File // the writing ends of the output pipes, closed after Start
	copies  []copier

	say      *reporter   // the loop's reports to stderr
	act      *time.Timer // the SIGTERM point, then (stopping) the SIGKILL point
	stopping string      // why the group was told to stop ("" if it was not)
	killed   bool        // SIGKILL sent
}

// Reasons for stopping the command.
const (
	stopDeadline = "deadline" // the extensions failed up to the SIGTERM point
	stopLost     = "lost"     // the lock was lost
	stopCtx      = "ctx"      // ctx ended (run's caller: like SIGTERM)
)

// Bounds of the intervals between checks that the process group is empty,
// once the command itself exited.
const (
	minGroupPoll = 5 * time.Millisecond
	maxGroupPoll = 250 * time.Millisecond
)

// minExtendDelay is the shortest wait before an extension.
const minExtendDelay = 5 * time.Millisecond

// termAt is the SIGTERM point: Until − margin − grace.
func (s *supervisor) termAt() time.Time { return s.l.Until().Add(-s.margin - s.grace) }

// target is the point the next extension must beat: the SIGTERM point, or
// the SIGKILL point once the group was told to stop.
func (s *supervisor) target() time.Time {
	if s.stopping != "" {
		return s.l.Until().Add(-s.margin)
	}
	return s.termAt()
}

func (s *supervisor) run(ctx context.Context) int {
	r, l, cmd := s.r, s.l, s.cmd
	// The loop below never writes to stderr itself: a write to a pipe that
	// is full and never read would block it, and with it the SIGKILL.
	s.say = r.say
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()

	// One extension at a time, on its own goroutine.
	extc := make(chan error, 1)
	var extCancel context.CancelFunc
	now := time.Now()
	ext := time.NewTimer(max(s.termAt().Sub(now)/2, minExtendDelay))
	s.act = time.NewTimer(s.termAt().Sub(now))
	poll := time.NewTimer(time.Hour)
	poll.Stop()
	pollEvery := minGroupPoll

	lostc, donec := l.Lost(), ctx.Done()
	lost, leaderDone := false, false
	var werr error
loop:
	for {
		select {
		case werr = <-waitc:
			leaderDone = true
			if !s.holdGroup() || !groupAlive(cmd) {
				break loop
			}
			if r.o.conn.verbose {
				s.say.printf("redlock: the command exited; holding the lock on %s until the rest of its process group has ended\n", quote(r.res))
			}
			poll.Reset(pollEvery)
		case <-poll.C:
			if !groupAlive(cmd) {
				break loop
			}
			pollEvery = min(2*pollEvery, maxGroupPoll)
			poll.Reset(pollEvery)
		case <-ext.C:
			ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.NodeTimeout+timeoutSlack)
			extCancel = cancel
			go func() { extc <- l.Extend(ectx, 0) }()
		case err := <-extc:
			extCancel()
			extCancel = nil
			now := time.Now()
			left := s.target().Sub(now)
			switch {
			case err == nil:
				ext.Reset(max(left/2, minExtendDelay))
				if s.stopping == "" {
					s.act.Reset(left)
				}
			case errors.Is(err, redlock.ErrNotHeld) || !l.Valid():
				// Lost: lostc says so.
			default:
				retry := min(r.cfg.RetryDelayMin, max(left/4, minExtendDelay))
				if r.o.conn.verbose {
					s.say.printf("redlock: extending the lock on %s: %s; retrying in %v\n", quote(r.res), msg(err), retry.Round(time.Millisecond))
				}
				ext.Reset(retry)
			}
		case <-s.act.C:
			if s.stopping == "" {
				if left := s.termAt().Sub(time.Now()); left > 0 {
					s.act.Reset(left) // extended meanwhile
					continue
				}
				s.stop(stopDeadline)
			} else {
				s.kill()
			}
		case <-lostc:
			lostc, lost = nil, true
			if s.stopping == "" {
				s.stop(stopLost)
			}
		case <-donec:
			donec = nil
			if s.stopping == "" {
				s.stop(stopCtx)
			}
		case sig := <-r.sigc:
			if !leaderDone || groupAlive(cmd) {
				_ = signalCommand(cmd, sig)
			}
		}
	}
	ext.Stop()
	s.act.Stop()
	poll.Stop()
	if extCancel != nil {
		extCancel()
		<-extc
	}
	select {
	case <-l.Lost(): // lost as the command ended: its end was not protected
		lost = true
	default:
	}
	uerr := r.release(ctx, l)
	s.drain()
	s.say.close() // the group is gone and the lock released: now writes may block

	status := exitSoftware
	if cmd.ProcessState != nil {
		status = exitStatus(cmd.ProcessState)
	} else {
		fmt.Fprintf(r.errw, "redlock: %s\n", msg(werr))
	}
	switch {
	case s.stopping == stopDeadline && !lost:
		fmt.Fprintf(r.errw, "redlock: the command ended (status %d) after the lock on %s could not be extended\n", status, quote(r.res))
		return exitLost
	case lost:
		fmt.Fprintf(r.errw, "redlock: the command ended (status %d) after the lock on %s was lost\n", status, quote(r.res))
		return exitLost
	}
	if uerr != nil {
		fmt.Fprintf(r.errw, "redlock: releasing %s: %v (the keys expire within --ttl)\n", quote(r.res), uerr)
	}
	return status
}

// holdGroup reports whether run waits, once the command itself exited,
// for the rest of its process group before releasing the lock: unless
// --no-wait-group, and even then while it is stopping the group, which must
// be gone by the SIGKILL point whatever its leader did.
func (s *supervisor) holdGroup() bool { return !s.r.o.noWait || s.stopping != "" }

// stop tells the process group to stop: SIGTERM now and SIGKILL at the
// SIGKILL point (--kill-grace later, or earlier if the lock's validity
// ends sooner); SIGKILL at once when no grace is left. The report comes
// after the signal: it may fail.
func (s *supervisor) stop(why string) {
	s.stopping = why
	now := time.Now()
	until := s.l.Until()
	killAt := now.Add(s.grace)
	if k := until.Add(-s.margin); k.Before(killAt) {
		killAt = k
	}
	grace := killAt.Sub(now)
	if grace <= 0 {
		_ = signalCommand(s.cmd, killSignal)
		s.killed = true
	} else {
		_ = signalCommand(s.cmd, termSignal)
		s.act.Reset(grace)
	}
	var what string
	switch why {
	case stopCtx:
		return
	case stopLost:
		what = fmt.Sprintf("lost the lock on %s while the command ran", quote(s.r.res))
	case stopDeadline:
		what = fmt.Sprintf("could not extend the lock on %s (valid for %v more)", quote(s.r.res), until.Sub(now).Round(time.Millisecond))
	}
	if s.killed {
		s.say.printf("redlock: %s; sent SIGKILL to the command\n", what)
	} else {
		s.say.printf("redlock: %s; sent SIGTERM to the command, SIGKILL in %v\n", what, grace.Round(time.Millisecond))
	}
}

// kill sends SIGKILL to the process group at the SIGKILL point.
func (s *supervisor) kill() {
	if s.killed {
		return
	}
	s.killed = true
	alive := groupAlive(s.cmd) // zombies alone are not worth a report
	if signalCommand(s.cmd, killSignal) == nil && alive && s.stopping != stopCtx {
		s.say.printf("redlock: the command's process group was still running; sent SIGKILL\n")
	}
}

// reporter writes lines to w on a goroutine of its own, so that a write
// that blocks (stderr on a full pipe that nobody reads) never holds up the
// caller. Lines beyond its buffer are dropped while one is blocked.
type reporter struct {
	w       io.Writer
	lines   chan string
	done    chan struct{}
	dropped atomic.Int64
	closing sync.Once
}

// reporterLines is how many lines a reporter holds while a write blocks.
const reporterLines = 64

func newReporter(w io.Writer) *reporter {
	rp := &reporter{w: w, lines: make(chan string, reporterLines), done: make(chan struct{})}
	go func() {
		defer close(rp.done)
		for line := range rp.lines {
			_, _ = io.WriteString(rp.w, line) // a failed report loses the report, nothing worse
		}
	}()
	return rp
}

// printf queues a line; it never blocks. Not after close.
func (rp *reporter) printf(format string, args ...any) {
	select {
	case rp.lines <- fmt.Sprintf(format, args...):
	default:
		rp.dropped.Add(1)
	}
}

// close waits until the queued lines are written (which blocks as long as
// their writes do) and says how many were dropped.
func (rp *reporter) close() {
	rp.closing.Do(func() {
		close(rp.lines)
		<-rp.done
		if n := rp.dropped.Load(); n > 0 {
			fmt.Fprintf(rp.w, "redlock: %d reports were dropped while stderr was not read\n", n)
		}
	})
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
		case verdictFree:
			b.WriteString(w.r.readersNote(ctx)) // shared.go
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

// warnTo is w if on, else nil (no warnings).
func warnTo(w io.Writer, on bool) io.Writer {
	if on {
		return w
	}
	return nil
}
