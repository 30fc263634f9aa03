package redlock

import "context"

// MaxResources is the most resources one LockMany call may lock.
const MaxResources = 1024

// LockMany acquires every resource in resources at once, or none: on each
// instance one script takes all the keys when none is held by another
// token, and the lock is held when a quorum of instances took them all. It
// retries like Lock. The returned Lock covers the whole set: Extend,
// Unlock, auto-extension, Lost and fencing (one token, larger than every
// earlier token of each resource) apply to all of them together.
//
// Two callers asking for overlapping sets in different orders cannot
// deadlock: no instance ever holds part of a set, and a failed attempt
// releases what it took before retrying. On a Redis Cluster instance every
// key must be in one slot: resources in different slots give ErrInvalid
// unless they share a hash tag ("{order:42}:items", "{order:42}:payment").
// Resources must be distinct and valid, at most MaxResources of them.
func (m *Manager) LockMany(ctx context.Context, resources []string, opts ...LockOption) (*Lock, error) {
	if len(resources) == 0 {
		return nil, invalidf("no resources")
	}
	if len(resources) > MaxResources {
		return nil, invalidf("%d resources, over %d", len(resources), MaxResources)
	}
	seen := make(map[string]struct{}, len(resources))
	for _, r := range resources {
		if err := m.checkResource(r); err != nil {
			return nil, err
		}
		if _, dup := seen[r]; dup {
			return nil, invalidf("resource %s appears twice", quoteResource(r))
		}
		seen[r] = struct{}{}
	}
	req, err := m.newRequestMany(append([]string(nil), resources...), opts)
	if err != nil {
		return nil, err
	}
	if err := m.checkSlots(&req.ks); err != nil {
		return nil, err
	}
	return m.acquireReq(ctx, "LockMany", req, m.cfg.RetryCount)
}
