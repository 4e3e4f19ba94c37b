#!/usr/bin/env bash
# Fingerprints of a short fixed training run, to show that a change leaves training bit for bit
# as it was (the redesign of issue 13 was checked this way):
#
#   scripts/training-fingerprint.sh BUILD_DIR OUT_DIR [DATA_DIR]
#
# runs `wren train` for 200 steps on cpu and on emu (fixed seed, flip + crop + cutout, AdamW with
# decoupled decay and L1, warmup + cosine, batch 32, no shuffle) and prints one line per device
# and tensor of last.safetensors: device, tensor name, SHA-256 of its bytes. Compare two builds:
#
#   scripts/training-fingerprint.sh before/build/release /tmp/a > a.txt
#   scripts/training-fingerprint.sh after/build/release  /tmp/b > b.txt
#   diff a.txt b.txt && echo identical
#
# Only the tensors are compared: the metadata holds the run's own paths and times. A device the
# build lacks (emu without the CUDA toolkit) is skipped with a note on stderr. Exit 77 when the
# dataset is missing.
set -euo pipefail
build=${1:?usage: training-fingerprint.sh BUILD_DIR OUT_DIR [DATA_DIR]}
out=${2:?usage: training-fingerprint.sh BUILD_DIR OUT_DIR [DATA_DIR]}
data=${3:-/usr/share/datasets/fashion-mnist}
[ -d "$data" ] || { echo "training-fingerprint: no dataset at $data" >&2; exit 77; }
mkdir -p "$out"
for device in cpu emu; do
  run="$out/$device"
  rm -rf "$run"
  if ! OMP_NUM_THREADS=2 "$build/wren" train --device "$device" --data-dir "$data" --steps 200 \
      --batch 32 --seed 11 --no-shuffle --flip --crop 2 --cutout 4 --opt adamw --lr 2e-3 \
      --wd 5e-4 --l1 1e-5 --sched cosine --warmup-steps 20 --val 512 --no-test --log-every 50 \
      --no-progress --out "$run" > "$out/$device.log" 2>&1; then
    if grep -q "no SIMT emulator" "$out/$device.log"; then
      echo "training-fingerprint: $device skipped (not in this build)" >&2
      continue
    fi
    echo "training-fingerprint: wren train --device $device failed:" >&2
    cat "$out/$device.log" >&2
    exit 1
  fi
  python3 - "$device" "$run/last.safetensors" <<'PY'
import hashlib, json, struct, sys
device, path = sys.argv[1], sys.argv[2]
with open(path, 'rb') as f:
    blob = f.read()
(n,) = struct.unpack('<Q', blob[:8])
header = json.loads(blob[8:8 + n])
data = blob[8 + n:]
for name in sorted(k for k in header if k != '__metadata__'):
    begin, end = header[name]['data_offsets']
    print(device, name, header[name]['dtype'], hashlib.sha256(data[begin:end]).hexdigest())
PY
done
