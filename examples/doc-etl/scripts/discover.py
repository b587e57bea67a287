#!/usr/bin/env python3
"""Stage `discover` (seed 002: list the documents of the repository).

Lists the documents tracked in the checkout with `git ls-files -s` and prints one
JSON item per line on stdout, for the `extract` fan-out:

    {"key": "guides/retries-and-backoff.md", "path": "work/checkout/guides/retries-and-backoff.md", "sha": "<git blob sha>"}

The key is the path inside the repository and the sha is git's content hash of
the file, so both are content-based and stable across runs. Every other line on
stdout is plain text (never JSON), so it cannot be mistaken for an item.

Also writes the list to --manifest (JSON lines, replaced atomically), which
`chunk` and `summary` use to know which documents belong to this version of the
repository, and prints `::count:: documents N`.

    python3 scripts/discover.py --checkout work/checkout --manifest work/documents.jsonl
"""
import argparse
import json
import os
import subprocess
import sys

EXTENSIONS = (".md", ".markdown", ".txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", required=True, help="the git working tree to list")
    ap.add_argument("--manifest", required=True, help="where to write the document list (JSON lines)")
    args = ap.parse_args()

    try:
        out = subprocess.run(
            ["git", "-C", args.checkout, "ls-files", "-s", "-z"],
            check=True, capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        print(f"discover: cannot list {args.checkout}: {exc} {detail.decode(errors='replace').strip()}",
              file=sys.stderr, flush=True)
        return 2

    docs, ignored = [], 0
    for entry in out.split(b"\0"):
        if not entry:
            continue
        # "<mode> <sha> <stage>\t<path>"
        meta, _, raw_path = entry.partition(b"\t")
        mode, sha, _stage = meta.decode().split()
        rel = raw_path.decode("utf-8", errors="surrogateescape")
        if mode not in ("100644", "100755") or not rel.lower().endswith(EXTENSIONS):
            ignored += 1
            continue
        docs.append({"key": rel, "path": os.path.join(args.checkout, rel), "sha": sha})

    docs.sort(key=lambda d: d["key"])
    os.makedirs(os.path.dirname(args.manifest) or ".", exist_ok=True)
    tmp = args.manifest + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, sort_keys=True) + "\n")
    os.replace(tmp, args.manifest)

    for doc in docs:
        print(json.dumps(doc), flush=True)          # one item per line
    print(f"discover: {len(docs)} documents in {args.checkout} ({ignored} other files ignored)", flush=True)
    print(f"::count:: documents {len(docs)}", flush=True)
    if ignored:
        print(f"::count:: ignored_files {ignored}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
