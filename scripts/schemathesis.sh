#!/usr/bin/env bash
# Checks that the HTTP API conforms to its own OpenAPI document: starts `sluice ui` on a throwaway state
# folder with a few recorded runs and a token, then runs schemathesis (PyPI) against /api/openapi.json.
# Usage: scripts/schemathesis.sh [extra schemathesis options]   (needs a built sluice: swift build)
# Environment: SLUICE (the binary, default .build/debug/sluice), PORT (default 18080), MAX_EXAMPLES (default 50).
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE=${SLUICE:-$PWD/.build/debug/sluice}
PORT=${PORT:-18080}
command -v schemathesis >/dev/null 2>&1 || pip install -q schemathesis
work=$(mktemp -d)
ui_pid=
cleanup() { [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
cat > fan.yml <<'YAML'
name: fanout
params:
  n: "5"
stages:
  discover:
    run: [sh, -c, "seq 1 $0 | sed 's/.*/{\"i\": &}/'", "{{params.n}}"]
  work:
    for_each: discover
    run: [sh, -c, "echo item $SLUICE_ITEM; echo '::count:: rows 2'"]
YAML
cat > bad.yml <<'YAML'
name: broken
stages:
  fail: { run: [sh, -c, "echo nope >&2; exit 3"] }
YAML
cat > si.yml <<'YAML'
name: si
session: { name: daily, title: Daily report, members: [si, viajeros], timeout: 1h,
           on_complete: [{ file: { dir: reports } }] }
notify: { on_finish: [{ file: { dir: reports } }] }
stages:
  load: { run: [sh, -c, "echo '::count:: policies 3'"] }
YAML
"$SLUICE" run si.yml --state-dir .sluice --no-tty >/dev/null
"$SLUICE" run fan.yml --state-dir .sluice --no-tty >/dev/null
"$SLUICE" run bad.yml --state-dir .sluice --no-tty >/dev/null || true
token=$("$SLUICE" token create schemathesis --state-dir .sluice 2>/dev/null)
"$SLUICE" ui --http "127.0.0.1:$PORT" --state-dir .sluice 2>ui.log &
ui_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null && break; sleep 0.1; done
schemathesis run "http://127.0.0.1:$PORT/api/openapi.json" -H "Authorization: Bearer $token" \
  --max-examples "${MAX_EXAMPLES:-50}" "$@"
