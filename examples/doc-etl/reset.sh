#!/bin/sh
# Remove everything the example created: work/ (source repository, checkout,
# extracted texts, chunks, embeddings, vector store).
# Works from any directory:  sh examples/doc-etl/reset.sh
# Run history (.sluice/) is left alone.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$here"
rm -rf work
echo "reset: removed examples/doc-etl/work/"
