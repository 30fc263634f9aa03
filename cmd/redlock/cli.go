package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redlock-go/redlock"
)

// Exit codes; the table in the help text documents them.
const (
	exitOK          = 0
	exitConflict    = 1 // default of run -E; release: not held under that token; demo: check failed
	exitUsage       = 2
	exitUnavailable = 69 // sysexits EX_UNAVAILABLE: too few instances answered
	exitSoftware    = 70 // sysexits EX_SOFTWARE: an error we did not expect
	exitLost        = 75 // sysexits EX_TEMPFAIL: the lock was lost while the command ran
	exitConfig      = 78 // sysexits EX_CONFIG: the instances rejected the calls (redlock.ErrRejected)
	exitCannotExec  = 126
	exitNotFound    = 127
	exitSignalBase  = 128 // + signal number
)

// defaultURL is the instance used when neither --redis nor REDLOCK_URLS
// names one (aioredlock's default).
const defaultURL = "redis://localhost:6379"

// envURLs names the environment variable read when no --redis flag is given.
const envURLs = "REDLOCK_URLS"

// run is the whole command: it parses args (without the program name) and
// returns the exit status. ctx ending works like SIGTERM.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Library log records come from background goroutines: serialise every
	// write to stderr.
	errw := &syncWriter{w: stderr}
	if len(args) == 0 {
		fmt.Fprint(errw, "redlock: missing subcommand\n\n"+mainHelp)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "run":
		return cmdRun(ctx, rest, stdin, stdout, stderr, errw)
	case "status":
		return cmdStatus(ctx, rest, stdout, errw)
	case "release":
		return cmdRelease(ctx, rest, stdout, errw)
	case "demo":
		return cmdDemo(ctx, rest, stdout, errw)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		if sub == "help" && len(rest) > 0 {
			h, ok := subHelp[rest[0]]
			if !ok || len(rest) > 1 {
				fmt.Fprintf(errw, "redlock help: unknown subcommand %q\nRun 'redlock help' for usage.\n", strings.Join(rest, " "))
				return exitUsage
			}
			fmt.Fprint(stdout, h)
			return exitOK
		}
		fmt.Fprint(stdout, mainHelp)
		return exitOK
	}
	fmt.Fprintf(errw, "redlock: unknown subcommand %q\nRun 'redlock help' for usage.\n", sub)
	return exitUsage
}

// versionString is "redlock VERSION (GOVERSION OS/ARCH)", the module
// version as go install recorded it, "(devel)" for a build from a work tree.
func versionString() string {
	v, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("redlock %s%s (%s %s/%s)", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// usageError is a bad flag, argument or endpoint: exit 2, and nothing was
// sent to the instances.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// reportUsage prints a usage error for subcommand sub and returns exitUsage,
// or prints sub's help and returns exitOK for -h/--help.
func reportUsage(sub string, err error, stdout, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, subHelp[sub])
		return exitOK
	}
	fmt.Fprintf(stderr, "redlock %s: %s\nRun 'redlock help %s' for usage.\n", sub, msg(err), sub)
	return exitUsage
}

