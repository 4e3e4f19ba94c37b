#!/usr/bin/env python3
"""Plot training throughput, Wren vs PyTorch, from a gpu-validate report folder as one
hand-written SVG (standard library only).

    python3 bench/plot_train.py R                    # writes R/train.svg
    python3 bench/plot_train.py R -o /tmp/train.svg

Reads R/train-wren.json (`wren-bench train --json`) and, when present, R/peers-throughput.jsonl
and R/peers-compile.jsonl (`bench/peers/torch_train.py throughput`). One group of horizontal
bars per (model, batch), in the order of train-wren.json (groups only PyTorch measured come
after). In each group, only the series that were measured, in this order:

  Wren, CUDA graph on / Wren, graph off (or Wren, cpu where cuda_graph is "n/a") /
  PyTorch eager / eager + CUDA graph / torch.compile / compile + CUDA graph

x axis: images per second, linear from 0. Failed rows say "error" in their slot; PyTorch lines
marked "skipped" are left out. Every label is XML-escaped; each bar has a <title> (a tooltip in
browsers) with the step time.
"""
import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

# Shared with the kernel plot (this folder; the report loads this file by path, so say where).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_kernels import _clip_label, _num, write_text  # noqa: E402

WIDTH = 1000
LABEL_W = 150        # the group label column
MARGIN_L = 12
MARGIN_R = 62        # room for the value label of the longest bar
BAR_H = 12
BAR_GAP = 2
GROUP_GAP = 12
BOTTOM = 46
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""

COLOR_GRID = "#d9d9d9"
COLOR_AXIS = "#888888"
COLOR_TEXT = "#222222"
COLOR_MUTED = "#666666"
COLOR_WARN = "#b22222"
COLOR_BAND = "#f4f4f4"

# (key, legend label, colour): Wren in blues, PyTorch eager in oranges, compile in greens.
SERIES = [
    ("wren_on", "Wren, CUDA graph", "#1f4e9c"),
    ("wren_off", "Wren, no CUDA graph", "#7ea6e0"),
    ("eager", "PyTorch eager", "#f5a54a"),
    ("eager+cudagraph", "PyTorch eager + CUDA graph", "#c0550c"),
    ("compile", "PyTorch torch.compile", "#8cc97a"),
    ("compile+cudagraph", "PyTorch compile + CUDA graph", "#2e7d32"),
]
PEER_FILES = ("peers-throughput.jsonl", "peers-compile.jsonl")


def fmt_si(x):
    """Three significant digits with a k / M suffix: 70.6k, 156k, 1.2M, 46.9."""
    x = _num(x)
    if x is None:
        return "–"
    for div, suf in ((1e6, "M"), (1e3, "k"), (1.0, "")):
        if abs(x) >= div or div == 1.0:
            v = x / div
            if v == 0:
                return "0"
            digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
            s = f"{v:.{digits}f}"
            if "." in s:
                s = s.rstrip("0").rstrip(".")
            return s + suf
    return str(x)


def fmt_tick(x):
    x = float(x)
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return (f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}") + suf
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:g}"


def nice_ticks(vmax, target=6):
    """(axis max, step): 0..axis max in `step`s, step 1, 2, 2.5 or 5 times a power of ten."""
    if vmax is None or vmax <= 0:
        return 1.0, 0.2
    raw = vmax / target
    p = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * p >= raw:
            step = m * p
            break
    top = math.ceil(vmax / step - 1e-9) * step
    return top, step


def _read_jsonl(path):
    out = []
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict):
                out.append(o)
    return out


def _key(model, batch):
    b = _num(batch)
    return (str(model), int(b) if b is not None and b == int(b) else batch)


