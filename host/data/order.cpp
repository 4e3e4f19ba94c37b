// The train/validation split, per-channel normalization statistics and the per-epoch order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "wren/data.h"
#include "wren/rng.h"

namespace wren {
namespace {

// The 64-bit draw for Fisher–Yates position i: the raw Philox words at uniform_at indices 2i
// (low half) and 2i + 1 (high half), i.e. lanes 2(i % 2) and 2(i % 2) + 1 of the block at
// counter (i / 2, (i / 2) >> 32, lo32(step), hi32(step)). Raw words rather than uniform_at's
// 24-bit floats, so that j is unbiased to within (i + 1) / 2⁶⁴ for any dataset size.
uint64_t draw64(RngKey key, uint64_t step, uint64_t i) {
  const uint64_t block = i >> 1;
  const Philox4x32 r =
      philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                    static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), key.k0, key.k1);
  const int lane = static_cast<int>(i & 1) * 2;
  return uint64_t{r.v[lane + 1]} << 32 | r.v[lane];
}

template <class Item>
void fisher_yates(std::span<Item> items, RngKey key, uint64_t step) {
  for (size_t i = items.size(); i-- > 1;) {
    const size_t j = static_cast<size_t>(draw64(key, step, i) % (uint64_t{i} + 1));
    std::swap(items[i], items[j]);
  }
}

}  // namespace

TrainValSplit split_train_val(int64_t count, int64_t val_count, uint64_t seed) {
  count = std::max<int64_t>(count, 0);
  val_count = std::clamp<int64_t>(val_count, 0, count);
  std::vector<int64_t> perm(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) perm[static_cast<size_t>(i)] = i;
  fisher_yates(std::span<int64_t>(perm), make_rng_key(seed, RngStream::kSplit), 0);
  TrainValSplit split;
  split.val.assign(perm.begin(), perm.begin() + val_count);
  split.train.assign(perm.begin() + val_count, perm.end());
  std::sort(split.val.begin(), split.val.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

Normalization compute_normalization(const Dataset& dataset, std::span<const int64_t> indices) {
  const size_t channels = static_cast<size_t>(std::max(dataset.channels, 0));
  const size_t plane = static_cast<size_t>(dataset.height) * static_cast<size_t>(dataset.width);
  // Exact integer sums: Σx ≤ 255·n and Σx² ≤ 65025·n stay below 2⁶⁴ for n < 2.8e14 values.
  std::vector<uint64_t> sum(channels, 0), sum_sq(channels, 0);
  for (int64_t index : indices) {
    const uint8_t* image = dataset.pixels.data() + static_cast<size_t>(index) * channels * plane;
    for (size_t c = 0; c < channels; ++c) {
      const uint8_t* p = image + c * plane;
      uint64_t s = 0, s2 = 0;
      for (size_t k = 0; k < plane; ++k) {
        s += p[k];
        s2 += uint64_t{p[k]} * p[k];
      }
      sum[c] += s;
      sum_sq[c] += s2;
    }
  }
  Normalization norm;
  norm.mean.assign(channels, 0.0f);
  norm.std.assign(channels, 1.0f);
  const double n = static_cast<double>(indices.size()) * static_cast<double>(plane);
  if (n == 0) return norm;
  for (size_t c = 0; c < channels; ++c) {
    const double mean = static_cast<double>(sum[c]) / n;  // raw 0..255 units
    const double var = std::max(static_cast<double>(sum_sq[c]) / n - mean * mean, 0.0);
    norm.mean[c] = static_cast<float>(mean / 255.0);
    const double std_dev = std::sqrt(var) / 255.0;
    norm.std[c] = std_dev > 0 ? static_cast<float>(std_dev) : 1.0f;
  }
  return norm;
}

std::vector<int64_t> epoch_order(std::span<const int64_t> indices, uint64_t seed, int64_t epoch,
                                 bool shuffle) {
  std::vector<int64_t> order(indices.begin(), indices.end());
  if (shuffle) {
    fisher_yates(std::span<int64_t>(order), make_rng_key(seed, RngStream::kShuffle),
                 static_cast<uint64_t>(epoch));
  }
  return order;
}

}  // namespace wren
