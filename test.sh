#!/usr/bin/env bash
# Runs every test of the project against real redis-server processes that
# the tests start themselves on free loopback ports. Installs redis-server
# and redis-sentinel first when they are missing (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v redis-server >/dev/null || ! command -v redis-sentinel >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "redis-server/redis-sentinel missing: run as root, or: sudo apt-get install -y redis-server redis-sentinel" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-sentinel
fi
# The packages start system services on 6379/26379 where systemd runs; the
# tests never use them, but stop them so nothing listens on fixed ports.
if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
  systemctl stop redis-server redis-sentinel >/dev/null 2>&1 || true
fi

go vet ./...
go vet -tags redlock_controls ./...
# No test code in a user's binary: the test hooks (internal/testhooks) and
# the negative controls' scripts are compiled in only with the
# redlock_controls tag, and a program importing the library must not
# depend on them.
if go list -deps ./cmd/redlock | grep -q 'internal/testhooks'; then
  echo "a normal build depends on internal/testhooks" >&2
  exit 1
fi
go test -race -count=1 -timeout 15m ./... "$@"
# The tests that install test hooks (negative controls, pause points) skip
# them in a normal build; run them with the hooks compiled in.
go test -race -count=1 -timeout 10m -tags redlock_controls \
  -run 'TestValidityClock|TestUnlockOnlyOurs|TestEverySubsetN5|TestAttack2StaleCleanupReleaseWithToken|TestAttack2WatchdogScheduledFromReturn|TestDemoCatchesBrokenQuorum' \
  . ./cmd/redlock "$@"
# The endpoint parser's fuzz targets, 10 s each (one -fuzz per go test); a
# failing input is written to testdata/fuzz/ and fails the run.
go test -run '^$' -fuzz '^FuzzParseEndpoint$' -fuzztime 10s .
go test -run '^$' -fuzz '^FuzzEndpointIdentity$' -fuzztime 10s .
# The fault suite (its own module, so that toxiproxy and its dependencies
# stay out of the library's module graph; short mode, a few minutes): it
# starts up to 15 redis-servers per scenario, toxiproxy links and two
# worker subprocesses. It needs the test hooks: -tags redlock_controls.
# A run that failed without a safety violation (a liveness floor, such as
# the N=5 stalls of whole short runs on a loaded machine, whose cause, no
# connection ever made within a call's deadline, is fixed: docs/design.md,
# "The wire") is run once more; a violation ("violation:") fails at once.
(cd internal/chaos && go vet -mod=mod -tags redlock_controls ./...)
chaos_log=$(mktemp)
if ! (cd internal/chaos && go test -mod=mod -race -count=1 -timeout 15m -tags redlock_controls ./... "$@") 2>&1 | tee "$chaos_log"; then
  if grep -q "violation:" "$chaos_log"; then
    exit 1
  fi
  echo "fault suite: failed without a safety violation (above); running it once more" >&2
  (cd internal/chaos && go test -mod=mod -race -count=1 -timeout 15m -tags redlock_controls ./... "$@")
fi
rm -f "$chaos_log"
# redlockotel (the OpenTelemetry adapter) and its Prometheus example are
# modules of their own too, so that neither the library nor redlockotel
# requires what they use.
for mod in interop bench redlockotel redlockotel/examples/prometheus; do
  if [ -f "$mod/go.mod" ]; then
    # -mod=mod: these modules replace the library with ../, so their go.sum
    # follows the library's dependencies.
    (cd "$mod" && go vet -mod=mod ./... && go test -mod=mod -race -count=1 -timeout 10m ./...)
  fi
done
