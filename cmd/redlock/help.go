package main

// The help texts. A test checks that every flag of every subcommand appears
// in its text.

const exitCodeTable = `Exit codes:
  0      success (run: the command exited 0)
  1      run: the lock is held by someone else (-n, -w expired, or
         --retry-count attempts made); -E changes it.
         release: not held under that token, or taken again during --force.
         demo: two workers held the lock at once, or none acquired it
  2      usage error: bad flag, argument or endpoint; nothing was sent
         to the instances
  69     too few instances answered to reach a quorum (Redis unavailable);
         run: for --unavailable-timeout, or when -n, -w or --retry-count
         ended on such an attempt
  70     internal error
  75     run: the lock could not be kept while the command ran (renewals
         failed, or it was lost); the command's process group was sent
         SIGTERM, and SIGKILL before the lock's validity ended
  78     the instances answered with errors that no retry fixes, too many
         for a quorum (a configuration error: WRONGTYPE, NOPERM, READONLY,
         WRONGPASS, OOM, MISCONF, ...); each instance's reply is on stderr
  126    run: COMMAND is not executable
  127    run: COMMAND not found
  128+N  run: the command was killed by signal N, or redlock got signal N
         while waiting for the lock
  other  run: the command's own exit status
`

const envHelp = `Environment:
  REDLOCK_URLS          read by redlock: the instances, comma-separated, when
                        no --redis is given (default: redis://localhost:6379)
  Set by "redlock run" for COMMAND:
  REDLOCK_RESOURCE      the resource
  REDLOCK_TOKEN         the lock's token, which "redlock release --token"
                        accepts
  REDLOCK_FENCE         the lock's fencing token: a decimal integer (uint64)
                        that is larger for each later holder of RESOURCE.
                        Send it with every write to the protected resource,
                        and have the resource refuse a write whose fence is
                        lower than the largest it has seen: a COMMAND that
                        outlived its lock (paused past its lease) cannot
                        overwrite the next holder's work
`

const connHelp = `Instances (each subcommand but demo):
  --redis URL           one Redis instance; repeat for each independent
                        instance (use an odd number: 3 or 5; an even number
                        gets a warning on stderr). Every form
                        redlock.ParseEndpoint accepts: host:port,
                        redis://[user:pass@]host:port[/db], rediss:// (TLS)
  REDLOCK_URLS          comma-separated instances, used when no --redis is given
                        (default: redis://localhost:6379)
  --key-prefix P        prefix of the lock keys (Config.KeyPrefix; default
                        none: the key is the resource, as in aioredlock)
  --node-timeout D      bound on each call to one instance (default 500ms)
  -v, --verbose         print the library's log records and full errors
`

const mainHelp = `redlock: a distributed lock on N independent Redis instances (Redlock),
for shells and cron. Of the hosts that run "redlock run RESOURCE -- COMMAND"
at the same time, one runs COMMAND; the lock is kept while it runs.

Usage:
  redlock run [flags] RESOURCE -- COMMAND [ARG...]
                          run COMMAND while holding the lock on RESOURCE
  redlock status [--json] RESOURCE...
                          who holds RESOURCE on each instance, and the verdict
  redlock release RESOURCE --token TOKEN | --token-base64 B64 | --force
                          release a lock left behind
  redlock demo            workers contending on embedded instances, with an
                          outage (no Redis needed)
  redlock help [SUBCOMMAND]
  redlock version

` + connHelp + `
Examples:
  redlock demo
  redlock run -n nightly-report -- ./report.sh
  # crontab on every host; one of them runs the report each time:
  */5 * * * * redlock run -n nightly-report -- ./report.sh
  REDLOCK_URLS=redis://a:6379,redis://b:6379,redis://c:6379 \
      redlock run -w 10m deploy -- make deploy
  redlock status --json nightly-report

` + envHelp + `
` + exitCodeTable + `
Run 'redlock help SUBCOMMAND' for the flags of each subcommand.
`

