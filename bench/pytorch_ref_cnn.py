#!/usr/bin/env python3
"""ref-cnn training steps in PyTorch on the CPU: the peer figure for bench_cpu_step.

Same network as Wren's zoo `ref-cnn` (conv 1->32 3x3 pad 1, ReLU, maxpool 2, conv 32->64 3x3
pad 1, ReLU, maxpool 2, linear 3136->128, ReLU, linear 128->10), AdamW (lr 1e-3, wd 5e-4), one
step = zero_grad + forward + cross-entropy + backward + optimizer step on one fixed batch of
uniform [0, 1) images. Prints one JSON line per batch size: median ms/step over --repeats
timed runs of --steps steps each (after warm-up), img/s, peak RSS.

    python3 bench/pytorch_ref_cnn.py --threads 2 --batch 128 512
Needs Debian's python3-torch (not installed by the setup script; bench/compare_cpu.sh says so).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RefCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    for batch in args.batch:
        model = RefCnn()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
        images = torch.rand(batch, 1, 28, 28)
        labels = torch.arange(batch) % 10

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            runs.append((time.perf_counter() - start) / args.steps)
        ms = statistics.median(runs) * 1e3
        print(json.dumps({
            "peer": "pytorch", "version": torch.__version__, "threads": args.threads,
            "batch": batch, "ms_per_step": round(ms, 2), "img_per_s": round(batch / ms * 1e3),
            "ms_min": round(min(runs) * 1e3, 2), "ms_max": round(max(runs) * 1e3, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
