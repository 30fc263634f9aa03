//go:build !unix

package redistest

import (
	"errors"
	"os"
)

// lockFile is not available here: the port registry is not used.
func lockFile(*os.File) (func(), error) {
	return nil, errors.New("no file locks on this platform")
}
