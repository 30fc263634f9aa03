package chaos

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Report collects table rows, in sections (one table each). It is safe
// for concurrent use.
type Report struct {
	mu       sync.Mutex
	order    []string
	headers  map[string]string
	sections map[string][]string
}

// TableHeader is the header of the scenario table (Markdown).
const TableHeader = "| scenario | N | acquisitions | attempts | success | violations | p99 acquire | extensions | pauses: holder / in acquire (acquired) | faults | keys gone | detected | duration |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|"

// Row formats r as a row of the scenario table.
func (r *Result) Row() string {
	detected := "-"
	if len(r.Violations) > 0 {
		detected = r.Detected.Round(time.Millisecond).String() + " (" + r.FirstKind + ")"
		if r.Expected > 0 && r.ExpectedAt != r.Detected {
			detected += fmt.Sprintf(", %s %v", r.ExpectedKind, r.ExpectedAt.Round(time.Millisecond))
		}
	}
	faults := r.Faults
	if faults == "" {
		faults = "none"
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %.1f%% | %d | %v | %d | %d / %d (%d) | %s | %v | %s | %v |",
		r.Name, r.N, r.Acquisitions, r.Attempts, 100*r.SuccessRate(), len(r.Violations),
		r.P99Acquire.Round(100*time.Microsecond), r.Extensions, r.Pauses, r.AcqPauses, r.AcqPausedOK, faults,
		r.KeysGone.Round(time.Millisecond), detected, r.Duration.Round(100*time.Millisecond))
}

// Add records a row in section, whose table has header.
func (rp *Report) Add(section, header, row string) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.sections == nil {
		rp.headers, rp.sections = map[string]string{}, map[string][]string{}
	}
	if _, ok := rp.sections[section]; !ok {
		rp.order = append(rp.order, section)
		rp.headers[section] = header
	}
	rp.sections[section] = append(rp.sections[section], row)
}

// String returns the tables, one per section in the order first used.
func (rp *Report) String() string {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	var b strings.Builder
	for _, s := range rp.order {
		fmt.Fprintf(&b, "%s\n\n%s\n", s, rp.headers[s])
		for _, r := range rp.sections[s] {
			b.WriteString(r)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Len returns the number of rows.
func (rp *Report) Len() int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	n := 0
	for _, rows := range rp.sections {
		n += len(rows)
	}
	return n
}
