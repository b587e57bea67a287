#!/bin/sh
# Remove everything the example created: output/ (processed filings, graph.sqlite, worker logs).
# Works from any directory:  sh examples/filings/reset.sh
# Run history (.sluice/ here, and the runs in PostgreSQL) is left alone; run.sh's PostgreSQL is
# a throwaway that is gone anyway.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$here"
rm -rf output
echo "reset: removed examples/filings/output/"
