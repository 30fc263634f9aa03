package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// envWorker carries a SubprocessConfig (JSON) to a worker subprocess.
const envWorker = "CHAOS_WORKER"

// SubprocessConfig is what a worker subprocess runs.
type SubprocessConfig struct {
	// Name prefixes its workers' names ("p0" gives "p0.0", "p0.1", ...).
	Name string
	// Workers is the number of worker goroutines (each its own Manager).
	Workers int
	// Workload configures them; its MaxDuration bounds the subprocess.
	Workload Workload
	// Out is the file the records are written to, as JSON lines.
	Out string
}

// MaybeRunSubprocess turns the process into a worker subprocess when the
// environment asks for it, and exits; otherwise it returns at once. Call it
// first thing in TestMain.
func MaybeRunSubprocess() {
	s := os.Getenv(envWorker)
	if s == "" {
		return
	}
	if err := runSubprocess(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// runSubprocess warms its workers up, prints "ready", starts them when
// stdin says "go", and runs them until stdin reaches EOF (the parent closed
// it, or died) or the workload's MaxDuration passes, writing each record to
// the output file as it completes.
func runSubprocess(s string) error {
	var cfg SubprocessConfig
	if err := json.Unmarshal([]byte(s), &cfg); err != nil {
		return fmt.Errorf("chaos: worker config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Workload.MaxDuration)
	defer cancel()
	start := make(chan struct{})
	go func() {
		// "go" starts the workers; EOF stops them.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "go" {
				close(start)
			}
		}
		cancel()
	}()
	var ready sync.WaitGroup
	ready.Add(cfg.Workers)
	go func() {
		ready.Wait()
		fmt.Println("ready")
	}()
	barrier := &Barrier{Ready: ready.Done, Start: start}
	out, err := os.Create(cfg.Out)
	if err != nil {
		return err
	}
	rec := &Recorder{sink: out}
	progress := make(chan struct{})
	go func() {
		// Tell the parent how far we got, so that it can end the run once
		// enough acquisitions were made.
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-progress:
				return
			case <-t.C:
				fmt.Printf("acquired %d\n", rec.Acquired())
			}
		}
	}()
	errs := make(chan error, cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- RunWorker(ctx, fmt.Sprintf("%s.%d", cfg.Name, i), cfg.Workload, rec, barrier)
		}(i)
	}
	wg.Wait()
	close(progress)
	close(errs)
	for err := range errs {
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := rec.SinkErr(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Subprocess is a running worker subprocess.
type Subprocess struct {
	cfg      SubprocessConfig
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stderr   bytes.Buffer
	done     chan struct{}
	err      error
	ready    chan struct{} // closed when the subprocess printed "ready"
	acquired atomic.Int64  // as last reported on stdout
}

// Ready returns a channel closed once the subprocess's workers are
// connected and waiting for Start.
func (p *Subprocess) Ready() <-chan struct{} { return p.ready }

// Done returns a channel closed once the subprocess exited.
func (p *Subprocess) Done() <-chan struct{} { return p.done }

// Start lets the subprocess's workers go.
func (p *Subprocess) Start() { _, _ = io.WriteString(p.stdin, "go\n") }

// Acquired returns the subprocess's successful acquisitions so far, as it
// last reported them (every 100ms).
func (p *Subprocess) Acquired() int { return int(p.acquired.Load()) }

// Peek returns the records the subprocess has written so far (it writes
// each one when it completes), for checking while the run goes on.
func (p *Subprocess) Peek() []Record {
	recs, _ := readRecords(p.cfg.Out, true)
	return recs
}

// StartSubprocess runs the test binary again as a worker subprocess. The
// subprocess is killed in t.Cleanup if Stop was not called.
func StartSubprocess(t testing.TB, cfg SubprocessConfig) *Subprocess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	cfg.Out = filepath.Join(t.TempDir(), cfg.Name+".jsonl")
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	p := &Subprocess{cfg: cfg, done: make(chan struct{}), ready: make(chan struct{})}
	p.cmd = exec.Command(exe, "-test.run=^$")
	// The race detector sleeps 1s at exit by default (atexit_sleep_ms):
	// not in a worker, whose exit the parent waits for.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	p.cmd.Env = append(os.Environ(), envWorker+"="+string(b), "GORACE="+gorace)
	p.cmd.Stderr = &p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("chaos: start worker subprocess: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var n int64
			if sc.Text() == "ready" {
				close(p.ready)
			} else if _, err := fmt.Sscanf(sc.Text(), "acquired %d", &n); err == nil {
				p.acquired.Store(n)
			}
		}
		// Wait only after stdout is drained (os/exec closes the pipe).
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Pause stops the whole subprocess (its workers, their timers and their
// auto-extension) with SIGSTOP: a holder pause. Resume continues it.
func (p *Subprocess) Pause() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused subprocess with SIGCONT.
func (p *Subprocess) Resume() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// Tell asks the subprocess to finish: it continues it if paused and closes
// its stdin. Wait collects it.
func (p *Subprocess) Tell() {
	p.Resume()
	_ = p.stdin.Close()
}

// Wait waits for the subprocess to exit (after Tell) within a bound and
// returns its records. A subprocess that fails, or does not exit in time,
// fails the test.
func (p *Subprocess) Wait(t testing.TB) []Record {
	t.Helper()
	wait := 30 * time.Second
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("chaos: worker subprocess %s did not exit within %v of being told; output:\n%s", p.cfg.Name, wait, p.stderr.String())
	}
	if p.err != nil {
		t.Fatalf("chaos: worker subprocess %s: %v; output:\n%s", p.cfg.Name, p.err, p.stderr.String())
	}
	recs, err := ReadRecords(p.cfg.Out)
	if err != nil {
		t.Fatalf("chaos: worker subprocess %s: %v", p.cfg.Name, err)
	}
	return recs
}
