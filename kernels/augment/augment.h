// The augment family: a batch gathered from a uint8 dataset, augmented (random crop, flip,
// cutout) and normalized. The CPU reference (reference.cpp, float and double) is make_batch
// below; the trainer calls it through include/wren/data.h on the host's Dataset.
//
// Device launchers (augment.cu, float only; also the accuracy count of the trainer's evaluation):
//
//   make_batch     the dataset is uploaded once as its uint8 pixels and int32 labels
//                  (DatasetView); every step gathers the batch's samples from it,
//                  augments and normalizes them on the device. The result is BIT-IDENTICAL to
//                  wren::make_batch<float> (include/wren/data.h) for every AugmentConfig and
//                  augment on/off, with the same seed and step.
//   count_correct  the number of rows whose argmax equals the label, with the trainer's evaluation rule:
//                  the first maximum wins ties, a NaN never beats the current best, and a NaN
//                  in column 0 makes column 0 the argmax (a strict `>` scan from column 0).
//
// make_batch enqueues two launches on `stream`:
//   1. a prologue, one thread per sample and per (channel, byte value): the sample's five
//      Philox draws (uniform_at(make_rng_key(seed, kAugment), step, 8·b + k), exactly as the
//      reference) turned into its crop offsets, flip and clipped cutout rectangle, and the
//      labels; and the normalization table lut[c][v] = (float(v) / 255 − mean[c]) / std[c]
//      (correctly rounded fp32 operations, as the reference's table). Both go to `workspace`.
//   2. the gather: one thread per 4 consecutive outputs of one image row (a float4 store when
//      W % 4 == 0 and `out` is 16-byte aligned), reading its sample's parameters (one 48-byte
//      broadcast load), one source byte per output and one table entry per output.
// Memory-bound: per output one byte read (mostly coalesced) and one float written; the table
// and the per-sample parameters stay in L1/L2.
//
// Preconditions the host cannot check (device memory), as for wren::make_batch
// (check_batch_inputs): mean[c] finite and std[c] finite and > 0. A sample index outside
// [0, count) does not read out of bounds: its image is all NaN and its label −1.
//
// Host-side argument errors (negative sizes, null pointers, a misaligned workspace, a bad
// AugmentConfig) throw std::invalid_argument before anything is enqueued. All pointers are
// device pointers; `stream` is a cudaStream_t / wren::emu::Stream (nullptr: default stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

#include "common/kernel_api.h"
#include "wren/rng.h"

