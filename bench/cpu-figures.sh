#!/usr/bin/env bash
# The CPU and emulator figures, by the same commands as on a GPU (wren-bench with --device), and
# the PyTorch CPU peer side by side; a report per device by bench/gpu_report.py.
#
#   bash bench/cpu-figures.sh [BUILD_DIR] [OUT_DIR]
#     BUILD_DIR  default build/release;  OUT_DIR  default bench/results/<date>-cpu-emu
#   WREN_PYTHON  a python3 with torch for the peer (default: /usr/bin/python3, Debian's
#                python3-torch, if it has torch, else python3); without torch the peer is left out.
#
# Run it on a quiet machine: every figure is a wall-clock time on the host's cores.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build/release}
out=${2:-$repo/bench/results/$(date -u +%F)-cpu-emu}
py=${WREN_PYTHON:-}
if [[ -z $py ]]; then
  py=python3
  /usr/bin/python3 -c 'import torch' 2>/dev/null && py=/usr/bin/python3
fi
threads=$(nproc)
mkdir -p "$out/cpu" "$out/emu"
log() { echo "--- $*" | tee -a "$out/commands.txt"; }
run() {  # run DIR NAME CMD...: output in DIR/NAME.log, the command in commands.txt
  local dir=$1 name=$2; shift 2
  log "$*"
  "$@" > "$dir/$name.log" 2>&1 || echo "    $name failed (exit $?): see $dir/$name.log"
}
: > "$out/commands.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(hostname), $threads cores, $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "python3 torch: $("$py" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)"
} | tee "$out/cpu/env.txt" > "$out/emu/env.txt"

# cpu: the reference ops (OpenBLAS + OpenMP) on every core
run "$out/cpu" kernels-fp32 "$build/wren-bench" kernels --device cpu --shapes refcnn,cifar --batch 128 \
  --json "$out/cpu/kernels-fp32.json" --csv "$out/cpu/kernels-fp32.csv"
run "$out/cpu" train-bench "$build/wren-bench" train --device cpu --batches 32,128 --steps 20 --warmup 3 \
  --json "$out/cpu/train-wren.json" --csv "$out/cpu/train-wren.csv"
if "$py" -c 'import torch' 2>/dev/null; then
  log "$py bench/peers/torch_train.py throughput --device cpu --threads $threads ..."
  "$py" "$repo/bench/peers/torch_train.py" throughput --device cpu --threads "$threads" \
    --model ref-cnn ref-cnn-bn resnet-cifar --batch 32 128 --mode eager --steps 10 --repeats 3 \
    --warmup 3 > "$out/cpu/peers-throughput.jsonl" 2> "$out/cpu/peers-throughput.log"
fi

# emu: Wren's CUDA kernels in the SIMT emulator (emulator speed, not GPU speed)
run "$out/emu" kernels-fp32 "$build/wren-bench" kernels --device emu --quick --shapes refcnn --batch 8 \
  --json "$out/emu/kernels-fp32.json" --csv "$out/emu/kernels-fp32.csv"
run "$out/emu" train-bench "$build/wren-bench" train --device emu --quick \
  --json "$out/emu/train-wren.json" --csv "$out/emu/train-wren.csv"

for d in cpu emu; do
  python3 "$repo/bench/gpu_report.py" "$out/$d" > /dev/null || echo "report for $d failed"
done
echo "cpu-figures: $out/cpu/report.md, $out/emu/report.md"
