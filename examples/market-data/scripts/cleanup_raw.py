#!/usr/bin/env python3
"""Cleanup stage (seed 003): delete raw CSVs once the translator has succeeded.

Deletes only regular *.csv files directly inside --input (no recursion, no
other files) and prints each deleted name. Run it only after translate.py
succeeded -- the pipeline guarantees that with `needs: [translate]`.
"""
import argparse
import os
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="raw folder to clean")
    args = parser.parse_args()

    if not os.path.isdir(args.input):
        print(f"cleanup: {args.input} does not exist, nothing to delete", flush=True)
        return 0
    deleted = 0
    for name in sorted(os.listdir(args.input)):
        path = os.path.join(args.input, name)
        if name.lower().endswith(".csv") and os.path.isfile(path):
            try:
                os.remove(path)
            except OSError as err:
                print(f"cleanup: error: cannot delete {path}: {err}", file=sys.stderr)
                return 1
            print(f"deleted {name}", flush=True)
            deleted += 1
    print(f"cleanup: removed {deleted} raw file(s) from {args.input}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
