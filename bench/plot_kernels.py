#!/usr/bin/env python3
"""Plot `wren-bench kernels --json` output as one hand-written SVG (standard library only).

    python3 bench/plot_kernels.py R/kernels-fp32.json                 # writes R/kernels-fp32.svg
    python3 bench/plot_kernels.py kernels-tf32.json -o /tmp/tf32.svg

One horizontal row per row of the kernel table ("family layer pass", plus the batch where a set
holds several batch sizes), grouped by input set under a heading. Two panels side by side:

  left   the row's share of the measured ceiling, 0-100 % (`pct_of_ceiling` of the JSON):
         compute-bound rows against the GEMM ceiling, the others against copy bandwidth;
         the bar's colour tells which.
  right  speed relative to the peer library (cuDNN / cuBLAS) = peer median / Wren median, on a
         log2 axis from 1/8 to 8 with a line at 1: bars to the right of 1 mean Wren is faster,
         to the left slower. Rows without a peer are left empty.

Rows that failed (`error`) say so in the left panel. Every label is XML-escaped; the full shape
and the numbers are in each row's <title> (a tooltip in browsers).
"""
import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

WIDTH = 1100
ROW_H = 14
HEAD_H = 20          # a set's heading
LABEL_W = 330        # the label column
PANEL_GAP = 40
MARGIN_L = 10
MARGIN_R = 20
TOP = 96             # title, legend and top axis
BOTTOM = 44          # bottom axis and its label
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""

COLOR_COMPUTE = "#4e79a7"
COLOR_MEMORY = "#f28e2b"
COLOR_FASTER = "#59a14f"
COLOR_SLOWER = "#e15759"
COLOR_GRID = "#d9d9d9"
COLOR_TEXT = "#222222"
COLOR_MUTED = "#777777"

RATIO_MIN_LOG2 = -3.0   # 1/8
RATIO_MAX_LOG2 = 3.0    # 8