def load(report_dir):
    """The plot's data from a report folder, or None when train-wren.json is missing."""
    path = os.path.join(report_dir, "train-wren.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        wren = json.load(f)
    if not isinstance(wren, dict):
        raise ValueError(f"{path}: not a JSON object")
    keys, cells = [], {}

    def cell(k):
        if k not in cells:
            cells[k] = {}
            keys.append(k)
        return cells[k]

    rows = wren.get("rows") if isinstance(wren.get("rows"), list) else []
    cpu = False
    for r in rows:
        if not isinstance(r, dict) or r.get("model") is None:
            continue
        g = str(r.get("cuda_graph", "n/a"))
        cpu = cpu or g == "n/a"
        slot = "wren_on" if g == "on" else "wren_off"
        c = cell(_key(r.get("model"), r.get("batch")))
        if slot in c:
            continue
        if r.get("error"):
            c[slot] = {"error": str(r["error"])}
        else:
            c[slot] = {"v": _num(r.get("img_per_s")), "ms": _num(r.get("median_ms"))}
    peer_meta = []
    for fname in PEER_FILES:
        for o in _read_jsonl(os.path.join(report_dir, fname)):
            if o.get("bench", "throughput") != "throughput":
                continue
            if o.get("model") is None or o.get("batch") is None or o.get("skipped"):
                continue
            mode = str(o.get("mode", ""))
            if mode not in dict((s[0], 1) for s in SERIES):
                continue
            c = cell(_key(o.get("model"), o.get("batch")))
            if mode in c:
                continue
            if o.get("error"):
                c[mode] = {"error": str(o["error"]).splitlines()[0] if str(o["error"]) else "?"}
                continue
            c[mode] = {"v": _num(o.get("img_per_s")), "ms": _num(o.get("ms_per_step"))}
            m = (o.get("device_name"), o.get("torch"))
            if (o.get("device_name") or o.get("torch")) and m not in peer_meta:
                peer_meta.append(m)
    method = wren.get("method") if isinstance(wren.get("method"), dict) else {}
    return {"wren": wren, "keys": keys, "cells": cells, "cpu": cpu, "peer_meta": peer_meta,
            "steps": method.get("timed_steps")}


def render_svg(d):
    wren = d["wren"]
    series = list(SERIES)
    if d["cpu"] and str(wren.get("device", "")) == "cpu":
        series[1] = ("wren_off", "Wren, cpu", series[1][2])
    present = [s for s in series if any(s[0] in d["cells"][k] for k in d["keys"])]

    # Title and subtitle.
    wdev = wren.get("device_name") or wren.get("device") or "?"
    date = str(wren.get("date") or "")
    day = date[:10] if len(date) >= 10 else (date or "undated")
    title = f"Training throughput: Wren on {wdev}"
    if d["peer_meta"]:
        devs = list(dict.fromkeys(str(dn or "?") for dn, _ in d["peer_meta"]))
        tvs = list(dict.fromkeys(str(t or "?") for _, t in d["peer_meta"]))
        title += f" vs PyTorch {', '.join(tvs)} on {', '.join(devs)}"
    title += f", {wren.get('math') or 'fp32'}, {day}"
    where = "on the host" if str(wren.get("device", "")) == "cpu" else "on the device"
    steps = f"img/s from the median of {d['steps']} steps" if d.get("steps") else \
        "img/s from the median step"
    subs = [f"Wren step: the real trainer, batch made {where} from uint8, one host sync per step "
            f"(loss check); {steps}.",
            "PyTorch step: one synthetic batch reused on the device, no per-step sync "
            "(bench/peers/torch_train.py throughput)."]
    if not d["peer_meta"]:
        subs[1] = "PyTorch: no throughput lines in this report."
    label = str(wren.get("label") or "")
    warn = label if label and label != "GPU" else ""

    # Geometry.
    top = 30 + 15 * len(subs) + (15 if warn else 0)
    legend_y = top + 6
    cols = [sum(1 for s in present if s[0] in pair)
            for pair in (("wren_on", "wren_off"), ("eager", "eager+cudagraph"),
                         ("compile", "compile+cudagraph"))]
    legend_rows = max(1, max(cols))
    plot_top = legend_y + 16 * legend_rows + 10
    group_h = []
    for k in d["keys"]:
        n = sum(1 for s in present if s[0] in d["cells"][k])
        group_h.append(max(n, 1) * (BAR_H + BAR_GAP) - BAR_GAP + 8)
    plot_h = sum(group_h) + GROUP_GAP * max(0, len(group_h) - 1) + 8
    if not d["keys"]:
        plot_h = 40
    height = int(plot_top + plot_h + BOTTOM)
    x0 = MARGIN_L + LABEL_W
    x1 = WIDTH - MARGIN_R
    vals = [c[s]["v"] for c in d["cells"].values() for s in c if c[s].get("v")]
    vmax, step = nice_ticks(max(vals) if vals else None)

    def xv(v):
        return x0 + (x1 - x0) * max(0.0, min(v, vmax)) / vmax

    out = []
    w = out.append
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
      f'viewBox="0 0 {WIDTH} {height}" {FONT} font-size="10">')
    w(f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>')
    w(f'<text x="{MARGIN_L}" y="20" font-size="14" font-weight="bold" fill="{COLOR_TEXT}">'
      f'{escape(_clip_label(title, 130))}</text>')
    y = 20
    for s in subs:
        y += 15
        w(f'<text x="{MARGIN_L}" y="{y}" font-size="10.5" fill="{COLOR_MUTED}">'
          f'{escape(_clip_label(s, 170))}</text>')
    if warn:
        y += 15
        wc = COLOR_WARN if warn.startswith("EMULATOR") else COLOR_MUTED
        w(f'<text x="{MARGIN_L}" y="{y}" font-size="10.5" fill="{wc}">'
          f'{escape(_clip_label(warn, 170))}</text>')

    # Legend: one column per side (Wren, PyTorch eager, PyTorch compile), a series keeps its
    # place whichever others are missing.
    col_w = (WIDTH - MARGIN_L - MARGIN_R) / 3
    pos = {s[0]: i for i, s in enumerate(series)}
    stacked = {}
    for key, name, color in present:
        col = pos[key] // 2
        row = stacked.get(col, 0)
        stacked[col] = row + 1
        lx = MARGIN_L + col * col_w
        ly = legend_y + 16 * row + 10
        w(f'<rect x="{lx:.1f}" y="{ly - 9}" width="12" height="10" fill="{color}"/>')
        w(f'<text x="{lx + 17:.1f}" y="{ly}" fill="{COLOR_TEXT}">{escape(name)}</text>')

    # Alternate group bands, under the grid.
    y = plot_top + 4
    for gi, gh in enumerate(group_h):
        if gi % 2 == 0:
            w(f'<rect x="{MARGIN_L}" y="{y - 4}" width="{x1 - MARGIN_L}" height="{gh}" '
              f'fill="{COLOR_BAND}"/>')
        y += gh + GROUP_GAP

    # Grid and axis.
    plot_bottom = plot_top + plot_h
    n_ticks = int(round(vmax / step))
    for i in range(n_ticks + 1):
        t = i * step
        x = xv(t)
        w(f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" '
          f'stroke="{COLOR_GRID if i else COLOR_AXIS}" stroke-width="1"/>')
        w(f'<text x="{x:.1f}" y="{plot_bottom + 14}" text-anchor="middle" '
          f'fill="{COLOR_MUTED}">{escape(fmt_tick(t))}</text>')
    w(f'<line x1="{x0}" y1="{plot_bottom}" x2="{x1}" y2="{plot_bottom}" stroke="{COLOR_AXIS}" '
      f'stroke-width="1"/>')
    w(f'<text x="{(x0 + x1) / 2:.1f}" y="{plot_bottom + 34}" text-anchor="middle" '
      f'font-size="11" fill="{COLOR_TEXT}">training images per second (higher is better)</text>')
    if not d["keys"]:
        w(f'<text x="{x0 + 6}" y="{plot_top + 24}" fill="{COLOR_WARN}">no rows in '
          f'train-wren.json</text>')

    # Groups.
    y = plot_top + 4
    for gi, k in enumerate(d["keys"]):
        c = d["cells"][k]
        gh = group_h[gi]
        mid = y - 4 + gh / 2
        w(f'<text x="{MARGIN_L + 4}" y="{mid - 2:.1f}" font-size="11" font-weight="bold" '
          f'fill="{COLOR_TEXT}">{escape(_clip_label(k[0], 22))}</text>')
        w(f'<text x="{MARGIN_L + 4}" y="{mid + 11:.1f}" fill="{COLOR_MUTED}">'
          f'batch {escape(str(k[1]))}</text>')
        by = y
        for key, name, color in present:
            if key not in c:
                continue
            e = c[key]
            cy = by + BAR_H / 2 + 3.5
            if e.get("error"):
                w(f'<text x="{x0 + 4}" y="{cy:.1f}" fill="{COLOR_WARN}">'
                  f'{escape(_clip_label(name + ": error: " + e["error"], 110))}</text>')
            elif e.get("v") is None:
                w(f'<text x="{x0 + 4}" y="{cy:.1f}" fill="{COLOR_MUTED}">'
                  f'{escape(name)}: no figure</text>')
            else:
                v = e["v"]
                xe = xv(v)
                tip = f"{k[0]} batch {k[1]}, {name}: {fmt_si(v)} img/s"
                if e.get("ms") is not None:
                    tip += f", {e['ms']:.3g} ms/step"
                w(f'<rect x="{x0}" y="{by}" width="{max(xe - x0, 0.5):.1f}" height="{BAR_H}" '
                  f'fill="{color}"><title>{escape(tip)}</title></rect>')
                w(f'<text x="{xe + 3:.1f}" y="{cy:.1f}" fill="{COLOR_TEXT}">'
                  f'{escape(fmt_si(v))}</text>')
            by += BAR_H + BAR_GAP
        y += gh + GROUP_GAP
    w('</svg>')
    return "\n".join(out) + "\n"


def write_svg(report_dir, out_path=None):
    """Write the training-throughput SVG of a report folder (default R/train.svg); returns the
    path written, or None when R/train-wren.json is missing. Raises OSError / ValueError on
    unreadable input."""
    d = load(report_dir)
    if d is None:
        return None
    if out_path is None:
        out_path = os.path.join(report_dir, "train.svg")
    write_text(out_path, render_svg(d))
    return out_path


def main(argv=None):
    ap = argparse.ArgumentParser(description="SVG plot of training throughput, Wren vs PyTorch, "
                                             "from a gpu-validate report folder.")
    ap.add_argument("dir", help="the report folder (holds train-wren.json)")
    ap.add_argument("-o", "--out", help="SVG to write (default DIR/train.svg)")
    args = ap.parse_args(argv)
    try:
        path = write_svg(args.dir, args.out)
    except (OSError, ValueError) as e:
        print(f"plot_train.py: {e}", file=sys.stderr)
        return 1
    if path is None:
        print(f"plot_train.py: {os.path.join(args.dir, 'train-wren.json')}: missing",
              file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