const runHelp = `Usage: redlock run [flags] RESOURCE -- COMMAND [ARG...]

Takes the lock on RESOURCE, runs COMMAND while keeping the lock renewed,
releases the lock when COMMAND and the processes it left in its process
group have exited, and exits with COMMAND's status. Like flock(1) for a
whole fleet of hosts. COMMAND never runs past the lock's validity: if the
lock cannot be renewed, COMMAND is stopped first (below).

Waiting (at most one of -n, -w, --retry-count):
  default               wait until the lock is acquired, however long (as
                        flock does), while it is held or instances are down
  -n, --nonblock        one attempt; if the lock is held, exit 1 at once
  -w, --wait D          retry until acquired or D passes (30s, 5m, or a number
                        of seconds as in flock), then exit 1
  --retry-count N       N attempts in all (Config.RetryCount), then exit 1
  --retry-delay D|MIN-MAX
                        wait between attempts: always D, or uniform in
                        [MIN, MAX] (Config.RetryDelayMin/Max;
                        default 100ms-300ms); while no quorum answers, the
                        upper bound doubles with each attempt, up to 2s
                        (or --ttl if shorter), as the library's LockWait
  --unavailable-timeout D
                        exit 69 once no quorum of instances has answered
                        for D: down, unreachable, timing out (the clock
                        restarts whenever a quorum answers, e.g. that the
                        lock is held); 0 waits forever (default 1m)
  -E, --conflict-exit-code N
                        exit code when someone else holds the lock (default 1)
  -q, --quiet           no status line while waiting, no message on
                        conflict, no warning about an even number of
                        instances (the reports below are still made)
  -s, --shared          take a shared lock, as flock -s: any number of
                        --shared runs of RESOURCE hold it together, and a
                        plain (exclusive) run of RESOURCE excludes them and
                        is excluded by them, as flock -x (the readers and
                        the writer of redlock.RWMutex). A waiting exclusive
                        run makes new --shared runs wait. The command gets
                        REDLOCK_FENCE 0 (readers have no fencing token)

While no quorum answers, run says so on stderr (also off a terminal, and
with -q), naming each failing instance and its error, a second after the
first such attempt and then at most every 30s:
  redlock: no quorum for "R" yet (1/3 answered, quorum 2): redis://a:6379:
  dial tcp ...: connect: connection refused; redis://b:6379: ...
and says "a quorum answers again" once one does. Error replies that no
retry fixes (WRONGTYPE: the key holds another type; NOPERM: an ACL;
READONLY: a replica; WRONGPASS, NOAUTH, OOM, MISCONF) end run at once with
exit 78, each instance's reply on stderr.

Lock:
  --ttl D               lease of the lock: 30s, 5m, or a number of seconds
                        (Config.DefaultTTL; default 10s). run renews it
                        halfway to the point where it would have to stop
                        COMMAND, and retries a failed renewal until then
  --drift-factor F      share of the TTL set aside for clock drift
                        (Config.DriftFactor; default 0.01)
  --kill-grace D        time between SIGTERM and SIGKILL when COMMAND must
                        be stopped (below); must fit in the TTL: under
                        --ttl less the drift allowance and the SIGKILL
                        margin, else exit 2 (default: a third of --ttl)
  --no-wait-group       release the lock as soon as COMMAND exits, instead
                        of once its whole process group has (below)
  --permits N           take one of N permits of the semaphore RESOURCE
                        (redlock.Semaphore, like consul lock -n): up to N
                        runs at once. Every run of RESOURCE must give the
                        same N (a run that finds a permit beyond its N
                        held exits 2). Its permits are the locks
                        "{RESOURCE}:redlock-slot:0".."{RESOURCE}:redlock-
                        slot:N-1" ("RESOURCE:redlock-slot:i" when KEY has a
                        {hash tag}): a plain "redlock run RESOURCE" is
                        another lock. REDLOCK_RESOURCE is the permit's slot
                        (for "redlock release --token")
  --metadata S          who holds the lock, stored beside it (redlock.Metadata,
                        at most 4096 bytes) for "redlock status"; '' stores
                        none. Default: the JSON {"host": HOSTNAME, "pid":
                        redlock's PID, "command": COMMAND's name (never its
                        arguments: anyone who can read the instances can read
                        this), "started": when this redlock run started,
                        RFC 3339 UTC}

` + connHelp + `
The command:
  - gets REDLOCK_RESOURCE (the resource), REDLOCK_TOKEN (the lock's token,
    which "redlock release --token" accepts) and REDLOCK_FENCE (the lock's
    fencing token, below) in its environment;
  - runs in a process group of its own: signals from redlock reach the
    command's children too. A Ctrl-C on the terminal reaches redlock, which
    forwards it once. The command is not in the terminal's foreground group:
    when stdin is a terminal it reads /dev/null instead, and it should not
    change the terminal's settings;
  - gets the SIGINT, SIGTERM and SIGHUP that redlock receives;
  - holds the lock until its whole process group is gone, as flock(1) holds
    a lock while any process has the descriptor: what COMMAND starts in the
    background ("sh -c 'job &'") keeps the lock after COMMAND exits, and
    redlock exits with COMMAND's status once it has ended too (checked with
    kill -0 on the group, 5-250ms apart). A process that leaves the group
    (setsid, a daemon) is not waited for. With --no-wait-group the lock is
    released when COMMAND exits, and what it left runs on without the lock
    (but is stopped like the rest if run is stopping the group, below);
  - is stopped before the lock's validity ends (the lock's deadline: when
    it was taken or last renewed + --ttl - the drift allowance) if the lock
    cannot be kept. While renewals fail, its process group gets SIGTERM
    --kill-grace + M before the deadline and SIGKILL M before it (M, the
    SIGKILL margin: a tenth of --ttl, at most 250ms), unless a renewal
    succeeds first. If the lock is lost (another token holds it, or its
    keys vanished from a majority), SIGTERM at once and SIGKILL after
    --kill-grace, or M before the deadline if sooner. Its whole process
    group is killed by then, even if COMMAND itself exited at SIGTERM;
    redlock exits 75 whatever the command's status.
  redlock checks that COMMAND exists before it takes the lock.

Shared and exclusive: a plain run takes the exclusive side of RESOURCE's
read-write lock (RWMutex.TryLock), whose key is the plain lock key: it
also excludes, and is excluded by, other Redlock clients' locks on
RESOURCE. The readers live in "{KEY}:redlock-readers" (with
"{KEY}:redlock-wwait" and "{KEY}:redlock-rmeta"; "KEY:..." with a {hash
tag}), which only redlock reads: an older redlock or another client
ignores --shared holders. A KEY with a '}' but no hash tag has no
read-write lock: a plain run takes the plain lock, --shared is a usage
error.

Fencing: run takes a fenced lock (redlock.Fenced: one more round trip).
Each instance keeps a counter for RESOURCE, in the key
"{KEY}:redlock-fence" (KEY is --key-prefix + RESOURCE; "KEY:redlock-fence"
when KEY has a {hash tag}), which never expires: it outlives the lock so
that the next holder's REDLOCK_FENCE is larger. "release" leaves it alone.
Fences keep increasing only while the instances keep their data
(appendonly yes, appendfsync always; a restart without persistence,
FLUSHALL or eviction resets a counter).

Metadata: the holder's description lives in "{KEY}:redlock-meta" ("KEY:
redlock-meta" with a {hash tag}) on the same instances, with the lock's
TTL; it is extended and released with the lock. A KEY with a '}' but no
hash tag cannot carry it: run then stores none, and --metadata is a usage
error.

With -v, run prints how long the acquisition took and after how many
attempts, and each renewal (its TTL, time and votes).

While waiting on a terminal, one status line on stderr shows who holds the
lock (short token, or how many --shared runs share it) and how long
redlock has waited; -q silences it, and the
"held by someone else" message that -n prints on a terminal. Off a terminal
(cron) a conflict is silent, as with flock -n; -v prints it.

Examples:
  redlock run -n nightly-report -- ./report.sh
  */5 * * * * redlock run -n nightly-report -- ./report.sh
  redlock run -w 5m --ttl 30s --redis redis://a:6379 --redis redis://b:6379 \
      --redis redis://c:6379 migrate -- ./migrate.sh --all
  redlock run -n -E 0 backup -- ./backup.sh     # a conflict is not an error
  redlock run -n invoices -- sh -c './export.sh --fence "$REDLOCK_FENCE"'

` + envHelp + `
` + exitCodeTable

