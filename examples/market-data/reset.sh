#!/bin/sh
# Restore examples/market-data/data/ to its initial state:
# data/raw holds the sample CSVs again; processed data and analyzer results are removed.
# Works from any directory:  sh examples/market-data/reset.sh
# (Run history in .sluice/ is left alone.)
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$here"
rm -rf data/processed data/analyzer_runs
mkdir -p data/raw
rm -f data/raw/*.csv
cp sample/raw/*.csv data/raw/
echo "reset: data/raw restored from sample/raw ($(ls data/raw | wc -l | tr -d ' ') files); data/processed and data/analyzer_runs removed"
