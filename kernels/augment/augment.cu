// The data path on the device: see data.h. Compiled by nvcc (wren::cuda_kernels) and by g++
// for the emulator (wren::emu_kernels).
//
// Bit-exactness with kernels/augment/reference.cpp:
//  - the draws are the reference's: uniform_at (include/wren/rng.h, __host__ __device__) at
//    the documented indices, turned into integers by the same exact 64-bit products;
//  - the crop, flip, padding (zero or periodic reflect) and cutout use the reference's integer
//    expressions, so every output reads the same source byte (or the padding byte 0);
//  - the value is a lookup in a [C, 256] table built as the reference builds its table:
//    (float(v) / 255 − mean) / std, two correctly rounded divisions and one subtraction in
//    fp32 (__fdiv_rn / __fsub_rn under nvcc, so neither fast-math nor contraction can touch
//    them); cutout writes +0.0f after normalization, as the reference.
// Nothing depends on the thread schedule: no shared memory in make_batch; count_correct adds
// integer block counts (__syncthreads_count) with an integer atomic, so it is exact.
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "augment/augment.h"
#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"
#include "wren/rng.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
constexpr int kCountThreads = 256;
constexpr int64_t kCountMaxBlocks = 1024;

// One sample's augmentation, decided by the prologue (kMakeBatchSampleBytes in the workspace).
struct alignas(16) SampleParams {
  int64_t sample;  // dataset index; −1 when the given index is out of range
  int32_t oy;      // source row = y + oy (crop offset − padding; 0 without augmentation)
  int32_t sx0;     // source column = sx0 + sxs · x (flip folded in)
  int32_t sxs;     // +1, or −1 when flipped
  int32_t y0, y1;  // cutout rows [y0, y1), clipped; empty when off
  int32_t x0, x1;  // cutout columns [x0, x1)
};
static_assert(sizeof(SampleParams) == kMakeBatchSampleBytes);

__device__ __forceinline__ int imax(int a, int b) {
  return a > b ? a : b;
}
__device__ __forceinline__ int imin(int a, int b) {
  return a < b ? a : b;
}

// The reference's scaled_draw: floor(u · n) exactly, as (m · n) >> 24 with m = u · 2²⁴.
__device__ __forceinline__ int scaled_draw(float u, int n) {
  const uint64_t m = static_cast<uint64_t>(u * 16777216.0f);
  return static_cast<int>((m * static_cast<uint64_t>(n)) >> 24);
}

// The reference's reflect_index: reflection without repeating the edge, period 2(n − 1).
__device__ __forceinline__ int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

struct PrologueArgs {
  const int64_t* indices;
  const int32_t* labels;
  const float* mean;
  const float* std;
  SampleParams* params;
  float* lut;
  int32_t* out_labels;
  int64_t count;
  int n, c, h, w;
  AugmentConfig config;
  bool augment;
  uint64_t seed, step;
};

// Threads [0, n): one sample's parameters and label. Threads [0, 256·c): one table entry.
__global__ void make_batch_prologue_kernel(PrologueArgs a) {
  const int64_t table_size = int64_t{256} * a.c;
  const int64_t total = a.n > table_size ? a.n : table_size;
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    if (i < a.n) {
      const int64_t sample = a.indices[i];
      const bool valid = sample >= 0 && sample < a.count;
      SampleParams p{};
      p.sample = valid ? sample : -1;
      p.sxs = 1;
      if (a.augment) {
        const RngKey key = make_rng_key(a.seed, RngStream::kAugment);
        const uint64_t base = static_cast<uint64_t>(i) * kAugmentDrawsPerSample;
        const int pad = a.config.crop_padding;
        const int crop_choices = 2 * pad + 1;
        const int crop_y = scaled_draw(uniform_at(key, a.step, base + kAugmentDrawCropY),
                                       crop_choices);
        const int crop_x = scaled_draw(uniform_at(key, a.step, base + kAugmentDrawCropX),
                                       crop_choices);
        const bool flip = a.config.horizontal_flip &&
                          uniform_at(key, a.step, base + kAugmentDrawFlip) < 0.5f;
        const int cy = scaled_draw(uniform_at(key, a.step, base + kAugmentDrawCutoutY), a.h);
        const int cx = scaled_draw(uniform_at(key, a.step, base + kAugmentDrawCutoutX), a.w);
        const int ox = crop_x - pad;
        p.oy = crop_y - pad;
        // (flip ? W − 1 − x : x) + ox
        p.sx0 = flip ? a.w - 1 + ox : ox;
        p.sxs = flip ? -1 : 1;
        const int side = a.config.cutout;
        if (side > 0) {
          p.y0 = imax(cy - side / 2, 0);
          p.y1 = imin(cy - side / 2 + side, a.h);
          p.x0 = imax(cx - side / 2, 0);
          p.x1 = imin(cx - side / 2 + side, a.w);
        }
      }
      a.params[i] = p;
      a.out_labels[i] = valid ? a.labels[sample] : -1;
    }
    if (i < table_size) {
      const int64_t ch = i / 256;
      const float v = static_cast<float>(static_cast<int>(i % 256));
      a.lut[i] = fdiv(fsub(fdiv(v, 255.0f), a.mean[ch]), a.std[ch]);
    }
  }
}

