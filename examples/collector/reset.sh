#!/bin/sh
# Put examples/collector back as shipped: no databases, no artifacts, no warehouse.
# Works from any directory:  sh examples/collector/reset.sh   (run history in .sluice/ is kept)
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
cd "$here"
rm -rf db artifacts warehouse
echo "reset: db/, artifacts/ and warehouse/ removed"
