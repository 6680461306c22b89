// node_server.js — the node servers of test_runtimes.c, written as such
// servers are: they write a whole response without ever waiting for
// 'drain' (write() returning false only says that node buffered it).
//
//   node node_server.js net|http FILE
//
// net: on the first bytes of a connection (a request line), writes FILE
// in 64 KiB chunks, then end(). http: to any request, 200 with a
// Content-Length, FILE in 64 KiB chunks, then end(). Status lines on fd 3
// (one write each): "port P", then per response "done bytes=B full=F",
// F being the writes that returned false (node's own buffer was above its
// high-water mark). Nothing on stdout.
'use strict';
const fs = require('fs');
const net = require('net');
const http = require('http');

const [mode, file] = process.argv.slice(2);
const data = fs.readFileSync(file);
const CHUNK = 64 * 1024;

function status(line) {
  fs.writeSync(3, line + '\n');
}

// Every chunk, at once; returns how many write() calls returned false.
function pushAll(w) {
  let full = 0;
  for (let off = 0; off < data.length; off += CHUNK)
    if (!w.write(data.subarray(off, off + CHUNK)))
      full++;
  return full;
}

let server;
if (mode === 'net') {
  server = net.createServer((sock) => {
    sock.once('data', () => {
      const full = pushAll(sock);
      sock.end();
      status(`done bytes=${data.length} full=${full}`);
    });
  });
} else if (mode === 'http') {
  server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream',
      'Content-Length': data.length });
    const full = pushAll(res);
    res.end();
    status(`done bytes=${data.length} full=${full}`);
  });
} else {
  process.stderr.write('usage: node node_server.js net|http FILE\n');
  process.exit(2);
}
server.listen(0, '127.0.0.1', () => status(`port ${server.address().port}`));
