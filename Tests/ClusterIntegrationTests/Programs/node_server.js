// Node's http server as a `cluster run` worker: listen({fd: 3}) on the socket it inherits
// by systemd socket activation; on SIGTERM it stops accepting, finishes what it has, exits.
// Routes: / (who answers), /slow?ms=N, /crash (exits 3).
const http = require('node:http');

if (Number(process.env.LISTEN_PID) !== process.pid || process.env.LISTEN_FDS !== '1') {
  console.error(`node_server: expected one socket for pid ${process.pid}, got LISTEN_PID=${process.env.LISTEN_PID}`);
  process.exit(1);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/crash') process.exit(3);
  const answer = () => res.end(`node ${process.pid} ${process.env.LISTEN_FDNAMES} port ${process.env.PORT}\n`);
  if (url.pathname === '/slow') setTimeout(answer, Number(url.searchParams.get('ms') || 100));
  else answer();
});
server.keepAliveTimeout = 5000;
server.listen({ fd: 3 }, () => console.log(`node ${process.pid} serving`));
process.on('SIGTERM', () => {
  server.close(() => {
    console.log(`node ${process.pid} drained`);
    process.exit(0);
  });
  server.closeIdleConnections();
});
