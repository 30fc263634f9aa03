package chaos

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// OpenFDs lists this process's open file descriptors (number -> target).
func OpenFDs() map[int]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own descriptor, closed meanwhile
		}
		out[n] = target
	}
	return out
}

// NewFDs returns the descriptors open now that were not in base, sorted.
func NewFDs(base map[int]string) []string {
	var out []string
	for n, target := range OpenFDs() {
		if old, ok := base[n]; !ok || old != target {
			out = append(out, strconv.Itoa(n)+" -> "+target)
		}
	}
	sort.Strings(out)
	return out
}
