#!/usr/bin/env python3
"""Merger stage (seed 003): combine per-instrument analyzer results.

Reads every *.json directly inside --input (written by analyze.py) and writes
--output/summary.json and --output/summary.csv. Prints a one-line summary.

Exit codes: 0 ok, 1 no results to merge or an unreadable result file.
"""
import argparse
import csv
import json
import os
import sys

CSV_FIELDS = ["symbol", "rows", "first_date", "last_date", "last_close", "rolling_high",
              "breakouts", "last_is_breakout", "mean_return", "volatility", "total_return"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of per-instrument *.json results")
    parser.add_argument("--output", required=True, help="folder for summary.json / summary.csv")
    args = parser.parse_args()

    names = []
    if os.path.isdir(args.input):
        names = sorted(f for f in os.listdir(args.input)
                       if f.endswith(".json") and os.path.isfile(os.path.join(args.input, f)))
    if not names:
        print(f"merge: error: no analyzer results (*.json) in {args.input}", file=sys.stderr)
        return 1

    results = []
    for name in names:
        path = os.path.join(args.input, name)
        try:
            with open(path) as fh:
                data = json.load(fh)
            missing = [k for k in CSV_FIELDS if k not in data]
            if missing:
                raise ValueError(f"missing key(s) {', '.join(missing)}")
        except (OSError, ValueError) as err:
            print(f"merge: error: {path}: {err}", file=sys.stderr)
            return 1
        results.append(data)

    results.sort(key=lambda r: r["symbol"])
    summary = {
        "instruments": len(results),
        "total_breakouts": sum(r["breakouts"] for r in results),
        "breaking_out_now": [r["symbol"] for r in results if r["last_is_breakout"]],
        "results": results,
    }
    os.makedirs(args.output, exist_ok=True)
    json_path = os.path.join(args.output, "summary.json")
    with open(json_path + ".tmp", "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    os.replace(json_path + ".tmp", json_path)
    csv_path = os.path.join(args.output, "summary.csv")
    with open(csv_path + ".tmp", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in results:
            writer.writerow({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()})
    os.replace(csv_path + ".tmp", csv_path)

    per = ", ".join(f"{r['symbol']}={r['breakouts']}" for r in results)
    print(f"merged {len(results)} instruments into {args.output} "
          f"(breakouts: {per}; total {summary['total_breakouts']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
