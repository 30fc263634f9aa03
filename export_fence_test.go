package redlock

// ClientForTest returns the client of instance i.
func ClientForTest(m *Manager, i int) Client { return m.inst[i].client }

// WaitersForTest returns how many local callers wait for resource.
func WaitersForTest(m *Manager, resource string) int {
	m.waits.mu.Lock()
	defer m.waits.mu.Unlock()
	return len(m.waits.q[m.cfg.KeyPrefix+resource])
}
