// Node's http server under `cluster run`: listen({fd: 3}); on SIGTERM it stops accepting,
// closes idle keep-alive connections and exits when the last request is answered.
// BOOT_DELAY_MS: wait before listening.
const http = require('node:http');

const server = http.createServer((req, res) => {
  const body = `node ${process.pid}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
setTimeout(() => server.listen({ fd: 3 }), Number(process.env.BOOT_DELAY_MS || 0));
