// Synthetic datasets for the tests of the data path (tests/test_data.cpp) and of make_batch
// (tests/kernels/augment_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "wren/data.h"
#include "wren/rng.h"

namespace wren::testing {

// `count` images of channels × height × width random bytes (Philox, RngStream::kTest with
// `salt`: a function of the arguments alone), labels i % 10, ten classes.
inline Dataset synthetic_dataset(int64_t count, int channels, int height, int width,
                                 uint64_t salt) {
  Dataset ds;
  ds.count = count;
  ds.channels = channels;
  ds.height = height;
  ds.width = width;
  ds.num_classes = 10;
  ds.pixels.resize(static_cast<size_t>(count * ds.image_size()));
  const RngKey key = make_rng_key(salt, RngStream::kTest);
  for (size_t k = 0; k < ds.pixels.size(); ++k) {
    ds.pixels[k] = static_cast<uint8_t>(uniform_at(key, 0, k) * 256.0f);
  }
  for (int64_t i = 0; i < count; ++i) ds.labels.push_back(static_cast<int32_t>(i % 10));
  ds.source = "synthetic";
  return ds;
}

}  // namespace wren::testing
