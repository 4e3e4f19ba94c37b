#!/usr/bin/env python3
"""Turn a `bench/gpu-validate.sh` report folder into one results page and one JSON.

One file over 700 lines on purpose: it runs on GPU machines with the standard library only,
beside gpu-validate.sh, and every section of the page reads the same parsed stages.

    python3 bench/gpu_report.py R                       # writes R/report.md and R/report.json
    python3 bench/gpu_report.py R --md OUT.md --json OUT.json

Standard library only. Reads whatever the stages left in R (any file may be missing: a stage
skipped, failed or timed out; the page says so from stages.tsv and never invents a figure):

  env.txt, build_info.txt                  the machine, the driver, CUDA, torch, the commit
  stages.tsv, commands.txt                 each stage's status, seconds and command
  tests.xml (tests.log)                    the GPU test suite (GoogleTest)
  check-<model>-<math>.log                 `wren check`: device vs CPU reference, per tensor
  sanitize-<tool>*.log                     compute-sanitizer on the kernel tests
  kernels-<math>.json                      `wren-bench kernels --json`
  train-wren.json                          `wren-bench train --json`
  peers-throughput.jsonl, peers-compile.jsonl    `bench/peers/torch_train.py throughput`
  tta-wren-<model>.jsonl, tta-torch-<model>.jsonl, tta.json    time to accuracy

When bench/plot_kernels.py sits beside this script it also writes R/kernels-<math>.svg for each
kernels JSON and links them from the page. Conventions: ratios are Wren / peer for times
(> 1: Wren slower) and Wren / PyTorch for throughputs (> 1: Wren faster); figures are shown to
three significant digits (the JSON keeps them whole).
"""
import argparse
import datetime
import glob
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

DASH = "–"
DEFAULT_TARGETS = [0.92, 0.93]  # torch_train.py tta's defaults, used when nothing says otherwise
PEER_MODES = ["eager", "eager+cudagraph", "compile", "compile+cudagraph"]


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------