// newFlagSet returns a silent FlagSet: errors are reported by reportUsage,
// help comes from the hand-written texts in help.go.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("redlock "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses flags interleaved with positional arguments. "--" ends
// the flags: what follows is returned as tail, with dash set. When max >= 0,
// parsing also stops at the positional argument after the first max ones,
// which starts tail (so "run RES cmd -x" leaves "-x" to cmd).
func parseArgs(fs *flag.FlagSet, args []string, max int) (pos, tail []string, dash bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, false, asTyped(err, fs, args)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" && !isFlagValue(fs, args[:n-1]) {
			return pos, rest, true, nil
		}
		if len(rest) == 0 {
			return pos, nil, false, nil
		}
		if max >= 0 && len(pos) >= max {
			return pos, rest, false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagError matches the flag package's errors that name a flag: prefix,
// NAME (written -NAME), rest.
var flagError = regexp.MustCompile(`^(flag provided but not defined: |flag needs an argument: |invalid boolean value ".*" for |invalid value ".*" for flag )-(\S+?)(: .*)?$`)

// asTyped rewrites err, from fs.Parse(args), to name the flag as it was
// typed: "--bogus" for --bogus, where the flag package writes "-bogus".
func asTyped(err error, fs *flag.FlagSet, args []string) error {
	m := flagError.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	name, typed := m[2], "-"+m[2]
	// Parse stopped after the offending argument (and its value).
	for i := len(args) - len(fs.Args()) - 1; i >= 0; i-- {
		a, _, _ := strings.Cut(args[i], "=")
		if a == "--"+name {
			typed = a
			break
		}
		if a == "-"+name {
			break
		}
	}
	return errors.New(m[1] + typed + m[3])
}

// spelled returns the flag named by names as it was first typed in args
// ("--wait" or "-w"), or -names[0] if it cannot tell.
func spelled(args []string, names ...string) string {
	for _, a := range args {
		if a == "--" {
			break
		}
		a, _, _ = strings.Cut(a, "=")
		for _, n := range names {
			if a == "-"+n || a == "--"+n {
				return a
			}
		}
	}
	return "-" + names[0]
}

// isFlagValue reports whether the argument after before is the value of a
// flag ("--token --" gives the token "--"): before ends with a flag that
// takes a value and was written without "=".
func isFlagValue(fs *flag.FlagSet, before []string) bool {
	if len(before) == 0 {
		return false
	}
	last := before[len(before)-1]
	if len(last) < 2 || last[0] != '-' || strings.Contains(last, "=") {
		return false
	}
	name := strings.TrimPrefix(strings.TrimPrefix(last, "-"), "-")
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

// flagSet reports whether the flag named by any of names was given.
func flagSet(fs *flag.FlagSet, names ...string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				set = true
			}
		}
	})
	return set
}

// connFlags are the flags that say which instances to use and how to reach
// them; every subcommand but demo has them.
type connFlags struct {
	urls        []string
	keyPrefix   string
	nodeTimeout time.Duration
	verbose     bool
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.Func("redis", "", func(s string) error {
		c.urls = append(c.urls, s)
		return nil
	})
	fs.StringVar(&c.keyPrefix, "key-prefix", "", "")
	fs.DurationVar(&c.nodeTimeout, "node-timeout", redlock.DefaultNodeTimeout, "")
	fs.BoolVar(&c.verbose, "v", false, "")
	fs.BoolVar(&c.verbose, "verbose", false, "")
}

// endpoints returns the instances from --redis, else REDLOCK_URLS, else the
// default.
func (c *connFlags) endpoints() ([]string, error) {
	if len(c.urls) > 0 {
		return c.urls, nil
	}
	env, ok := os.LookupEnv(envURLs)
	if !ok {
		return []string{defaultURL}, nil
	}
	var out []string
	for _, s := range strings.Split(env, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, usagef("%s is set but names no instance", envURLs)
	}
	return out, nil
}

// config fills the connection part of a redlock.Config.
func (c *connFlags) config(stderr io.Writer) (redlock.Config, error) {
	if c.nodeTimeout <= 0 {
		return redlock.Config{}, usagef("--node-timeout %v must be positive", c.nodeTimeout)
	}
	cfg := redlock.Config{KeyPrefix: c.keyPrefix, NodeTimeout: c.nodeTimeout}
	if c.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg, nil
}

// newManager builds the Manager for c and cfg. It contacts no instance: a
// bad endpoint or setting is a usage error. An even number of instances
// gets a warning on warn, unless warn is nil.
func (c *connFlags) newManager(cfg redlock.Config, warn io.Writer) (*redlock.Manager, error) {
	eps, err := c.endpoints()
	if err != nil {
		return nil, err
	}
	m, err := redlock.New(eps, cfg)
	if err != nil {
		if errors.Is(err, redlock.ErrInvalid) {
			return nil, &usageError{msg: err.Error()}
		}
		return nil, err
	}
	if n := len(eps); n%2 == 0 && warn != nil {
		q := m.Quorum()
		fmt.Fprintf(warn, "redlock: warning: %d instances, an even number: the quorum is %d, so %d may be down, as with %d; use an odd number (3 or 5)\n", n, q, n-q, n-1)
	}
	return m, nil
}

// lockFlags map onto the lock part of redlock.Config.
type lockFlags struct {
	ttl         time.Duration
	retryCount  int
	retryDelay  retryDelay
	driftFactor float64
}