// One thread per 4 consecutive outputs (x_begin .. x_begin + 3) of one output row
// (b, ch, y); `I` indexes the chunks (uint32_t when they fit). kVector: W % 4 == 0 and `out`
// 16-byte aligned, so every chunk is a whole aligned float4.
template <class I, bool kVector>
__global__ void make_batch_gather_kernel(const uint8_t* __restrict__ images,
                                         const SampleParams* __restrict__ params,
                                         const float* __restrict__ lut, float* __restrict__ out,
                                         I total_chunks, I chunks_per_row, int c, int h, int w,
                                         bool reflect) {
  const I stride = static_cast<I>(grid_stride());
  for (I t = static_cast<I>(first_index()); t < total_chunks; t += stride) {
    const I row = t / chunks_per_row;
    const int x_begin = static_cast<int>(t - row * chunks_per_row) * 4;
    const I bc = row / static_cast<I>(h);
    const int y = static_cast<int>(row - bc * static_cast<I>(h));
    const I b = bc / static_cast<I>(c);
    const int ch = static_cast<int>(bc - b * static_cast<I>(c));
    const SampleParams p = params[b];

    float v[4] = {NAN, NAN, NAN, NAN};  // an out-of-range sample index: NaN
    if (p.sample >= 0) {
      const uint8_t* plane = images + (p.sample * c + ch) * static_cast<int64_t>(h) * w;
      const float* table = lut + ch * 256;
      int sy = y + p.oy;
      const bool row_outside = sy < 0 || sy >= h;
      if (reflect) sy = reflect_index(sy, h);
      const int64_t row_offset = static_cast<int64_t>(sy) * w;  // used only when valid
      const bool cut_row = y >= p.y0 && y < p.y1;
      for (int k = 0; k < 4; ++k) {
        const int x = x_begin + k;
        if (!kVector && x >= w) break;
        int sx = p.sx0 + p.sxs * x;
        uint8_t byte = 0;  // zero padding: the raw byte 0
        if (reflect) {
          sx = reflect_index(sx, w);
          byte = plane[row_offset + sx];
        } else if (!row_outside && sx >= 0 && sx < w) {
          byte = plane[row_offset + sx];
        }
        v[k] = cut_row && x >= p.x0 && x < p.x1 ? 0.0f : table[byte];
      }
    }

    float* dst = out + static_cast<int64_t>(row) * w + x_begin;
    if constexpr (kVector) {
      store4(dst, float4{v[0], v[1], v[2], v[3]});
    } else {
      for (int k = 0; k < 4; ++k) {
        if (x_begin + k < w) dst[k] = v[k];
      }
    }
  }
}

__global__ void zero_count_kernel(unsigned long long* correct) {
  *correct = 0;
}

// Rows are visited block-wise: the loop bound depends only on the block, so every thread of
// the block reaches every __syncthreads_count (rows past n vote 0).
__global__ void count_correct_kernel(int64_t n, int classes, const float* __restrict__ logits,
                                     const int32_t* __restrict__ labels,
                                     unsigned long long* correct) {
  unsigned long long block_count = 0;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x; base < n;
       base += grid_stride()) {
    const int64_t row = base + threadIdx.x;
    int hit = 0;
    if (row < n) {
      // evaluate()'s scan: best starts at column 0 and moves only on a strictly greater value
      // (first maximum wins; NaN never wins; a NaN in column 0 keeps column 0).
      const float* r = logits + row * classes;
      int best = 0;
      float best_value = r[0];
      for (int k = 1; k < classes; ++k) {
        const float value = r[k];
        if (value > best_value) {
          best = k;
          best_value = value;
        }
      }
      hit = best == labels[row] ? 1 : 0;
    }
    block_count += static_cast<unsigned long long>(__syncthreads_count(hit));
  }
  if (threadIdx.x == 0 && block_count > 0) atomicAdd(correct, block_count);
}

