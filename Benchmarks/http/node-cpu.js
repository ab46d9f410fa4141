// node-cpu.js: the CPU route of our `express` example in Node, built-ins only.
// GET /?n=N runs the same CPU-bound loop as express's `work(n)` and answers
// "Result: <value>\n" (the same value, so http.sh can check both did the same work).
// WORKERS workers (default: one per core), PORT (default 3000), WORK (default n,
// 10 000 000), NODE_CLUSTER_SCHED_POLICY as for node-hello.js (default rr).
//
//   WORKERS=1 PORT=3000 node node-cpu.js
//   curl 'localhost:3000/?n=1000'
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const port = Number(process.env.PORT || 3000);
const workers = Number(process.env.WORKERS || (os.availableParallelism ? os.availableParallelism() : os.cpus().length));
const defaultWork = Number(process.env.WORK || 10000000);
const maximumWork = 5000000000;

// express's loop, in Swift:
//   var value: UInt64 = 0
//   for step in 0..<UInt64(n) { value = (value ^ step) &* 0x100_0000_01B3 }
// JavaScript has no wrapping 64-bit integers (BigInt is ~100x slower), so the value is
// kept as two 32-bit halves. The FNV prime is 2^40 + 0x1B3, so
//   value * prime mod 2^64 = value * 0x1B3 + (value << 40)   (mod 2^64)
// where value << 40 only adds lo << 8 to the high half.
function work(n) {
  let hi = 0, lo = 0;                   // value
  let stepHi = 0, stepLo = 0;           // step
  for (let i = 0; i < n; i++) {
    const xl = (lo ^ stepLo) >>> 0;
    const xh = (hi ^ stepHi) >>> 0;
    const low = xl * 0x1b3;             // < 2^41: exact in a double
    lo = low >>> 0;
    hi = (Math.imul(xh, 0x1b3) + Math.floor(low / 4294967296) + (xl << 8)) >>> 0;
    if (++stepLo === 4294967296) { stepLo = 0; stepHi++; }
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

if (require.main === module && process.argv[2] === 'check') {
  // node node-cpu.js check: compare with BigInt arithmetic.
  for (const n of [0, 1, 2, 3, 1000, 100000]) {
    let v = 0n;
    for (let s = 0n; s < BigInt(n); s++) v = BigInt.asUintN(64, (v ^ s) * 0x100000001b3n);
    console.log(n, work(n) === v ? 'ok' : `MISMATCH ${work(n)} != ${v}`);
  }
} else if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`Worker ${worker.process.pid} died (${signal || code})`);
    cluster.fork();
  });
} else {
  http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    const text = q < 0 ? null : new URLSearchParams(req.url.slice(q + 1)).get('n');
    const n = text === null ? defaultWork : Number(text);
    if (!Number.isInteger(n) || n < 0 || n > maximumWork) {
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`n must be a whole number from 0 to ${maximumWork}\n`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(`Result: ${work(n)}\n`);
  }).listen(port);
  console.log(`Worker ${process.pid} started`);
}
