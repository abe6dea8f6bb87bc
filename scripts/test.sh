#!/usr/bin/env bash
# The test command (README): set up, lint, build, run every test suite (TypeScript and Python),
# and end with one plain "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
fail=0
npm run -s lint || { echo "lint: FAILED"; fail=1; }
npm run -s build || { echo "build: FAILED"; fail=1; }
rm -f .ci-results.json .py-results.txt
CI=${CI:-} npx vitest run --reporter=default --reporter=json --outputFile.json=.ci-results.json || fail=1
if ls clients/python/test_*.py >/dev/null 2>&1; then
  (cd clients/python && /usr/bin/python3 -m unittest discover -v -p 'test_*.py' 2>&1) | tee .py-results.txt
  [[ ${PIPESTATUS[0]} -eq 0 ]] || fail=1
fi
node scripts/summary.mjs .ci-results.json .py-results.txt || fail=1
exit $fail