int blocks_for(int64_t threads, int block, int64_t max_blocks) {
  const int64_t blocks = (threads + block - 1) / block;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

bool aligned(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

[[noreturn]] void bad(const char* function, const std::string& what) {
  throw std::invalid_argument(std::string(function) + ": " + what);
}

template <class I, bool kVector>
void launch_gather(const DatasetView& data, const SampleParams* params, const float* lut,
                   float* out, int64_t total_chunks, int64_t chunks_per_row, bool reflect,
                   Stream stream) {
  WREN_LAUNCH(blocks_for(total_chunks, kThreads, kMaxBlocks), kThreads, 0, stream,
              make_batch_gather_kernel<I, kVector>)
  (data.images, params, lut, out, static_cast<I>(total_chunks), static_cast<I>(chunks_per_row),
   data.c, data.h, data.w, reflect);
}

}  // namespace

void make_batch(DatasetView data, const int64_t* sample_indices, int n, const float* mean,
                const float* std, AugmentConfig augment_config, bool augment, uint64_t seed,
                uint64_t step, float* out, int32_t* out_labels, void* workspace,
                StreamHandle stream_handle) {
  constexpr const char* kName = "make_batch";
  if (n < 0) bad(kName, "negative batch size " + std::to_string(n));
  if (data.c <= 0 || data.h <= 0 || data.w <= 0 || data.count < 0) {
    bad(kName, "bad dataset shape: " + std::to_string(data.count) + " images of " +
                   std::to_string(data.c) + "x" + std::to_string(data.h) + "x" +
                   std::to_string(data.w));
  }
  if (data.count > 0 && (data.images == nullptr || data.labels == nullptr)) {
    bad(kName, "null dataset images or labels");
  }
  if (augment_config.crop_padding < 0 || augment_config.cutout < 0) {
    bad(kName, "crop padding " + std::to_string(augment_config.crop_padding) + " and cutout " +
                   std::to_string(augment_config.cutout) + " must be >= 0");
  }
  // The reference's int arithmetic (2p + 1, y + oy, W − 1 + ox) must not overflow.
  const int largest_side = data.h > data.w ? data.h : data.w;
  if (augment_config.crop_padding > (INT_MAX - 1) / 2 - largest_side) {
    bad(kName, "crop padding " + std::to_string(augment_config.crop_padding) +
                   " is too large for int arithmetic");
  }
  if (augment_config.pad_mode != PadMode::kZero && augment_config.pad_mode != PadMode::kReflect) {
    bad(kName, "unknown pad mode " + std::to_string(static_cast<int>(augment_config.pad_mode)));
  }
  if (n == 0) return;
  if (sample_indices == nullptr) bad(kName, "null sample indices");
  if (mean == nullptr || std == nullptr) bad(kName, "null mean or std");
  if (out == nullptr || out_labels == nullptr) bad(kName, "null output images or labels");
  if (workspace == nullptr || !aligned(workspace, 16)) {
    bad(kName, "workspace missing or not 16-byte aligned");
  }

  const Stream stream = as_stream(stream_handle);
  auto* const params = static_cast<SampleParams*>(workspace);
  auto* const lut = static_cast<float*>(static_cast<void*>(static_cast<unsigned char*>(workspace) +
                                                           kMakeBatchSampleBytes * n));

  PrologueArgs a{};
  a.indices = sample_indices;
  a.labels = data.labels;
  a.mean = mean;
  a.std = std;
  a.params = params;
  a.lut = lut;
  a.out_labels = out_labels;
  a.count = data.count;
  a.n = n;
  a.c = data.c;
  a.h = data.h;
  a.w = data.w;
  a.config = augment_config;
  a.augment = augment;
  a.seed = seed;
  a.step = step;
  const int64_t table_size = int64_t{256} * data.c;
  WREN_LAUNCH(blocks_for(n > table_size ? n : table_size, kThreads, kMaxBlocks), kThreads, 0,
              stream, make_batch_prologue_kernel)
  (a);

  const int64_t chunks_per_row = (int64_t{data.w} + 3) / 4;
  const int64_t total_chunks = int64_t{n} * data.c * data.h * chunks_per_row;
  const bool reflect = augment && augment_config.pad_mode == PadMode::kReflect;
  const bool vector = data.w % 4 == 0 && aligned(out, 16);
  // 32-bit chunk indices when t + grid stride cannot wrap.
  const bool narrow = total_chunks <= (int64_t{1} << 31);
  if (narrow && vector) {
    launch_gather<uint32_t, true>(data, params, lut, out, total_chunks, chunks_per_row, reflect,
                                  stream);
  } else if (narrow) {
    launch_gather<uint32_t, false>(data, params, lut, out, total_chunks, chunks_per_row, reflect,
                                   stream);
  } else if (vector) {
    launch_gather<int64_t, true>(data, params, lut, out, total_chunks, chunks_per_row, reflect,
                                 stream);
  } else {
    launch_gather<int64_t, false>(data, params, lut, out, total_chunks, chunks_per_row, reflect,
                                  stream);
  }
}

void count_correct(int n, int classes, const float* logits, const int32_t* labels,
                   int64_t* correct, StreamHandle stream_handle) {
  constexpr const char* kName = "count_correct";
  if (n < 0) bad(kName, "negative row count " + std::to_string(n));
  if (correct == nullptr) bad(kName, "null output count");
  if (n > 0 && classes < 1) bad(kName, "need at least one class, got " + std::to_string(classes));
  if (n > 0 && (logits == nullptr || labels == nullptr)) bad(kName, "null logits or labels");

  const Stream stream = as_stream(stream_handle);
  // Every access to *correct on the device is through this unsigned 64-bit view.
  auto* const count = reinterpret_cast<unsigned long long*>(correct);
  static_assert(sizeof(unsigned long long) == sizeof(int64_t));
  WREN_LAUNCH(1, 1, 0, stream, zero_count_kernel)(count);
  if (n == 0) return;
  WREN_LAUNCH(blocks_for(n, kCountThreads, kCountMaxBlocks), kCountThreads, 0, stream,
              count_correct_kernel)
  (int64_t{n}, classes, logits, labels, count);
}

}  // namespace wren::WREN_KERNELS_NS
