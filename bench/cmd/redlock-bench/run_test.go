package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunWritesResults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	md, svg := filepath.Join(dir, "out", "latest.md"), filepath.Join(dir, "out", "chart.svg")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-n", "1", "-c", "1", "-waiters", "0", "-rounds", "1", "-cell", "100ms", "-warmup", "0s",
		"-impls", "redlock,rueidis-floor", "-procs", "1", "-out", md, "-chart", svg}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run = %d, stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, stdout.Bytes()) {
		t.Errorf("%s differs from stdout", md)
	}
	for _, s := range []string{"GOMAXPROCS=1", "| 1 | C=1 | redlock | ", "| 1 | C=1 | rueidis-floor | "} {
		if !strings.Contains(string(b), s) {
			t.Errorf("results lack %q:\n%s", s, b)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Errorf("chart %s: %v, starts %.20q", svg, err, b)
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "x"}, {"-impls", "nope"}, {"-nosuchflag"}, {"extra"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
