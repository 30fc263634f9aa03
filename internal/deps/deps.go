//go:build tools

// Package deps pins test-only dependencies in go.mod while the packages
// that use them are being written.
package deps

import (
	_ "github.com/Shopify/toxiproxy/v2"
	_ "github.com/redis/rueidis"
)
