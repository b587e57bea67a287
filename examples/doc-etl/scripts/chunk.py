#!/usr/bin/env python3
"""Stage `chunk` (seed 002: text chunking).

Splits every extracted document of the current manifest into overlapping windows
of words (default 80 words, 20 of them shared with the previous chunk) and writes
them to --output as JSON lines (replaced atomically):

    {"id": "guides/chunking-text.md#0002", "doc": "guides/chunking-text.md", "sha": "<blob sha>",
     "title": "Chunking text for search", "index": 2, "start_word": 120, "words": 80, "text": "..."}

Chunk ids are the document key plus the chunk's position, so they are stable and
the store can upsert them.

A document of the manifest without extracted text (its extraction failed, or the
text is from another version of the document) is reported as a failed record
(::reject::) and left out; the other documents are chunked.

    python3 scripts/chunk.py --manifest work/documents.jsonl --texts work/text --output work/chunks.jsonl
"""
import argparse
import json
import os
import sys


def windows(words, size, overlap):
    """Yield (start, words) windows of `size` words; consecutive windows share `overlap` words."""
    step = size - overlap
    start = 0
    while True:
        end = min(start + size, len(words))
        yield start, words[start:end]
        if end >= len(words):
            return
        start += step


def reject(record, reason):
    print("::reject:: " + json.dumps({"record": record, "reason": reason}), flush=True)


def main():
    ap = argparse.ArgumentParser(description="Split extracted texts into overlapping chunks.")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--size", type=int, default=80, help="words per chunk")
    ap.add_argument("--overlap", type=int, default=20, help="words shared by consecutive chunks")
    args = ap.parse_args()
    if args.size < 1 or not 0 <= args.overlap < args.size:
        print(f"chunk: need size >= 1 and 0 <= overlap < size, got size {args.size}, overlap {args.overlap}",
              file=sys.stderr, flush=True)
        return 2

    with open(args.manifest, encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]

    chunks, chunked, missing, words_total = [], 0, 0, 0
    for doc in docs:
        key = doc["key"]
        txt_path = os.path.join(args.texts, key + ".txt")
        meta_path = os.path.join(args.texts, key + ".json")
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
            with open(txt_path, encoding="utf-8") as fh:
                words = fh.read().split()
        except (OSError, ValueError):
            missing += 1
            reject(key, "no extracted text (the extract task for this document failed)")
            continue
        if meta.get("sha") != doc["sha"]:
            missing += 1
            reject(key, f"extracted text is from blob {str(meta.get('sha'))[:10]}, the repository has {doc['sha'][:10]}")
            continue
        n = 0
        for index, (start, window) in enumerate(windows(words, args.size, args.overlap)):
            chunks.append({
                "id": f"{key}#{index:04d}", "doc": key, "sha": doc["sha"], "title": meta.get("title", key),
                "index": index, "start_word": start, "words": len(window), "text": " ".join(window),
            })
            n += 1
        chunked += 1
        words_total += len(words)
        print(f"chunk: {key}: {len(words)} words -> {n} chunks", flush=True)

    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(json.dumps(c, ensure_ascii=False) + "\n")
    os.replace(tmp, args.output)

    print(f"chunk: {len(chunks)} chunks from {chunked} of {len(docs)} documents "
          f"({args.size} words, overlap {args.overlap}) -> {args.output}", flush=True)
    print(f"::count:: documents {chunked}", flush=True)
    print(f"::count:: chunks {len(chunks)}", flush=True)
    print(f"::count:: words {words_total}", flush=True)
    if missing:
        print(f"::count:: documents_without_text {missing}", flush=True)
    if not chunks:
        print("chunk: nothing to chunk: no document has extracted text", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
