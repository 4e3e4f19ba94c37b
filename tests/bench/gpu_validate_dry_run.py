#!/usr/bin/env python3
"""CTest GpuValidateDryRun: bench/gpu-validate.sh --device emu --quick on this build (every stage
that does not need a GPU: the device-level emu tests, wren check, the kernel and training
benchmarks, the CUDA-graph vs op-by-op loss comparison, the main job, the PyTorch peers when
python3 has torch), then checks the report it wrote: every stage ok (or skipped for a missing
torch), the report's JSON holding each section with real content, the kernel SVG well-formed.

usage: gpu_validate_dry_run.py REPO BUILD_DIR DATA_DIR
Exit 77 (CTest: skipped) without the Fashion-MNIST files.
"""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def main():
    repo, build, data = sys.argv[1:4]
    if not os.path.isdir(data):
        print(f"skipped: no dataset at {data}")
        return 77
    with tempfile.TemporaryDirectory() as out:
        cmd = ["bash", os.path.join(repo, "bench", "gpu-validate.sh"), "--device", "emu", "--quick",
               "--build-dir", build, "--data", data, "--out", out,
               "--stages", "env,tests,check,kernels,train,peers,main,report"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        print(run.stdout[-4000:])
        assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr}"
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        stages = report["stages"]["rows"]
        names = [s["name"] for s in stages]
        for want in ["tests", "check-ref-cnn-fp32", "check-resnet-cifar-fp32", "kernels-fp32",
                     "train-graph-on", "train-graph-off", "train-graph-equal", "train-bench",
                     "peers-throughput", "main-job"]:
            assert want in names, f"stage {want} missing from {names}"
        for s in stages:
            ok = s["status"] == "ok" or (s["status"] == "skipped" and s["name"].startswith("peers"))
            assert ok, f"stage {s['name']}: {s['status']}"
        counts = report["tests"]["counts"]
        assert counts["passed"] > 0 and counts["failed"] == 0, counts
        checks = report["check"]["rows"]
        assert len(checks) == 3 and all(r["failed"] == 0 and r["tensors"] > 20 for r in checks), checks
        maths = report["kernels"]["maths"]
        fp32 = next(m for m in (maths if isinstance(maths, list) else maths.values())
                    if m["math"] == "fp32")
        assert len(fp32["rows"]) >= 30 and all(not r.get("error") for r in fp32["rows"])
        train_rows = [w for r in report["training"]["rows"] for w in r["wren_rows"]]
        assert len(train_rows) == 6 and all(r["img_per_s"] > 0 for r in train_rows), train_rows
        assert report["main_job"]["summary"].startswith("trained "), report["main_job"]
        ET.parse(os.path.join(out, "kernels-fp32.svg"))
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
        for heading in ["## Stages", "## GPU tests", "## wren check", "## Kernels",
                        "## Training throughput", "## Main job"]:
            assert heading in md, heading
        print(f"dry run: {len(names)} stages, {len(fp32['rows'])} kernel rows, report complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