func (l *lockFlags) register(fs *flag.FlagSet) {
	l.ttl = redlock.DefaultLockTTL
	fs.Var(seconds{&l.ttl}, "ttl", "")
	fs.IntVar(&l.retryCount, "retry-count", redlock.DefaultRetryCount, "")
	l.retryDelay = retryDelay{min: redlock.DefaultRetryDelayMin, max: redlock.DefaultRetryDelayMax}
	fs.Var(&l.retryDelay, "retry-delay", "")
	fs.Float64Var(&l.driftFactor, "drift-factor", redlock.DefaultDriftFactor, "")
}

// apply sets the lock fields of cfg. Zero values would silently mean "the
// default" in Config: the flags reject them instead.
func (l *lockFlags) apply(cfg *redlock.Config) error {
	switch {
	case l.ttl <= 0:
		return usagef("--ttl %v must be positive", l.ttl)
	case l.retryCount < 1:
		return usagef("--retry-count %d must be at least 1", l.retryCount)
	case l.driftFactor <= 0:
		return usagef("--drift-factor %v must be positive", l.driftFactor)
	}
	cfg.DefaultTTL = l.ttl
	cfg.RetryCount = l.retryCount
	cfg.RetryDelayMin, cfg.RetryDelayMax = l.retryDelay.min, l.retryDelay.max
	cfg.DriftFactor = l.driftFactor
	return nil
}

// retryDelay is the --retry-delay value: "D" (always D) or "MIN-MAX" (uniform
// in [MIN, MAX]).
type retryDelay struct{ min, max time.Duration }

func (r *retryDelay) String() string {
	if r.min == r.max {
		return r.min.String()
	}
	return r.min.String() + "-" + r.max.String()
}

func (r *retryDelay) Set(s string) error {
	lo, hi, ok := strings.Cut(s, "-")
	if lo == "" {
		return errors.New("want DURATION or MIN-MAX, e.g. 100ms-300ms")
	}
	min, err := time.ParseDuration(lo)
	if err != nil {
		return errors.New("want DURATION or MIN-MAX, e.g. 100ms-300ms")
	}
	max := min
	if ok {
		if max, err = time.ParseDuration(hi); err != nil {
			return errors.New("want DURATION or MIN-MAX, e.g. 100ms-300ms")
		}
	}
	if min <= 0 || max < min {
		return errors.New("want 0 < MIN <= MAX")
	}
	r.min, r.max = min, max
	return nil
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// isTerminal reports whether v (a reader or writer) is a character device:
// a terminal, as far as the standard library can tell.
func isTerminal(v any) bool {
	if s, ok := v.(*syncWriter); ok {
		v = s.w
	}
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// shortToken shortens a token for human output: its first 8 characters,
// quoted if it is not plain printable ASCII.
func shortToken(t string) string {
	if len(t) > 8 {
		t = t[:8]
	}
	for _, r := range t {
		if r < 0x21 || r > 0x7e {
			return strconv.Quote(t)
		}
	}
	return t
}

// fmtTTL renders a remaining TTL for humans.
func fmtTTL(d time.Duration) string {
	switch {
	case d < 0:
		return "no expiry"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// quote renders a resource name for messages, shortened when long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// checkResource refuses a RESOURCE that the library would refuse
// (ErrInvalid), before anything is sent.
func checkResource(r string) error {
	switch {
	case r == "":
		return usagef("empty RESOURCE")
	case len(r) > redlock.MaxResourceLen:
		return usagef("RESOURCE is %d bytes, over %d", len(r), redlock.MaxResourceLen)
	}
	return nil
}

// boundedCtx returns a context for clean-up that outlives ctx's
// cancellation but is bounded by d.
func boundedCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// timeoutSlack is added to the node timeout to bound a clean-up call.
const timeoutSlack = time.Second

// msDuration turns a PTTL in milliseconds into a duration; -1 (no expiry)
// stays negative.
func msDuration(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// seconds is a duration flag that also takes a plain number of seconds, as
// flock -w does ("-w 5" is "-w 5s"; "--ttl 5" likewise).
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return "0s"
	}
	return s.d.String()
}

func (s seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f > float64(redlock.MaxTTL/time.Second) {
			return errors.New("out of range")
		}
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("want a duration such as 30s or 5m, or a number of seconds")
	}
	*s.d = d
	return nil
}

// msg is err's message without the "redlock: " that the library's errors
// start with, for lines that have their own prefix.
func msg(err error) string {
	return strings.TrimPrefix(err.Error(), "redlock: ")
}
