#!/usr/bin/env python3
"""Translator stage (seed 003): raw market CSVs -> normalised "processed" CSVs.

For every *.csv in --input, writes <SYMBOL>.csv to --output with the columns
date,open,high,low,close,volume,return  (return = close / previous close - 1,
empty on the first row), rows sorted by date.

Like the seed's translator, this process does not exit when its work is done:
it prints "All instruments processed" and then lingers idle (TRANSLATE_LINGER
seconds, default 30). The orchestrator is expected to spot that line
(done_when) and stop the process gracefully with SIGTERM.

Exit codes: 0 ok (also when stopped by SIGTERM/SIGINT after the final line),
1 bad input (message on stderr names the file and line), 143/130 when
stopped by a signal before finishing.
"""
import argparse
import csv
import datetime
import os
import signal
import sys
import time

COLUMNS = ["date", "open", "high", "low", "close", "volume"]
DONE_LINE = "All instruments processed"

_finished = False


class InputError(Exception):
    pass


def _on_signal(signum, _frame):
    name = signal.Signals(signum).name
    if _finished:
        print(f"translate: received {name} after completion, exiting", file=sys.stderr, flush=True)
        sys.exit(0)
    print(f"translate: received {name} before completion, aborting", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def _number(text, path, line, column):
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}:{line}: column '{column}' is not numeric: {text!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"{path}:{line}: column '{column}' is not a finite number: {text!r}")
    return value


def read_raw(path):
    """Parse and validate one raw CSV; returns a list of row dicts sorted by date."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}:1: file is empty (expected header {','.join(COLUMNS)})")
        names = [h.strip().lower() for h in header]
        if sorted(names) != sorted(COLUMNS):
            raise InputError(
                f"{path}:1: bad header {','.join(header)!r}; expected columns {','.join(COLUMNS)}"
            )
        index = {name: i for i, name in enumerate(names)}
        rows, seen = [], set()
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue  # tolerate blank lines
            if len(record) != len(COLUMNS):
                raise InputError(f"{path}:{line}: expected {len(COLUMNS)} fields, found {len(record)}")
            cell = {name: record[i].strip() for name, i in index.items()}
            try:
                date = datetime.date.fromisoformat(cell["date"])
            except ValueError:
                raise InputError(f"{path}:{line}: column 'date' is not a YYYY-MM-DD date: {cell['date']!r}")
            if date in seen:
                raise InputError(f"{path}:{line}: duplicate date {date.isoformat()}")
            seen.add(date)
            row = {"date": date}
            for name in ("open", "high", "low", "close", "volume"):
                row[name] = _number(cell[name], path, line, name)
            if row["close"] <= 0:
                raise InputError(f"{path}:{line}: column 'close' must be positive: {cell['close']!r}")
            row["_text"] = cell
            rows.append(row)
    if not rows:
        raise InputError(f"{path}: no data rows")
    rows.sort(key=lambda r: r["date"])
    return rows


def write_processed(rows, path):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS + ["return"])
        prev_close = None
        for row in rows:
            ret = "" if prev_close is None else f"{row['close'] / prev_close - 1:.6f}"
            text = row["_text"]
            volume = row["volume"]
            volume_text = str(int(volume)) if volume.is_integer() else text["volume"]
            writer.writerow([row["date"].isoformat(), text["open"], text["high"], text["low"],
                             text["close"], volume_text, ret])
            prev_close = row["close"]
    os.replace(tmp, path)  # atomic: readers never see a half-written file


def main():
    global _finished
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of raw *.csv files")
    parser.add_argument("--output", required=True, help="folder for processed *.csv files")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    if not os.path.isdir(args.input):
        print(f"translate: input folder not found: {args.input}", file=sys.stderr)
        return 1
    files = sorted(f for f in os.listdir(args.input)
                   if f.lower().endswith(".csv") and os.path.isfile(os.path.join(args.input, f)))
    if not files:
        print(f"translate: no *.csv files in {args.input}", file=sys.stderr)
        return 1

    # Validate everything first so a malformed file leaves no partial output behind.
    parsed = []
    for name in files:
        path = os.path.join(args.input, name)
        try:
            parsed.append((os.path.splitext(name)[0].upper(), read_raw(path)))
        except InputError as err:
            print(f"translate: error: {err}", file=sys.stderr)
            return 1
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            print(f"translate: error: cannot read {path}: {err}", file=sys.stderr)
            return 1

    os.makedirs(args.output, exist_ok=True)
    print(f"translating {len(parsed)} instrument(s) from {args.input} to {args.output}", flush=True)
    for symbol, rows in parsed:
        write_processed(rows, os.path.join(args.output, symbol + ".csv"))
        print(f"translated {symbol} ({len(rows)} rows)", flush=True)

    _finished = True
    print(DONE_LINE, flush=True)

    # Linger like the seed's translator: the work is done but the process stays up.
    try:
        linger = float(os.environ.get("TRANSLATE_LINGER", "30"))
    except ValueError:
        linger = 30.0
    if linger > 0:
        time.sleep(linger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
