// node-cpu.js: the CPU route of the `express` example in Node, built-ins only.
// GET /?n=N runs a CPU-bound loop of N iterations (default 10000) and answers
// "Result: <sum>\n". WORKERS workers (default: one per core), PORT (default 3000),
// NODE_CLUSTER_SCHED_POLICY as for node-hello.js.
//
//   WORKERS=1 PORT=3000 node node-cpu.js
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const port = Number(process.env.PORT || 3000);
const workers = Number(process.env.WORKERS || (os.availableParallelism ? os.availableParallelism() : os.cpus().length));

// The loop: the same arithmetic as the Swift route (wrapping 64-bit in Swift; here a
// double, which stays exact below 2^53 for the n this benchmark uses).
function work(n) {
  let result = 0;
  for (let i = 0; i < n; i++) result += i * i % 7;
  return result;
}

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running`);
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`Worker ${worker.process.pid} died (${signal || code})`);
    cluster.fork();
  });
} else {
  http.createServer((req, res) => {
    const q = req.url.indexOf('?');
    const n = q < 0 ? 10000 : Number(new URLSearchParams(req.url.slice(q + 1)).get('n') || 10000);
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(`Result: ${work(n)}\n`);
  }).listen(port);
  console.log(`Worker ${process.pid} started`);
}
