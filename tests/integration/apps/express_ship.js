// A real Express app with a `ws` WebSocket server on the same HTTP server:
// the Node ship of test_node_ships.py (Express and ws come from npm, pinned
// by tests/integration/node/package.json, installed by scripts/node-deps.sh).
//
//     node express_ship.js --modules DIR (--port N | --unix PATH)
//
// DIR is the node_modules directory that holds express and ws.
//
// GET /hello        "hello from express\n"
// GET /stream?fifo=PATH&n=N&ctype=T
//     200 with Content-Type T, no Content-Length (Node frames it chunked),
//     then N pieces, each its own res.write(): piece 0 at once, piece i
//     (i > 0) once a byte has been read from the FIFO at PATH, so the test
//     decides when each piece is written. The FIFO is opened read-write and
//     non-blocking: opening never waits for the test.
// HEAD /stream?...  the same head, no body, no FIFO.
// WebSocket /ws     echoes each message, text as text, binary as binary.
//
// Logs "got SIGHUP" (and keeps serving) on SIGHUP, the reload signal a user
// sends; on SIGTERM it drops its WebSockets without a close frame (so a
// 1001 a client gets comes from the proxy), closes its server, logs
// "closed on SIGTERM" and exits 0.
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
if (!args.modules || !(args.port || args.unix)) {
  console.error('usage: express_ship.js --modules DIR (--port N | --unix PATH)');
  process.exit(2);
}
const express = require(path.resolve(args.modules, 'express'));
const { WebSocketServer } = require(path.resolve(args.modules, 'ws'));

function piece(i, ctype) {
  if (ctype === 'text/event-stream') return `data: event ${i}\n\n`;
  if (ctype.includes('json')) {
    return `{"piece": ${i}, "text": "the quick brown fox jumps over the lazy dog"}\n`;
  }
  return `piece ${i}: the quick brown fox jumps over the lazy dog\n`;
}

const app = express();

app.get('/hello', (req, res) => {
  res.type('text/plain').send('hello from express\n');
});

app.get('/stream', (req, res) => {
  const n = parseInt(req.query.n || '5', 10);
  const ctype = req.query.ctype || 'text/plain';
  res.status(200);
  res.setHeader('Content-Type', ctype);
  res.setHeader('Cache-Control', 'no-cache');
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  let written = 0;
  const next = () => {
    res.write(piece(written, ctype));
    written += 1;
    if (written === n) res.end();
  };
  next();
  if (written === n) return;
  const fd = fs.openSync(req.query.fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const gate = new net.Socket({ fd, readable: true, writable: false });
  gate.on('data', (buf) => {
    for (let k = 0; k < buf.length && written < n; k++) next();
    if (written === n) gate.destroy();
  });
  gate.on('error', () => {});
  res.on('close', () => gate.destroy());
});

const server = http.createServer(app);
const wss = new WebSocketServer({ server, path: '/ws' });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

process.on('SIGHUP', () => console.log('got SIGHUP'));
process.on('SIGTERM', () => {
  console.log('got SIGTERM');
  for (const ws of wss.clients) ws.terminate();
  server.close(() => {
    console.log('closed on SIGTERM');
    process.exit(0);
  });
  server.closeIdleConnections();
});

const where = args.unix ? args.unix : Number(args.port);
server.listen(where, args.unix ? undefined : '127.0.0.1', () => {
  console.log(`express listening on ${args.unix ? 'unix:' + args.unix : '127.0.0.1:' + args.port}`);
});
