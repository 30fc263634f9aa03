// One node-redlock (5.0.0-beta.2, ioredis) operation per run, driven by the
// Go interop tests (../../node_test.go):
//
//   node client.js acquire <resource> <ttl-ms> <port>...
//   node client.js release <resource> <value>  <port>...
//
// Every instance is 127.0.0.1:<port>. Each operation makes a single attempt
// (retryCount 0). The outcome is one JSON line on stdout:
//
//   {"ok":true,"value":"<lock value>"}                  acquired / released
//   {"ok":false,"error":"ExecutionError","against":[…]}  no quorum; against
//                                                       lists each refusing
//                                                       instance's error name
//
// Anything unexpected (bad arguments, a thrown error of another kind) exits
// with status 2 and a message on stderr.
"use strict";

const Redis = require("ioredis");
const { default: Redlock, ExecutionError, Lock } = require("redlock");

// settled waits for the stats of every attempt: node-redlock resolves an
// operation as soon as a quorum voted, while the other instances may still be
// running the script (or about to retry it with EVAL after NOSCRIPT). A
// process that quit then would cut those calls off, so wait for every vote.
function settled(attempts) {
  return Promise.all(attempts);
}

async function main(argv) {
  const [op, resource, arg, ...ports] = argv;
  if (!op || !resource || !arg || ports.length === 0) {
    throw new Error("usage: client.js acquire|release <resource> <ttl-ms|value> <port>...");
  }
  const clients = ports.map(
    (port) =>
      new Redis({
        host: "127.0.0.1",
        port: Number(port),
        lazyConnect: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 5000,
        commandTimeout: 5000,
        retryStrategy: () => null, // a refused connection fails, no reconnect loop
      })
  );
  const redlock = new Redlock(clients, { retryCount: 0 });
  try {
    if (op === "acquire") {
      const lock = await redlock.acquire([resource], Number(arg));
      await settled(lock.attempts);
      return { ok: true, value: lock.value };
    }
    if (op === "release") {
      // A handle for a lock taken by an earlier run: node-redlock's Lock is
      // just (resources, value); release runs its compare-and-delete script.
      const lock = new Lock(redlock, [resource], arg, [], 0);
      const { attempts } = await redlock.release(lock);
      await settled(attempts);
      return { ok: true, value: arg };
    }
    throw new Error(`unknown operation ${JSON.stringify(op)}`);
  } catch (err) {
    if (!(err instanceof ExecutionError)) {
      throw err;
    }
    const against = [];
    for (const stats of await settled(err.attempts)) {
      for (const e of stats.votesAgainst.values()) {
        against.push(e && e.name ? e.name : String(e));
      }
    }
    return { ok: false, error: err.name, against };
  } finally {
    await Promise.allSettled(clients.map((c) => c.quit()));
  }
}

main(process.argv.slice(2)).then(
  (out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
  },
  (err) => {
    process.stderr.write(`client.js: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 2;
  }
);
