#!/usr/bin/env bash
# Packs a build's programs, and the shared libraries a bare GPU machine may lack, into one
# tarball that `bench/gpu-validate.sh --prebuilt FILE` unpacks and runs. For GPU machines that
# can neither install Debian packages nor reach a network (the build needs OpenBLAS, CLI11,
# GoogleTest, ...): build here, carry the tarball there.
#
#   bench/pack-prebuilt.sh BUILD_DIR OUT.tar.xz
#
# Packed: wren, wren-bench, wren_tests (stripped) and, from their `ldd`, every library outside
# glibc, libstdc++/libgcc and CUDA (OpenBLAS, libgfortran, libquadmath, libgomp, zlib). The CUDA
# runtime, cuBLAS and cuDNN are the GPU machine's own (gpu-validate.sh finds them).
set -euo pipefail
build=${1:?usage: bench/pack-prebuilt.sh BUILD_DIR OUT.tar.xz}
out=${2:?usage: bench/pack-prebuilt.sh BUILD_DIR OUT.tar.xz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for prog in wren wren-bench wren_tests; do
  [[ -x $build/$prog ]] || { echo "pack-prebuilt: $build/$prog is missing (build it first)" >&2; exit 1; }
  strip -o "$stage/bin/$prog" "$build/$prog"
done
ldd "$stage"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda*|libcublas*|libcudnn*|libnv*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
{
  echo "built on: $(hostname) $(. /etc/os-release && echo "$PRETTY_NAME"), $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$(dirname "$0")/.." rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cuda architectures: $(grep -m1 '^CMAKE_CUDA_ARCHITECTURES:' "$build/CMakeCache.txt" | cut -d= -f2)"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
} > "$stage/BUILD_INFO"
tar -C "$stage" -cJf "$out" .
echo "pack-prebuilt: $out ($(du -h "$out" | cut -f1)): $(ls "$stage/bin" "$stage/lib" | tr '\n' ' ')"
