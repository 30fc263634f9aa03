package redlock_test

import (
	"errors"
	"testing"

	"github.com/redlock-go/redlock"
)

// IsRejection names the replies that make up ErrRejected, and no others.
func TestIsRejection(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want bool
	}{
		{"WRONGTYPE Operation against a key holding the wrong kind of value", true},
		{"NOPERM this user has no permissions", true},
		{"READONLY You can't write against a read only replica.", true},
		{"WRONGPASS invalid username-password pair", true},
		{"OOM command not allowed when used memory > 'maxmemory'.", false},
		{"LOADING Redis is loading the dataset in memory", false},
		{"ERR max number of clients reached", false},
		{"dial tcp 127.0.0.1:1: connect: connection refused", false},
	} {
		if got := redlock.IsRejection(errors.New(c.msg)); got != c.want {
			t.Errorf("IsRejection(%q) = %v, want %v", c.msg, got, c.want)
		}
	}
	if redlock.IsRejection(nil) {
		t.Error("IsRejection(nil) = true")
	}
}
