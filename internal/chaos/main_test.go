package chaos

import (
	"flag"
	"fmt"
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/redlock-go/redlock/internal/testhooks"
)

var (
	fullFlag   = flag.Bool("chaos.full", os.Getenv("CHAOS_FULL") == "1", "run the full fault suite (also CHAOS_FULL=1)")
	reportFlag = flag.String("chaos.report", os.Getenv("CHAOS_REPORT"), "write the scenario table (Markdown) to this file (also CHAOS_REPORT)")
)

// report collects the table rows of every scenario of this test binary.
var report Report

// full reports whether the full suite runs.
func full() bool { return *fullFlag }

func TestMain(m *testing.M) {
	if testhooks.Install == nil {
		// The negative controls and the pause points are compiled into
		// the library only with this tag; a normal build has no hooks.
		fmt.Fprintln(os.Stderr, "the fault suite needs the test hooks: go test -tags redlock_controls")
		os.Exit(2)
	}
	MaybeRunSubprocess() // a worker subprocess never returns from here
	// Open the runtime's network poller now, so that its descriptors are
	// part of every scenario's baseline.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	goleak.VerifyTestMain(m,
		// toxiproxy v2.5.0 can leave the goroutines of a link (its reader,
		// its toxic stubs, its writer) blocked on a channel send when a
		// toxic is added or removed while the link closes: its bug, not
		// ours. Only those are ignored: a proxy that was not stopped
		// still shows (its accept loop), and every scenario checks that
		// the proxies' descriptors were closed.
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.Cleanup(func(code int) {
			if report.Len() > 0 {
				mode := "short"
				if full() {
					mode = "full"
				}
				table := fmt.Sprintf("Fault suite, %s mode (go -C internal/chaos test -mod=mod -race .%s):\n\n%s", mode, map[bool]string{true: " -chaos.full", false: ""}[full()], report.String())
				fmt.Print(table)
				if *reportFlag != "" {
					if err := os.WriteFile(*reportFlag, []byte(table), 0o644); err != nil {
						fmt.Fprintln(os.Stderr, "chaos: write report:", err)
						if code == 0 {
							code = 1
						}
					}
				}
			}
			os.Exit(code)
		}))
}
