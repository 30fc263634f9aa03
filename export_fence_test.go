package redlock

// ClientForTest returns the client of instance i.
func ClientForTest(m *Manager, i int) Client { return m.inst[i].client }
