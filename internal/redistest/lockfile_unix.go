//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on f (shared by the test
// processes that use the port registry) and returns its release.
func lockFile(f *os.File) (func(), error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
	}
}
