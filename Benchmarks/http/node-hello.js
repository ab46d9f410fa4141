// node-hello.js: Node's basic cluster example, the counterpart of our `hello`.
// The primary forks WORKERS workers (default: one per core) and replaces any that dies;
// each answers every HTTP request with "Hello World\n" (keep-alive unless the client
// sends `Connection: close`). Built-ins only.
//
//   NODE_CLUSTER_SCHED_POLICY=rr|none PORT=8000 WORKERS=2 node node-hello.js
//
// NODE_CLUSTER_SCHED_POLICY is read by Node itself when `cluster` is loaded: `rr` (the
// default on Linux) makes the primary accept and hand each connection to a worker in
// turn; `none` lets every worker accept on the primary's shared socket.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const port = Number(process.env.PORT || 8000);
const workers = Number(process.env.WORKERS || (os.availableParallelism ? os.availableParallelism() : os.cpus().length));

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running (policy ${cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none'})`);
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.log(`Worker ${worker.process.pid} died (${signal || code})`);
    cluster.fork();
  });
} else {
  http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('Hello World\n');
  }).listen(port);
  console.log(`Worker ${process.pid} started`);
}
