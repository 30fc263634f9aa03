package chaos

import (
	"time"

	"golang.org/x/sys/unix"
)

// Mono returns CLOCK_MONOTONIC in nanoseconds. Unlike the monotonic reading
// inside a time.Time, it is the same clock in every process of the machine,
// so histories written by worker subprocesses compare with ours.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("chaos: clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot happen on Linux
	}
	return ts.Nano()
}

// MonoOf converts t (a time.Time from this process, such as Lock.Until) to
// CLOCK_MONOTONIC nanoseconds. It reads time.Now on both sides of a Mono
// reading and uses their midpoint, so the error is a fraction of a
// microsecond; t.Sub uses the monotonic readings when t has one.
func MonoOf(t time.Time) int64 {
	before := time.Now()
	m := Mono()
	after := time.Now()
	mid := before.Add(after.Sub(before) / 2)
	return m + int64(t.Sub(mid))
}
