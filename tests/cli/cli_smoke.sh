#!/usr/bin/env bash
# The `wren` command end to end on Fashion-MNIST (CTest `CliSmoke`; exit 77 = skipped when the
# dataset is not installed): train a few steps, eval and plot the run, resume it, sweep two
# decays, and check that bad flags and inputs fail with a message naming them.
#   tests/cli/cli_smoke.sh build/release/wren /usr/share/datasets/fashion-mnist
set -uo pipefail
wren=$1
data=$2
[[ -e $data/train-images-idx3-ubyte.gz || -e $data/train-images-idx3-ubyte ]] ||
  { echo "skipped: no Fashion-MNIST under $data"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
check() {  # description, then a command that must succeed
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failures=$((failures + 1)); fi
}
# A command that must fail with exit status 1 (library errors) or CLI11's usage codes, and
# print `pattern` on stderr.
fails_with() {
  local pattern=$1
  shift
  local err
  err=$("$@" 2>&1 >/dev/null)
  local rc=$?
  [[ $rc -ne 0 && $err == *"$pattern"* ]] || { echo "  got rc $rc: $err"; return 1; }
}
common=(--data-dir "$data" --no-progress --val 1000)

check "--help lists the commands" bash -c "'$wren' --help | grep -q sweep"
check "train 12 steps" "$wren" train "${common[@]}" --steps 12 --stop-after-steps 8 \
  --out "$work/run" --log-every 4
check "stopped run has last.safetensors" test -s "$work/run/last.safetensors"
check "resume to the end" "$wren" train --resume "$work/run/last.safetensors" --no-progress
check "metrics has 12 steps" bash -c "grep -q '\"step\":12' '$work/run/metrics.jsonl'"
check "eval prints accuracy and the confusion matrix" \
  bash -c "'$wren' eval '$work/run/last.safetensors' | grep -q 'confusion matrix'"
check "plot writes an SVG" bash -c "'$wren' plot '$work/run' >/dev/null && grep -q '<svg' '$work/run/metrics.svg'"
check "sweep over two decays" "$wren" sweep "${common[@]}" --steps 4 --wd 0,1e-2 \
  --out "$work/sweep"
check "sweep.json has two rows" bash -c "grep -o '\"wd\"' '$work/sweep/sweep.json' | wc -l | grep -qx 2"
check "unknown model names --model" fails_with "--model 'nope'" "$wren" train "${common[@]}" \
  --model nope --out "$work/x1"
check "bad data dir is named" fails_with "$work/none" "$wren" train --data-dir "$work/none" \
  --no-progress --out "$work/x2"
check "nesterov without momentum" fails_with "--nesterov" "$wren" train "${common[@]}" \
  --opt sgd --nesterov --out "$work/x3"
check "unknown schedule" fails_with "--sched" "$wren" train "${common[@]}" --sched nope \
  --out "$work/x4"
check "a second run into the same directory is refused" fails_with "already holds a run" \
  "$wren" train "${common[@]}" --steps 2 --out "$work/run"
check "eval of a missing checkpoint" fails_with "$work/none.safetensors" "$wren" eval \
  "$work/none.safetensors"
# A full disk while saving (the file-size limit stands in for it; it works as root): the save
# fails with the operating system's reason and the path, the exit status is 1, and the
# previous checkpoint of the run is untouched.
cp "$work/run/last.safetensors" "$work/before.safetensors"
check "a save that cannot be written is a clear error" fails_with "File too large" bash -c \
  "ulimit -f 1024; exec '$wren' train --resume '$work/run/last.safetensors' --steps 20 --no-progress"
check "the previous checkpoint survived the failed save" \
  cmp -s "$work/before.safetensors" "$work/run/last.safetensors"
# A data directory that cannot be read (not testable as root, which ignores permissions).
if [[ $(id -u) -ne 0 ]]; then
  mkdir -p "$work/locked" && cp "$data"/t10k-labels* "$work/locked/" && chmod 000 "$work/locked"
  check "an unreadable data directory is named" fails_with "$work/locked" "$wren" train \
    --data-dir "$work/locked" --steps 1 --no-progress --out "$work/x6"
  chmod 755 "$work/locked"
else
  echo "skipped: unreadable data directory (running as root, which reads it anyway)"
fi
# The kernel devices: --device cuda without a GPU is a clear error; where the build has the
# emulator, a few steps on emu, a resume of that run on the cpu, and `wren check`.
if ! nvidia-smi -L >/dev/null 2>&1; then
  check "--device cuda without a GPU is named" fails_with "--device cuda" "$wren" train \
    "${common[@]}" --steps 2 --device cuda --out "$work/x5"
fi
if "$wren" check --device emu --batch 2 >"$work/check.txt" 2>&1; then
  echo "ok: wren check --device emu passes"
  check "check prints a row per tensor" grep -q "param after step" "$work/check.txt"
  check "train 4 steps on emu" "$wren" train "${common[@]}" --device emu --steps 4 --batch 16 \
    --stop-after-steps 2 --out "$work/emu"
  check "resume the emu run on the cpu" "$wren" train --resume "$work/emu/last.safetensors" \
    --device cpu --no-progress
  check "the emu run reached step 4" bash -c "grep -q '\"step\":4' '$work/emu/metrics.jsonl'"
  # A device too small (the emulator's memory limited): the model's buffers, then the dataset.
  check "a batch that does not fit the device is a clear error" fails_with \
    "out of emu memory allocating" env WREN_EMU_MEMORY_LIMIT=4M "$wren" train "${common[@]}" \
    --device emu --steps 1 --batch 128 --out "$work/x7"
  check "a dataset that does not fit the device is a clear error" fails_with \
    "out of emu memory holding" env WREN_EMU_MEMORY_LIMIT=40M "$wren" train "${common[@]}" \
    --device emu --steps 1 --batch 16 --out "$work/x8"
elif grep -q "no SIMT emulator" "$work/check.txt"; then
  echo "skipped: this build has no emulator"
else
  echo "FAILED: wren check --device emu"
  cat "$work/check.txt"
  failures=$((failures + 1))
fi
exit $((failures > 0))
