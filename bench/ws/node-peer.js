// node-peer.js - bench/ws's Node.js peer: one `ws` WebSocketServer doing
// what the example bays do behind Mothership: on /echo each message goes back
// to its sender, on /chat each message goes to every /chat client (the sender
// too), in order. Run by bench.py, alone or behind nginx.
//
//   node node-peer.js PORT [deflate]
//
// "deflate": permessage-deflate on, with no context takeover either way
// (what Mothership's ws_compression negotiates) and no threshold, so every
// message is compressed as Mothership's are. Prints "listening" once bound.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const deflate = process.argv[3] === 'deflate';
const wss = new WebSocketServer({
    host: '127.0.0.1',
    port,
    backlog: 4096,
    clientTracking: false,
    maxPayload: 1 << 20,
    perMessageDeflate: deflate ? {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        threshold: 0,
        concurrencyLimit: 10,
    } : false,
});
const chat = new Set();

wss.on('connection', (ws, req) => {
    if (req.url.startsWith('/chat')) {
        chat.add(ws);
        ws.on('message', (data, isBinary) => {
            for (const c of chat) c.send(data, { binary: isBinary });
        });
        ws.on('close', () => chat.delete(ws));
    } else {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    }
    ws.on('error', () => {});
});
wss.on('listening', () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
