#!/usr/bin/env python3
"""Stage `process`: one task per filing. Parses one XBRL instance into graph-ready rows.

Writes OUT/<accession>.json: the filing's nodes (Company, Filing, Fact, Concept, Period, Unit) and
edges (FILED, REPORTS, OF_CONCEPT, FOR_PERIOD, IN_UNIT), plus the SHA-256 of the source file.

Idempotent: when OUT/<accession>.json exists and was made from the same bytes by the same
processor version, nothing is done (`::count:: unchanged`). Otherwise `::count:: processed`.
The output is written to a temporary file and renamed, so a task killed half-way (a worker that
died) leaves either the old file or the new one, never half a file.

Exit codes: 0 done or unchanged; 65 the filing is malformed (not retried: the same bytes would
fail again); 75 a temporary failure (retried) — simulated with --flaky for one filing's first
attempt, like an HTTP 429 from EDGAR.

    python3 scripts/process_filing.py PATH --accession A --cik C --ticker T --out output/processed
"""
import argparse
import hashlib
import json
import os
import sys
import time
import xml.etree.ElementTree as ET

PROCESSOR_VERSION = "1"
NS = {
    "xbrli": "http://www.xbrl.org/2003/instance",
    "dei": "http://xbrl.sec.gov/dei/2024",
    "us-gaap": "http://fasb.org/us-gaap/2024",
}
PREFIX = {uri: p for p, uri in NS.items()}


def qname(tag):
    """'{http://fasb.org/us-gaap/2024}Revenues' -> 'us-gaap:Revenues'."""
    uri, local = tag[1:].split("}", 1)
    return f"{PREFIX.get(uri, uri)}:{local}"


def fail(code, message):
    print(f"process_filing: error: {message}", file=sys.stderr)
    sys.exit(code)


def parse(data, accession, cik, ticker):
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        fail(65, f"{accession}: not well-formed XBRL ({e}); the download was probably cut short")

    contexts = {}
    for c in root.findall("xbrli:context", NS):
        p = c.find("xbrli:period", NS)
        instant = p.findtext("xbrli:instant", namespaces=NS)
        if instant:
            contexts[c.get("id")] = {"id": f"period:{instant}", "kind": "instant", "instant": instant}
        else:
            start = p.findtext("xbrli:startDate", namespaces=NS)
            end = p.findtext("xbrli:endDate", namespaces=NS)
            contexts[c.get("id")] = {"id": f"period:{start}..{end}", "kind": "duration", "start": start, "end": end}
    units = {}
    for u in root.findall("xbrli:unit", NS):
        measures = [m.text for m in u.iter(f"{{{NS['xbrli']}}}measure")]
        units[u.get("id")] = "/".join(measures)

    dei = {qname(e.tag).split(":", 1)[1]: (e.text or "").strip()
           for e in root if e.tag.startswith(f"{{{NS['dei']}}}")}
    if dei.get("EntityCentralIndexKey") != cik:
        fail(65, f"{accession}: the filing's CIK {dei.get('EntityCentralIndexKey')!r} is not {cik}")
    form = dei.get("DocumentType", "?")

    company_id, filing_id = f"company:{cik}", f"filing:{accession}"
    nodes = {
        company_id: {"label": "Company", "cik": cik, "ticker": ticker, "name": dei.get("EntityRegistrantName", "")},
        filing_id: {"label": "Filing", "accession": accession, "form": form,
                    "fiscal_year": dei.get("DocumentFiscalYearFocus"), "fiscal_period": dei.get("DocumentFiscalPeriodFocus")},
    }
    edges = [(company_id, filing_id, "FILED")]
    rejected = 0
    for e in root:
        if not e.tag.startswith(f"{{{NS['us-gaap']}}}"):
            continue
        concept = qname(e.tag)
        ctx = contexts.get(e.get("contextRef"))
        unit = units.get(e.get("unitRef"))
        text = (e.text or "").strip()
        try:
            value = float(text)
        except ValueError:
            print("::reject::", json.dumps({"record": f"{accession} {concept}",
                                            "reason": f"value {text!r} is not a number"}), flush=True)
            rejected += 1
            continue
        if ctx is None or unit is None:
            print("::reject::", json.dumps({"record": f"{accession} {concept}",
                                            "reason": "unknown contextRef or unitRef"}), flush=True)
            rejected += 1
            continue
        fact_id = f"fact:{accession}:{concept}:{e.get('contextRef')}"
        nodes[fact_id] = {"label": "Fact", "value": value, "decimals": e.get("decimals")}
        nodes[f"concept:{concept}"] = {"label": "Concept", "name": concept}
        nodes[ctx["id"]] = {"label": "Period", **{k: v for k, v in ctx.items() if k != "id"}}
        nodes[f"unit:{unit}"] = {"label": "Unit", "measure": unit}
        edges += [(filing_id, fact_id, "REPORTS"), (fact_id, f"concept:{concept}", "OF_CONCEPT"),
                  (fact_id, ctx["id"], "FOR_PERIOD"), (fact_id, f"unit:{unit}", "IN_UNIT")]
    facts = sum(1 for n in nodes.values() if n["label"] == "Fact")
    return form, nodes, edges, facts, rejected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--accession", required=True)
    ap.add_argument("--cik", required=True)
    ap.add_argument("--ticker", default="")
    ap.add_argument("--out", default="output/processed")
    ap.add_argument("--delay", type=float, default=0.0, help="simulated download and processing time")
    ap.add_argument("--flaky", default="none", help="this accession's first attempt fails with exit 75")
    args = ap.parse_args()

    print(f"pid {os.getpid()} started by pid {os.getppid()}", file=sys.stderr)   # run.sh: which worker ran it
    with open(args.path, "rb") as f:
        data = f.read()
    sha = hashlib.sha256(data).hexdigest()
    target = os.path.join(args.out, args.accession + ".json")
    try:
        with open(target, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("source_sha256") == sha and old.get("processor_version") == PROCESSOR_VERSION:
            print(f"{args.accession}: unchanged since {old.get('processed_by')}, nothing to do")
            print("::count:: unchanged")
            return 0
    except (OSError, ValueError):
        pass

    attempt = os.environ.get("SLUICE_ATTEMPT", "1")
    if args.accession == args.flaky and attempt == "1":
        fail(75, f"{args.accession}: EDGAR answered 429 Too Many Requests (simulated); try again later")

    time.sleep(args.delay)
    form, nodes, edges, facts, rejected = parse(data, args.accession, args.cik, args.ticker)

    doc = {
        "accession": args.accession, "cik": args.cik, "form": form,
        "source": args.path, "source_sha256": sha, "processor_version": PROCESSOR_VERSION,
        "processed_by": f"run {os.environ.get('SLUICE_RUN_ID', '-')} attempt {attempt} pid {os.getpid()} under pid {os.getppid()}",
        "nodes": [{"id": k, **v} for k, v in sorted(nodes.items())],
        "edges": [{"src": s, "dst": d, "type": t} for s, d, t in edges],
    }
    os.makedirs(args.out, exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, target)
    print(f"{args.accession}: {form}, {facts} facts, {len(edges)} edges -> {target}")
    print("::count:: processed")
    print(f"::count:: facts {facts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
