#!/usr/bin/env python3
"""Stage `store` (seed 002: vector storage; Qdrant in the seed, SQLite here).

Loads --embeddings into the SQLite vector store --db, in one transaction:

    chunks(chunk_id TEXT PRIMARY KEY, doc_key TEXT, title TEXT, chunk_index INTEGER,
           text TEXT, text_sha TEXT, model TEXT, dims INTEGER, vector BLOB)
    index chunks_doc_key ON chunks(doc_key)
    meta(key TEXT PRIMARY KEY, value TEXT)          -- model, dims, chunk count

The vector is a BLOB of little-endian float32 values. Rows are upserted by chunk id
(INSERT ... ON CONFLICT DO UPDATE), and rows whose chunk id is no longer in the
embeddings (a document that was removed or became shorter) are deleted, so the store
always mirrors the last run and running this twice changes nothing.

Counters: vectors (rows in the store), inserted, updated, unchanged, deleted.

    python3 scripts/store.py --embeddings work/embeddings.jsonl --db work/vectors.sqlite
"""
import argparse
import array
import json
import os
import sqlite3
import sys

SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id    TEXT PRIMARY KEY,
    doc_key     TEXT NOT NULL,
    title       TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    text        TEXT NOT NULL,
    text_sha    TEXT NOT NULL,
    model       TEXT NOT NULL,
    dims        INTEGER NOT NULL,
    vector      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc_key ON chunks(doc_key);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def to_blob(vector):
    arr = array.array("f", vector)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def main():
    ap = argparse.ArgumentParser(description="Upsert embeddings into the SQLite vector store.")
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--db", required=True)
    args = ap.parse_args()

    with open(args.embeddings, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    models = {r["model"] for r in records}
    dims = {len(r["vector"]) for r in records}
    if len(models) > 1 or len(dims) > 1:
        print(f"store: embeddings mix models {sorted(models)} / dimensions {sorted(dims)}",
              file=sys.stderr, flush=True)
        return 2

    os.makedirs(os.path.dirname(args.db) or ".", exist_ok=True)
    db = sqlite3.connect(args.db)
    try:
        db.executescript(SCHEMA)
        existing = {row[0]: (row[1], row[2]) for row in
                    db.execute("SELECT chunk_id, text_sha, model FROM chunks")}
        inserted = updated = unchanged = 0
        with db:   # one transaction: all or nothing
            for r in records:
                old = existing.get(r["id"])
                if old == (r["text_sha"], r["model"]):
                    unchanged += 1
                    continue
                if old is None:
                    inserted += 1
                else:
                    updated += 1
                db.execute(
                    """INSERT INTO chunks (chunk_id, doc_key, title, chunk_index, text, text_sha, model, dims, vector)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(chunk_id) DO UPDATE SET
                         doc_key = excluded.doc_key, title = excluded.title, chunk_index = excluded.chunk_index,
                         text = excluded.text, text_sha = excluded.text_sha, model = excluded.model,
                         dims = excluded.dims, vector = excluded.vector""",
                    (r["id"], r["doc"], r["title"], r["index"], r["text"], r["text_sha"], r["model"],
                     len(r["vector"]), to_blob(r["vector"])))
            current = {r["id"] for r in records}
            stale = [cid for cid in existing if cid not in current]
            db.executemany("DELETE FROM chunks WHERE chunk_id = ?", [(cid,) for cid in stale])
            total = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            docs = db.execute("SELECT COUNT(DISTINCT doc_key) FROM chunks").fetchone()[0]
            meta = {"model": next(iter(models), ""), "dims": str(next(iter(dims), 0)), "chunks": str(total)}
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", meta.items())
    finally:
        db.close()

    print(f"store: {args.db}: {total} vectors from {docs} documents "
          f"({inserted} inserted, {updated} updated, {unchanged} unchanged, {len(stale)} deleted)", flush=True)
    print(f"::count:: vectors {total}", flush=True)
    print(f"::count:: inserted {inserted}", flush=True)
    print(f"::count:: updated {updated}", flush=True)
    print(f"::count:: unchanged {unchanged}", flush=True)
    print(f"::count:: deleted {len(stale)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
