#!/usr/bin/env python3
"""Analyzer stage (seed 003): breakout analysis of processed market CSVs.

For every <SYMBOL>.csv in --input (as written by translate.py) writes
<SYMBOL>.json to --output with:
  rows, first/last date, last close,
  rolling_high: highest high over the last LOOKBACK rows,
  breakouts: closes above the highest high of the previous LOOKBACK rows
             (count and dates),
  mean_return, volatility (sample std. dev. of daily returns), total_return.

Exit codes: 0 ok, 1 no input files or unreadable input.
"""
import argparse
import csv
import json
import math
import os
import sys

LOOKBACK = 20
REQUIRED = ["date", "high", "close", "return"]


class InputError(Exception):
    pass


def load(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}:1: missing column(s) {', '.join(missing)} (was it written by translate.py?)")
        rows = []
        for rec in reader:
            try:
                rows.append({
                    "date": rec["date"],
                    "high": float(rec["high"]),
                    "close": float(rec["close"]),
                    "return": float(rec["return"]) if rec["return"] else None,
                })
            except (TypeError, ValueError):
                raise InputError(f"{path}:{reader.line_num}: non-numeric value")
    if not rows:
        raise InputError(f"{path}: no data rows")
    return rows


def analyze(symbol, rows):
    breakout_dates = []
    for i in range(LOOKBACK, len(rows)):
        prev_high = max(r["high"] for r in rows[i - LOOKBACK:i])
        if rows[i]["close"] > prev_high:
            breakout_dates.append(rows[i]["date"])
    returns = [r["return"] for r in rows if r["return"] is not None]
    mean = sum(returns) / len(returns) if returns else 0.0
    vol = math.sqrt(sum((x - mean) ** 2 for x in returns) / (len(returns) - 1)) if len(returns) > 1 else 0.0
    return {
        "symbol": symbol,
        "rows": len(rows),
        "first_date": rows[0]["date"],
        "last_date": rows[-1]["date"],
        "last_close": rows[-1]["close"],
        "lookback": LOOKBACK,
        "rolling_high": max(r["high"] for r in rows[-LOOKBACK:]),
        "breakouts": len(breakout_dates),
        "breakout_dates": breakout_dates,
        "last_is_breakout": bool(breakout_dates) and breakout_dates[-1] == rows[-1]["date"],
        "mean_return": round(mean, 6),
        "volatility": round(vol, 6),
        "total_return": round(rows[-1]["close"] / rows[0]["close"] - 1, 6),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of processed *.csv files")
    parser.add_argument("--output", required=True, help="folder for per-instrument *.json results")
    args = parser.parse_args()

    files = []
    if os.path.isdir(args.input):
        files = sorted(f for f in os.listdir(args.input)
                       if f.lower().endswith(".csv") and os.path.isfile(os.path.join(args.input, f)))
    if not files:
        print(f"analyze: error: no processed *.csv files in {args.input}", file=sys.stderr)
        return 1

    os.makedirs(args.output, exist_ok=True)
    for name in files:
        symbol = os.path.splitext(name)[0].upper()
        try:
            result = analyze(symbol, load(os.path.join(args.input, name)))
        except InputError as err:
            print(f"analyze: error: {err}", file=sys.stderr)
            return 1
        out = os.path.join(args.output, symbol + ".json")
        with open(out + ".tmp", "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
        os.replace(out + ".tmp", out)
        print(f"analyzed {symbol} (breakouts: {result['breakouts']}, "
              f"mean return {result['mean_return']:+.4%}, volatility {result['volatility']:.4%})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