def num(x):
    """x as a finite float, or None (null, strings, bools, NaN, infinities)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt3(x, unit=""):
    """Three significant digits, no exponent for ordinary magnitudes; "–" for no value."""
    x = num(x)
    if x is None:
        return DASH
    if x == 0:
        s = "0"
    else:
        a = abs(x)
        if a >= 1000:
            digits = int(math.floor(math.log10(a))) + 1
            s = str(int(round(x, 3 - digits)))
        elif a < 1e-3:
            s = f"{x:.2e}"
        else:
            s = f"{x:.3g}"
    return s + unit


def fmt_pct_acc(x):
    x = num(x)
    return DASH if x is None else f"{100 * x:.2f}%"


def md_cell(text):
    """Text made safe for one Markdown table cell."""
    s = DASH if text is None or text == "" else str(text)
    return s.replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def md_table(header, rows):
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |",
           "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(md_cell(c) for c in r) + " |")
    return out


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_json(path):
    """(object, None) or (None, why)."""
    text = read_text(path)
    if text is None:
        return None, "missing"
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"unreadable JSON ({e})"


def read_jsonl(path):
    """([objects], [bad line notes]) or (None, None) when the file is missing."""
    text = read_text(path)
    if text is None:
        return None, None
    objs, bad = [], []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            o = json.loads(line)
        except ValueError:
            bad.append(f"line {i} is not JSON: {line[:80]}")
            continue
        if isinstance(o, dict):
            objs.append(o)
        else:
            bad.append(f"line {i} is not a JSON object")
    return objs, bad


def geomean(values):
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# ------------------------------------------------------------------------------------------------
# Stages: stages.tsv and commands.txt
# ------------------------------------------------------------------------------------------------

class Stages:
    def __init__(self, root):
        self.root = root
        self.rows = []          # [{name, status, seconds, command, limit_s}]
        self.by_name = {}
        self.tsv_present = False
        self.commands_text = read_text(os.path.join(root, "commands.txt"))
        limits, started = {}, []
        for line in (self.commands_text or "").splitlines():
            m = re.match(r"^--- (\S+) \(limit (\d+) s\): ?(.*)$", line)
            if m:
                limits[m.group(1)] = int(m.group(2))
                started.append((m.group(1), m.group(3)))
        text = read_text(os.path.join(root, "stages.tsv"))
        if text is not None:
            self.tsv_present = True
            for line in text.splitlines():
                if not line.strip():
                    continue
                parts = line.split("\t")
                name = parts[0].strip()
                status = parts[1].strip() if len(parts) > 1 else "unknown"
                seconds = None
                if len(parts) > 2:
                    try:
                        seconds = float(parts[2])
                    except ValueError:
                        seconds = None
                command = "\t".join(parts[3:]) if len(parts) > 3 else ""
                row = {"name": name, "status": status or "unknown", "seconds": seconds,
                       "command": command, "limit_s": limits.get(name)}
                self.rows.append(row)
                self.by_name[name] = row
        # A stage that started (commands.txt) but has no line in stages.tsv was cut short: the
        # whole script stopped while it ran.
        for name, command in started:
            if name not in self.by_name:
                row = {"name": name, "status": "interrupted", "seconds": None,
                       "command": command, "limit_s": limits.get(name),
                       "note": "started (commands.txt) but no result in stages.tsv"}
                self.rows.append(row)
                self.by_name[name] = row

    def status(self, name):
        row = self.by_name.get(name)
        return row["status"] if row else None

    def matching(self, prefix):
        return [r for r in self.rows if r["name"] == prefix or r["name"].startswith(prefix + "-")]

    def why_missing(self, filename, *stage_names):
        """A sentence for a missing input: what stages.tsv says about the stage(s) behind it."""
        found = []
        for n in stage_names:
            for r in ([self.by_name[n]] if n in self.by_name else self.matching(n)):
                if r not in found:
                    found.append(r)
        if found:
            desc = ", ".join(f"stage `{r['name']}` {describe_status(r['status'])}"
                             for r in found)
            return f"`{filename}` is missing ({desc})."
        if not self.tsv_present:
            return f"`{filename}` is missing and there is no stages.tsv: not run."
        return f"`{filename}` is missing: not run (no such stage in stages.tsv)."


def describe_status(status):
    if status is None:
        return "not run"
    if status == "ok":
        return "ok"
    if status == "timeout":
        return "timed out"
    if status == "skipped":
        return "skipped"
    if status == "interrupted":
        return "interrupted"
    m = re.match(r"fail\((\d+)\)", status)
    if m:
        return f"failed (exit {m.group(1)})"
    return status


def stages_section(st):
    data = {"present": st.tsv_present, "rows": st.rows}
    md = ["## Stages", ""]
    if not st.rows:
        md.append("No stages.tsv and no commands.txt: no stage ran, or the folder is not a "
                  "gpu-validate report.")
        data["verdict"] = "no stages recorded"
        return md, data
    if not st.tsv_present:
        md.append("stages.tsv is missing; the stages below come from commands.txt only.")
        md.append("")
    rows = []
    for r in st.rows:
        secs = DASH if r["seconds"] is None else f"{r['seconds']:g}"
        lim = DASH if r.get("limit_s") is None else str(r["limit_s"])
        status = r["status"] if r["status"] == "ok" else f"**{r['status']}**"
        rows.append([r["name"], status, secs, lim])
    md += md_table(["stage", "status", "seconds", "limit s"], rows)
    bad = [r for r in st.rows if r["status"] not in ("ok", "skipped")]
    skipped = [r["name"] for r in st.rows if r["status"] == "skipped"]
    if not bad:
        verdict = f"all {len(st.rows)} stages ok"
        if skipped:
            verdict = (f"{len(st.rows) - len(skipped)} stages ok, {len(skipped)} skipped "
                       f"({', '.join(skipped)})")
    else:
        groups = {}
        for r in bad:
            groups.setdefault(describe_status(r["status"]).split(" (")[0], []).append(r["name"])
        verdict = "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items())
        verdict = f"{len(bad)} of {len(st.rows)} stages not ok ({verdict})"
        if skipped:
            verdict += f"; skipped: {', '.join(skipped)}"
    md += ["", f"**Verdict:** {verdict}."]
    data["verdict"] = verdict
    data["all_ok"] = not bad
    return md, data


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------

def parse_env(root, kernels_meta):
    env = {}
    text = read_text(os.path.join(root, "env.txt"))
    env["env_txt"] = text is not None
    lines = (text or "").splitlines()
    for i, line in enumerate(lines):
        low = line.lower()
        if low.startswith("date:"):
            env["date"] = line.split(":", 1)[1].strip()
        elif low.startswith("host:"):
            env["host"] = line.split(":", 1)[1].strip()
        elif low.startswith("cpu:"):
            env["cpu"] = line.split(":", 1)[1].strip()
        elif low.startswith("nvcc:"):
            v = line.split(":", 1)[1].strip()
            env["nvcc"] = v
            m = re.search(r"cuda_(\d+\.\d+)", v) or re.search(r"release (\d+\.\d+)", v)
            if m:
                env["cuda"] = m.group(1)
        elif low.startswith("python3 torch:"):
            v = line.split(":", 1)[1].strip()
            parts = v.split()
            if parts and re.match(r"^\d+\.\d+", parts[0]):
                env["torch"] = parts[0]
                if len(parts) > 1 and parts[1] != "None":
                    env["torch_cuda"] = parts[1]
                if len(parts) > 2 and parts[2] != "None":
                    env["torch_cudnn"] = parts[2]
            else:
                env["torch"] = None
                env["torch_note"] = v
        elif low.startswith("compute-sanitizer:"):
            env["compute_sanitizer"] = line.split(":", 1)[1].strip() or None
        elif low.startswith("name,") and "driver_version" in low:
            header = [h.strip() for h in line.split(",")]
            gpus = []
            for follow in lines[i + 1:]:
                cells = [c.strip() for c in follow.split(",")]
                if len(cells) != len(header) or follow.lower().startswith("name,"):
                    break
                gpus.append(dict(zip(header, cells)))
            if gpus:
                env["gpus"] = gpus
                g = gpus[0]
                env["gpu"] = g.get("name")
                env["driver"] = g.get("driver_version")
                mem = [v for k, v in g.items() if k.startswith("memory.total")]
                env["gpu_memory"] = mem[0] if mem else None
                env["compute_cap"] = g.get("compute_cap")
    info = read_text(os.path.join(root, "build_info.txt"))
    env["build_info"] = info
    for line in (info or "").splitlines():
        if line.lower().startswith("commit:"):
            env["commit"] = line.split(":", 1)[1].strip()
            env["commit_source"] = "build_info.txt"
    if not env.get("commit"):
        for line in lines:
            if line.lower().startswith("commit:"):
                env["commit"] = line.split(":", 1)[1].strip()
                env["commit_source"] = "env.txt"
    if not env.get("commit"):
        # Built from source in this repository: its HEAD (marked as such).
        try:
            here = os.path.dirname(os.path.abspath(__file__))
            out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                env["commit"] = out.stdout.strip()
                env["commit_source"] = "HEAD of the source tree running this report"
        except (OSError, subprocess.SubprocessError):
            pass
    if not env.get("gpu"):
        for meta in kernels_meta:
            if meta.get("device_name"):
                env["gpu"] = meta["device_name"]
                env["gpu_source"] = "kernels JSON"
                break
    if not env.get("date"):
        for meta in kernels_meta:
            if meta.get("date"):
                env["date"] = meta["date"]
                env["date_source"] = "kernels JSON"
                break
    return env


# ------------------------------------------------------------------------------------------------
# GPU tests
# ------------------------------------------------------------------------------------------------

def failure_summary(message):
    """`file.cpp:98: the first line that says what failed` from a GoogleTest failure message."""
    lines = [l.strip() for l in (message or "").splitlines() if l.strip()]
    if not lines:
        return ""
    loc = ""
    m = re.match(r"^(.*?):(\d+)$", lines[0])
    if m:
        loc = f"{os.path.basename(m.group(1))}:{m.group(2)}"
        lines = lines[1:]
    text = ""
    for l in lines:
        if l in ("Failed", "Failure"):
            continue
        text = l
        break
    if not text and lines:
        text = lines[0]
    return f"{loc}: {text}" if loc else text


def parse_tests_xml(path):
    tree = ET.parse(path)
    root = tree.getroot()
    cases = []
    for tc in root.iter("testcase"):
        name = f"{tc.get('classname', '')}.{tc.get('name', '')}"
        failures = tc.findall("failure") + tc.findall("error")
        skipped = tc.find("skipped")
        status = tc.get("status", "run")
        result = tc.get("result", "")
        if failures:
            state = "failed"
        elif skipped is not None or result == "skipped" or result == "suppressed":
            state = "skipped"
        elif status == "notrun" or tc.get("name", "").startswith("DISABLED_"):
            state = "disabled"
        else:
            state = "passed"
        msg = ""
        if failures:
            msg = failures[0].get("message") or failures[0].text or ""
        elif skipped is not None:
            msg = skipped.get("message") or skipped.text or ""
        cases.append({"name": name, "state": state, "time_s": num_attr(tc.get("time")),
                      "failures": len(failures), "message": failure_summary(msg)
                      if state == "failed" else first_line(msg)})
    return {"source": "tests.xml", "declared_tests": int_attr(root.get("tests")),
            "declared_failures": int_attr(root.get("failures")),
            "declared_disabled": int_attr(root.get("disabled")),
            "declared_skipped": int_attr(root.get("skipped")),
            "time_s": num_attr(root.get("time")), "cases": cases}


def num_attr(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def int_attr(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def parse_tests_log(text):
    """Per-test results from GoogleTest's console output (when tests.xml is missing: the run
    timed out or crashed before writing it)."""
    cases, running = {}, None
    order = []
    for line in text.splitlines():
        m = re.match(r"^\[ RUN      \] (\S+)", line)
        if m:
            running = m.group(1)
            if running not in cases:
                order.append(running)
            cases[running] = {"name": running, "state": "unfinished", "message": ""}
            continue
        m = re.match(r"^\[ +(OK|FAILED|SKIPPED) +\] (\S+) \(\d+ ms\)", line)
        if m:
            name = m.group(2)
            state = {"OK": "passed", "FAILED": "failed", "SKIPPED": "skipped"}[m.group(1)]
            if name not in cases:
                order.append(name)
                cases[name] = {"name": name, "message": ""}
            cases[name]["state"] = state
            if running == name:
                running = None
    # A failure message: the lines after "[ RUN ] X" that name a source location.
    current = None
    pending = []
    for line in text.splitlines():
        m = re.match(r"^\[ RUN      \] (\S+)", line)
        if m:
            current, pending = m.group(1), []
            continue
        if re.match(r"^\[ +(OK|FAILED|SKIPPED) +\]", line):
            if current in cases and cases[current].get("state") == "failed" and pending:
                cases[current]["message"] = failure_summary("\n".join(pending))
            current, pending = None, []
            continue
        if current is not None and (pending or re.match(r"^\S.*:\d+: ", line)):
            if not pending:
                m2 = re.match(r"^(\S.*?):(\d+): (.*)$", line)
                pending = [f"{m2.group(1)}:{m2.group(2)}", m2.group(3)] if m2 else [line]
                if pending[-1] == "Failure":
                    pending.pop()
            elif len(pending) < 6:
                pending.append(line)
    return {"source": "tests.log", "cases": [cases[n] for n in order]}


def tests_section(root, st):
    md = ["## GPU tests", ""]
    xml_path = os.path.join(root, "tests.xml")
    log_text = read_text(os.path.join(root, "tests.log"))
    status = st.status("tests")
    data = {"stage_status": status}
    parsed, note = None, None
    if os.path.exists(xml_path):
        try:
            parsed = parse_tests_xml(xml_path)
        except (ET.ParseError, OSError) as e:
            note = f"tests.xml is unreadable ({e})"
    if parsed is None and log_text:
        parsed = parse_tests_log(log_text)
        note = (note + "; " if note else "tests.xml is missing; ") + \
            "the results below are read from tests.log"
    if parsed is None:
        md.append(st.why_missing("tests.xml", "tests"))
        data["result"] = None
        return md, data
    cases = parsed["cases"]
    counts = {k: sum(1 for c in cases if c["state"] == k)
              for k in ("passed", "failed", "skipped", "disabled", "unfinished")}
    data.update({"source": parsed["source"], "counts": counts, "total": len(cases),
                 "failed": [c for c in cases if c["state"] == "failed"],
                 "skipped": [c for c in cases if c["state"] == "skipped"],
                 "unfinished": [c for c in cases if c["state"] == "unfinished"],
                 "time_s": parsed.get("time_s")})
    if note:
        md += [note + ".", ""]
    line = (f"**{counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped**")
    if counts["disabled"]:
        line += f", {counts['disabled']} disabled"
    if counts["unfinished"]:
        line += f", {counts['unfinished']} started but unfinished"
    line += f" of {len(cases)} tests"
    if parsed.get("time_s") is not None:
        line += f" in {parsed['time_s']:g} s"
    line += f" (stage `tests`: {describe_status(status)})."
    md.append(line)
    if data["failed"]:
        md += ["", "Failed:", ""]
        for c in data["failed"]:
            extra = f" ({c['failures']} failures)" if c.get("failures", 0) > 1 else ""
            md.append(f"- `{c['name']}`{extra}: {c['message'] or 'no message'}")
    if data["unfinished"]:
        md += ["", "Started, no result (the run stopped in it):", ""]
        for c in data["unfinished"]:
            md.append(f"- `{c['name']}`")
    if data["skipped"]:
        md += ["", "Skipped: " + ", ".join(f"`{c['name']}`" for c in data["skipped"]) + "."]
    return md, data


# ------------------------------------------------------------------------------------------------
# wren check
# ------------------------------------------------------------------------------------------------

CHECK_RE = re.compile(r"^(\d+) tensors compared on (.+?) against the CPU reference: (.*)$")


def stage_names(root, st, prefix):
    """The stages named `prefix`*: those with a log and those in stages.tsv, in stage order
    (stages.tsv's, then by name)."""
    names = {os.path.basename(p)[:-4] for p in glob.glob(os.path.join(root, prefix + "*.log"))}
    names |= {r["name"] for r in st.rows if r["name"].startswith(prefix)}
    order = {r["name"]: i for i, r in enumerate(st.rows)}
    return sorted(names, key=lambda n: (order.get(n, 1 << 30), n))


def check_section(root, st):
    md = ["## wren check", ""]
    entries = []
    for name in stage_names(root, st, "check-"):
        m = re.match(r"^check-(.+)-(fp32|tf32|[a-z0-9]+)$", name)
        model, math_mode = (m.group(1), m.group(2)) if m else (name[6:], "?")
        status = st.status(name)
        text = read_text(os.path.join(root, name + ".log"))
        e = {"stage": name, "model": model, "math": math_mode, "stage_status": status,
             "tensors": None, "failed": None, "backend": None, "result": None}
        if text is None:
            e["result"] = f"no log ({describe_status(status)})"
        else:
            lines = [l for l in text.splitlines() if l.strip()]
            last = lines[-1].strip() if lines else ""
            mm = CHECK_RE.match(last)
            if mm:
                e["tensors"] = int(mm.group(1))
                e["backend"] = mm.group(2)
                verdict = mm.group(3).strip()
                mf = re.match(r"^(\d+) FAILED", verdict)
                if verdict.startswith("all within tolerance"):
                    e["failed"] = 0
                    e["result"] = f"ok: {e['tensors']} tensors within tolerance"
                elif mf:
                    e["failed"] = int(mf.group(1))
                    # The header gives the columns: "tensor  name  op ...", the kind of tensor
                    # may be two words ("act grad"), the name starts at the "name" column.
                    pos = lines[0].find(" name ") + 1 if lines else 0
                    worst = []
                    for l in lines[1:]:
                        if not re.search(r"\bFAIL\b", l):
                            continue
                        if pos > 0 and len(l) > pos and l[pos - 1] == " ":
                            kind = l[:pos].strip()
                            rest = l[pos:].split()
                            worst.append(f"{kind} {rest[0]}" if rest else kind)
                        else:
                            worst.append(" ".join(l.split()[:2]))
                    e["failed_tensors"] = worst
                    e["result"] = f"**{e['failed']} of {e['tensors']} FAILED**"
                else:
                    e["result"] = verdict
            else:
                e["result"] = (f"no summary line ({describe_status(status)}); last line: "
                               f"`{last[:100]}`" if last else
                               f"empty log ({describe_status(status)})")
        entries.append(e)
    if not entries:
        md.append(st.why_missing("check-<model>-<math>.log", "check"))
        return md, {"rows": []}
    md += md_table(["model", "math", "result", "stage"],
                   [[e["model"], e["math"], e["result"], describe_status(e["stage_status"])]
                    for e in entries])
    failing = [e for e in entries if e.get("failed_tensors")]
    if failing:
        md.append("")
        for e in failing:
            names_ = e["failed_tensors"]
            shown = ", ".join(names_[:8])
            more = f" and {len(names_) - 8} more" if len(names_) > 8 else ""
            md.append(f"- {e['model']} {e['math']}: out of tolerance: {shown}{more}")
    return md, {"rows": entries}


# ------------------------------------------------------------------------------------------------
# compute-sanitizer
# ------------------------------------------------------------------------------------------------

def main_job_section(root, st):
    """The README's main job (`wren train` with its defaults) on this device: its summary."""
    md = ["## Main job (`wren train`, defaults: ref-cnn, 5 epochs)", ""]
    text = read_text(os.path.join(root, "main-job.log"))
    if text is None:
        md.append(st.why_missing("main-job.log", "main-job"))
        return md, {}
    epochs = re.findall(r"^epoch (\d+)/(\d+): train loss (\S+) acc (\S+), val acc (\S+), "
                        r"test acc (\S+) \((\S+) s\)", text, re.M)
    summary = re.search(r"^trained (\d+) steps at (\d+) img/s.*$", text, re.M)
    data = {"stage_status": st.status("main-job"),
            "epochs": [{"epoch": int(e), "train_loss": float(l), "train_acc": float(a),
                        "val_acc": float(v), "test_acc": float(t), "seconds": float(sec)}
                       for e, _, l, a, v, t, sec in epochs],
            "summary": summary.group(0) if summary else None}
    if epochs:
        md += md_table(["epoch", "train loss", "val acc", "test acc", "seconds"],
                       [[e, l, v, t, sec] for e, _, l, _a, v, t, sec in epochs])
    md += ["", f"`{data['summary']}`" if data["summary"] else "No summary line (the run did not finish).",
           f"(stage `main-job`: {describe_status(data['stage_status'])})"]
    return md, data


def sanitize_section(root, st):
    md = ["## compute-sanitizer", ""]
    entries = []
    for name in stage_names(root, st, "sanitize-"):
        tool = name[len("sanitize-"):]
        status = st.status(name)
        text = read_text(os.path.join(root, name + ".log"))
        e = {"stage": name, "tool": tool, "stage_status": status, "errors": None,
             "finished": False, "tests_passed": None, "tests_failed": None,
             "failed_tests": [], "last_test": None}
        if text is not None:
            m = None
            # memcheck/synccheck: "ERROR SUMMARY: N errors"; racecheck: "RACECHECK SUMMARY:
            # N hazards displayed (E errors, W warnings)" (errors = E).
            for m in re.finditer(r"(?:ERROR SUMMARY: (\d+) error|RACECHECK SUMMARY: \d+ hazards? "
                                 r"displayed \((\d+) errors?)", text):
                pass
            if m:
                e["errors"] = int(m.group(1) or m.group(2))
                e["finished"] = True
            mp = re.search(r"^\[  PASSED  \] (\d+) tests?\.", text, re.M)
            mf = re.search(r"^\[  FAILED  \] (\d+) tests?, listed below", text, re.M)
            e["tests_passed"] = int(mp.group(1)) if mp else None
            e["tests_failed"] = int(mf.group(1)) if mf else (0 if mp else None)
            e["failed_tests"] = sorted(set(re.findall(r"^\[  FAILED  \] (\S+\.\S+)$", text,
                                                      re.M)))
            runs = re.findall(r"^\[ RUN      \] (\S+)", text, re.M)
            e["last_test"] = runs[-1] if runs else None
        if text is None:
            errors, tests = DASH, "no log"
        else:
            errors = str(e["errors"]) if e["finished"] else "did not finish"
            if e["tests_passed"] is not None:
                tests = f"{e['tests_passed']} passed, {e['tests_failed']} failed"
                if e["failed_tests"]:
                    tests += " (" + ", ".join(e["failed_tests"]) + ")"
            elif e["last_test"]:
                tests = f"stopped in {e['last_test']}"
            else:
                tests = "no test results"
        if e["errors"]:
            verdict = f"**{e['errors']} sanitizer errors**"
        elif e["finished"] and e["errors"] == 0:
            verdict = "clean" + (" (tests failed)" if e["tests_failed"] else "")
        elif text is not None:
            verdict = "did not finish" if status != "ok" else "ok (no summary line)"
        else:
            verdict = "not run"
        e["verdict"] = verdict.replace("**", "")
        entries.append((e, [tool, errors, tests, f"{verdict}; stage {describe_status(status)}"]))
    if not entries:
        md.append(st.why_missing("sanitize-<tool>.log", "sanitize"))
        return md, {"rows": []}
    md += md_table(["tool", "errors", "tests", "status"], [r for _, r in entries])
    md += ["", "Exit status 3 is compute-sanitizer's `--error-exitcode`; another failure with 0 "
           "errors is a failing test under the tool."]
    return md, {"rows": [e for e, _ in entries]}


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------

def kernel_files(root):
    out = []
    for p in sorted(glob.glob(os.path.join(root, "kernels-*.json"))):
        m = re.match(r"^kernels-(.+)\.json$", os.path.basename(p))
        if m:
            out.append((m.group(1), p))
    order = {"fp32": 0, "tf32": 1}
    return sorted(out, key=lambda t: (order.get(t[0], 9), t[0]))


def peer_ms(row):
    pt = row.get("peer_time")
    return num(pt.get("median_ms")) if isinstance(pt, dict) else None


def kernels_summary(rows):
    fams, order = {}, []
    for r in rows:
        f = str(r.get("family", "?"))
        if f not in fams:
            fams[f] = []
            order.append(f)
        fams[f].append(r)
    out = []
    for f in order:
        rs = fams[f]
        ok = [r for r in rs if not r.get("error")]
        ratios = [num(r.get("ratio_vs_peer")) for r in ok]
        ratios = [x for x in ratios if x is not None and x > 0]
        pcts = [num(r.get("pct_of_ceiling")) for r in ok]
        pcts = [x for x in pcts if x is not None]
        bounds = sorted({str(r.get("bound")) for r in ok if r.get("bound")})
        peers = sorted({str(r.get("peer")) for r in ok if r.get("peer")})
        out.append({"family": f, "rows": len(rs), "errors": len(rs) - len(ok),
                    "bound": "/".join(bounds) or None, "peer": "/".join(peers) or None,
                    "rows_with_peer": len(ratios),
                    "geomean_ratio_vs_peer": geomean(ratios),
                    "faster_than_peer": sum(1 for x in ratios if x < 1.0),
                    "min_pct_of_ceiling": min(pcts) if pcts else None,
                    "max_pct_of_ceiling": max(pcts) if pcts else None})
    return out


def load_module(file_name, module_name):
    """A plot module beside this file, loaded by path (None when it is not there)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, file_name)
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location(module_name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_plotter():
    return load_module("plot_kernels.py", "wren_plot_kernels")


def load_train_plotter():
    return load_module("plot_train.py", "wren_plot_train")


def kernels_section(root, st, md_dir, plotter, plot_error):
    md = ["## Kernels", ""]
    files = kernel_files(root)
    data = {"maths": []}
    seen = {m for m, _ in files}
    expected = [r["name"][len("kernels-"):] for r in st.rows if r["name"].startswith("kernels-")]
    for m in expected:
        if m not in seen:
            md += [f"### {m}", "", st.why_missing(f"kernels-{m}.json", f"kernels-{m}"), ""]
            data["maths"].append({"math": m, "present": False,
                                  "stage_status": st.status(f"kernels-{m}")})
    if not files and not expected:
        md.append(st.why_missing("kernels-<math>.json", "kernels"))
        return md, data
    if plot_error:
        md += [f"(No SVG plots: bench/plot_kernels.py failed to load: {plot_error}.)", ""]
    metas = []
    for math_mode, path in files:
        md += [f"### {math_mode}", ""]
        obj, err = read_json(path)
        status = st.status(f"kernels-{math_mode}")
        if obj is None or not isinstance(obj, dict):
            md += [f"`{os.path.basename(path)}`: {err or 'not a JSON object'} "
                   f"(stage `kernels-{math_mode}`: "
                   f"{describe_status(status) if status else 'no line in stages.tsv'}).", ""]
            data["maths"].append({"math": math_mode, "present": True, "error": err,
                                  "stage_status": status})
            continue
        metas.append(obj)
        rows = [r for r in obj.get("rows", []) if isinstance(r, dict)] \
            if isinstance(obj.get("rows"), list) else []
        ceil = obj.get("ceilings") if isinstance(obj.get("ceilings"), dict) else {}
        timing = obj.get("timing") if isinstance(obj.get("timing"), dict) else {}
        entry = {"math": math_mode, "present": True, "stage_status": status,
                 "device_name": obj.get("device_name"), "date": obj.get("date"),
                 "backend": obj.get("backend"), "command": obj.get("command"),
                 "ceilings": ceil, "timing": timing, "peers": obj.get("peers"),
                 "summary": kernels_summary(rows), "rows": []}
        md.append(f"{obj.get('device_name', '?')}, {obj.get('backend') or math_mode}, "
                  f"{obj.get('date', 'undated')}; stage `kernels-{math_mode}`: "
                  f"{describe_status(status) if status else 'no line in stages.tsv'}.")
        md.append("")
        md.append(f"Ceilings measured on this device: copy **{fmt3(ceil.get('copy_gbs'))} GB/s**, "
                  f"fp32 GEMM **{fmt3(ceil.get('gemm_fp32_gflops'))} GFLOP/s**, tf32 GEMM "
                  f"**{fmt3(ceil.get('gemm_tf32_gflops'))} GFLOP/s** (compute-bound rows use "
                  f"the {ceil.get('gemm_used', math_mode)} GEMM ceiling, memory-bound rows the "
                  f"copy bandwidth).")
        if timing.get("method"):
            md.append(f"Timing: {timing.get('method')}.")
        if isinstance(obj.get("peers"), dict):
            md.append("Peers: " + ", ".join(f"{k} {v}" for k, v in obj["peers"].items()) + ".")
        md.append("")
        # The plot.
        if plotter is not None:
            svg = os.path.join(root, f"kernels-{math_mode}.svg")
            try:
                plotter.write_svg(path, svg)
                rel = os.path.relpath(svg, md_dir)
                md += [f"![kernels {math_mode}: % of ceiling and speed vs peer]({rel})", ""]
                entry["svg"] = os.path.basename(svg)
            except Exception as e:  # noqa: BLE001 - a plot failure must not stop the report
                md += [f"(Plot failed: {e}.)", ""]
        if not rows:
            md += ["No rows.", ""]
            data["maths"].append(entry)
            continue
        # Summary per family.
        md.append("Per family (Wren/peer: geometric mean of Wren median / peer median over the "
                  "rows with a peer; < 1 means Wren faster):")
        md.append("")
        srows = []
        for s in entry["summary"]:
            srows.append([s["family"], s["rows"], s["bound"], s["peer"] or "none",
                          fmt3(s["geomean_ratio_vs_peer"]),
                          f"{s['faster_than_peer']} of {s['rows_with_peer']}"
                          if s["rows_with_peer"] else DASH,
                          fmt3(s["min_pct_of_ceiling"], "%"), fmt3(s["max_pct_of_ceiling"], "%"),
                          s["errors"]])
        md += md_table(["family", "rows", "bound", "peer", "Wren/peer (geomean)",
                        "faster than peer", "min % of ceiling", "max % of ceiling", "errors"],
                       srows)
        md.append("")
        # The table, by set.
        sets, order = {}, []
        for r in rows:
            s = str(r.get("set", "") or "(no set)")
            if s not in sets:
                sets[s] = []
                order.append(s)
            sets[s].append(r)
        for s in order:
            md += [f"#### set {s}", ""]
            trows = []
            for r in sets[s]:
                pm = peer_ms(r)
                if r.get("error"):
                    trows.append([r.get("family"), r.get("layer"), r.get("shape"), r.get("pass"),
                                  f"error: {r.get('error')}", "", "", "", r.get("peer"),
                                  fmt3(pm), DASH])
                else:
                    trows.append([r.get("family"), r.get("layer"), r.get("shape"), r.get("pass"),
                                  fmt3(r.get("median_ms")), fmt3(r.get("gflops")),
                                  fmt3(r.get("gbs")),
                                  fmt3(r.get("pct_of_ceiling"), "%") +
                                  (" (gemm)" if r.get("bound") == "compute" else " (copy)"
                                   if r.get("bound") == "memory" else ""),
                                  r.get("peer") or DASH, fmt3(pm),
                                  fmt3(r.get("ratio_vs_peer"))])
                entry["rows"].append({
                    "family": r.get("family"), "set": r.get("set"), "layer": r.get("layer"),
                    "shape": r.get("shape"), "pass": r.get("pass"), "batch": r.get("batch"),
                    "bound": r.get("bound"), "flops": r.get("flops"), "bytes": r.get("bytes"),
                    "median_ms": r.get("median_ms"), "gflops": r.get("gflops"),
                    "gbs": r.get("gbs"), "pct_of_ceiling": r.get("pct_of_ceiling"),
                    "peer": r.get("peer"), "peer_median_ms": pm,
                    "ratio_vs_peer": r.get("ratio_vs_peer"), "error": r.get("error")})
            md += md_table(["family", "layer", "shape", "pass", "median ms", "GFLOP/s", "GB/s",
                            "% of ceiling", "peer", "peer ms", "Wren/peer"], trows)
            md.append("")
        data["maths"].append(entry)
    return md, data


# ------------------------------------------------------------------------------------------------
# Training throughput
# ------------------------------------------------------------------------------------------------

def train_section(root, st, md_dir=None):
    md = ["## Training throughput", ""]
    data = {"rows": [], "notes": []}
    notes = []
    wren, werr = read_json(os.path.join(root, "train-wren.json"))
    wren_rows = []
    if wren is None:
        notes.append("Wren: " + (st.why_missing("train-wren.json", "train-wren", "train-bench")
                                 if werr == "missing" else f"train-wren.json: {werr}."))
    elif isinstance(wren, dict):
        wren_rows = [r for r in wren.get("rows", []) if isinstance(r, dict)] \
            if isinstance(wren.get("rows"), list) else []
        data["wren"] = {k: wren.get(k) for k in ("device", "device_name", "math", "date",
                                                 "command", "method")}
    peers = []
    peer_meta = set()
    for fname in ("peers-throughput.jsonl", "peers-compile.jsonl"):
        objs, bad = read_jsonl(os.path.join(root, fname))
        stem = fname[:-6]
        if objs is None:
            notes.append("PyTorch: " + st.why_missing(fname, stem))
            continue
        for b in bad:
            notes.append(f"{fname}: {b}")
        status = st.status(stem)
        if status not in (None, "ok"):
            notes.append(f"PyTorch: stage `{stem}` {describe_status(status)}; its file holds "
                         f"{len(objs)} lines.")
        for o in objs:
            if o.get("bench", "throughput") != "throughput":
                continue
            o = dict(o)
            o["_file"] = fname
            peers.append(o)
            if o.get("torch") or o.get("device_name"):
                peer_meta.add((o.get("torch"), o.get("device_name"), o.get("math")))
    if not wren_rows and not peers:
        md += notes or ["No training benchmark ran."]
        data["notes"] = notes
        return md, data
    # The plot (bench/plot_train.py beside this script), right under the heading.
    try:
        tplot = load_train_plotter()
        svg = tplot.write_svg(root, os.path.join(root, "train.svg")) if tplot else None
        if svg:
            rel = os.path.relpath(svg, md_dir) if md_dir else os.path.basename(svg)
            md += [f"![training throughput: Wren vs PyTorch]({rel})", ""]
            data["svg"] = os.path.basename(svg)
    except Exception as e:  # noqa: BLE001 - a plot failure must not stop the report
        md += [f"(Training plot failed: {e}.)", ""]

    keys, seen = [], set()

    def key_of(model, batch):
        k = (str(model), int(batch) if num(batch) is not None else batch)
        if k not in seen:
            seen.add(k)
            keys.append(k)
        return k

    wcell, wraw = {}, {}
    for r in wren_rows:
        k = key_of(r.get("model"), r.get("batch"))
        g = str(r.get("cuda_graph", "n/a"))
        slot = "on" if g == "on" else "off"
        if r.get("error"):
            notes.append(f"Wren {k[0]} batch {k[1]} cuda_graph {g}: error: {r['error']}")
            continue
        wcell.setdefault(k, {})[slot] = {"img_per_s": num(r.get("img_per_s")), "graph": g,
                                         "median_ms": num(r.get("median_ms")),
                                         "device_peak_mib": num(r.get("device_peak_mib")),
                                         "peak_rss_mib": num(r.get("peak_rss_mib"))}
        wraw.setdefault(k, []).append(r)
    na = any(str(r.get("cuda_graph")) == "n/a" for r in wren_rows)
    pcell, dup = {}, 0
    for o in peers:
        if o.get("model") is None or o.get("batch") is None:
            continue
        k = key_of(o.get("model"), o.get("batch"))
        mode = str(o.get("mode", "?"))
        if o.get("error") or o.get("skipped"):
            what = "error" if o.get("error") else "skipped"
            notes.append(f"PyTorch {k[0]} batch {k[1]} {mode}: {what}: "
                         f"{first_line(str(o.get('error') or o.get('skipped')))[:200]}")
            continue
        if mode in pcell.get(k, {}):
            dup += 1
            continue
        pcell.setdefault(k, {})[mode] = {"img_per_s": num(o.get("img_per_s")),
                                         "ms_per_step": num(o.get("ms_per_step")),
                                         "peak_gpu_mib": num(o.get("peak_gpu_mib")),
                                         "file": o.get("_file")}
    if dup:
        notes.append(f"PyTorch: {dup} repeated (model, batch, mode) lines ignored (the first "
                     f"one is shown).")
    trows = []
    for k in keys:
        w = wcell.get(k, {})
        p = pcell.get(k, {})
        won = w.get("on", {}).get("img_per_s")
        woff = w.get("off", {}).get("img_per_s")
        best = max([x for x in (won, woff) if x is not None], default=None)
        best_slot = None
        if best is not None:
            best_slot = "on" if won == best else "off"
        eager = p.get("eager", {}).get("img_per_s")
        pbest = max([v["img_per_s"] for v in p.values() if v.get("img_per_s")], default=None)
        ratio = best / eager if best and eager else None
        ratio_best = best / pbest if best and pbest else None
        wm = w.get(best_slot, {}).get("device_peak_mib") if best_slot else None
        pm = p.get("eager", {}).get("peak_gpu_mib")
        row = {"model": k[0], "batch": k[1],
               "wren_graph_on_img_per_s": won, "wren_graph_off_img_per_s": woff,
               "wren_cuda_graph_na": na and "off" in w and w["off"].get("graph") == "n/a",
               "wren_best_img_per_s": best,
               "wren_device_peak_mib": wm, "wren_rows": wraw.get(k, []),
               "pytorch": p, "pytorch_eager_img_per_s": eager,
               "ratio_wren_best_vs_pytorch_eager": ratio,
               "ratio_wren_best_vs_pytorch_best": ratio_best,
               "pytorch_eager_peak_gpu_mib": pm}
        data["rows"].append(row)
        off_txt = fmt3(woff) + (" (n/a)" if row["wren_cuda_graph_na"] else "")
        trows.append([k[0], k[1], fmt3(won), off_txt] +
                     [fmt3(p.get(m, {}).get("img_per_s")) for m in PEER_MODES] +
                     [fmt3(ratio), fmt3(ratio_best), f"{fmt3(wm)} / {fmt3(pm)}"])
    md += md_table(["model", "batch", "Wren graph on img/s", "Wren graph off img/s",
                    "PyTorch eager", "eager+cudagraph", "compile", "compile+cudagraph",
                    "Wren(best)/PyTorch eager", "Wren(best)/PyTorch(best)",
                    "device MiB Wren / PyTorch"], trows)
    md.append("")
    md.append("Ratios are throughputs (> 1: Wren faster). Device MiB: Wren's peak of its faster "
              "configuration / PyTorch eager's `max_memory_allocated`.")
    if na:
        md.append("(n/a): Wren ran on a device without CUDA graphs; shown in the graph-off "
                  "column.")
    if data.get("wren"):
        wm_ = data["wren"]
        md.append(f"Wren: {wm_.get('device_name', '?')}, math {wm_.get('math', '?')}, "
                  f"{wm_.get('date', 'undated')}.")
    for t, dn, mth in sorted(peer_meta, key=lambda x: tuple(str(v) for v in x)):
        md.append(f"PyTorch: torch {t} on {dn}, math {mth}.")
    notes = list(dict.fromkeys(notes))  # the same error from two files once
    if notes:
        md += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    data["notes"] = notes
    return md, data


# ------------------------------------------------------------------------------------------------
# Time to accuracy
# ------------------------------------------------------------------------------------------------

def wren_tta(objs, targets):
    epochs = [o for o in objs if o.get("kind") == "epoch"]
    out = {"evals": len(epochs), "targets": {}, "final_test_acc": None, "best_test_acc": None,
           "epochs_run": None, "steps_run": None, "time_s": None}
    if not epochs:
        return out
    accs = [num(o.get("test_acc")) for o in epochs]
    accs_ok = [a for a in accs if a is not None]
    last = epochs[-1]
    out["final_test_acc"] = num(last.get("test_acc"))
    out["best_test_acc"] = max(accs_ok) if accs_ok else None
    ep = num(last.get("epoch"))
    out["epochs_run"] = int(ep) + 1 if ep is not None else len(epochs)  # Wren counts from 0
    out["steps_run"] = last.get("step")
    out["time_s"] = num(last.get("time_s"))
    for t in targets:
        hit = None
        for o in epochs:
            a = num(o.get("test_acc"))
            if a is not None and a >= t:
                e = num(o.get("epoch"))
                hit = {"seconds": num(o.get("time_s")), "step": o.get("step"),
                       "epoch": int(e) + 1 if e is not None else None, "test_acc": a}
                break
        out["targets"][tkey(t)] = hit
    return out


def torch_tta(objs, targets):
    evals = [o for o in objs if o.get("event") in ("eval", "epoch")]
    summary = None
    for o in objs:
        if o.get("bench") == "tta":
            summary = o
    out = {"evals": len(evals), "targets": {}, "final_test_acc": None, "best_test_acc": None,
           "epochs_run": None, "steps_run": None, "time_s": None, "summary": summary is not None,
           "error": summary.get("error") if summary else None,
           "stopped": summary.get("stopped") if summary else None,
           "mode": summary.get("mode") if summary else None,
           "torch": summary.get("torch") if summary else None,
           "device_name": summary.get("device_name") if summary else None,
           "warmup_s": num(summary.get("warmup_s")) if summary else None}
    if evals:
        out["final_test_acc"] = num(evals[-1].get("test_acc"))
        accs = [num(o.get("test_acc")) for o in evals]
        accs = [a for a in accs if a is not None]
        out["best_test_acc"] = max(accs) if accs else None
        out["epochs_run"] = num(evals[-1].get("epoch"))
        out["steps_run"] = evals[-1].get("step")
        out["time_s"] = num(evals[-1].get("elapsed_s"))
    if summary and not summary.get("error"):
        for k in ("best_test_acc", "epochs_run", "steps_run"):
            if summary.get(k) is not None:
                out[k] = summary.get(k)
        if num(summary.get("elapsed_s")) is not None:
            out["time_s"] = num(summary.get("elapsed_s"))
    st_targets = summary.get("targets") if summary and isinstance(summary.get("targets"),
                                                                 dict) else {}
    for t in targets:
        k = tkey(t)
        hit = None
        if k in st_targets or any(abs(float(x) - t) < 1e-9 for x in st_targets if is_float(x)):
            v = st_targets.get(k)
            if v is None:
                for x, vv in st_targets.items():
                    if is_float(x) and abs(float(x) - t) < 1e-9:
                        v = vv
            if isinstance(v, dict):
                hit = {"seconds": num(v.get("seconds")), "step": v.get("step"),
                       "epoch": num(v.get("epoch")),
                       "train_seconds": num(v.get("train_seconds"))}
        else:
            for o in evals:
                a = num(o.get("test_acc"))
                if a is not None and a >= t:
                    hit = {"seconds": num(o.get("elapsed_s")), "step": o.get("step"),
                           "epoch": num(o.get("epoch")), "train_seconds": num(o.get("train_s")),
                           "test_acc": a}
                    break
        out["targets"][k] = hit
    return out


def is_float(x):
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def tkey(t):
    return f"{t:g}"


def tta_section(root, st):
    md = ["## Time to accuracy", ""]
    cfg, cerr = read_json(os.path.join(root, "tta.json"))
    cfg = cfg if isinstance(cfg, dict) else {}
    models = []
    for m in cfg.get("models", []) if isinstance(cfg.get("models"), list) else []:
        if str(m) not in models:
            models.append(str(m))
    for p in sorted(glob.glob(os.path.join(root, "tta-*-*.jsonl"))):
        m = re.match(r"^tta-(wren|torch)-(.+)\.jsonl$", os.path.basename(p))
        if m and m.group(2) not in models:
            models.append(m.group(2))
    for r in st.rows:
        m = re.match(r"^tta-(wren|torch)-(.+)$", r["name"])
        if m and m.group(2) not in models:
            models.append(m.group(2))
    data = {"config": cfg or None, "models": []}
    if not models:
        md.append(st.why_missing("tta-<wren|torch>-<model>.jsonl", "tta"))
        return md, data
    targets, tsource = [], None
    if isinstance(cfg.get("targets"), list):
        targets = [float(t) for t in cfg["targets"] if num(t) is not None]
        tsource = "tta.json"
    if not targets:
        for p in glob.glob(os.path.join(root, "tta-torch-*.jsonl")):
            objs, _ = read_jsonl(p)
            for o in objs or []:
                if o.get("bench") == "tta" and isinstance(o.get("targets"), dict):
                    for k in o["targets"]:
                        if is_float(k) and float(k) not in targets:
                            targets.append(float(k))
        targets.sort()
        tsource = "the PyTorch summary" if targets else None
    if not targets:
        targets = list(DEFAULT_TARGETS)
        tsource = "torch_train.py's defaults: no tta.json"
    data["targets"] = targets
    data["targets_from"] = tsource
    asked = []
    if cfg.get("epochs") is not None:
        asked.append(f"epochs: {cfg['epochs']}")
    if cfg.get("recipe"):
        asked.append(f"recipe: {cfg['recipe']}")
    md.append(f"Targets (test accuracy): {', '.join(fmt_pct_acc(t) for t in targets)} "
              f"(from {tsource})" + (f"; {'; '.join(asked)}" if asked else "") + ".")
    md.append("Seconds: wall-clock from the first training step to the first evaluation at or "
              "above the target, evaluations included (Wren: the epoch record's `time_s`; "
              "PyTorch: the summary's `seconds`, warm-up excluded). Wren evaluates once per "
              "epoch; PyTorch per epoch and every `--eval-every` steps. Wren/PyTorch > 1: "
              "Wren slower.")
    md.append("")
    for model in models:
        md += [f"### {model}", ""]
        entry = {"model": model}
        sides = {}
        for side, fn in (("wren", wren_tta), ("torch", torch_tta)):
            fname = f"tta-{side}-{model}.jsonl"
            objs, bad = read_jsonl(os.path.join(root, fname))
            status = st.status(f"tta-{side}-{model}")
            if objs is None:
                sides[side] = None
                md.append(("Wren" if side == "wren" else "PyTorch") + ": " +
                          st.why_missing(fname, f"tta-{side}-{model}", f"tta-{side}"))
                entry[side] = {"present": False, "stage_status": status}
                continue
            res = fn(objs, targets)
            res["present"] = True
            res["stage_status"] = status
            if bad:
                res["bad_lines"] = bad
            sides[side] = res
            entry[side] = res
            if status not in (None, "ok"):
                md.append(f"{'Wren' if side == 'wren' else 'PyTorch'}: stage "
                          f"`tta-{side}-{model}` {describe_status(status)}; partial results "
                          f"below.")
            if side == "torch" and res.get("error"):
                md.append(f"PyTorch: error: {first_line(str(res['error']))[:200]}")
            if side == "torch" and objs and not res.get("summary"):
                md.append("PyTorch: no summary line (the run did not finish); figures from its "
                          "evaluation lines.")
            if res["evals"] == 0:
                md.append(f"{'Wren' if side == 'wren' else 'PyTorch'}: `{fname}` holds no "
                          f"evaluation records.")
        if md[-1] != "":
            md.append("")
        if not sides.get("wren") and not sides.get("torch"):
            entry["ratio_wren_vs_torch_seconds"] = {}
            data["models"].append(entry)
            continue
        header = ["measure", "Wren", "PyTorch", "Wren/PyTorch"]
        rows = []
        w, p = sides.get("wren"), sides.get("torch")
        ratios = {}
        for t in targets:
            k = tkey(t)
            wh = w["targets"].get(k) if w else None
            ph = p["targets"].get(k) if p else None

            def cell(h, res, wren_side):
                if res is None:
                    return DASH
                if res.get("error"):
                    return "error"
                if h is None:
                    return "not reached"
                ep = h.get("epoch")
                ep_txt = (f"epoch {ep}" if wren_side else f"epoch {fmt3(ep)}") \
                    if ep is not None else ""
                return f"{fmt3(h.get('seconds'))} s ({ep_txt}, step {h.get('step')})"
            r = None
            if wh and ph and num(wh.get("seconds")) and num(ph.get("seconds")):
                r = wh["seconds"] / ph["seconds"]
            ratios[k] = r
            rows.append([f"seconds to {fmt_pct_acc(t)}", cell(wh, w, True), cell(ph, p, False),
                         fmt3(r)])
        rows.append(["final test acc", fmt_pct_acc(w["final_test_acc"]) if w else DASH,
                     fmt_pct_acc(p["final_test_acc"]) if p else DASH, ""])
        rows.append(["best test acc", fmt_pct_acc(w["best_test_acc"]) if w else DASH,
                     fmt_pct_acc(p["best_test_acc"]) if p else DASH, ""])
        rows.append(["epochs run", fmt3(w["epochs_run"]) if w else DASH,
                     fmt3(p["epochs_run"]) if p else DASH, ""])
        rows.append(["steps run", w["steps_run"] if w and w["steps_run"] is not None else DASH,
                     p["steps_run"] if p and p["steps_run"] is not None else DASH, ""])
        wt, pt = (w or {}).get("time_s"), (p or {}).get("time_s")
        rows.append(["wall seconds (whole run)", fmt3(wt) if w else DASH,
                     fmt3(pt) if p else DASH,
                     fmt3(wt / pt) if wt and pt else ""])
        if p and p.get("stopped"):
            rows.append(["stopped", "", str(p["stopped"]), ""])
        md += md_table(header, rows)
        md.append("")
        entry["ratio_wren_vs_torch_seconds"] = ratios
        data["models"].append(entry)
    return md, data


# ------------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------------

def build(root, md_path):
    st = Stages(root)
    md_dir = os.path.dirname(os.path.abspath(md_path))
    kernel_meta = []
    for _, p in kernel_files(root):
        obj, _ = read_json(p)
        if isinstance(obj, dict):
            kernel_meta.append(obj)
    env = parse_env(root, kernel_meta)
    plotter, plot_error = None, None
    try:
        plotter = load_plotter()
    except Exception as e:  # noqa: BLE001
        plot_error = str(e)

    gpu = env.get("gpu") or "unknown GPU"
    date = env.get("date") or "date unknown"
    day = date[:10] if re.match(r"^\d{4}-\d\d-\d\d", date) else date
    md = [f"# Wren validation and benchmarks: {gpu}, {day}", ""]
    facts = [f"commit **{env.get('commit') or 'unknown'}**" +
             (f" ({env['commit_source']})" if env.get("commit_source") and
              env["commit_source"] != "build_info.txt" else ""),
             f"driver {env.get('driver') or DASH}",
             f"CUDA {env.get('cuda') or DASH}" + (" (nvcc)" if env.get("cuda") else "")]
    if env.get("torch"):
        extra = ", ".join(x for x in (f"CUDA {env['torch_cuda']}" if env.get("torch_cuda")
                                      else "", f"cuDNN {env['torch_cudnn']}"
                                      if env.get("torch_cudnn") else "") if x)
        facts.append(f"torch {env['torch']}" + (f" ({extra})" if extra else ""))
    else:
        facts.append("torch " + (f"not available ({env['torch_note'][:80]})"
                                 if env.get("torch_note") else DASH))
    md.append(" · ".join(facts))
    more = []
    if env.get("gpu_memory"):
        more.append(f"GPU memory {env['gpu_memory']}")
    if env.get("compute_cap"):
        more.append(f"compute capability {env['compute_cap']}")
    if env.get("host"):
        more.append(f"host {env['host']}")
    if env.get("cpu"):
        more.append(f"CPU {env['cpu']}")
    if env.get("compute_sanitizer"):
        more.append(f"compute-sanitizer {env['compute_sanitizer']}")
    if more:
        md += ["", " · ".join(more)]
    if not env.get("env_txt"):
        md += ["", st.why_missing("env.txt", "env")]
    md.append("")

    sections = {}
    for key, fn in (("stages", lambda: stages_section(st)),
                    ("tests", lambda: tests_section(root, st)),
                    ("check", lambda: check_section(root, st)),
                    ("sanitizers", lambda: sanitize_section(root, st)),
                    ("kernels", lambda: kernels_section(root, st, md_dir, plotter, plot_error)),
                    ("training", lambda: train_section(root, st, md_dir)),
                    ("main_job", lambda: main_job_section(root, st)),
                    ("tta", lambda: tta_section(root, st))):
        try:
            part, data = fn()
        except Exception as e:  # noqa: BLE001 - one broken input must not sink the page
            part = [f"## {key}", "", f"This section could not be built: "
                    f"{type(e).__name__}: {e}."]
            data = {"report_error": f"{type(e).__name__}: {e}"}
        md += part + [""]
        sections[key] = data

    md += ["## Commands", ""]
    if st.commands_text is None:
        md.append("commands.txt is missing.")
    else:
        fence = "```"
        while fence in st.commands_text:
            fence += "`"
        md += [fence, st.commands_text.rstrip("\n"), fence]
    md.append("")
    md.append(f"_Generated by bench/gpu_report.py from `{os.path.abspath(root)}` on "
              f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}._")

    env_json = {k: v for k, v in env.items() if k != "build_info"}
    env_json["build_info"] = env.get("build_info")
    report = {
        "schema": 1,
        "generated_by": {"tool": "bench/gpu_report.py", "python": sys.version.split()[0],
                         "date": datetime.datetime.now(datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "report_dir": os.path.abspath(root)},
        "title": f"Wren validation and benchmarks: {gpu}, {day}",
        "env": env_json,
        "stages": sections["stages"],
        "tests": sections["tests"],
        "check": sections["check"],
        "sanitizers": sections["sanitizers"],
        "kernels": sections["kernels"],
        "training": sections["training"],
        "main_job": sections["main_job"],
        "tta": sections["tta"],
        "commands": st.commands_text,
    }
    return "\n".join(md) + "\n", report


def finite(obj):
    """obj with NaN and infinities replaced by None (JSON has no spelling for them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Results page and JSON from a gpu-validate.sh "
                                             "report folder.")
    ap.add_argument("dir", help="the report folder (gpu-validate.sh --out)")
    ap.add_argument("--md", help="Markdown to write (default DIR/report.md)")
    ap.add_argument("--json", help="JSON to write (default DIR/report.json)")
    args = ap.parse_args(argv)
    root = args.dir
    if not os.path.isdir(root):
        print(f"gpu_report.py: {root}: not a folder", file=sys.stderr)
        return 1
    md_path = args.md or os.path.join(root, "report.md")
    json_path = args.json or os.path.join(root, "report.json")
    text, report = build(root, md_path)
    try:
        write_atomic(md_path, text)
        write_atomic(json_path, json.dumps(finite(report), indent=1, allow_nan=False,
                                           default=str) + "\n")
    except (OSError, ValueError) as e:
        print(f"gpu_report.py: cannot write the report: {e}", file=sys.stderr)
        return 1
    print(md_path)
    print(json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
