#!/usr/bin/env python3
"""Stage `entities`: one item per company (the seed's "Entity Discovery").

The seed fetched S&P 500 companies with recent XBRL filings from SEC EDGAR; here the list is
data/entities.json. Each company is printed as one `::item::` line, keyed by its CIK, while the
script goes on: Sluice records the items every 100 ms and starts their `filings` tasks at once.

    python3 scripts/discover_entities.py data/entities.json [--max N] [--delay SECONDS]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("entities")
    ap.add_argument("--max", type=int, default=0, help="at most N companies (0: all)")
    ap.add_argument("--delay", type=float, default=0.0, help="simulated time per page of the listing")
    args = ap.parse_args()

    print(f"pid {os.getpid()} started by pid {os.getppid()}", file=sys.stderr)   # run.sh: which worker ran it
    with open(args.entities, encoding="utf-8") as f:
        entities = json.load(f)
    if args.max > 0:
        entities = entities[: args.max]

    for n, e in enumerate(entities):
        if n % 4 == 0 and args.delay:
            time.sleep(args.delay)                      # "the next page of the EDGAR listing"
        item = {"key": e["cik"], "cik": e["cik"], "ticker": e["ticker"], "name": e["name"], "sector": e["sector"]}
        print("::item::", json.dumps(item), flush=True)
    print(f"::count:: entities {len(entities)}")
    print(f"discovered {len(entities)} entities", file=sys.stderr)


if __name__ == "__main__":
    main()
