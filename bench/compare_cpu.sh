#!/usr/bin/env bash
# Side-by-side CPU training throughput: Wren (bench_cpu_step) and PyTorch
# (bench/pytorch_ref_cnn.py) on ref-cnn with AdamW, batch 128 and 512, the same thread count,
# alternating runs so both see the same machine state. Prints both figures and their ratio.
#
#   bash bench/compare_cpu.sh [build-dir] [threads] [rounds]
# Needs the release build and Debian's python3-torch (apt-get install python3-torch; not
# installed by the setup script: it is a peer, not a dependency).
set -euo pipefail
build=${1:-build/release}
threads=${2:-2}
rounds=${3:-3}
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "PyTorch not found: apt-get install python3-torch (Debian) to compare" >&2
  exit 2
fi
export OMP_NUM_THREADS=$threads
wren_json() {  # batch -> img/s (median of the benchmark's repetitions)
  "$build/bench_cpu_step" --benchmark_filter="train_step/ref_cnn/$1/" --benchmark_min_time=2 \
    --benchmark_format=json 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(b["img/s"], b["real_time"], b["peak_rss_MiB"])'
}
torch_json() {
  /usr/bin/python3 bench/pytorch_ref_cnn.py --threads "$threads" --batch "$1" |
    /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); print(r["img_per_s"], r["ms_per_step"], r["peak_rss_mib"])'
}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads; $(date -u +%F)"
printf '%-6s %-6s %10s %10s %10s %12s %8s\n' batch round wren_img/s torch_img/s ratio wren_ms torch_ms
for batch in 128 512; do
  for round in $(seq "$rounds"); do
    read -r w wms wrss < <(wren_json "$batch")
    read -r t tms trss < <(torch_json "$batch")
    ratio=$(/usr/bin/python3 -c "print(f'{$w/$t:.2f}')")
    printf '%-6s %-6s %10.0f %10.0f %10s %12.1f %8.1f   (peak RSS MiB: wren %.0f, torch %.0f)\n' \
      "$batch" "$round" "$w" "$t" "$ratio" "$wms" "$tms" "$wrss" "$trss"
  done
done
