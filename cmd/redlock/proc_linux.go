package main

import (
	"os"
	"strconv"
	"strings"
)

// liveMember reports whether process group pgid has a member that is not a
// zombie, from /proc (true when /proc cannot tell).
func liveMember(pgid int) bool {
	d, err := os.Open("/proc")
	if err != nil {
		return true
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return true
	}
	for _, n := range names {
		if n == "" || n[0] < '0' || n[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + n + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		state, pg, ok := parseStat(string(b))
		if !ok || pg != pgid {
			continue
		}
		if state != 'Z' && state != 'X' {
			return true
		}
		// A zombie thread-group leader whose other threads still run.
		if tasks, err := os.ReadDir("/proc/" + n + "/task"); err == nil && len(tasks) > 1 {
			return true
		}
	}
	return false
}

// parseStat returns the state and the process group of a /proc/PID/stat
// line: "PID (COMM) STATE PPID PGRP ...", where COMM may hold anything.
func parseStat(s string) (state byte, pgrp int, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}
