#!/usr/bin/env bash
# Installs everything Wren needs to build, test and train on Debian 12 / Ubuntu 22.04+.
# Idempotent: does nothing when every package is already installed.
# Why each package is here: docs/DEPENDENCIES.md. The CUDA toolkit is optional and not
# installed here (Wren builds and tests without it; with it, CMake finds nvcc on PATH or in
# /usr/local/cuda).
set -euo pipefail

packages=(
  cmake g++ make pkg-config    # the build
  libopenblas-dev              # CPU GEMM for conv (im2col) and linear
  zlib1g-dev                   # gzip-compressed IDX datasets
  libgtest-dev libgmock-dev    # the test suite
  libbenchmark-dev             # CPU micro-benchmarks
  libcli11-dev                 # command-line parsing
  nlohmann-json3-dev           # JSON: run configs, metrics, checkpoint headers
  dataset-fashion-mnist        # the default training data, /usr/share/datasets/fashion-mnist
  clang libomp-dev             # the fuzz preset (tests/fuzz/): libFuzzer needs clang; OpenMP for it
)
# libFuzzer's and the sanitizers' runtime for clang: its own package on Debian 12 (Ubuntu 22.04
# ships it in libclang-common-14-dev, which clang depends on).
if apt-cache show libclang-rt-dev >/dev/null 2>&1; then packages+=(libclang-rt-dev); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-debian: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup-debian: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
