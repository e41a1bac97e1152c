// PGlite (the pinned npm runtime, in Node.js) for bench/bench.py.
//
//   node pglite-node.mjs exec  DURABILITY DATADIR FILE...
//       one PGlite, each file with db.exec() (one Query message); prints
//       "file<TAB>ms" per file, "#open<TAB>ms" (PGlite.create to the answer
//       of the first query) and "#rss<TAB>kB" (VmHWM)
//   node pglite-node.mjs serve DURABILITY DATADIR SOCKETPATH
//       one PGlite served by @electric-sql/pglite-socket on a Unix socket;
//       prints "#ready<TAB>ms" once it answers, and "#rss<TAB>kB" on SIGTERM
//
// DURABILITY "off": PGlite's default start parameters (with -F: fsync off)
// and synchronous_commit=off, in memory (DATADIR "-"); "durable": the
// defaults without -F, on DATADIR (a host directory through NodeFS).
import { readFileSync } from 'node:fs';

const [mode, durability, dataDir, ...rest] = process.argv.slice(2);
const { PGlite } = await import('@electric-sql/pglite');

function startParams() {
  const p = [...PGlite.defaultStartParams];
  if (durability === 'off') return [...p, '-c', 'synchronous_commit=off'];
  return p.filter((x) => x !== '-F');
}

function rssKb() {
  return readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1];
}

const t0 = process.hrtime.bigint();
const db = await PGlite.create({
  ...(durability === 'off' || dataDir === '-' ? {} : { dataDir }),
  startParams: startParams(),
});
await db.query('SELECT 1');
const openMs = Number(process.hrtime.bigint() - t0) / 1e6;

if (mode === 'exec') {
  for (const f of rest) {
    const sql = readFileSync(f, 'utf8');
    const s = process.hrtime.bigint();
    try {
      await db.exec(sql);
    } catch (e) {
      console.error(`${f}: ${e.severity ?? ''} ${e.code ?? ''} ${e.message}`);
      process.exit(1);
    }
    const ms = Number(process.hrtime.bigint() - s) / 1e6;
    console.log(`${f.split('/').pop()}\t${ms.toFixed(1)}`);
  }
  console.log(`#open\t${openMs.toFixed(1)}`);
  await db.close();
  console.log(`#rss\t${rssKb()}`);
} else if (mode === 'serve') {
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const server = new PGLiteSocketServer({ db, path: rest[0] });
  await server.start();
  console.log(`#ready\t${openMs.toFixed(1)}`);
  process.on('SIGTERM', async () => {
    await server.stop();
    await db.close();
    console.log(`#rss\t${rssKb()}`);
    process.exit(0);
  });
} else {
  console.error('usage: pglite-node.mjs exec|serve DURABILITY DATADIR ...');
  process.exit(2);
}
