'use strict';
// node-coldstart.js — how long Node's cluster takes to go from "fork" to
// "serving", and what the primary costs in memory while it supervises.
// These are the baselines for swift-cluster's own start-up and footprint.
//
//   node node-coldstart.js coldstart R   R runs of: fork 2 workers, time until
//                                        both emit 'listening', kill, reap
//   node node-coldstart.js rss           fork 2 serving workers, settle 1 s,
//                                        report the primary's own VmRSS
//
// Workers run http.createServer().listen(PORT); PORT comes from the
// environment (default 0: the primary binds one ephemeral port and all
// workers share it, as cluster does for any port). Prints exactly one JSON
// line; exits non-zero if anything takes longer than 60 s. Workers are
// killed by pid on every exit path.

const cluster = require('node:cluster');
const http = require('node:http');
const fs = require('node:fs');

const WORKERS = 2;
const TIMEOUT_MS = 60_000;
const PORT = Number(process.env.PORT || 0);

if (!cluster.isPrimary) {
  // The cheapest real server: what we time is Node booting, loading http
  // and completing the cluster listen handshake, not request handling.
  http.createServer((req, res) => res.end('ok\n')).listen(PORT);
  // Safety net if the primary is wedged rather than dead (if it dies, the
  // channel closes and cluster makes us exit on 'disconnect').
  setTimeout(() => process.exit(3), TIMEOUT_MS + 5_000).unref();
  return;
}

// Nearest-rank percentile, the same definition as the other baselines.
function percentile(sorted, p) {
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

function usage() {
  console.error('usage: node node-coldstart.js coldstart R | rss');
  process.exit(64);
}

// pid -> worker, for every worker that has not been reaped yet. Only these
// pids are ever signalled, so we never hit a pid the kernel has reused.
const live = new Map();

function killAll() {
  for (const pid of live.keys()) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killAll);

const timer = setTimeout(() => {
  console.error(`node-coldstart: timed out after ${TIMEOUT_MS / 1000} s`);
  process.exit(2);
}, TIMEOUT_MS);

// Fork WORKERS workers; resolve once all of them have emitted 'listening'.
// A worker that dies before that fails the whole run: a number measured
// around a crash would be meaningless.
function forkAndListen() {
  return new Promise((resolve) => {
    let listening = 0;
    for (let i = 0; i < WORKERS; i++) {
      const w = cluster.fork({ PORT: String(PORT) });
      const pid = w.process.pid;
      live.set(pid, w);
      w.once('listening', () => { if (++listening === WORKERS) resolve(); });
      w.once('exit', (code, signal) => {
        live.delete(pid);
        if (w.benchKilled) return;
        console.error(`node-coldstart: worker ${pid} exited unexpectedly (code ${code}, signal ${signal})`);
        process.exit(1);
      });
    }
  });
}

// SIGKILL every live worker and wait until each has been reaped, so the
// next run starts with no stragglers competing for the two CPUs.
function killAndReap() {
  const exits = [];
  for (const [pid, w] of live) {
    w.benchKilled = true;
    exits.push(new Promise((resolve) => w.once('exit', resolve)));
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
  return Promise.all(exits);
}

async function coldstart(runs) {
  const samples = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    await forkAndListen();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6); // ns -> ms
    await killAndReap();
  }
  samples.sort((a, b) => a - b);
  return {
    bench: 'coldstart', impl: 'node',
    p50_ms: Number(percentile(samples, 50).toFixed(1)),
    p99_ms: Number(percentile(samples, 99).toFixed(1)),
    runs,
  };
}

async function rss() {
  await forkAndListen();
  // Let start-up garbage settle so we read a steady state, not a peak.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS in /proc/self/status');
  const line = { bench: 'rss', impl: 'node', primary_rss_kb: Number(m[1]) };
  await killAndReap();
  return line;
}

async function main() {
  const mode = process.argv[2];
  let line;
  if (mode === 'coldstart') {
    const runs = Number(process.argv[3]);
    if (!Number.isInteger(runs) || runs < 1) usage();
    line = await coldstart(runs);
  } else if (mode === 'rss') {
    if (process.argv.length !== 3) usage();
    line = await rss();
  } else {
    usage();
  }
  clearTimeout(timer);
  console.log(JSON.stringify(line));
  process.exit(0);
}

main().catch((err) => {
  console.error(`node-coldstart: ${err && err.stack || err}`);
  process.exit(1);
});
