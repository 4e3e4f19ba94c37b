// Batch gathering: uint8 dataset → normalized T images [B, C, H, W] with the optional random
// crop / horizontal flip / cutout of augment.h. This is the specification a GPU
// gather-and-augment kernel must reproduce: one thread per output pixel can recompute its
// sample's five draws from (seed, step, b) and read its source pixel directly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "augment/augment.h"
#include "wren/rng.h"

namespace wren {
namespace {

// floor(u · n) for a draw u = m / 2²⁴, in integers so that it is exact on every device and
// never reaches n: (m · n) >> 24 with m = u · 2²⁴ (exact, u has 24 significant bits).
int scaled_draw(float u, int n) {
  const uint64_t m = static_cast<uint64_t>(u * 16777216.0f);
  return static_cast<int>((m * static_cast<uint64_t>(n)) >> 24);
}

// Index i of a dimension of size n, extended by reflection without repeating the edge
// (…, 2, 1, [0, 1, …, n−1], n−2, …): numpy's and PyTorch's "reflect". Periodic with period
// 2(n − 1), so any padding works, even one wider than the image.
int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

struct SampleDraws {
  int crop_y = 0, crop_x = 0;  // offsets into the padded image, in [0, 2p]
  bool flip = false;
  int cutout_y = 0, cutout_x = 0;  // centre, in [0, H) × [0, W)
};

SampleDraws draw_sample(RngKey key, uint64_t step, uint64_t b, const AugmentConfig& config,
                        int height, int width) {
  const uint64_t base = b * kAugmentDrawsPerSample;
  const int crop_choices = 2 * config.crop_padding + 1;
  SampleDraws d;
  d.crop_y = scaled_draw(uniform_at(key, step, base + kAugmentDrawCropY), crop_choices);
  d.crop_x = scaled_draw(uniform_at(key, step, base + kAugmentDrawCropX), crop_choices);
  d.flip = uniform_at(key, step, base + kAugmentDrawFlip) < 0.5f;
  d.cutout_y = scaled_draw(uniform_at(key, step, base + kAugmentDrawCutoutY), height);
  d.cutout_x = scaled_draw(uniform_at(key, step, base + kAugmentDrawCutoutX), width);
  return d;
}

}  // namespace

template <class T>
void make_batch(const DatasetView& dataset, std::span<const int64_t> sample_indices,
                const Normalization& normalization, const AugmentConfig& augment_config,
                bool augment, uint64_t seed, uint64_t step, T* images, int32_t* labels) {
  const int channels = dataset.c, height = dataset.h, width = dataset.w;
  const size_t plane = static_cast<size_t>(height) * static_cast<size_t>(width);
  const size_t image_size = static_cast<size_t>(channels) * plane;

  // The normalized value of every byte per channel, [C, 256], by the documented formula; a
  // table lookup gives exactly what computing it per pixel would.
  std::vector<T> table(static_cast<size_t>(channels) * 256);
  for (int c = 0; c < channels; ++c) {
    const T mean = static_cast<T>(normalization.mean[static_cast<size_t>(c)]);
    const T std_dev = static_cast<T>(normalization.std[static_cast<size_t>(c)]);
    for (int v = 0; v < 256; ++v) {
      table[static_cast<size_t>(c) * 256 + static_cast<size_t>(v)] =
          (static_cast<T>(v) / T(255) - mean) / std_dev;
    }
  }

  const RngKey key = make_rng_key(seed, RngStream::kAugment);
  const int pad = augment_config.crop_padding;
  for (size_t b = 0; b < sample_indices.size(); ++b) {
    const int64_t sample = sample_indices[b];
    const uint8_t* src = dataset.images + static_cast<size_t>(sample) * image_size;
    T* dst = images + b * image_size;
    labels[b] = dataset.labels[static_cast<size_t>(sample)];

    if (!augment) {
      for (int c = 0; c < channels; ++c) {
        const T* lut = table.data() + static_cast<size_t>(c) * 256;
        for (size_t k = 0; k < plane; ++k) dst[c * plane + k] = lut[src[c * plane + k]];
      }
      continue;
    }

    const SampleDraws d = draw_sample(key, step, b, augment_config, height, width);
    const int oy = d.crop_y - pad, ox = d.crop_x - pad;  // 0 when pad = 0
    const bool flip = augment_config.horizontal_flip && d.flip;
    for (int c = 0; c < channels; ++c) {
      const T* lut = table.data() + static_cast<size_t>(c) * 256;
      const uint8_t* src_plane = src + static_cast<size_t>(c) * plane;
      T* dst_plane = dst + static_cast<size_t>(c) * plane;
      for (int y = 0; y < height; ++y) {
        int sy = y + oy;
        const bool row_outside = sy < 0 || sy >= height;
        if (augment_config.pad_mode == PadMode::kReflect) sy = reflect_index(sy, height);
        for (int x = 0; x < width; ++x) {
          int sx = (flip ? width - 1 - x : x) + ox;
          const bool outside = row_outside || sx < 0 || sx >= width;
          uint8_t v = 0;  // kZero: a padded pixel is raw 0
          if (augment_config.pad_mode == PadMode::kReflect) {
            sx = reflect_index(sx, width);
            v = src_plane[static_cast<size_t>(sy) * static_cast<size_t>(width) +
                          static_cast<size_t>(sx)];
          } else if (!outside) {
            v = src_plane[static_cast<size_t>(sy) * static_cast<size_t>(width) +
                          static_cast<size_t>(sx)];
          }
          dst_plane[static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)] =
              lut[v];
        }
      }
    }

    const int side = augment_config.cutout;
    if (side > 0) {
      const int y0 = std::max(d.cutout_y - side / 2, 0);
      const int y1 = std::min(d.cutout_y - side / 2 + side, height);
      const int x0 = std::max(d.cutout_x - side / 2, 0);
      const int x1 = std::min(d.cutout_x - side / 2 + side, width);
      for (int c = 0; c < channels; ++c) {
        for (int y = y0; y < y1; ++y) {
          for (int x = x0; x < x1; ++x) {
            dst[static_cast<size_t>(c) * plane + static_cast<size_t>(y) * width +
                static_cast<size_t>(x)] = T(0);
          }
        }
      }
    }
  }
}

template void make_batch<float>(const DatasetView&, std::span<const int64_t>, const Normalization&,
                                const AugmentConfig&, bool, uint64_t, uint64_t, float*, int32_t*);
template void make_batch<double>(const DatasetView&, std::span<const int64_t>, const Normalization&,
                                 const AugmentConfig&, bool, uint64_t, uint64_t, double*, int32_t*);

}  // namespace wren
