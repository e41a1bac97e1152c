// Runs PGlite's benchmark SQL files in one in-memory PGlite (Node.js), one
// db.exec() per file, and prints "file<TAB>ms" lines, then "#rss<TAB>kB"
// (VmHWM of this process). Usage: node sql-suite-pglite.mjs PGLITE_DIST FILE...
// Settings: PGlite's default start parameters (they include -F: fsync off)
// plus synchronous_commit=off, so all engines share the same durability.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [dist, ...files] = process.argv.slice(2);
const { PGlite } = await import(pathToFileURL(dist + '/index.js').href);
const startParams = [...PGlite.defaultStartParams, '-c', 'synchronous_commit=off'];
const db = await PGlite.create({ startParams });
const s = await db.query("SELECT current_setting('fsync') f, current_setting('synchronous_commit') s");
console.log(`#settings\tfsync=${s.rows[0].f} synchronous_commit=${s.rows[0].s}`);
for (const f of files) {
  const sql = readFileSync(f, 'utf8');
  const t0 = process.hrtime.bigint();
  try {
    await db.exec(sql);
  } catch (e) {
    console.error(`${f}: ${e.severity ?? ''} ${e.code ?? ''} ${e.message}`);
    process.exit(1);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`${f.split('/').pop()}\t${ms.toFixed(1)}`);
}
await db.close();
const hwm = readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s+(\d+)/)[1];
console.log(`#rss\t${hwm}`);
