// Package interop holds the wire-compatibility tests of
// github.com/redlock-go/redlock against other Redlock clients that share the
// same Redis instances and resource names: go-redsync/redsync v4, a
// stand-in that runs aioredlock 0.7.3's Lua scripts, and node-redlock
// 5.0.0-beta.2 (run with node from testdata/node).
//
// It is a module of its own so that the library never depends on the
// clients it is compared with. The package has no API: everything is in
// its tests, which start real redis-server processes on free loopback ports.
package interop
