// The data path on the device (the CUDA twin of host/data/augment.cpp and of the accuracy count
// of host/train/train.cpp's evaluate(), float only):
//
//   make_batch     the dataset is uploaded once as its uint8 pixels and int32 labels
//                  (DeviceDatasetView); every step gathers the batch's samples from it,
//                  augments and normalizes them on the device. The result is BIT-IDENTICAL to
//                  wren::make_batch<float> (include/wren/data.h) for every AugmentConfig and
//                  augment on/off, with the same seed and step.
//   count_correct  the number of rows whose argmax equals the label, with evaluate()'s rule:
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
#include <string>

#include "kernel_api.h"
#include "wren/data.h"

namespace wren {

// A dataset held on the device: the pixels and labels of a wren::Dataset, same layout.
struct DeviceDatasetView {
  const uint8_t* images = nullptr;  // [count, c, h, w], raw 0..255 (Dataset::pixels)
  const int32_t* labels = nullptr;  // [count] (Dataset::labels)
  int64_t count = 0;
  int c = 0, h = 0, w = 0;
};

// The view of `dataset` once its pixels and labels have been copied, unchanged, to
// `device_images` (dataset.pixels.size() bytes) and `device_labels` (dataset.labels.size()
// int32 values). Throws std::invalid_argument if the dataset is inconsistent.
inline DeviceDatasetView device_dataset_view(const Dataset& dataset, const uint8_t* device_images,
                                             const int32_t* device_labels) {
  if (dataset.count < 0 || dataset.channels <= 0 || dataset.height <= 0 || dataset.width <= 0 ||
      dataset.pixels.size() != static_cast<size_t>(dataset.count * dataset.image_size()) ||
      dataset.labels.size() != static_cast<size_t>(dataset.count)) {
    throw std::invalid_argument("device_dataset_view: dataset " + dataset.source +
                                " is inconsistent (" + std::to_string(dataset.count) +
                                " images of " + std::to_string(dataset.channels) + "x" +
                                std::to_string(dataset.height) + "x" +
                                std::to_string(dataset.width) + ", " +
                                std::to_string(dataset.pixels.size()) + " pixel bytes, " +
                                std::to_string(dataset.labels.size()) + " labels)");
  }
  if (dataset.count > 0 && (device_images == nullptr || device_labels == nullptr)) {
    throw std::invalid_argument("device_dataset_view: null device images or labels");
  }
  return DeviceDatasetView{device_images, device_labels, dataset.count, dataset.channels,
                           dataset.height, dataset.width};
}

// Bytes of device workspace make_batch needs for a batch of n samples of `channels` channels:
// 48 bytes of parameters per sample, then the [channels, 256] float normalization table.
// The workspace must be 16-byte aligned (cudaMalloc's and wren::emu::malloc's are).
inline constexpr size_t kMakeBatchSampleBytes = 48;
constexpr size_t make_batch_workspace_bytes(int n, int channels) {
  return kMakeBatchSampleBytes * static_cast<size_t>(n < 0 ? 0 : n) +
         sizeof(float) * 256 * static_cast<size_t>(channels < 0 ? 0 : channels);
}

}  // namespace wren

#define WREN_DECLARE_DATA_KERNELS(ns)                                                           \
  namespace wren::ns {                                                                          \
  /* out [n, c, h, w] float, out_labels [n] int32 from the samples sample_indices [n] (int64)  \
     of `data`, normalized by mean/std [c] (float) and augmented when `augment`: bit for bit   \
     wren::make_batch<float>. `workspace`: make_batch_workspace_bytes(n, data.c) bytes,        \
     16-byte aligned; it must not be reused until the batch is complete. */                    \
  void make_batch(DeviceDatasetView data, const int64_t* sample_indices, int n,                 \
                  const float* mean, const float* std, AugmentConfig augment_config,            \
                  bool augment, uint64_t seed, uint64_t step, float* out, int32_t* out_labels,  \
                  void* workspace, StreamHandle stream);                                        \
  /* *correct = the number of rows of logits [n, classes] whose argmax (evaluate()'s tie and   \
     NaN rule) equals labels[row]; overwritten, an exact integer count. */                      \
  void count_correct(int n, int classes, const float* logits, const int32_t* labels,            \
                     int64_t* correct, StreamHandle stream);                                    \
  }

WREN_DECLARE_DATA_KERNELS(cuda_kernels)
WREN_DECLARE_DATA_KERNELS(emu_kernels)
