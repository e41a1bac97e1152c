// node-postgres: a client that ends before its startup packet went out
// (client.connect(); client.end(), as in node-postgres's own
// quick-disconnect test) sends Terminate first. PostgreSQL closes such a
// connection without a reply, so neither connect() nor end() may fail.
// Usage: node pg_quick_disconnect.js SOCKET_DIR [PORT] [RUNS]  (NODE_PATH: where pg is)
'use strict';
const { Client } = require('pg');

const host = process.argv[2];
const port = Number(process.argv[3] || 5432);
const runs = Number(process.argv[4] || 20);

async function once() {
  const c = new Client({ host, port, user: 'postgres', database: 'postgres' });
  let error = null;
  c.on('error', (e) => { error = error || e; });
  // connect() may never settle once end() came first: do not wait for it
  c.connect().catch((e) => { error = error || e; });
  await c.end().catch((e) => { error = error || e; });
  await new Promise((resolve) => setTimeout(resolve, 50)); // late errors
  return error;
}

async function main() {
  const errors = [];
  for (let i = 0; i < runs; i++) {
    const e = await once();
    if (e) errors.push(e.message);
  }
  if (errors.length === 0)
    console.log(`ok   - pg: connect(); end() ${runs} times, no error`);
  else
    console.log(`FAIL - pg: connect(); end(): ${errors.length} of ${runs} failed: ${errors[0]}`);
  // the server still serves a normal client afterwards
  const c = new Client({ host, port, user: 'postgres', database: 'postgres' });
  await c.connect();
  const r = await c.query('SELECT 1 AS one');
  console.log(r.rows[0].one === 1 ? 'ok   - pg: served after the quick disconnects'
                                   : 'FAIL - pg: served after the quick disconnects');
  await c.end();
}

main().catch((e) => { console.log('FAIL - pg quick disconnect: ' + e.message); process.exit(1); });
