//go:build !redlock_controls

package redlock

// hookSet is empty in a normal build: every hook below is a constant no-op
// that the compiler removes, and no test-only script is embedded. Builds
// with the redlock_controls tag use controls.go instead (this module's
// negative controls).
type hookSet struct{}

func (hookSet) afterReplies(string)                                {}
func (hookSet) ignoreElapsed() bool                                { return false }
func (hookSet) latestReplyWins() bool                              { return false }
func (hookSet) releaseScript(release *script) *script              { return release }
func (hookSet) extendScript(extend *script, _ bool, _ int) *script { return extend }