const statusHelp = `Usage: redlock status [flags] RESOURCE...

For each resource and each instance: the token in the lock's key (the first
8 characters), its remaining TTL and the instance's round-trip time; the
holder, as "redlock run" describes it (host, pid, command, start time and
age) or its raw metadata (redlock.Metadata), with its fencing token; and
the verdict of the quorum:
  held         one token holds the key on a quorum: the lock is held
  free         too few instances have the key for anyone to hold the lock
  contended    the key is on a quorum of instances, but no token is known to
               hold a quorum (a split, or the holder's other keys are on
               instances that did not answer); it blocks new locks until the
               keys expire
  shared       no exclusive holder, and readers ("run --shared") hold a
               quorum: listed below the verdict, with their holders
  unavailable  too few instances answered to tell
  rejected     instances answered with errors that no retry fixes (WRONGTYPE:
               the key holds another type; NOPERM, READONLY, ...), too many
               for a quorum
The text form starts each resource's line with the same word:
  "RESOURCE": VERDICT ...
For unavailable and rejected, stderr names each failing instance and its
error. Nothing is changed on the instances.

Flags:
  --json                one JSON document on stdout, for scripts (below)
  --permits N           each RESOURCE is a semaphore of N permits (redlock
                        run --permits N): one line "RESOURCE": semaphore,
                        H/N permits held, then the status of each held slot;
                        a warning when slot N is held too (a run with more
                        permits). With --json: {"quorum", "n", "semaphores":
                        [{"name", "permits", "held", "unknown", "beyond",
                        "slots": [the "resources" objects below]}]}

` + connHelp + `
JSON (fields may be added, never renamed or removed):
  {"quorum": 2, "n": 3,
   "resources": [{"resource": "r", "key": "r",
     "verdict": "held|shared|free|contended|unavailable|rejected",
     "locked": true,          // what Manager.IsLocked answers
     "holder": "TOKEN",       // full token holding a quorum, "" if none
                              // (bytes that are not UTF-8 become U+FFFD)
     "holder_base64": "B64",  // the same in base64, byte for byte
     "votes": 3,              // instances holding the holder's token
     "ttl_ms": 9120,          // smallest TTL of the holder's keys (Lock.TTL);
                              // 0 without a holder, -1 for no expiry
     "metadata": "...",       // the holder's metadata, "" if none
     "holder_info": {"host": "web-3", "pid": 4242, "command": "make",
                     "started": "2026-11-27T03:00:00.123Z",
                     "age_ms": 61000},  // when metadata is run's JSON; else null
     "fence": 17,             // the holder's fencing counter, 0 if none
     "readers": [{"token": "TOKEN", "votes": 3, "ttl_ms": 9120,
                  "metadata": "...", "holder_info": {...}}],
                              // "run --shared" holders on a quorum, [] if none
     "writer_waiting": 0,     // instances where an exclusive run waits
     "instances": [{"endpoint": "redis://127.0.0.1:6379",
                    "state": "held|free|error", "token": "TOKEN",
                     "token_base64": "B64", "ttl_ms": 9120, "error": "", "metadata": "...",
                     "fence": 17, "rtt_us": 412}]}]}
  Endpoints never contain passwords. age_ms compares the holder's clock
  (started) with this host's.

Exit codes: 0 when every verdict is held, shared, free or contended; 78 when one
is rejected; else 69 when one is unavailable; 2 for a usage error.

Examples:
  redlock status nightly-report
  redlock status --json nightly-report | jq -r '.resources[0].holder'
`

