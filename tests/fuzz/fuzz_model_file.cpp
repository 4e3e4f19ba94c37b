// libFuzzer target: the model text format, built into a graph.
// The input layout and what is run: tests/fuzz/fuzz_inputs.h.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_inputs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)wren::fuzz::model_file(std::span<const uint8_t>(data, size));
  return 0;
}
