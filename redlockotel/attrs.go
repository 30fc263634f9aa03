package redlockotel

import (
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// kind says which instrument an attribute combination is for.
type kind uint8

const (
	kindAcquire  kind = iota // a: method, b: outcome
	kindExtend               // a: outcome, b: "true"/"false" (auto)
	kindUnlock               // a: outcome
	kindLost                 // a: reason
	kindInstance             // a: endpoint, b: outcome
	kindUp                   // a: endpoint
)

// attrKey is one attribute combination; res is the normalised resource
// ("" for none).
type attrKey struct {
	kind kind
	a, b string
	res  string
}

// maxCached bounds the cache: past it (an unexpectedly wide normaliser),
// options are built per measurement.
const maxCached = 4096

// attrCache holds the measurement options of each attribute combination
// seen, so that a measurement costs a map lookup, not an attribute.Set,
// and no option slice per call.
type attrCache struct {
	mu sync.RWMutex
	m  map[attrKey]*attrOpts
}

// attrOpts is one attribute set as the option slices the instruments'
// methods take.
type attrOpts struct {
	rec []metric.RecordOption
	add []metric.AddOption
	obs []metric.ObserveOption
}

// get returns the options for k, with the normalised resource attribute
// when normalise is set.
func (c *attrCache) get(k attrKey, normalise func(string) string, resources []string) *attrOpts {
	if normalise != nil {
		k.res = normalised(normalise, resources)
	}
	c.mu.RLock()
	o, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return o
	}
	opt := metric.WithAttributeSet(k.set())
	o = &attrOpts{rec: []metric.RecordOption{opt}, add: []metric.AddOption{opt}, obs: []metric.ObserveOption{opt}}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[attrKey]*attrOpts)
	}
	if prev, ok := c.m[k]; ok {
		o = prev
	} else if len(c.m) < maxCached {
		c.m[k] = o
	}
	c.mu.Unlock()
	return o
}

// normalised is the value of the redlock.resource metric attribute.
func normalised(normalise func(string) string, resources []string) string {
	switch len(resources) {
	case 0:
		return ""
	case 1:
		return normalise(resources[0])
	}
	var vals []string
	for _, r := range resources {
		if v := normalise(r); v != "" && !slices.Contains(vals, v) {
			vals = append(vals, v)
		}
	}
	return strings.Join(vals, ",")
}

func (k attrKey) set() attribute.Set {
	kv := make([]attribute.KeyValue, 0, 3)
	switch k.kind {
	case kindAcquire:
		kv = append(kv, AttrMethod.String(k.a), AttrOutcome.String(k.b))
	case kindExtend:
		kv = append(kv, AttrOutcome.String(k.a), AttrAuto.Bool(k.b == "true"))
	case kindUnlock:
		kv = append(kv, AttrOutcome.String(k.a))
	case kindLost:
		kv = append(kv, AttrReason.String(k.a))
	case kindInstance:
		kv = append(kv, AttrServerAddress.String(k.a), AttrOutcome.String(k.b))
	case kindUp:
		kv = append(kv, AttrServerAddress.String(k.a))
	}
	if k.res != "" {
		kv = append(kv, AttrResource.String(k.res))
	}
	return attribute.NewSet(kv...)
}