const releaseHelp = `Usage: redlock release [flags] RESOURCE --token TOKEN
       redlock release [flags] RESOURCE --token-base64 B64
       redlock release [flags] RESOURCE --force

Releases a lock left behind, for example by a job that crashed.

Flags:
  --token TOKEN         release the lock held under TOKEN (the command's
                        REDLOCK_TOKEN, or the holder in "status --json"): it
                        must hold a quorum; the key is deleted on every
                        instance where it still holds TOKEN
  --token-base64 B64    the same for a token given in standard base64, as
                        "status --json" gives it in holder_base64: byte for
                        byte, also a token that is not UTF-8
  --force               delete the key on every instance whatever token it
                        holds, and print per instance the token found and
                        whether it was deleted. Each deletion checks that
                        the key still holds the token found there, so a lock
                        taken meanwhile is left alone (exit 1). The holder,
                        if it still runs, loses its lock. Fencing counters
                        are kept

` + connHelp + `
Exit codes: 0 released (--force: a quorum answered, so no one holds the
lock); 1 not held under TOKEN, or taken again during --force; 69 too few
instances answered; 78 the instances answered with errors that no retry
fixes (WRONGTYPE, NOPERM, ...); 2 usage error. For 69 and 78, stderr names
each failing instance and its error.

Examples:
  redlock release nightly-report --token 3f2a9c1e-7b4d-4e8a-9f00-1c2d3e4f5a6b
  redlock release nightly-report --force
`

const demoHelp = `Usage: redlock demo [flags]

Starts embedded Redis instances in this process (miniredis: no Redis
needed), runs workers that contend for one resource through the real
library (lock, hold 10-50ms, unlock), takes one instance down a third of
the way through and brings it back, empty, at two thirds. Then it prints a
timeline (one row per worker, # where it held the lock) and a summary:
acquisitions per worker, overlaps found in the recorded [acquired, released]
intervals, each cut at the lock's validity deadline (must be 0), and the
handoff latency (release to next acquisition). A holding that outlives its
validity (a pause longer than the TTL) is reported apart: Redlock does not
cover it; fencing tokens do.

Flags:
  --workers N           contending workers, 1..26 (default 5)
  --instances N         embedded instances, 1..15 (default 5)
  --duration D          how long the workers run (default 10s)
  --ttl D               lease of each lock, auto-extended (default 1s)
  D is a duration (1500ms, 2m) or a number of seconds.

Exit codes: 0 when no two workers held the lock at once and at least one
acquired it; 1 otherwise; 2 usage error; 70 an instance could not start.

Example:
  go run github.com/redlock-go/redlock/cmd/redlock@latest demo
`

const versionHelp = `Usage: redlock version

Prints the module version (as "go install ...@VERSION" recorded it, or
"(devel)" for a build from a work tree), the Go version and the platform.
`

const helpHelp = `Usage: redlock help [SUBCOMMAND]

Prints the usage of redlock, or of SUBCOMMAND: run, status, release, demo,
version.
`

// subHelp is the help of each subcommand.
var subHelp = map[string]string{
	"run":     runHelp,
	"status":  statusHelp,
	"release": releaseHelp,
	"demo":    demoHelp,
	"version": versionHelp,
	"help":    helpHelp,
}
