// libFuzzer target: the IDX reader, raw and gzip.
// The input layout and what is run: tests/fuzz/fuzz_inputs.h.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_inputs.h"
#include "scratch_dir.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)wren::fuzz::idx(std::span<const uint8_t>(data, size), wren::fuzz::scratch_dir());
  return 0;
}
