// node-redlock (5.0.0-beta.2 over ioredis 5.11.1) cell of the Go benchmark
// harness (../internal/harness/impl_node.go). The harness runs it once per
// cell, from a copy of this folder with its dependencies installed by npm ci:
//
//   node bench.js version        prints {"node":…,"redlock":…,"ioredis":…}
//   node bench.js run <config>   runs one cell; <config> is JSON:
//     {"addrs":["127.0.0.1:6379",…], "contended":false, "c":1,
//      "warmup_ms":500, "duration_ms":3000, "hold_ms":1, "ttl_ms":10000,
//      "max_ops":10000000, "prefix":"redlock-bench:7"}
//
// run connects one ioredis client (default options) to every address and
// makes one Redlock over them (uncontended: retryCount 0; contended:
// retryCount -1, i.e. unlimited, with node-redlock's default retryDelay 200 ms
// and retryJitter 100 ms). It warms up for warmup_ms with c callers on
// private resources, then prints {"ready":true} and waits for a "go" line on
// stdin, so that the harness samples CPU times around the measured part
// only. It then measures for duration_ms and prints one JSON line:
//
//   {"ops":…,"elapsed_ns":…,"p50_ns":…,"p99_ns":…,"max_wait_ns":…,
//    "hold_mean_ns":…,"errors":…,"first_error":"…"}
//
// and exits when stdin closes. Uncontended (c callers, each on its own
// resource <prefix>:<i>): an op is one redlock.acquire([resource], ttl_ms)
// plus lock.release(), its latency the whole cycle; every caller runs at
// least one cycle and stops after the first cycle that ends past the
// deadline. Contended (c waiters on <prefix>:shared): a holder keeps the
// lock hold_ms, releases it, then waits until another waiter has acquired
// before it contends again; an op is a handoff (an acquisition after another
// holder's release), its latency from the previous holder starting release
// to the acquire returning; hold_mean_ns is how long a holder kept the lock
// on average (setTimeout overshoots hold_ms); max_wait_ns is the longest acquire call,
// including calls still waiting at the deadline. p50/p99 are nearest-rank
// quantiles. Anything unexpected exits with status 2 and a message on
// stderr.
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const Redis = require("ioredis");
const { default: Redlock } = require("redlock");

// errSink keeps the error count and the first error, like the harness's.
class errSink {
  constructor() {
    this.n = 0;
    this.first = "";
  }
  add(what, err) {
    if (this.n++ === 0) {
      const name = err && err.name ? err.name : "Error";
      const msg = err && err.message ? err.message : String(err);
      this.first = `${what}: ${name}: ${msg}`;
    }
  }
}

const now = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

