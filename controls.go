//go:build redlock_controls

package redlock

import (
	"embed"

	"github.com/redlock-go/redlock/internal/testhooks"
)

// This file exists only in builds with the redlock_controls tag: the
// negative controls of this module's own tests, which break the algorithm
// on purpose to prove that the checkers can fail (internal/testhooks). A
// normal build compiles controls_off.go instead, where every hook is a
// constant no-op, and embeds none of the scripts below.

//go:embed scripts/controls/*.lua
var controlsFS embed.FS

var (
	// scriptUnsafeDelete serves only the PlainDelete negative control.
	scriptUnsafeDelete = loadScriptFS(controlsFS, "scripts/controls/", "unsafe_delete")
	// scriptExtendReset serves only the LatestReplyWins negative control.
	scriptExtendReset = loadScriptFS(controlsFS, "scripts/controls/", "extend_reset")
)

// hookSet holds a Manager's test hooks (nil: none).
type hookSet struct{ h *testhooks.Hooks }

func init() {
	testhooks.Install = func(m any, h *testhooks.Hooks) {
		mm := m.(*Manager)
		mm.hooks = hookSet{h}
		if h != nil && h.Quorum != nil {
			mm.quorum = h.Quorum(len(mm.inst))
		}
	}
}

// afterReplies runs the AfterReplies hook, if any.
func (s hookSet) afterReplies(resource string) {
	if s.h != nil && s.h.AfterReplies != nil {
		s.h.AfterReplies(resource)
	}
}

// ignoreElapsed reports the IgnoreElapsed control.
func (s hookSet) ignoreElapsed() bool { return s.h != nil && s.h.IgnoreElapsed }

// latestReplyWins reports the LatestReplyWins control.
func (s hookSet) latestReplyWins() bool { return s.h != nil && s.h.LatestReplyWins }

// releaseScript returns the script an unlock runs instead of release
// (PlainDelete: a DEL whatever the token).
func (s hookSet) releaseScript(release *script) *script {
	if s.h != nil && s.h.PlainDelete {
		return scriptUnsafeDelete
	}
	return release
}

// extendScript returns the script a manual single-key extension runs
// instead of extend (LatestReplyWins: one that may shorten the lease).
func (s hookSet) extendScript(extend *script, auto bool, keys int) *script {
	if s.latestReplyWins() && !auto && keys == 1 {
		return scriptExtendReset
	}
	return extend
}
