#!/usr/bin/env python3
"""Collector stage (seed 001): rebuild one small SQLite database from a CSV source.

Usage: build_db.py SOURCE.csv TARGET.sqlite [FAIL]

The database is built in a temporary file and moved over TARGET only when it is
complete, so a crash never leaves half a database. The same source always gives a
byte-identical file, so Sluice sees "unchanged" and keeps no new version.

FAIL (or $COLLECTOR_FAIL) names databases whose rebuild should fail, e.g. "stock"
or "sales,stock": the script then writes a broken TARGET and exits 1, to show the
rollback (the last good version is restored) and the loader going on regardless.
"""
import csv
import os
import sqlite3
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = sys.argv[1], sys.argv[2]
    fail = (sys.argv[3] if len(sys.argv) > 3 else "") or os.environ.get("COLLECTOR_FAIL", "")
    name = os.path.splitext(os.path.basename(target))[0]
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    if name in [f.strip() for f in fail.split(",") if f.strip()]:
        with open(target, "w") as broken:
            broken.write("half-written garbage from a failed rebuild\n")
        print(f"build {name}: error: simulated failure (fail={fail}); {target} is broken", file=sys.stderr)
        return 1
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        print(f"build {name}: error: {source} is empty", file=sys.stderr)
        return 1
    header, data = rows[0], rows[1:]
    for line, row in enumerate(data, start=2):
        if len(row) != len(header):
            print(f"build {name}: error: {source}:{line}: {len(row)} fields, expected {len(header)}", file=sys.stderr)
            return 1
    temp = target + ".building"
    if os.path.exists(temp):
        os.remove(temp)
    db = sqlite3.connect(temp)
    columns = ", ".join(f'"{c}" TEXT' for c in header)
    db.execute(f'CREATE TABLE "{name}" ({columns})')
    db.executemany(f'INSERT INTO "{name}" VALUES ({", ".join("?" for _ in header)})', data)
    db.commit()
    db.close()
    os.replace(temp, target)
    print(f"built {target}: {len(data)} rows from {source}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
