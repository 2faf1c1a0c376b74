#!/usr/bin/env bash
# kiln's whole test run, as the README gives it and CI runs it: system packages the tests need,
# the npm install (which compiles kiln), then every test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests talk to; as root they are installed, otherwise their absence is named.
bash test/system-packages.sh git skopeo umoci busybox-static uidmap docker-registry passt slirp4netns tmux tini

npm ci --no-audit --no-fund
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" || status=$?
# One closing line in the plain form any CI reader understands.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$report" || true
exit "$status"
