package redlock

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"
)

//go:embed scripts/*.lua
var scriptFS embed.FS

// script is a Lua script and its SHA1, computed once.
type script struct {
	name string
	src  string
	sha  string
	// primes is loaded, with an argument that makes it a no-op, whenever
	// this script had to be loaded on an instance (NOSCRIPT): the release
	// after an acquisition may reach the instance when its caller no
	// longer waits, and then gets no EVAL fallback of its own. Only for
	// instances that cannot load every script up front (a Client that is
	// not a ScriptLoader, a cluster, an ACL without SCRIPT LOAD; see
	// ensureScripts), and only a partial remedy there.
	primes *script
	// primeArgs are primes' arguments for the no-op call.
	primeArgs []string
	// classify reads its replies as votes, for the Observer's per-call
	// outcome (nil: any reply is ok).
	classify classifier
}

func loadScript(name string) *script { return loadScriptFS(scriptFS, "scripts/", name) }

// loadScriptFS reads the script name from dir in fsys.
func loadScriptFS(fsys embed.FS, dir, name string) *script {
	b, err := fsys.ReadFile(dir + name + ".lua")
	if err != nil {
		panic("redlock: missing embedded script " + name) // a build defect, not an input
	}
	sum := sha1.Sum(b)
	return &script{name: name, src: string(b), sha: hex.EncodeToString(sum[:])}
}

func init() {
	// The classifiers of the scripts' replies (see script.classify).
	for s, c := range map[*script]classifier{
		scriptAcquire: classifyAcquire, scriptExtend: classifyExtend, scriptRelease: classifyRelease,
		scriptPTTL: classifyPTTL, scriptInspect: classifyInspect, scriptAcquireMany: classifyAcquireMany,
		scriptExtendMany: classifyExtend, scriptReleaseMany: classifyReleaseMany, scriptPTTLMany: classifyPTTL,
		scriptFence: classifyFence,
	} {
		s.classify = c
	}
}

// priming sets s.primes and returns s.
func (s *script) priming(p *script, args ...string) *script {
	s.primes, s.primeArgs = p, args
	return s
}

// The scripts; each file documents its KEYS and ARGV.
var (
	scriptAcquire = loadScript("acquire").priming(scriptRelease, "") // a token no lock holds
	scriptExtend  = loadScript("extend")
	scriptRelease = loadScript("release")
	scriptPTTL    = loadScript("pttl")
	scriptInspect = loadScript("inspect")

	scriptAcquireMany = loadScript("acquire_many")
	scriptExtendMany  = loadScript("extend_many")
	scriptReleaseMany = loadScript("release_many")
	scriptPTTLMany    = loadScript("pttl_many")
	scriptFence       = loadScript("fence")
	scriptTopUp       = loadScript("topup")
)
