// Prints the one line CI reads: "N passed, N failed" over vitest's JSON report and Python's unittest log.
import { existsSync, readFileSync } from 'node:fs';

const [vitestJson, pyLog] = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
if (vitestJson && existsSync(vitestJson)) {
  const r = JSON.parse(readFileSync(vitestJson, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  // a test file that failed without a failed test (it did not load, a hook threw) counts once
  for (const f of r.testResults ?? [])
    if (f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')) failed += 1;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
} else {
  failed += 1;
}
if (pyLog && existsSync(pyLog)) {
  const log = readFileSync(pyLog, 'utf8');
  passed += (log.match(/ \.\.\. ok$/gm) ?? []).length;
  failed += (log.match(/ \.\.\. (FAIL|ERROR)$/gm) ?? []).length;
  skipped += (log.match(/ \.\.\. skipped/gm) ?? []).length;
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
