#!/usr/bin/env python3
"""Stage `filings`: one task per company; prints one item per filing of that company.

The seed asked EDGAR for a company's recent 10-K and 10-Q filings; here they are the files
data/filings/<cik>/<accession>.xml. Each filing becomes one `::item::` keyed by its accession
number, so the `process` stage's expected count grows while companies are still being listed.
The filing is not opened here (a broken file is the `process` stage's business).

    python3 scripts/discover_filings.py CIK TICKER --data data [--max N] [--delay SECONDS]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cik")
    ap.add_argument("ticker")
    ap.add_argument("--data", default="data")
    ap.add_argument("--max", type=int, default=0, help="the newest N filings (0: all)")
    ap.add_argument("--delay", type=float, default=0.0, help="simulated time of the EDGAR query")
    args = ap.parse_args()

    print(f"pid {os.getpid()} started by pid {os.getppid()}", file=sys.stderr)   # run.sh: which worker ran it
    folder = os.path.join(args.data, "filings", args.cik)
    if not os.path.isdir(folder):
        print(f"discover_filings: no filings folder for CIK {args.cik}: {folder}", file=sys.stderr)
        return 66
    time.sleep(args.delay)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".xml"))   # accession order = oldest first
    if args.max > 0:
        names = names[-args.max:]
    for name in names:
        accession = name[: -len(".xml")]
        item = {"key": accession, "accession": accession, "cik": args.cik, "ticker": args.ticker,
                "path": os.path.join(folder, name)}
        print("::item::", json.dumps(item), flush=True)
    print(f"::count:: filings {len(names)}")
    print(f"{args.ticker} ({args.cik}): {len(names)} filings", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
