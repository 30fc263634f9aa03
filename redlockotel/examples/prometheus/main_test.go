package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// -update rewrites sample-metrics.txt from the scrape of TestScrape:
//
//	go test -run TestScrape -update .
var update = flag.Bool("update", false, "rewrite sample-metrics.txt")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scrape starts the example in-process on a free loopback port with a
// bounded load, waits until the load is done, and returns the body of one
// GET /metrics; the example is stopped in t.Cleanup.
func scrape(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrCh, doneCh, errCh := make(chan string, 1), make(chan struct{}), make(chan error, 1)
	o := options{listen: "127.0.0.1:0", workers: 4, resources: 2, hold: 2 * time.Millisecond, pause: time.Millisecond, ops: 12}
	go func() {
		errCh <- run(ctx, o, testWriter{t}, func(a string) { addrCh <- a }, func() { close(doneCh) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errCh; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	bound, bcancel := context.WithTimeout(ctx, 60*time.Second)
	defer bcancel()
	var addr string
	select {
	case addr = <-addrCh:
	case err := <-errCh:
		errCh <- err
		t.Fatalf("run returned before serving: %v", err)
	case <-bound.Done():
		t.Fatal("not serving")
	}
	select {
	case <-doneCh:
	case <-bound.Done():
		t.Fatal("the load did not finish")
	}
	req, err := http.NewRequestWithContext(bound, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// redlockLines returns the lines about redlock_ metrics (samples, HELP and
// TYPE) in order.
func redlockLines(body string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name := line
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name = rest
		} else if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name = rest
		}
		if strings.HasPrefix(name, "redlock_") {
			out = append(out, line)
		}
	}
	return out
}

func TestScrape(t *testing.T) {
	body := scrape(t)
	lines := redlockLines(body)
	if len(lines) == 0 {
		t.Fatalf("no redlock_ lines in the scrape:\n%s", body)
	}
	types := map[string]string{}
	samples := map[string]int{}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "# TYPE "); ok {
			f := strings.Fields(rest)
			types[f[0]] = f[1]
			continue
		}
		if strings.HasPrefix(l, "#") {
			continue
		}
		name := l[:strings.IndexAny(l, "{ ")]
		samples[name]++
	}
	wantTypes := map[string]string{
		"redlock_acquire_duration_seconds":  "histogram",
		"redlock_acquire_attempts":          "histogram",
		"redlock_unlock_duration_seconds":   "histogram",
		"redlock_instance_duration_seconds": "histogram",
		"redlock_locks_held":                "gauge",
		"redlock_waiters":                   "gauge",
		"redlock_instance_up_ratio":         "gauge",
	}
	for name, typ := range wantTypes {
		if types[name] != typ {
			t.Errorf("TYPE %s = %q, want %q", name, types[name], typ)
		}
	}
	for _, name := range []string{
		"redlock_acquire_duration_seconds_bucket", "redlock_acquire_duration_seconds_sum", "redlock_acquire_duration_seconds_count",
		"redlock_acquire_attempts_bucket", "redlock_unlock_duration_seconds_count", "redlock_instance_duration_seconds_bucket",
		"redlock_locks_held", "redlock_waiters", "redlock_instance_up_ratio",
	} {
		if samples[name] == 0 {
			t.Errorf("no sample of %s", name)
		}
	}
	// Every lock was unlocked: nothing held, nobody waiting, and the three
	// embedded instances are up.
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "redlock_locks_held{"), strings.HasPrefix(l, "redlock_waiters{"):
			if !strings.HasSuffix(l, " 0") {
				t.Errorf("after the load: %s", l)
			}
		case strings.HasPrefix(l, "redlock_instance_up_ratio{"):
			if !strings.HasSuffix(l, " 1") {
				t.Errorf("instance down: %s", l)
			}
		}
	}
	if n := samples["redlock_instance_up_ratio"]; n != 3 {
		t.Errorf("%d redlock_instance_up_ratio samples, want 3", n)
	}
	// The resource attribute, normalised: one value.
	if !strings.Contains(body, `redlock_resource="job"`) || strings.Contains(body, `redlock_resource="job:`) {
		t.Error("redlock_resource is not the normalised \"job\"")
	}
	if *update {
		if err := os.WriteFile("sample-metrics.txt", []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := command(context.Background(), []string{"-workers", "0"}, &out, &errb); code != 2 {
		t.Errorf("-workers 0: exit %d, want 2 (%s)", code, errb.String())
	}
	if code := command(context.Background(), []string{"-nope"}, &out, &errb); code != 2 {
		t.Errorf("-nope: exit %d, want 2", code)
	}
}
