package redlock

import "github.com/redlock-go/redlock/internal/testhooks"

// scriptUnsafeDelete serves only the PlainDelete negative control.
var scriptUnsafeDelete = loadScript("unsafe_delete")

func init() {
	testhooks.Install = func(m any, h *testhooks.Hooks) {
		mm := m.(*Manager)
		mm.hooks = h
		if h != nil && h.Quorum != nil {
			mm.quorum = h.Quorum(len(mm.inst))
		}
	}
}