// quantile is the nearest-rank q-quantile of sorted (0 when empty).
function quantile(sorted, q) {
  if (sorted.length === 0) {
    return 0;
  }
  const rank = Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

// cycles runs one caller's acquire+release loop on resource until the first
// cycle that ends at or after deadline (at least one, at most maxOps),
// pushing each successful cycle's latency (ns) to lat when it is non-null.
async function cycles(redlock, resource, ttlMs, deadline, maxOps, lat, errs) {
  for (let iter = 0; iter < maxOps; iter++) {
    const t0 = now();
    let ok = false;
    let lock = null;
    try {
      lock = await redlock.acquire([resource], ttlMs);
    } catch (err) {
      errs.add("lock", err);
    }
    if (lock !== null) {
      try {
        await lock.release();
        ok = true;
      } catch (err) {
        errs.add("unlock", err);
      }
    }
    const t1 = now();
    if (ok && lat !== null) {
      lat.push(Number(t1 - t0));
    }
    if (t1 >= deadline) {
      return;
    }
  }
}

// uncontended runs cfg.c callers, each on its own resource, for cfg.duration_ms.
async function uncontended(cfg, redlock, errs) {
  const lat = [];
  const start = now();
  const deadline = start + BigInt(Math.round(cfg.duration_ms * 1e6));
  const loops = [];
  for (let i = 0; i < cfg.c; i++) {
    loops.push(cycles(redlock, `${cfg.prefix}:${i}`, cfg.ttl_ms, deadline, cfg.max_ops, lat, errs));
  }
  await Promise.all(loops);
  return { lat, elapsed: Number(now() - start), maxWait: 0 };
}

// contended runs cfg.c waiters on one resource for cfg.duration_ms. The
// waiters still inside acquire at the deadline are left running: the process
// exits once the harness has read the result.
async function contended(cfg, redlock, errs) {
  const resource = `${cfg.prefix}:shared`;
  const base = now() - 1n;
  const since = () => Number(now() - base); // > 0 from the start
  const lat = [];
  const longest = new Array(cfg.c).fill(0);
  const inAcquire = new Array(cfg.c).fill(0); // since() at the pending acquire's start; 0: none
  let lastRelease = 0; // since() when a holder started release; 0: none yet
  let held = 0; // total time holders kept the lock before starting release
  let holds = 0;
  let acquired = deferred(); // resolved at the next acquisition
  let ended = false;
  const end = deferred();
  const start = since();
  const timer = setTimeout(() => {
    ended = true;
    end.resolve();
  }, cfg.duration_ms);

  const waiter = async (i) => {
    for (let n = 0; n < cfg.max_ops && !ended; n++) {
      const t0 = since();
      inAcquire[i] = t0;
      let lock;
      try {
        lock = await redlock.acquire([resource], cfg.ttl_ms);
      } catch (err) {
        inAcquire[i] = 0;
        longest[i] = Math.max(longest[i], since() - t0);
        if (!ended) {
          errs.add("lock", err);
          continue;
        }
        return;
      }
      inAcquire[i] = 0;
      const t1 = since();
      longest[i] = Math.max(longest[i], t1 - t0);
      if (ended) {
        lock.release().catch(() => {});
        return;
      }
      if (lastRelease > 0) {
        lat.push(t1 - lastRelease);
      }
      const prev = acquired;
      acquired = deferred();
      prev.resolve();
      const next = acquired.promise;
      if (cfg.hold_ms > 0) {
        await sleep(cfg.hold_ms);
      }
      lastRelease = since();
      held += lastRelease - t1;
      holds++;
      try {
        await lock.release();
      } catch (err) {
        errs.add("unlock", err);
      }
      await Promise.race([next, end.promise]);
    }
  };
  for (let i = 0; i < cfg.c; i++) {
    waiter(i).catch((err) => errs.add("waiter", err));
  }
  await end.promise;
  clearTimeout(timer);
  const stop = since();
  let maxWait = 0;
  for (let i = 0; i < cfg.c; i++) {
    if (inAcquire[i] > 0) {
      longest[i] = Math.max(longest[i], stop - inAcquire[i]);
    }
    maxWait = Math.max(maxWait, longest[i]);
  }
  return { lat, elapsed: stop - start, maxWait, holdMean: holds > 0 ? Math.round(held / holds) : 0 };
}

// stdinLines returns a function that resolves to the next line of stdin, or
// null once stdin has closed.
function stdinLines() {
  const rl = readline.createInterface({ input: process.stdin });
  const queue = [];
  let waiting = null;
  let closed = false;
  rl.on("line", (line) => {
    if (waiting !== null) {
      const w = waiting;
      waiting = null;
      w(line);
    } else {
      queue.push(line);
    }
  });
  rl.on("close", () => {
    closed = true;
    if (waiting !== null) {
      const w = waiting;
      waiting = null;
      w(null);
    }
  });
  return () => {
    if (queue.length > 0) {
      return Promise.resolve(queue.shift());
    }
    if (closed) {
      return Promise.resolve(null);
    }
    return new Promise((resolve) => {
      waiting = resolve;
    });
  };
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function version(pkg) {
  const file = path.join(__dirname, "node_modules", pkg, "package.json");
  return String(JSON.parse(fs.readFileSync(file, "utf8")).version).replace(/^v/, "");
}

function checkConfig(cfg) {
  const positive = ["c", "ttl_ms", "max_ops"];
  const nonNegative = ["warmup_ms", "duration_ms", "hold_ms"];
  if (!Array.isArray(cfg.addrs) || cfg.addrs.length === 0) {
    throw new Error("config: addrs must be a non-empty array");
  }
  for (const k of positive) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) {
      throw new Error(`config: ${k} must be a positive integer, got ${JSON.stringify(cfg[k])}`);
    }
  }
  for (const k of nonNegative) {
    if (typeof cfg[k] !== "number" || !(cfg[k] >= 0)) {
      throw new Error(`config: ${k} must be a number ≥ 0, got ${JSON.stringify(cfg[k])}`);
    }
  }
  if (typeof cfg.prefix !== "string" || cfg.prefix === "") {
    throw new Error("config: prefix must be a non-empty string");
  }
}

async function run(cfg) {
  checkConfig(cfg);
  const nextLine = stdinLines();
  const clients = cfg.addrs.map((addr) => {
    const i = addr.lastIndexOf(":");
    return new Redis({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)), lazyConnect: true });
  });
  await Promise.all(clients.map((c) => c.connect()));
  const redlock = new Redlock(clients, { retryCount: cfg.contended ? -1 : 0 });

  if (cfg.warmup_ms > 0) {
    const deadline = now() + BigInt(Math.round(cfg.warmup_ms * 1e6));
    const warm = [];
    for (let i = 0; i < cfg.c; i++) {
      warm.push(cycles(redlock, `${cfg.prefix}:warm:${i}`, cfg.ttl_ms, deadline, cfg.max_ops, null, new errSink()));
    }
    await Promise.all(warm);
  }
  print({ ready: true });
  const line = await nextLine();
  if (line === null) {
    process.exit(0); // the harness gave up before the measured part
  }
  if (line.trim() !== "go") {
    throw new Error(`expected "go" on stdin, got ${JSON.stringify(line)}`);
  }

  const errs = new errSink();
  const m = cfg.contended ? await contended(cfg, redlock, errs) : await uncontended(cfg, redlock, errs);
  const sorted = Float64Array.from(m.lat).sort();
  print({
    ops: sorted.length,
    elapsed_ns: m.elapsed,
    p50_ns: quantile(sorted, 0.5),
    p99_ns: quantile(sorted, 0.99),
    max_wait_ns: m.maxWait,
    hold_mean_ns: m.holdMean || 0,
    errors: errs.n,
    first_error: errs.first,
  });

  // Exit once the harness has sampled the CPU times and closed stdin; give
  // the connections a moment to close cleanly (contended waiters may still
  // be retrying).
  while ((await nextLine()) !== null) {}
  await Promise.race([Promise.allSettled(clients.map((c) => c.quit())), sleep(1000)]);
  process.exit(0);
}

async function main(argv) {
  const [op, arg] = argv;
  if (op === "version" && argv.length === 1) {
    print({ node: process.version, redlock: version("redlock"), ioredis: version("ioredis") });
    return;
  }
  if (op === "run" && argv.length === 2) {
    await run(JSON.parse(arg));
    return;
  }
  throw new Error("usage: bench.js version | bench.js run <config JSON>");
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`bench.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});
