#!/usr/bin/env python3
"""The stages of the SI and Viajeros pipelines (standard library only).

    policies.py convert --out OUT.csv FOLDER           the first .xlsx in FOLDER → CSV (Viajeros)
    policies.py validate --pipeline NAME --out DIR PATH...
                                                       check every policy row of the CSV files given
                                                       (or found in the folders given); accepted rows
                                                       go to DIR/accepted.csv, a summary to DIR/summary.json
    policies.py publish DIR...                         print what was accepted (the last stage)

Business counters and failed records reach Sluice through its stdout line protocol:

    ::count:: policies 15
    ::reject:: {"record": "row 7 (SI-1007)", "reason": "premium -1840.00 is not positive"}

A row is rejected when its policy_id is missing or repeated, its start_date is not a date
(YYYY-MM-DD), or its premium is not a positive number. A file with no acceptable row fails the stage.
"""

import argparse
import csv
import datetime
import json
import os
import sys
import xml.etree.ElementTree as ET
import zipfile

COLUMNS = ["policy_id", "holder", "plan", "start_date", "premium"]
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def fail(message):
    print("policies.py: " + message, file=sys.stderr)
    sys.exit(2)


def count(name, value):
    print("::count:: %s %d" % (name, value), flush=True)


def reject(record, reason):
    print("::reject:: " + json.dumps({"record": record, "reason": reason}, ensure_ascii=False), flush=True)


def column_index(ref):
    letters = "".join(ch for ch in ref if ch.isalpha())
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch.upper()) - 64)
    return n - 1


def read_xlsx(path):
    """The first sheet's rows as lists of text (shared strings, inline strings and numbers)."""
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", NS):
                shared.append("".join(t.text or "" for t in si.iter("{%s}t" % NS["m"])))
        sheets = sorted(n for n in z.namelist() if n.startswith("xl/worksheets/sheet") and n.endswith(".xml"))
        if not sheets:
            fail("%s has no worksheet: is it an Excel workbook?" % path)
        rows = []
        for row in ET.fromstring(z.read(sheets[0])).iter("{%s}row" % NS["m"]):
            values = {}
            for c in row.findall("m:c", NS):
                kind, v = c.get("t"), c.find("m:v", NS)
                if kind == "s" and v is not None:
                    text = shared[int(v.text)]
                elif kind == "inlineStr":
                    text = "".join(t.text or "" for t in c.iter("{%s}t" % NS["m"]))
                else:
                    text = v.text if v is not None else ""
                values[column_index(c.get("r"))] = text
            rows.append([values.get(i, "") for i in range(max(values) + 1)] if values else [])
        return rows


def convert(args):
    if not args.folder:
        fail("no mail folder given: this pipeline is started by an e-mail (sluice serve), or pass -p mail_folder=DIR")
    found = sorted(f for f in os.listdir(args.folder) if f.lower().endswith(".xlsx")) if os.path.isdir(args.folder) else []
    if not found:
        fail("no .xlsx attachment in %s" % args.folder)
    rows = read_xlsx(os.path.join(args.folder, found[0]))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    print("converted %s: %d rows → %s" % (found[0], max(0, len(rows) - 1), args.out))
    count("workbooks", 1)


def csv_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if name.lower().endswith(".csv"):
                    yield os.path.join(path, name)
        elif path:
            yield path


def validate(args):
    files = list(csv_files(args.paths))
    if not files:
        fail("no CSV file in %s: this pipeline is started by an e-mail with the policies attached" % " ".join(args.paths or ["(nothing)"]))
    accepted, seen, total = [], set(), 0
    for path in files:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                fail("%s lacks the column(s) %s (it has %s)" % (path, ", ".join(missing), ", ".join(reader.fieldnames or [])))
            for number, row in enumerate(reader, start=2):
                total += 1
                pid = (row["policy_id"] or "").strip()
                where = "%s row %d" % (os.path.basename(path), number) + (" (%s)" % pid if pid else "")
                try:
                    premium = float(row["premium"])
                except ValueError:
                    premium = None
                try:
                    datetime.date.fromisoformat((row["start_date"] or "").strip())
                    date_ok = True
                except ValueError:
                    date_ok = False
                if not pid:
                    reject(where, "policy_id is missing (holder %s)" % row["holder"])
                elif pid in seen:
                    reject(where, "policy_id %s appears twice" % pid)
                elif not date_ok:
                    reject(where, "start_date '%s' is not a date (YYYY-MM-DD)" % row["start_date"])
                elif premium is None or premium <= 0:
                    reject(where, "premium %s is not positive" % row["premium"])
                else:
                    seen.add(pid)
                    accepted.append(row)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "accepted.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(accepted)
    premium = sum(float(r["premium"]) for r in accepted)
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"pipeline": args.pipeline, "rows": total, "accepted": len(accepted), "premium": round(premium, 2)}, f)
    count("policies", len(accepted))
    count("premium", round(premium))
    print("%s: %d of %d policies accepted, premium %.2f" % (args.pipeline, len(accepted), total, premium))
    if not accepted:
        fail("no acceptable policy in %s" % ", ".join(files))


def publish(args):
    for folder in args.folders:
        path = os.path.join(folder, "summary.json")
        if not os.path.exists(path):
            fail("%s is missing: did validate run?" % path)
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
        print("published %(pipeline)s: %(accepted)d policies, premium %(premium).2f" % s)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--out", required=True)
    c.add_argument("folder", nargs="?", default="")
    v = sub.add_parser("validate")
    v.add_argument("--pipeline", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("paths", nargs="*")
    p = sub.add_parser("publish")
    p.add_argument("folders", nargs="+")
    args = parser.parse_args()
    {"convert": convert, "validate": validate, "publish": publish}[args.command](args)


if __name__ == "__main__":
    main()