def _num(x):
    """x as a finite float, or None (null, strings, NaN, infinities)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt3(x):
    """Three significant digits, without exponents for ordinary magnitudes."""
    x = _num(x)
    if x is None:
        return "–"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        digits = int(math.floor(math.log10(a))) + 1
        return str(int(round(x, 3 - digits)))
    if a < 1e-3:
        return f"{x:.2e}"
    s = f"{x:.3g}"
    return s


def peer_median_ms(row):
    pt = row.get("peer_time")
    if isinstance(pt, dict):
        return _num(pt.get("median_ms"))
    return None


def speedup_vs_peer(row):
    """peer median / Wren median (> 1: Wren faster), or None when there is no peer timing."""
    ratio = _num(row.get("ratio_vs_peer"))  # Wren / peer
    if ratio is not None and ratio > 0:
        return 1.0 / ratio
    wren, peer = _num(row.get("median_ms")), peer_median_ms(row)
    if wren and peer and wren > 0:
        return peer / wren
    return None


def row_label(row, multi_batch):
    parts = [str(row.get("family", "?")), str(row.get("layer", "?")), str(row.get("pass", "?"))]
    batch = _num(row.get("batch"))
    if multi_batch and batch:
        parts.append(f"n{int(batch)}")
    return " ".join(parts)


def _clip_label(text, max_chars):
    text = str(text)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def write_text(out_path, text):
    """Writes `text` to `out_path` through a temporary file and a rename (no torn SVG)."""
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out_path)


def group_rows(rows):
    """[(set name, [rows])] in first-appearance order."""
    order, groups = [], {}
    for r in rows:
        if not isinstance(r, dict):
            continue
        s = str(r.get("set", "") or "(no set)")
        if s not in groups:
            groups[s] = []
            order.append(s)
        groups[s].append(r)
    return [(s, groups[s]) for s in order]


def render_svg(data, source_name=""):
    """The SVG document (a str) for one kernels JSON object."""
    rows = data.get("rows") if isinstance(data.get("rows"), list) else []
    groups = group_rows(rows)
    n_rows = sum(len(g) for _, g in groups)
    height = TOP + len(groups) * HEAD_H + n_rows * ROW_H + BOTTOM + 8
    if not groups:
        height = TOP + 40 + BOTTOM

    panel_w = (WIDTH - MARGIN_L - LABEL_W - PANEL_GAP - MARGIN_R) // 2
    left_x0 = MARGIN_L + LABEL_W
    right_x0 = left_x0 + panel_w + PANEL_GAP
    bar_w = panel_w - 46     # room for the value text at the end of a full bar

    def x_pct(p):
        return left_x0 + bar_w * max(0.0, min(p, 100.0)) / 100.0

    def x_ratio(v):
        l2 = math.log2(v)
        l2 = max(RATIO_MIN_LOG2, min(RATIO_MAX_LOG2, l2))
        return right_x0 + panel_w * (l2 - RATIO_MIN_LOG2) / (RATIO_MAX_LOG2 - RATIO_MIN_LOG2)

    device = str(data.get("device_name") or data.get("device") or "unknown device")
    math_mode = str(data.get("math") or "?")
    date = str(data.get("date") or "undated")
    ceil = data.get("ceilings") if isinstance(data.get("ceilings"), dict) else {}
    copy_gbs = _num(ceil.get("copy_gbs"))
    gemm_used = str(ceil.get("gemm_used") or math_mode)
    gemm = _num(ceil.get(f"gemm_{gemm_used}_gflops"))
    if gemm is None:
        gemm = _num(ceil.get("gemm_fp32_gflops"))

    out = []
    w = out.append
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
      f'viewBox="0 0 {WIDTH} {height}" {FONT} font-size="10">')
    w(f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>')
    title = f"Wren kernels on {device}, {math_mode} math, {date}"
    w(f'<text x="{MARGIN_L}" y="20" font-size="15" font-weight="bold" fill="{COLOR_TEXT}">'
      f'{escape(title)}</text>')
    sub = (f"ceilings measured on this device: copy {fmt3(copy_gbs)} GB/s, "
           f"GEMM ({gemm_used}) {fmt3(gemm)} GFLOP/s; {n_rows} rows"
           + (f"; from {source_name}" if source_name else ""))
    w(f'<text x="{MARGIN_L}" y="37" font-size="11" fill="{COLOR_MUTED}">{escape(sub)}</text>')
    # The legend line(s).
    ly = 54
    lx = MARGIN_L
    for color, text in ((COLOR_COMPUTE, "compute-bound row: % of the GEMM ceiling"),
                        (COLOR_MEMORY, "memory-bound row: % of copy bandwidth"),
                        (COLOR_FASTER, "Wren faster than the peer"),
                        (COLOR_SLOWER, "Wren slower than the peer")):
        w(f'<rect x="{lx}" y="{ly - 8}" width="10" height="9" fill="{color}"/>')
        w(f'<text x="{lx + 14}" y="{ly}" fill="{COLOR_TEXT}">{escape(text)}</text>')
        lx += 14 + int(len(text) * 5.8) + 24
    legend = ("Left: share of the measured ceiling (median time). Right: peer median / Wren "
              "median (cuDNN for conv, cuBLAS for linear), log2 axis 1/8 to 8; empty: no peer. "
              "Values past the axis ends are clipped (marked ◂ ▸).")
    w(f'<text x="{MARGIN_L}" y="{ly + 14}" fill="{COLOR_MUTED}">{escape(legend)}</text>')

    plot_top = TOP
    plot_bottom = height - BOTTOM
    # Panel headings and axes (ticks at the top and bottom).
    w(f'<text x="{left_x0}" y="{plot_top - 14}" font-weight="bold" fill="{COLOR_TEXT}">'
      f'% of ceiling</text>')
    w(f'<text x="{right_x0}" y="{plot_top - 14}" font-weight="bold" fill="{COLOR_TEXT}">'
      f'speed vs peer (peer ms / Wren ms)</text>')
    for p in (0, 25, 50, 75, 100):
        x = x_pct(p)
        w(f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" '
          f'stroke="{COLOR_GRID}" stroke-width="1"/>')
        for y in (plot_top - 3, plot_bottom + 12):
            w(f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="{COLOR_MUTED}">{p}%</text>')
    for e in range(int(RATIO_MIN_LOG2), int(RATIO_MAX_LOG2) + 1):
        v = 2.0 ** e
        x = x_ratio(v)
        label = f"{int(v)}×" if v >= 1 else f"1/{int(round(1 / v))}×"
        stroke = "#555555" if e == 0 else COLOR_GRID
        sw = 1.5 if e == 0 else 1
        w(f'<line x1="{x:.1f}" y1="{plot_top}" x2="{x:.1f}" y2="{plot_bottom}" '
          f'stroke="{stroke}" stroke-width="{sw}"/>')
        for y in (plot_top - 3, plot_bottom + 12):
            w(f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="{COLOR_MUTED}">'
              f'{escape(label)}</text>')
    w(f'<text x="{left_x0 + bar_w / 2:.1f}" y="{plot_bottom + 28}" text-anchor="middle" '
      f'fill="{COLOR_TEXT}">% of the measured ceiling (GEMM for compute-bound, copy for '
      f'memory-bound)</text>')
    w(f'<text x="{right_x0 + panel_w / 2:.1f}" y="{plot_bottom + 28}" text-anchor="middle" '
      f'fill="{COLOR_TEXT}">peer median / Wren median, log2 (right of 1×: Wren faster)</text>')

    if not groups:
        w(f'<text x="{left_x0}" y="{plot_top + 24}" fill="{COLOR_SLOWER}">no rows in this '
          f'file</text>')

    max_chars = int(LABEL_W / 5.6)
    y = plot_top
    for set_name, grp in groups:
        batches = sorted({b for b in (_num(r.get("batch")) for r in grp) if b})
        multi_batch = len(batches) > 1
        heading = "set " + set_name
        if len(batches) == 1:
            heading += f" (batch {int(batches[0])})"
        elif batches:
            heading += " (batches " + ", ".join(str(int(b)) for b in batches) + ")"
        w(f'<text x="{MARGIN_L}" y="{y + HEAD_H - 5}" font-size="11" font-weight="bold" '
          f'fill="{COLOR_TEXT}">{escape(heading)}</text>')
        w(f'<line x1="{MARGIN_L}" y1="{y + HEAD_H - 1}" x2="{WIDTH - MARGIN_R}" '
          f'y2="{y + HEAD_H - 1}" stroke="#bbbbbb" stroke-width="0.5"/>')
        y += HEAD_H
        for i, r in enumerate(grp):
            cy = y + ROW_H / 2
            if i % 2 == 1:
                w(f'<rect x="{MARGIN_L}" y="{y}" width="{WIDTH - MARGIN_L - MARGIN_R}" '
                  f'height="{ROW_H}" fill="#f5f5f5" fill-opacity="0.6"/>')
            label = row_label(r, multi_batch)
            pct = _num(r.get("pct_of_ceiling"))
            sp = speedup_vs_peer(r)
            bound = str(r.get("bound") or "?")
            tip = (f"{label} | {r.get('shape', '')} | {bound}-bound | "
                   f"median {fmt3(r.get('median_ms'))} ms, {fmt3(r.get('gflops'))} GFLOP/s, "
                   f"{fmt3(r.get('gbs'))} GB/s, {fmt3(pct)} % of ceiling")
            if r.get("peer"):
                tip += (f" | {r.get('peer')} {fmt3(peer_median_ms(r))} ms, "
                        f"peer/Wren {fmt3(sp)}×")
            if r.get("error"):
                tip += f" | error: {r.get('error')}"
            w(f'<g><title>{escape(tip)}</title>')
            w(f'<text x="{MARGIN_L + 4}" y="{cy + 3.5:.1f}" fill="{COLOR_TEXT}">'
              f'{escape(_clip_label(label, max_chars))}</text>')
            if r.get("error"):
                w(f'<text x="{left_x0 + 2}" y="{cy + 3.5:.1f}" fill="{COLOR_SLOWER}">'
                  f'{escape(_clip_label("error: " + str(r.get("error")), 60))}</text>')
            elif pct is not None:
                color = COLOR_COMPUTE if bound == "compute" else COLOR_MEMORY
                x1 = x_pct(pct)
                w(f'<rect x="{left_x0}" y="{y + 2}" width="{max(x1 - left_x0, 0.8):.1f}" '
                  f'height="{ROW_H - 4}" fill="{color}"/>')
                text = f"{fmt3(pct)}%" + (" ▸" if pct > 100 else "")
                w(f'<text x="{x1 + 3:.1f}" y="{cy + 3.5:.1f}" fill="{COLOR_TEXT}">'
                  f'{escape(text)}</text>')
            else:
                w(f'<text x="{left_x0 + 2}" y="{cy + 3.5:.1f}" fill="{COLOR_MUTED}">'
                  f'no figure</text>')
            if sp is not None and sp > 0 and not r.get("error"):
                x1, xone = x_ratio(sp), x_ratio(1.0)
                color = COLOR_FASTER if sp >= 1 else COLOR_SLOWER
                lo, hi = min(x1, xone), max(x1, xone)
                w(f'<rect x="{lo:.1f}" y="{y + 2}" width="{max(hi - lo, 0.8):.1f}" '
                  f'height="{ROW_H - 4}" fill="{color}"/>')
                clipped = math.log2(sp) > RATIO_MAX_LOG2 or math.log2(sp) < RATIO_MIN_LOG2
                text = f"{fmt3(sp)}×"
                # The value beside the bar's free end; a clipped bar fills its half of the
                # panel, so its value goes on the other side of the 1x line.
                if sp >= 1 and not clipped:
                    tx, anchor = hi + 3, "start"
                elif sp >= 1:
                    text, tx, anchor = text + " ▸", xone - 3, "end"
                elif not clipped:
                    tx, anchor = lo - 3, "end"
                else:
                    text, tx, anchor = "◂ " + text, xone + 3, "start"
                w(f'<text x="{tx:.1f}" y="{cy + 3.5:.1f}" text-anchor="{anchor}" '
                  f'fill="{COLOR_TEXT}">{escape(text)}</text>')
            w('</g>')
            y += ROW_H
    w('</svg>')
    return "\n".join(out) + "\n"


def write_svg(json_path, out_path=None):
    """Read one kernels JSON, write its SVG (default: the JSON's path with .svg); returns the
    path written. Raises OSError / ValueError on unreadable input."""
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{json_path}: not a JSON object")
    if out_path is None:
        out_path = os.path.splitext(json_path)[0] + ".svg"
    write_text(out_path, render_svg(data, os.path.basename(json_path)))
    return out_path


def main(argv=None):
    ap = argparse.ArgumentParser(description="SVG plot of `wren-bench kernels --json` output.")
    ap.add_argument("json", help="kernels JSON (wren-bench kernels --json FILE)")
    ap.add_argument("-o", "--out", help="SVG to write (default: the JSON path with .svg)")
    args = ap.parse_args(argv)
    try:
        path = write_svg(args.json, args.out)
    except (OSError, ValueError) as e:
        print(f"plot_kernels.py: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
