#!/usr/bin/env python3
"""Stage `embed` (seed 002: embedding generation).

Embeds every chunk of --chunks with the model in scripts/embedder.py (a hashing
embedder standing in for a neural model; see that file) and writes --output as JSON
lines (replaced atomically):

    {"id": "...#0002", "doc": "...", "title": "...", "index": 2, "text": "...",
     "text_sha": "<sha256 of the text>", "model": "hashing-bow-v1", "vector": [256 floats]}

Checkpoint: a vector in the previous --output with the same chunk text (sha256) and
the same model is reused instead of recomputed, which is what makes re-runs cheap
with a slow neural model. Batches of --batch chunks; one progress line per batch.

Counters: chunks, embedded (computed now), reused (from the previous output).

    python3 scripts/embed.py --chunks work/chunks.jsonl --output work/embeddings.jsonl
"""
import argparse
import hashlib
import json
import os
import sys
import time

import embedder


def main():
    ap = argparse.ArgumentParser(description="Embed chunks.")
    ap.add_argument("--chunks", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    with open(args.chunks, encoding="utf-8") as fh:
        chunks = [json.loads(line) for line in fh if line.strip()]

    previous = {}
    if os.path.exists(args.output):
        with open(args.output, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("model") == embedder.MODEL and len(rec.get("vector", ())) == embedder.DIMS:
                    previous[(rec["id"], rec["text_sha"])] = rec["vector"]

    print(f"embed: {len(chunks)} chunks, model {embedder.MODEL} ({embedder.DIMS} dims), "
          f"{len(previous)} cached vectors", flush=True)
    records, todo = [], []
    for c in chunks:
        text_sha = hashlib.sha256(c["text"].encode("utf-8")).hexdigest()
        rec = {k: c[k] for k in ("id", "doc", "title", "index", "text")}
        rec.update(text_sha=text_sha, model=embedder.MODEL, vector=previous.get((c["id"], text_sha)))
        records.append(rec)
        if rec["vector"] is None:
            todo.append(rec)

    started = time.monotonic()
    for i in range(0, len(todo), args.batch):
        batch = todo[i:i + args.batch]
        for rec, vec in zip(batch, embedder.embed([r["text"] for r in batch])):
            rec["vector"] = [round(x, 6) for x in vec]
        print(f"embed: batch {i // args.batch + 1}: {i + len(batch)}/{len(todo)} chunks embedded", flush=True)

    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, args.output)

    reused = len(records) - len(todo)
    print(f"embed: {len(todo)} embedded, {reused} reused, in {time.monotonic() - started:.2f}s -> {args.output}",
          flush=True)
    print(f"::count:: chunks {len(records)}", flush=True)
    print(f"::count:: embedded {len(todo)}", flush=True)
    print(f"::count:: reused {reused}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
