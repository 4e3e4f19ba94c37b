#!/usr/bin/env python3
"""CTest WrenBenchQuick: `wren-bench kernels --quick --shapes refcnn --batch 2` on each device
given, checking that it exits 0, that its JSON parses and has the run's metadata and at least
one row for every kernel family, every row timed (median > 0, no error), and that its CSV has
the same rows; then `wren-bench train --quick` for ref-cnn and resnet-cifar: one row per model
(cpu) or per model and CUDA-graph setting (emu), each timed over its 3 steps, img/s equal to
batch / median, and on emu a device-memory peak that holds at least the weights, gradients and
both Adam moments.

usage: wren_bench_quick.py WREN_BENCH DEVICE [DEVICE ...]
A device this build lacks (emu without the CUDA headers) is skipped; exit 77 if all were.
"""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

FAMILIES = ["conv", "linear", "pool", "softmax_ce", "batch_norm", "elementwise", "optimizer",
            "augment"]


def check(binary, device, tmp):
    json_path = os.path.join(tmp, f"{device}.json")
    csv_path = os.path.join(tmp, f"{device}.csv")
    cmd = [binary, "kernels", "--device", device, "--quick", "--shapes", "refcnn", "--batch", "2",
           "--json", json_path, "--csv", csv_path]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if run.returncode != 0 and "this build has no" in run.stderr:
        print(f"{device}: skipped ({run.stderr.strip()})")
        return None
    print(run.stdout)
    assert run.returncode == 0, f"{device}: exit {run.returncode}\n{run.stderr}"
    with open(json_path) as f:
        report = json.load(f)
    for key in ["command", "date", "device", "device_name", "math", "ceilings", "timing",
                "peak_rss_mib", "rows"]:
        assert key in report, f"{device}: JSON lacks '{key}'"
    assert report["device"] == device, report["device"]
    assert report["math"] == "fp32"
    assert report["ceilings"]["copy_gbs"] > 0 and report["ceilings"]["gemm_fp32_gflops"] > 0
    rows = report["rows"]
    for family in FAMILIES:
        assert any(r["family"] == family for r in rows), f"{device}: no row for {family}"
    for r in rows:
        where = f"{device}: {r['family']} {r['layer']} {r['pass']}"
        assert "error" not in r, f"{where}: {r.get('error')}"
        assert r["median_ms"] > 0 and math.isfinite(r["median_ms"]), where
        assert r["time"]["reps"] >= 3, where
        assert r["time"]["min_ms"] <= r["median_ms"] <= r["time"]["p90_ms"], where
        assert r["bytes"] > 0 and r["gbs"] > 0, where
        if r["family"] in ("conv", "linear"):
            assert r["flops"] > 0 and r["gflops"] > 0, where
        assert r["peak_rss_mib"] > 0, where
    with open(csv_path, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows), f"{device}: CSV {len(csv_rows)} rows, JSON {len(rows)}"
    assert all(r["device"] == device and r["command"] == report["command"] for r in csv_rows)
    print(f"{device}: {len(rows)} rows, {len(FAMILIES)} families, JSON and CSV agree")
    return True


REF_CNN_PARAMS = 421642


def check_train(binary, device, tmp):
    json_path = os.path.join(tmp, f"train-{device}.json")
    csv_path = os.path.join(tmp, f"train-{device}.csv")
    cmd = [binary, "train", "--device", device, "--quick", "--models", "ref-cnn,resnet-cifar",
           "--json", json_path, "--csv", csv_path]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(run.stdout)
    assert run.returncode == 0, f"train {device}: exit {run.returncode}\n{run.stdout}{run.stderr}"
    with open(json_path) as f:
        report = json.load(f)
    assert report["tool"] == "wren-bench train" and report["device"] == device, report["device"]
    rows = report["rows"]
    graphs = ["n/a"] if device == "cpu" else ["on", "off"]
    expected = [(m, g) for m in ["ref-cnn", "resnet-cifar"] for g in graphs]
    assert [(r["model"], r["cuda_graph"]) for r in rows] == expected, rows
    for r in rows:
        where = f"train {device}: {r['model']} graph {r['cuda_graph']}"
        assert "error" not in r, f"{where}: {r.get('error')}"
        assert r["batch"] == 8 and r["steps"] == 3, where
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], where
        assert math.isclose(r["img_per_s"], 8 / (r["median_ms"] / 1e3), rel_tol=1e-9), where
        if device == "cpu":
            assert r["device_peak_mib"] is None, where
        elif r["model"] == "ref-cnn":
            # weights + gradients + two Adam moments, fp32
            assert r["device_peak_mib"] >= 4 * 4 * REF_CNN_PARAMS / 2**20, where
    with open(csv_path, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    print(f"train {device}: {len(rows)} rows")


def main():
    binary, devices = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        results = [check(binary, d, tmp) for d in devices]
        for device, result in zip(devices, results):
            # Under the asan test preset (ASAN_OPTIONS set) the emulator's training steps take
            # minutes; the train check runs on emu in the release build.
            if device == "emu" and "ASAN_OPTIONS" in os.environ:
                print("train emu: skipped under ASan (runs in the release build)")
                continue
            if result:
                check_train(binary, device, tmp)
    return 77 if all(r is None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
