'use strict';
// node-channel.js — Node's cluster IPC, the baseline our Swift channel is
// compared with. Uses cluster.fork() and process.send()/worker.send() with
// the default 'json' serialization, i.e. exactly what a Node app gets.
//
//   node node-channel.js roundtrip N   N timed echoes of {i: k} (after 2000 warm-up)
//   node node-channel.js oneway N      worker streams N {i: k}, primary counts
//
// Prints exactly one JSON line. Exits non-zero if the run takes more than
// 60 s; the worker is killed by pid on every exit path.

const cluster = require('node:cluster');

const WARMUP = 2000;
const TIMEOUT_MS = 60_000;

// Nearest-rank percentile, the same definition pingpong.c uses.
function percentile(sorted, p) {
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

function usage() {
  console.error('usage: node node-channel.js roundtrip N | oneway N');
  process.exit(64);
}

if (cluster.isPrimary) {
  const mode = process.argv[2];
  const n = Number(process.argv[3]);
  if ((mode !== 'roundtrip' && mode !== 'oneway') || !Number.isInteger(n) || n < 1) usage();

  const worker = cluster.fork({ BENCH_MODE: mode, BENCH_N: String(n) });
  const pid = worker.process.pid;

  // Kill by pid, not worker.kill(): that first asks politely over the very
  // channel we may have wedged. If we are SIGKILLed ourselves, the 'exit'
  // hook cannot run, but the worker sees the channel close and exits.
  let reaped = false;
  let finished = false;
  const killWorker = () => {
    if (reaped) return; // never signal a pid that may already be reused
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  };
  process.on('exit', killWorker);

  const timer = setTimeout(() => {
    console.error(`node-channel: ${mode} timed out after ${TIMEOUT_MS / 1000} s`);
    process.exit(2);
  }, TIMEOUT_MS);

  worker.on('exit', (code, signal) => {
    reaped = true;
    if (!finished) {
      console.error(`node-channel: worker exited early (code ${code}, signal ${signal})`);
      process.exit(1);
    }
  });

  function fail(why) {
    console.error(`node-channel: ${why}`);
    process.exit(1);
  }

  function finish(line) {
    finished = true;
    clearTimeout(timer);
    console.log(JSON.stringify(line));
    // Wait for the worker to be reaped so the next benchmark run starts on
    // a quiet machine, then leave.
    worker.once('exit', () => process.exit(0));
    killWorker();
  }

  if (mode === 'roundtrip') {
    const samples = new Float64Array(n);
    let k = 0;
    let t0 = 0n;
    const sendNext = () => {
      t0 = process.hrtime.bigint();
      worker.send({ i: k });
    };
    worker.on('message', (msg) => {
      const dt = process.hrtime.bigint() - t0;
      if (msg.ready) { sendNext(); return; }
      if (msg.i !== k) fail(`echo out of order: got ${msg.i}, expected ${k}`);
      if (k >= WARMUP) samples[k - WARMUP] = Number(dt) / 1000; // ns -> µs
      k++;
      if (k < WARMUP + n) { sendNext(); return; }
      samples.sort();
      finish({
        bench: 'roundtrip', impl: 'node',
        p50_us: Number(percentile(samples, 50).toFixed(1)),
        p99_us: Number(percentile(samples, 99).toFixed(1)),
        n,
      });
    });
  } else {
    // The window runs from the first message in to the N-th message in, so
    // fork/boot time is excluded; with N in the 10^5..10^6 range the one
    // message of latency that leaves out is noise.
    let count = 0;
    let t0 = 0n;
    worker.on('message', (msg) => {
      if (msg.ready) { worker.send({ go: true }); return; }
      if (count === 0) t0 = process.hrtime.bigint();
      if (msg.i !== count) fail(`stream out of order: got ${msg.i}, expected ${count}`);
      count++;
      if (count === n) {
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        finish({ bench: 'oneway', impl: 'node', msgs_per_s: Math.round(n / secs), n });
      }
    });
  }
} else {
  const mode = process.env.BENCH_MODE;
  const n = Number(process.env.BENCH_N);

  // Safety net in case the primary is wedged rather than dead (if it dies,
  // the channel closes and cluster makes us exit on 'disconnect').
  setTimeout(() => process.exit(3), TIMEOUT_MS + 5_000).unref();

  if (mode === 'roundtrip') {
    process.on('message', (msg) => process.send(msg));
  } else {
    // process.send() never drops a message; it returns false once more than
    // ~128 KiB sits in the user-space write queue, meaning "the reader is
    // behind, stop". process has no 'drain' event, so when that happens we
    // send one more message *with* a callback and stop: write callbacks run
    // in write order, so when it fires the whole backlog has reached the
    // kernel and we resume. The queue therefore never grows past the limit
    // by more than one message, and the common path (send returned true)
    // pays for no callback at all.
    let k = 0;
    const pump = () => {
      while (k < n) {
        if (!process.send({ i: k++ }) && k < n) {
          process.send({ i: k++ }, pump);
          return;
        }
      }
    };
    process.on('message', (msg) => { if (msg.go) pump(); });
  }
  // Tell the primary our 'message' handler is in place, so its first send
  // cannot race our setup.
  process.send({ ready: true });
}
