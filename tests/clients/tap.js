// The ok/FAIL lines test_clients.sh counts, for the node-postgres scripts.
'use strict';

function checker(prefix) {
  const c = { failed: 0 };
  c.check = (name, expected, actual) => {
    const e = JSON.stringify(expected), a = JSON.stringify(actual);
    if (e === a) {
      console.log(`ok   - ${prefix}: ${name}`);
    } else {
      c.failed++;
      console.log(`FAIL - ${prefix}: ${name}: expected ${e}, got ${a}`);
    }
  };
  return c;
}

module.exports = { checker };