namespace wren {

// Per-channel mean and standard deviation in [0, 1] pixel units (x / 255).
struct Normalization {
  std::vector<float> mean, std;  // [channels]
};

enum class PadMode {
  kZero,     // padded pixels are raw 0 (black) before normalization, i.e. −mean/std after
  kReflect,  // padded pixels mirror the image without repeating the edge (numpy "reflect")
};

struct AugmentConfig {
  int crop_padding = 0;  // random crop of the H×W image padded by this much on every side
  PadMode pad_mode = PadMode::kZero;
  bool horizontal_flip = false;  // mirror left-right with probability 1/2
  int cutout = 0;                // side of the square set to 0 after normalization; 0 = off
};

// Random draws per sample: the sample at batch position b uses uniform_at(key, step, 8·b + k)
// with key = make_rng_key(seed, RngStream::kAugment), for k =
inline constexpr int kAugmentDrawCropY = 0;       // crop offset oy = (m · (2p + 1)) >> 24
inline constexpr int kAugmentDrawCropX = 1;       // crop offset ox = (m · (2p + 1)) >> 24
inline constexpr int kAugmentDrawFlip = 2;        // flip when u < 0.5
inline constexpr int kAugmentDrawCutoutY = 3;     // cutout centre cy = (m · H) >> 24
inline constexpr int kAugmentDrawCutoutX = 4;     // cutout centre cx = (m · W) >> 24
inline constexpr int kAugmentDrawsPerSample = 8;  // 5..7 reserved
// where u is the draw and m = u · 2²⁴ its 24-bit integer (exact). Every draw is made whether or
// not its augmentation is on, so switching one on does not change the others.
//
// Output pixel (c, y, x) of an augmented sample, with xs = flip ? W − 1 − x : x, is the padded
// image's pixel (y + oy, xs + ox), i.e. the source pixel (y + oy − p, xs + ox − p), padded per
// pad_mode; then normalized; then set to 0 inside rows [cy − s/2, cy − s/2 + s) × columns
// [cx − s/2, cx − s/2 + s), clipped at the borders (s = cutout, s/2 rounded down).

// A set of images as the augment family sees it: the uint8 pixels and int32 labels of a
// wren::Dataset (include/wren/data.h), same layout, in host memory (the reference) or device
// memory (the kernels).
struct DatasetView {
  const uint8_t* images = nullptr;  // [count, c, h, w], raw 0..255 (Dataset::pixels)
  const int32_t* labels = nullptr;  // [count] (Dataset::labels)
  int64_t count = 0;
  int c = 0, h = 0, w = 0;
};

// Gathers the samples `sample_indices` (B of them) into images [B, C, H, W] and labels [B]:
// value = (T(x) / T(255) − T(mean[c])) / T(std[c]) in T, with the augmentation above applied
// when `augment` (a pure function of (seed, step, b) and the inputs). Without augmentation the
// value is exactly that normalization of the stored pixel. Preconditions: check_batch_inputs.
template <class T>
void make_batch(const DatasetView& data, std::span<const int64_t> sample_indices,
                const Normalization& normalization, const AugmentConfig& augment_config,
                bool augment, uint64_t seed, uint64_t step, T* images, int32_t* labels);

extern template void make_batch<float>(const DatasetView&, std::span<const int64_t>,
                                       const Normalization&, const AugmentConfig&, bool, uint64_t,
                                       uint64_t, float*, int32_t*);
extern template void make_batch<double>(const DatasetView&, std::span<const int64_t>,
                                        const Normalization&, const AugmentConfig&, bool, uint64_t,
                                        uint64_t, double*, int32_t*);

// Bytes of device workspace make_batch needs for a batch of n samples of `channels` channels:
// 48 bytes of parameters per sample, then the [channels, 256] float normalization table.
// The workspace must be 16-byte aligned (cudaMalloc's and wren::emu::malloc's are).
inline constexpr size_t kMakeBatchSampleBytes = 48;
constexpr size_t make_batch_workspace_bytes(int n, int channels) {
  return kMakeBatchSampleBytes * static_cast<size_t>(n < 0 ? 0 : n) +
         sizeof(float) * 256 * static_cast<size_t>(channels < 0 ? 0 : channels);
}

}  // namespace wren

#define WREN_DECLARE_AUGMENT_KERNELS(ns)                                                           \
  namespace wren::ns {                                                                          \
  /* out [n, c, h, w] float, out_labels [n] int32 from the samples sample_indices [n] (int64)  \
     of `data`, normalized by mean/std [c] (float) and augmented when `augment`: bit for bit   \
     wren::make_batch<float>. `workspace`: make_batch_workspace_bytes(n, data.c) bytes,        \
     16-byte aligned; it must not be reused until the batch is complete. */                    \
  void make_batch(DatasetView data, const int64_t* sample_indices, int n,                 \
                  const float* mean, const float* std, AugmentConfig augment_config,            \
                  bool augment, uint64_t seed, uint64_t step, float* out, int32_t* out_labels,  \
                  void* workspace, StreamHandle stream);                                        \
  /* *correct = the number of rows of logits [n, classes] whose argmax (the evaluation's tie and
     NaN rule) equals labels[row]; overwritten, an exact integer count. */                      \
  void count_correct(int n, int classes, const float* logits, const int32_t* labels,            \
                     int64_t* correct, StreamHandle stream);                                    \
  }

WREN_DECLARE_AUGMENT_KERNELS(cuda_kernels)
WREN_DECLARE_AUGMENT_KERNELS(emu_kernels)
