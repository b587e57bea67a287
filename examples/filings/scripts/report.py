#!/usr/bin/env python3
"""Helpers for run.sh: read `sluice show RUN --json [--all-tasks]` on stdin, print a summary.

    sluice show RUN --json | python3 scripts/report.py progress SECONDS
    sluice show RUN --json --all-tasks | python3 scripts/report.py workers .sluice/runs/RUN worker-1=PID1 worker-2=PID2
    sluice show RUN --json | python3 scripts/report.py counters
    python3 scripts/report.py graph output/graph.sqlite
"""
import glob
import json
import os
import re
import sqlite3
import sys


def progress(report, elapsed):
    parts = []
    for s in report["stages"]:
        p = s.get("progress") or {}
        if s["status"] == "pending" and not p.get("expected"):
            parts.append(f"{s['name']} waiting")
            continue
        text = f"{s['name']} {p.get('done', 0)}/{p.get('expected', 0)}"
        extra = []
        if p.get("running"):
            extra.append(f"{p['running']} running")
        if p.get("failed"):
            extra.append(f"{p['failed']} failed")
        if p.get("growing"):
            extra.append("expected still growing")
        if extra:
            text += " (" + ", ".join(extra) + ")"
        parts.append(text)
    print(f"  [{elapsed:>5}s] {report['status']:<8} " + " | ".join(parts), flush=True)


def workers(report, run_dir, names):
    """Who ran what. Sluice records each attempt's host and the pid of its command; each script logs
    "pid X started by pid Y" on stderr, and Y is the worker. NAMES are name=pid pairs."""
    parent = {}
    for path in glob.glob(os.path.join(run_dir, "logs", "*", "*.stderr")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"pid (\d+) started by pid (\d+)", line)
                if m:
                    parent[int(m.group(1))] = int(m.group(2))
    label = {int(pid): name for name, pid in (n.split("=", 1) for n in names)}
    table, hosts = {}, {}
    for s in report["stages"]:
        for t in s.get("tasks", []):
            for a in t.get("attempts", []):
                ppid = parent.get(a.get("pid"))
                # A command started just before its worker was killed may have had no time to log its line.
                who = label.get(ppid, f"pid {ppid}" if ppid else "unknown worker")
                hosts[who] = a.get("host", "?")
                cell = table.setdefault(s["name"], {}).setdefault(who, {})
                cell[a["outcome"]] = cell.get(a["outcome"], 0) + 1
    cols = [n for n in label.values()] + sorted({w for row in table.values() for w in row} - set(label.values()))
    head = [f"{w} ({'pid ' + str(p) + ' ' if (p := next((k for k, v in label.items() if v == w), None)) else ''}on {hosts.get(w, '?')})" for w in cols]
    print("  " + f"{'stage':<10}" + "".join(f"{h:<30}" for h in head))
    for stage, row in table.items():
        cells = []
        for w in cols:
            c = row.get(w, {})
            text = str(sum(c.values()))
            others = [f"{v} {k}" for k, v in sorted(c.items()) if k != "success"]
            if others:
                text += " (" + ", ".join(others) + ")"
            cells.append(f"{text:<30}")
        print("  " + f"{stage:<10}" + "".join(cells))


def counters(report):
    for s in report["stages"]:
        c = s.get("counters") or {}
        line = f"  {s['name']:<9} {s['status']:<16}"
        if c:
            line += " " + ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
        if s.get("rejected"):
            line += f"; rejected records: {s['rejected']}"
        print(line)


def graph(path):
    db = sqlite3.connect(path)
    labels = ", ".join(f"{label} {n}" for label, n in db.execute("SELECT label, count(*) FROM nodes GROUP BY label ORDER BY label"))
    edges = ", ".join(f"{t} {n}" for t, n in db.execute("SELECT type, count(*) FROM edges GROUP BY type ORDER BY type"))
    print(f"  nodes: {labels}")
    print(f"  edges: {edges}")
    for run_id, at, filings, ni, nu, ei in db.execute("SELECT * FROM ingestions ORDER BY at, rowid"):
        print(f"  ingestion by run {run_id} at {at}: {filings} filings, {ni} nodes inserted, {nu} updated, {ei} edges inserted")


def main():
    what = sys.argv[1]
    if what == "graph":
        return graph(sys.argv[2])
    report = json.load(sys.stdin)
    if what == "progress":
        progress(report, sys.argv[2] if len(sys.argv) > 2 else "?")
    elif what == "workers":
        workers(report, sys.argv[2], sys.argv[3:])
    elif what == "counters":
        counters(report)
    elif what == "outcome":
        process = next((s for s in report["stages"] if s["name"] == "process"), {})
        c = process.get("counters") or {}
        print(report["status"], c.get("processed", 0), c.get("unchanged", 0))


if __name__ == "__main__":
    main()
