#!/usr/bin/env python3
"""Stage `summary` (seed 002: finalisation and summary report).

Prints what the run produced -- documents discovered and stored, chunks, vectors,
the model -- and runs a sample query against the vector store: the query is
embedded with scripts/embedder.py and compared with every stored vector by cosine
similarity (a dot product, since all vectors have length 1); the --top best chunks
are printed. Also writes the same information to --output (JSON).

Per-stage timings, attempts and counters are in the run's report
(`sluice show latest`, or .sluice/runs/<run-id>/report.json).

    python3 scripts/summary.py --db work/vectors.sqlite --manifest work/documents.jsonl \
        --query "how do retries work" --top 3 --output work/summary.json
"""
import argparse
import array
import heapq
import json
import os
import sqlite3
import sys
import textwrap

import embedder


def from_blob(blob):
    arr = array.array("f")
    arr.frombytes(blob)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr


def main():
    ap = argparse.ArgumentParser(description="Summarise the vector store and run a sample query.")
    ap.add_argument("--db", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    with open(args.manifest, encoding="utf-8") as fh:
        discovered = [json.loads(line)["key"] for line in fh if line.strip()]
    db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta"))
        per_doc = dict(db.execute("SELECT doc_key, COUNT(*) FROM chunks GROUP BY doc_key"))
        rows = db.execute("SELECT chunk_id, doc_key, title, text, model, vector FROM chunks").fetchall()
    finally:
        db.close()

    missing = [k for k in discovered if k not in per_doc]
    print(f"summary: documents discovered: {len(discovered)}", flush=True)
    print(f"summary: documents stored:     {len(per_doc)}", flush=True)
    for key in missing:
        print(f"summary:   not in the store: {key} (extraction failed; see the extract stage)", flush=True)
    print(f"summary: chunks / vectors:     {len(rows)} (model {meta.get('model')}, {meta.get('dims')} dims)",
          flush=True)

    if meta.get("model") != embedder.MODEL:
        print(f"summary: the store was built with model {meta.get('model')!r} but scripts/embedder.py is "
              f"{embedder.MODEL!r}; run the pipeline again to re-embed", file=sys.stderr, flush=True)
        return 1
    qvec = embedder.embed([args.query])[0]
    scored = ((sum(a * b for a, b in zip(qvec, from_blob(vec))), cid, doc, title, text)
              for cid, doc, title, text, _model, vec in rows)
    best = heapq.nlargest(args.top, scored)

    print(f'summary: query "{args.query}" -> top {len(best)} of {len(rows)} chunks by cosine similarity:',
          flush=True)
    results = []
    for rank, (score, cid, doc, title, text) in enumerate(best, 1):
        print(f"  {rank}. {score:.3f}  {cid}  ({title})", flush=True)
        snippet = text if len(text) <= 300 else text[:297] + "..."
        for line in textwrap.wrap(snippet, width=96):
            print(f"       {line}", flush=True)
        results.append({"rank": rank, "score": round(score, 4), "chunk_id": cid, "doc": doc, "title": title,
                        "text": text})

    report = {
        "documents_discovered": len(discovered), "documents_stored": len(per_doc),
        "documents_missing": missing, "chunks": len(rows), "vectors": len(rows),
        "model": meta.get("model"), "dims": int(meta.get("dims", 0)),
        "chunks_per_document": per_doc, "query": args.query, "results": results,
        "run_id": os.environ.get("SLUICE_RUN_ID"),
    }
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, args.output)
    print(f"summary: written to {args.output}", flush=True)
    print(f"::count:: documents {len(per_doc)}", flush=True)
    print(f"::count:: vectors {len(rows)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
