// node-postgres (npm pg) against pglite-proxy: parameters, a transaction
// committed and one rolled back, an error caught and the client reused,
// NULL and bytea round trips.
// Usage: node pg_test.js SOCKET_DIR [PORT]  (NODE_PATH: where pg is)
'use strict';
const { Client } = require('pg');

const host = process.argv[2];
const port = Number(process.argv[3] || 5432);
const { checker } = require('./tap');
const t = checker('pg');
const check = t.check;

async function main() {
  const c = new Client({ host, port, user: 'postgres', database: 'postgres',
                         application_name: 'pg_test' });
  await c.connect();
  let r = await c.query('SELECT $1::int + $2 AS n, $3::text || \'x\' AS s', [40, 2, 'ab']);
  check('parameters', { n: 42, s: 'abx' }, r.rows[0]);
  r = await c.query("SELECT current_setting('application_name') AS a");
  check('startup parameter', 'pg_test', r.rows[0].a);
  // a named prepared statement, twice
  const q = { name: 'twice', text: 'SELECT $1::int * 2 AS d', values: [21] };
  r = await c.query(q);
  r = await c.query({ ...q, values: [5] });
  check('prepared statement reused', 10, r.rows[0].d);

  await c.query('DROP TABLE IF EXISTS js_t');
  await c.query('CREATE TABLE js_t (id int PRIMARY KEY, s text, b bytea)');
  await c.query('BEGIN');
  await c.query('INSERT INTO js_t VALUES ($1, $2, $3)', [1, 'one', null]);
  await c.query('COMMIT');
  await c.query('BEGIN');
  await c.query('INSERT INTO js_t VALUES ($1, $2, $3)', [2, 'two', null]);
  await c.query('ROLLBACK');
  r = await c.query('SELECT id FROM js_t ORDER BY id');
  check('transaction: commit kept, rollback undone', [1], r.rows.map((x) => x.id));

  try {
    await c.query('INSERT INTO js_t VALUES (1, $1, NULL)', ['dup']);
    check('duplicate key rejects', '23505', 'no error');
  } catch (e) {
    check('duplicate key rejects', '23505', e.code);
  }
  try {
    await c.query('BEGIN');
    await c.query('SELECT 1/0');
    check('division by zero rejects', '22012', 'no error');
  } catch (e) {
    check('division by zero rejects', '22012', e.code);
    await c.query('ROLLBACK');
  }
  r = await c.query('SELECT count(*)::int AS n FROM js_t');
  check('client reused after errors', 1, r.rows[0].n);

  r = await c.query('SELECT $1::text AS t, $1::text IS NULL AS isnull', [null]);
  check('NULL round trip', { t: null, isnull: true }, r.rows[0]);
  const blob = Buffer.alloc(1024);
  for (let i = 0; i < blob.length; i++) blob[i] = i % 256;
  await c.query('UPDATE js_t SET b = $1 WHERE id = 1', [blob]);
  r = await c.query('SELECT b, length(b) AS n FROM js_t WHERE id = 1');
  check('bytea round trip', [true, 1024], [Buffer.compare(blob, r.rows[0].b) === 0, r.rows[0].n]);

  await c.query('DROP TABLE js_t');
  await c.end();
}

main().then(
  () => process.exit(t.failed ? 1 : 0),
  (e) => {
    console.log('FAIL - pg: unexpected error: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  });
