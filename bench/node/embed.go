// Package node holds the node-redlock cell of the benchmark harness:
// bench.js, and the package.json and package-lock.json that pin its
// dependencies (redlock 5.0.0-beta.2 over ioredis 5.11.1, the versions of
// the interop tests). The harness installs them with npm ci into a cache
// directory outside the source tree; nothing is installed here.
package node

import "embed"

// Files holds bench.js, package.json and package-lock.json.
//
//go:embed bench.js package.json package-lock.json
var Files embed.FS

// Names are the files in Files, in the order they are written out.
var Names = []string{"package.json", "package-lock.json", "bench.js"}
