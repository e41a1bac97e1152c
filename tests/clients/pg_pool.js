// node-postgres Pool({max: 10}) against pglite-proxy: 200 concurrent
// queries, some inside transactions, every result right, the pool's
// connections distinct sessions.
// Usage: node pg_pool.js SOCKET_DIR [PORT]  (NODE_PATH: where pg is)
'use strict';
const { Pool } = require('pg');

const host = process.argv[2];
const port = Number(process.argv[3] || 5432);
const { checker } = require('./tap');
const t = checker('pg pool');
const check = t.check;

async function main() {
  const pool = new Pool({ host, port, user: 'postgres', database: 'postgres', max: 10 });
  await pool.query('DROP TABLE IF EXISTS pooled');
  await pool.query('CREATE TABLE pooled (n int PRIMARY KEY, sq int)');
  const pids = new Set();
  const jobs = [];
  for (let i = 0; i < 200; i++) {
    if (i % 4 === 0) {
      jobs.push((async () => {
        const c = await pool.connect();
        try {
          await c.query('BEGIN');
          const r = await c.query('INSERT INTO pooled VALUES ($1::int, $1::int * $1::int) RETURNING sq, pg_backend_pid() AS pid', [i]);
          pids.add(r.rows[0].pid);
          await c.query('COMMIT');
          return r.rows[0].sq === i * i;
        } finally {
          c.release();
        }
      })());
    } else {
      jobs.push(pool.query('SELECT $1::int * 2 AS d, pg_backend_pid() AS pid, pg_sleep(0.001)', [i])
        .then((r) => { pids.add(r.rows[0].pid); return r.rows[0].d === i * 2; }));
    }
  }
  const results = await Promise.all(jobs);
  check('200 concurrent queries, every result right', 200, results.filter(Boolean).length);
  const r = await pool.query('SELECT count(*)::int AS n, sum(sq)::int AS s FROM pooled');
  let s = 0;
  for (let i = 0; i < 200; i += 4) s += i * i;
  check('the 50 transactions committed', { n: 50, s }, r.rows[0]);
  check('the pool used several sessions', true, pids.size > 1 && pids.size <= 10);
  await pool.end();
}

main().then(() => process.exit(t.failed ? 1 : 0), (e) => {
  console.log('FAIL - pg pool: ' + e.message);
  process.exit(1);
});
