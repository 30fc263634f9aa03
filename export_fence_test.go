package redlock

// ClientForTest returns the client of instance i.
func ClientForTest(m *Manager, i int) Client { return m.inst[i].client }

// WaitersForTest returns how many local callers wait for resource.
func WaitersForTest(m *Manager, resource string) int {
	m.waits.mu.Lock()
	defer m.waits.mu.Unlock()
	return len(m.waits.q[m.cfg.KeyPrefix+resource])
}

// SubscriptionsForTest returns how many release subscriptions m has.
func SubscriptionsForTest(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subs)
}

// HeldForTest returns how many locks m keeps in its held set, expired ones
// not yet pruned included.
func HeldForTest(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
