#!/usr/bin/env bash
# The whole seed 004 demo on the PostgreSQL store with two `sluice worker` processes:
#
#   ./run.sh                                   # with `sluice` on PATH
#   SLUICE=../../.build/debug/sluice ./run.sh  # with a build of this repository
#   KILL_ONE=1 ./run.sh                        # also kill -9 worker 2 mid-run: its tasks come back after --lease
#
# It starts a throwaway PostgreSQL (../../scripts/test-postgres.sh) unless SLUICE_STATE is already set,
# records a detached run, starts two workers, prints progress while they work, then the run, who ran
# what and the graph; then runs the pipeline a second time to show that nothing unchanged is processed
# again. The throwaway server is stopped on exit; output/ stays (./reset.sh removes it).
set -eo pipefail
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)

SLUICE=${SLUICE:-sluice}
case "$SLUICE" in */*) SLUICE=$(cd "$(dirname "$SLUICE")" && pwd)/$(basename "$SLUICE") ;; esac  # before cd
command -v "$SLUICE" >/dev/null || { echo "run.sh: '$SLUICE' not found: put sluice on PATH or set SLUICE=../../.build/debug/sluice" >&2; exit 2; }
cd "$here"
LEASE=${LEASE:-10s}          # a killed worker's tasks are taken back this long after its last heartbeat
W1= W2=

stop_workers() {
    for pid in $W1 $W2; do kill -TERM "$pid" 2>/dev/null || true; done
}

# (a)+(b) the state store
if [ -z "${SLUICE_STATE:-}" ]; then
    echo "== starting a throwaway PostgreSQL"
    # shellcheck source=../../scripts/test-postgres.sh
    source ../../scripts/test-postgres.sh
    trap 'stop_workers; stop_test_postgres' EXIT
    psql=psql; [ -x "$SLUICE_TEST_POSTGRES_BIN/psql" ] && psql="$SLUICE_TEST_POSTGRES_BIN/psql"
    "$psql" -q "$SLUICE_TEST_POSTGRES" -c 'CREATE DATABASE filings'
    export SLUICE_STATE="${SLUICE_TEST_POSTGRES%/*}/filings"
else
    trap 'stop_workers' EXIT
fi
echo "SLUICE_STATE=$SLUICE_STATE"
mkdir -p output/logs

# One run: record it (c), start two workers (d), show progress (e), then the results (f).
run_once() {
    local title=$1 id t0 rc1 rc2 w1 w2
    echo
    echo "== $title"
    t0=$(date +%s)
    id=$("$SLUICE" run pipeline.yml --detach)
    echo "run id: $id"
    "$SLUICE" worker --concurrency 3 --exit-when-idle --lease "$LEASE" -v >"output/logs/$id.worker-1.log" 2>&1 & W1=$!
    "$SLUICE" worker --concurrency 3 --exit-when-idle --lease "$LEASE" -v >"output/logs/$id.worker-2.log" 2>&1 & W2=$!
    echo "workers: worker-1 pid $W1, worker-2 pid $W2 (logs in output/logs/)"

    local killed=
    while kill -0 "$W1" 2>/dev/null || kill -0 "$W2" 2>/dev/null; do
        sleep 3
        "$SLUICE" show "$id" --json | python3 scripts/report.py progress "$(( $(date +%s) - t0 ))"
        if [ -n "${KILL_ONE:-}" ] && [ -z "$killed" ] && [ "$title" = "first run" ] && [ $(( $(date +%s) - t0 )) -ge 6 ]; then
            echo "  kill -9 worker-2 (pid $W2): its running tasks come back after the lease ($LEASE)"
            kill -KILL "$W2"; killed=137
            wait "$W2" 2>/dev/null || true
        fi
    done
    rc1=0; wait "$W1" || rc1=$?
    rc2=0; if [ -n "$killed" ]; then rc2=$killed; else wait "$W2" || rc2=$?; fi
    w1=$W1 w2=$W2 W1= W2=
    echo "workers exited ($rc1, $rc2) after $(( $(date +%s) - t0 ))s"
    echo
    "$SLUICE" show "$id"
    echo
    echo "counters (sluice show $id --json):"
    "$SLUICE" show "$id" --json | python3 scripts/report.py counters
    echo "attempts per worker (sluice show $id --json --all-tasks: each attempt's host and command pid):"
    "$SLUICE" show "$id" --json --all-tasks | python3 scripts/report.py workers ".sluice/runs/$id" "worker-1=$w1" "worker-2=$w2"
    echo "graph (output/graph.sqlite):"
    python3 scripts/report.py graph output/graph.sqlite
    read -r LAST_OUTCOME LAST_PROCESSED LAST_UNCHANGED < <("$SLUICE" show "$id" --json | python3 scripts/report.py outcome)
}

run_once "first run"
first=$LAST_OUTCOME
run_once "second run (idempotent: nothing changed, so nothing is processed again)"
second=$LAST_OUTCOME
echo
echo "outcomes: first run $first, second run $second; the second run processed $LAST_PROCESSED filings ($LAST_UNCHANGED unchanged)"
for outcome in "$first" "$second"; do
    case $outcome in success|partial_success) ;; *) echo "run.sh: unexpected outcome $outcome" >&2; exit 1 ;; esac
done
[ "$LAST_PROCESSED" = 0 ] || { echo "run.sh: the second run processed filings again" >&2; exit 1; }
