#!/usr/bin/env python3
"""Checks that an HTML report really renders in a browser.

    report-screenshot-check.py HTML_FILE PNG_OUT [--expect-color '#rrggbb' ...] [--expect-text TEXT ...]
                               [--min-pixels N] [--window-size W,H]

Runs Debian's headless Chromium twice: `--screenshot` (saved as PNG_OUT) and `--dump-dom`. It then
checks that the screenshot is not blank, that each expected colour covers at least N pixels (exactly,
or within a small tolerance for anti-aliasing), and that each expected text is in the rendered DOM.
The PNG is decoded here with zlib alone (no pip packages). Exit 0 when every check passes, 1 when one
fails (each failure printed), 2 when Chromium cannot be run.
"""
import argparse
import html
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(binary, args, profile, timeout=120):
    cmd = [binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
           "--hide-scrollbars", "--disable-extensions", "--force-color-profile=srgb",
           f"--user-data-dir={profile}"]
    if os.geteuid() == 0:
        cmd.append("--no-sandbox")
    cmd += args
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def decode_png(data):
    """Returns (width, height, rows) with rows a list of bytes objects of RGB(A) pixels, 8-bit only."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos = 8
    width = height = bit_depth = color_type = interlace = None
    idat = bytearray()
    palette = None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, bit_depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"PLTE":
            palette = chunk
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    if bit_depth != 8 or interlace != 0:
        raise ValueError(f"unsupported PNG (bit depth {bit_depth}, interlace {interlace})")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows = []
    previous = bytearray(stride)
    i = 0
    for _ in range(height):
        filter_type = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if filter_type == 1:
            for x in range(channels, stride):
                line[x] = (line[x] + line[x - channels]) & 0xFF
        elif filter_type == 2:
            for x in range(stride):
                line[x] = (line[x] + previous[x]) & 0xFF
        elif filter_type == 3:
            for x in range(stride):
                left = line[x - channels] if x >= channels else 0
                line[x] = (line[x] + ((left + previous[x]) >> 1)) & 0xFF
        elif filter_type == 4:
            for x in range(stride):
                a = line[x - channels] if x >= channels else 0
                b = previous[x]
                c = previous[x - channels] if x >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    # Normalise to RGB triples.
    rgb_rows = []
    for line in rows:
        if color_type == 2:
            rgb_rows.append(line)
        elif color_type == 6:
            rgb_rows.append(bytes(b for k, b in enumerate(line) if k % 4 != 3))
        elif color_type == 0:
            rgb_rows.append(bytes(v for v in line for _ in range(3)))
        elif color_type == 4:
            rgb_rows.append(bytes(line[k] for k in range(0, len(line), 2) for _ in range(3)))
        elif color_type == 3:
            rgb_rows.append(b"".join(palette[v * 3:v * 3 + 3] for v in line))
    return width, height, rgb_rows


def histogram(rows):
    counts = {}
    for line in rows:
        for k in range(0, len(line), 3):
            key = line[k:k + 3]
            counts[key] = counts.get(key, 0) + 1
    return counts


def parse_color(text):
    t = text.strip().lstrip("#")
    if len(t) == 3:
        t = "".join(c * 2 for c in t)
    if len(t) != 6:
        raise argparse.ArgumentTypeError(f"'{text}' is not a colour such as '#1a7f37'")
    return bytes(int(t[i:i + 2], 16) for i in (0, 2, 4))


def pixels_near(counts, color, tolerance):
    total = 0
    for key, n in counts.items():
        if all(abs(key[i] - color[i]) <= tolerance for i in range(3)):
            total += n
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html_file")
    parser.add_argument("png_out")
    parser.add_argument("--expect-color", action="append", default=[], type=parse_color, metavar="#RRGGBB")
    parser.add_argument("--expect-text", action="append", default=[], metavar="TEXT")
    parser.add_argument("--min-pixels", type=int, default=150, help="pixels each expected colour must cover")
    parser.add_argument("--tolerance", type=int, default=3, help="per-channel difference still counted as the colour")
    parser.add_argument("--window-size", default="900,2600", help="W,H of the browser window (the screenshot)")
    args = parser.parse_args()

    binary = chromium_binary()
    if binary is None:
        print("error: chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    url = "file://" + os.path.abspath(args.html_file)
    failures = []
    with tempfile.TemporaryDirectory(prefix="sluice-chromium-") as profile:
        png = os.path.abspath(args.png_out)
        shot = run_chromium(binary, [f"--window-size={args.window_size}", f"--screenshot={png}", url], profile)
        if shot.returncode != 0 or not os.path.exists(png):
            print(f"error: chromium --screenshot failed (exit {shot.returncode}):\n{shot.stderr.decode(errors='replace')[-2000:]}",
                  file=sys.stderr)
            return 2
        dom = run_chromium(binary, ["--dump-dom", url], profile)
        if dom.returncode != 0:
            print(f"error: chromium --dump-dom failed (exit {dom.returncode}):\n{dom.stderr.decode(errors='replace')[-2000:]}",
                  file=sys.stderr)
            return 2

    with open(png, "rb") as f:
        width, height, rows = decode_png(f.read())
    counts = histogram(rows)
    total = width * height
    dominant, dominant_n = max(counts.items(), key=lambda kv: kv[1])
    print(f"screenshot {png}: {width}x{height}, {len(counts)} colours, "
          f"most common #{dominant.hex()} on {100 * dominant_n / total:.1f}%")
    if len(counts) < 8 or dominant_n > 0.985 * total:
        failures.append("the screenshot is blank (one colour covers nearly every pixel)")
    for color in args.expect_color:
        n = pixels_near(counts, color, args.tolerance)
        verdict = "ok" if n >= args.min_pixels else "TOO FEW"
        print(f"  colour #{color.hex()}: {n} pixels ({verdict}, at least {args.min_pixels})")
        if n < args.min_pixels:
            failures.append(f"colour #{color.hex()} covers {n} pixels, fewer than {args.min_pixels}")

    text = html.unescape(dom.stdout.decode("utf-8", errors="replace"))
    for expected in args.expect_text:
        found = expected in text
        print(f"  text {expected!r}: {'ok' if found else 'MISSING'}")
        if not found:
            failures.append(f"the rendered page does not contain {expected!r}")

    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
