// libFuzzer target: safetensors files and checkpoint metadata.
// The input layout and what is run: tests/fuzz/fuzz_inputs.h.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)wren::fuzz::safetensors(std::span<const uint8_t>(data, size));
  return 0;
}
