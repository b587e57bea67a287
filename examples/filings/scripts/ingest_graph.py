#!/usr/bin/env python3
"""Stage `ingest`: runs once, after every filing ended. Loads the processed rows into the graph.

The graph is a SQLite file (the seed used Kuzu) with two tables, nodes(id, label, props) and
edges(src, dst, type). Every row is upserted: a node or edge that is already there with the same
properties is counted `unchanged` and not written, so ingesting the same files again changes
nothing. Each ingestion is recorded in the table `ingestions` (one row per run: the proof that the
completion trigger fired exactly once per run).

    python3 scripts/ingest_graph.py --processed output/processed --db output/graph.sqlite
"""
import argparse
import glob
import json
import os
import sqlite3
import sys
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (id TEXT PRIMARY KEY, label TEXT NOT NULL, props TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS nodes_label ON nodes(label);
CREATE TABLE IF NOT EXISTS edges (src TEXT NOT NULL, dst TEXT NOT NULL, type TEXT NOT NULL,
                                  PRIMARY KEY (src, dst, type));
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, type);
CREATE TABLE IF NOT EXISTS ingestions (run_id TEXT NOT NULL, at TEXT NOT NULL, filings INTEGER NOT NULL,
                                       nodes_inserted INTEGER NOT NULL, nodes_updated INTEGER NOT NULL,
                                       edges_inserted INTEGER NOT NULL);
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--processed", default="output/processed")
    ap.add_argument("--db", default="output/graph.sqlite")
    args = ap.parse_args()

    print(f"pid {os.getpid()} started by pid {os.getppid()}", file=sys.stderr)   # run.sh: which worker ran it
    files = sorted(glob.glob(os.path.join(args.processed, "*.json")))
    os.makedirs(os.path.dirname(args.db) or ".", exist_ok=True)
    db = sqlite3.connect(args.db, timeout=30)
    db.executescript(SCHEMA)
    n = {"inserted": 0, "updated": 0, "unchanged": 0, "e_inserted": 0, "e_unchanged": 0}
    with db:                                              # one transaction: all or nothing
        for path in files:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            for node in doc["nodes"]:
                props = {k: v for k, v in node.items() if k not in ("id", "label")}
                text = json.dumps(props, sort_keys=True)
                row = db.execute("SELECT label, props FROM nodes WHERE id = ?", (node["id"],)).fetchone()
                if row == (node["label"], text):
                    n["unchanged"] += 1
                    continue
                n["inserted" if row is None else "updated"] += 1
                db.execute("INSERT INTO nodes (id, label, props) VALUES (?, ?, ?) "
                           "ON CONFLICT(id) DO UPDATE SET label = excluded.label, props = excluded.props",
                           (node["id"], node["label"], text))
            for e in doc["edges"]:
                cur = db.execute("INSERT OR IGNORE INTO edges (src, dst, type) VALUES (?, ?, ?)", (e["src"], e["dst"], e["type"]))
                n["e_inserted" if cur.rowcount == 1 else "e_unchanged"] += 1
        db.execute("INSERT INTO ingestions VALUES (?, ?, ?, ?, ?, ?)",
                   (os.environ.get("SLUICE_RUN_ID", "-"), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    len(files), n["inserted"], n["updated"], n["e_inserted"]))

    print(f"ingested {len(files)} processed filings into {args.db}")
    print(f"  nodes: {n['inserted']} inserted, {n['updated']} updated, {n['unchanged']} unchanged")
    print(f"  edges: {n['e_inserted']} inserted, {n['e_unchanged']} unchanged")
    for label, count in db.execute("SELECT label, count(*) FROM nodes GROUP BY label ORDER BY label"):
        print(f"  {label:<8} {count}")
    print(f"  edges    {db.execute('SELECT count(*) FROM edges').fetchone()[0]}")
    # A graph query: revenue of each company's latest 10-K (Company-FILED->Filing-REPORTS->Fact-OF_CONCEPT->Concept).
    rows = db.execute("""
        SELECT json_extract(c.props, '$.ticker'), json_extract(f.props, '$.fiscal_year'), json_extract(x.props, '$.value')
        FROM edges filed JOIN nodes c ON c.id = filed.src JOIN nodes f ON f.id = filed.dst
        JOIN edges rep ON rep.src = f.id AND rep.type = 'REPORTS' JOIN nodes x ON x.id = rep.dst
        JOIN edges oc ON oc.src = x.id AND oc.type = 'OF_CONCEPT' AND oc.dst = 'concept:us-gaap:Revenues'
        WHERE filed.type = 'FILED' AND json_extract(f.props, '$.form') = '10-K'
        ORDER BY json_extract(f.props, '$.fiscal_year') DESC, json_extract(x.props, '$.value') DESC LIMIT 3""").fetchall()
    if rows:
        print("  largest revenue in the latest 10-K filings: " +
              ", ".join(f"{t} FY{y} ${v / 1e6:,.0f}M" for t, y, v in rows))
    for key, value in [("filings", len(files)), ("nodes_inserted", n["inserted"]), ("nodes_updated", n["updated"]),
                       ("nodes_unchanged", n["unchanged"]), ("edges_inserted", n["e_inserted"]),
                       ("edges_unchanged", n["e_unchanged"])]:
        print(f"::count:: {key} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
