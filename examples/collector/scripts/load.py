#!/usr/bin/env python3
"""Loader stage (seed 001, phase 2): load every collected database into one warehouse.

Usage: load.py DB_FOLDER WAREHOUSE.sqlite

Each table of each *.sqlite file in DB_FOLDER is copied into the warehouse (replaced
as a whole), with a load_log row per table. Runs on whatever versions are in
DB_FOLDER: freshly rebuilt ones, or the last good ones a rollback restored.
"""
import glob
import os
import sqlite3
import sys
from datetime import datetime, timezone


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    folder, warehouse = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.dirname(warehouse) or ".", exist_ok=True)
    out = sqlite3.connect(warehouse)
    out.execute("CREATE TABLE IF NOT EXISTS load_log (loaded_at TEXT, source TEXT, tbl TEXT, rows INTEGER)")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    sources = sorted(glob.glob(os.path.join(folder, "*.sqlite")))
    if not sources:
        print(f"load: error: no *.sqlite in {folder}", file=sys.stderr)
        return 1
    for path in sources:
        try:
            src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            tables = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        except sqlite3.DatabaseError as err:
            print(f"load: error: {path} is not a database: {err}", file=sys.stderr)
            return 1
        for table in tables:
            columns = [r[1] for r in src.execute(f'PRAGMA table_info("{table}")')]
            rows = src.execute(f'SELECT * FROM "{table}"').fetchall()
            out.execute(f'DROP TABLE IF EXISTS "{table}"')
            out.execute(f'CREATE TABLE "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)} TEXT" for c in columns)})')
            out.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in columns)})', rows)
            out.execute("INSERT INTO load_log VALUES (?, ?, ?, ?)", (now, os.path.basename(path), table, len(rows)))
            print(f"loaded {table}: {len(rows)} rows from {os.path.basename(path)}", flush=True)
        src.close()
    out.commit()
    out.close()
    print(f"load: warehouse {warehouse} updated from {len(sources)} database(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
