package main

import "testing"

// The quickstart runs end to end on its embedded instances.
func TestQuickstart(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
