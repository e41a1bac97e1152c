// node-postgres over TLS (as in node-postgres's own ssl tests) against a
// pglite-proxy with a self-signed certificate: verified against that
// certificate as the CA, the connection is encrypted and answers; without
// the CA, node's verification refuses the self-signed certificate; with
// ssl off the server's plain TCP still works.
// Usage: node pg_ssl.js PORT CERT_FILE  (NODE_PATH: where pg is)
'use strict';
const fs = require('fs');
const { Client } = require('pg');

const port = Number(process.argv[2]);
const ca = fs.readFileSync(process.argv[3], 'utf8');
let failures = 0;
function ok(name) { console.log(`ok   - ${name}`); }
function fail(name, e) { failures++; console.log(`FAIL - ${name}: ${e}`); }

async function run(name, config, check) {
  const c = new Client({ host: 'localhost', port, user: 'postgres', database: 'postgres', ...config });
  try {
    await c.connect();
    await check(c);
    ok(name);
  } catch (e) {
    if (check.expectError && check.expectError.test(String(e && e.message))) ok(name);
    else fail(name, e && e.message);
  } finally {
    await c.end().catch(() => {});
  }
}

async function main() {
  await run('node-postgres TLS verified with the server certificate as CA',
    { ssl: { ca, rejectUnauthorized: true } }, async (c) => {
      const r = await c.query("SELECT 'over tls' AS v, repeat('x', 100000) AS big");
      if (r.rows[0].v !== 'over tls' || r.rows[0].big.length !== 100000) throw new Error('wrong rows');
      if (!c.connection.stream.encrypted) throw new Error('the socket is not TLS');
    });
  const noCa = async () => { throw new Error('connected without verifying'); };
  noCa.expectError = /self[- ]signed|unable to verify|certificate/i;
  await run('node-postgres refuses the self-signed certificate without its CA',
    { ssl: { rejectUnauthorized: true } }, noCa);
  await run('node-postgres without TLS on the same port', { ssl: false }, async (c) => {
    const r = await c.query('SELECT 1 AS one');
    if (r.rows[0].one !== 1) throw new Error('wrong row');
  });
  process.exit(failures ? 1 : 0);
}
main();
