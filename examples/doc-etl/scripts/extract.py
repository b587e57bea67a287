#!/usr/bin/env python3
"""Stage `extract`, one task per document (seed 002: Docling document processing).

Extracts the plain text of ONE document and writes

    OUT/<key>.txt    the text (Markdown syntax removed, whitespace normalised)
    OUT/<key>.json   what it was made from: key, git blob sha, extractor version, title, words

    python3 scripts/extract.py work/checkout/guides/retries-and-backoff.md \
        --key guides/retries-and-backoff.md --sha <blob sha> --out work/text

Checkpoint: if both outputs exist and the .json records the same blob sha and
extractor version, the document is skipped ("already extracted"). The blob sha is
git's hash of the content, so an unchanged document is skipped in every later run,
even after a fresh clone. Outputs are written to a temporary file and renamed into
place, so an interrupted task never leaves a half-written file that looks finished.

Counters: ::count:: words N, and ::count:: extracted 1 or ::count:: skipped 1.

--delay S simulates a slow parser (S seconds per extracted document), so progress,
rate and ETA are visible and there is time to press Ctrl-C.
--fail-once KEY simulates a transient failure: the first attempt for document KEY
exits with 75 (EX_TEMPFAIL), which the pipeline retries. "none" disables it.

Exit codes: 0 ok; 65 the document cannot be decoded (permanent: not retried);
66 the input file is missing; 75 transient failure (retried).
"""
import argparse
import json
import os
import re
import sys
import time

EXTRACTOR_VERSION = 1
EX_DATAERR, EX_NOINPUT, EX_TEMPFAIL = 65, 66, 75


def log(msg):
    print(f"extract: {msg}", flush=True)


def fail(code, msg):
    print(f"extract: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def decode_utf8(data, key):
    """Strict UTF-8 decoding with an error message that names the byte and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.end].hex(" ")
        fail(EX_DATAERR,
             f"{key}: not valid UTF-8: byte(s) {bad} at offset {exc.start} (line {line}): {exc.reason}; "
             f"the file was probably saved as Latin-1/Windows-1252; re-save it as UTF-8")


MD_RULES = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),          # images -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),           # links -> link text
    (re.compile(r"`{1,3}([^`]*)`{1,3}"), r"\1"),             # inline code
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),                # bold
    (re.compile(r"(?<![\w*])[*_](?!\s)(.+?)(?<!\s)[*_](?![\w*])"), r"\1"),  # italics
    (re.compile(r"<[^>]+>"), ""),                            # inline HTML tags
]


def markdown_to_text(src):
    """A small Markdown-to-text converter: keeps the words, drops the markup."""
    title, paragraphs, current = None, [], []
    in_fence = False
    for raw in src.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if not in_fence:
            heading = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if heading:
                if title is None:
                    title = heading.group(1)
                if current:
                    paragraphs.append(" ".join(current))
                    current = []
                paragraphs.append(heading.group(1))
                continue
            if re.match(r"^\s*([-*_]\s*){3,}$", line):       # horizontal rule
                continue
            line = re.sub(r"^\s*(>\s*)+", "", line)            # block quotes
            line = re.sub(r"^\s*([-*+]|\d+[.)])\s+", "", line)  # list markers
            for pattern, repl in MD_RULES:
                line = pattern.sub(repl, line)
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return title, paragraphs


def plain_to_text(src):
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", src)]
    paragraphs = [p for p in paragraphs if p]
    return (paragraphs[0] if paragraphs else None), paragraphs


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="Extract the text of one document.")
    ap.add_argument("path", help="the document in the checkout")
    ap.add_argument("--key", required=True, help="the document's path inside the repository")
    ap.add_argument("--sha", required=True, help="the git blob sha of the document")
    ap.add_argument("--out", required=True, help="the folder for extracted texts")
    ap.add_argument("--delay", type=float, default=0.0, help="simulated parse time per document, seconds")
    ap.add_argument("--fail-once", default="none", help="document key whose first attempt fails with 75")
    args = ap.parse_args()

    key = args.key
    if key.startswith("/") or ".." in key.split("/"):
        fail(EX_DATAERR, f"refusing unsafe document key {key!r}")

    attempt = os.environ.get("SLUICE_ATTEMPT", "1")
    if args.fail_once == key and attempt == "1":
        fail(EX_TEMPFAIL, f"{key}: simulated transient failure on attempt 1 (param fail_once); a retry will succeed")

    txt_path = os.path.join(args.out, key + ".txt")
    meta_path = os.path.join(args.out, key + ".json")

    # checkpoint: same content (blob sha) and same extractor -> nothing to do
    if os.path.exists(txt_path) and os.path.exists(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            meta = {}
        if meta.get("sha") == args.sha and meta.get("extractor_version") == EXTRACTOR_VERSION:
            log(f"skip {key}: already extracted (blob {args.sha[:10]}, {meta.get('words', 0)} words)")
            print(f"::count:: words {meta.get('words', 0)}", flush=True)
            print("::count:: skipped", flush=True)
            return 0

    log(f"parsing {key} (blob {args.sha[:10]}, attempt {attempt})")
    try:
        with open(args.path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        fail(EX_NOINPUT, f"{key}: {args.path} does not exist (is the checkout up to date?)")
    if args.delay > 0:
        time.sleep(args.delay)

    text = decode_utf8(data, key)
    if "\0" in text:
        fail(EX_DATAERR, f"{key}: contains NUL characters; this is a binary file, not a text document")
    if key.lower().endswith((".md", ".markdown")):
        title, paragraphs = markdown_to_text(text)
    else:
        title, paragraphs = plain_to_text(text)
    body = "\n\n".join(paragraphs).strip() + "\n"
    words = len(body.split())
    if words == 0:
        fail(EX_DATAERR, f"{key}: no text found")

    os.makedirs(os.path.dirname(txt_path), exist_ok=True)
    write_atomic(txt_path, body)
    meta = {
        "key": key, "sha": args.sha, "extractor_version": EXTRACTOR_VERSION,
        "title": (title or key)[:200], "words": words, "paragraphs": len(paragraphs),
        "bytes": len(data),
    }
    write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")   # written last: marks completion
    log(f"wrote {txt_path} ({words} words, {len(paragraphs)} paragraphs, title {meta['title']!r})")
    print(f"::count:: words {words}", flush=True)
    print("::count:: extracted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
