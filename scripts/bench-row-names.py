#!/usr/bin/env python3
"""The row names of wren-bench JSON outputs, one per line, to show that a change kept them:

    python3 scripts/bench-row-names.py kernels.json [train.json ...] > names.txt

A kernels row is named by (family, set, layer, shape, pass, batch); a train row by every field
that is not a measurement. Compare two builds' lists with diff.
"""
import json
import sys

MEASURED = {'allocated_mib', 'bound', 'bytes', 'device_used_mib', 'flops', 'gbs', 'gflops',
            'median_ms', 'pct_of_ceiling', 'peak_rss_mib', 'peer', 'peer_note', 'peer_time',
            'ratio_vs_peer', 'time', 'images_per_s', 'ms_per_step', 'peak_device_mib',
            'min_ms', 'p90_ms', 'mean_ms', 'reps', 'stats', 'steps', 'warmup'}

for path in sys.argv[1:]:
    with open(path) as f:
        doc = json.load(f)
    rows = doc['rows'] if isinstance(doc, dict) and 'rows' in doc else doc
    for row in rows:
        name = {k: v for k, v in row.items() if k not in MEASURED and not isinstance(v, (dict, list))
                and not (isinstance(v, float))}
        print(json.dumps(name, sort_keys=True))
