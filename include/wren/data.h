// Datasets on the host: readers for the MNIST-family IDX files and the CIFAR-10/100 binary
// files, the train/validation split, per-channel normalization, the per-epoch order and batch
// gathering with augmentation (docs/DATA.md).
//
// A dataset is held once, as the uint8 pixels of its files (N×C×H×W, 1 byte per value); float
// images exist only for the batch being built. Every random choice (split, epoch order,
// augmentation) is a pure function of (seed, stream, step, index) through wren/rng.h, so a run
// is reproducible and a CUDA kernel can build the same augmented batch.
//
// Readers never abort on bad input: a missing, truncated, corrupt or inconsistent file is an
// Error naming the file, what is wrong and, where it applies, the byte offset.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

#include "augment/augment.h"
#include "wren/error.h"

namespace wren {

// Where the CLI looks when no data directory is given (Debian package dataset-fashion-mnist).
inline constexpr char kDefaultDataDir[] = "/usr/share/datasets/fashion-mnist";

enum class Split { kTrain, kTest };
enum class CifarKind { kCifar10, kCifar100 };
enum class DatasetFormat { kIdx, kCifar10, kCifar100 };

const char* to_string(Split split);
const char* to_string(DatasetFormat format);

struct Dataset {
  std::vector<uint8_t> pixels;  // [count, channels, height, width], raw 0..255
  std::vector<int32_t> labels;  // [count], each in [0, num_classes)
  int64_t count = 0;
  int channels = 0, height = 0, width = 0;
  int num_classes = 0;
  std::string source;  // the file(s) it was read from, ", "-separated

  int64_t image_size() const { return int64_t{channels} * height * width; }
};

// The view of a dataset held on the host (its own vectors).
inline DatasetView dataset_view(const Dataset& dataset) {
  return DatasetView{dataset.pixels.data(), dataset.labels.data(), dataset.count,
                     dataset.channels,      dataset.height,        dataset.width};
}

// The view of `dataset` once its pixels and labels have been copied, unchanged, to
// `device_images` (dataset.pixels.size() bytes) and `device_labels` (dataset.labels.size()
// int32 values). Throws std::invalid_argument if the dataset is inconsistent.
inline DatasetView device_dataset_view(const Dataset& dataset, const uint8_t* device_images,
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
  return DatasetView{device_images, device_labels, dataset.count, dataset.channels,
                           dataset.height, dataset.width};
}

// The contents of a file, inflated when it starts with the gzip magic 1f 8b (whatever its
// name). Concatenated gzip members are read as one stream; a corrupt or truncated stream, or
// bytes after the last member that are not another member, is a kDataError.
struct FileBytes {
  std::vector<uint8_t> bytes;
  bool gzip = false;  // true: offsets into `bytes` are offsets into the decompressed data
};
Expected<FileBytes> read_file_bytes(const std::string& path);

// --- Readers ----------------------------------------------------------------------------------

// An IDX pair (MNIST, Fashion-MNIST, KMNIST, EMNIST): images with magic 0x00000803 and big-endian
// dims N, H, W followed by N·H·W bytes; labels with magic 0x00000801 and N followed by N bytes.
// Either file may be raw or gzip. Labels must be in [0, num_classes). channels = 1.
Expected<Dataset> read_idx(const std::string& images_path, const std::string& labels_path,
                           int num_classes = 10);

// The IDX pair of `split` in `dir`: {train,t10k}-{images-idx3,labels-idx1}-ubyte or
// {train,t10k}-{images,labels}.{idx3,idx1}-ubyte, each optionally with .gz.
Expected<Dataset> load_mnist_dir(const std::string& dir, Split split, int num_classes = 10);

// CIFAR binary records, concatenated over `files` in order: CIFAR-10 records are 1 label byte
// + 3072 pixel bytes; CIFAR-100 records are a coarse and a fine label byte + 3072 pixel bytes,
// and the fine label (100 classes) is used. Pixels are 3×32×32, channel-major (the file's own
// order). Files may be raw or gzip.
Expected<Dataset> read_cifar(std::span<const std::string> files, CifarKind kind);

// CIFAR-10: data_batch_1.bin … data_batch_5.bin (train) or test_batch.bin (test);
// CIFAR-100: train.bin or test.bin; in `dir` or in its cifar-10-batches-bin/ or
// cifar-100-binary/ subdirectory (the layout of the official archives).
Expected<Dataset> load_cifar_dir(const std::string& dir, CifarKind kind, Split split);

// Which format `dir` holds, from the files present (either split's files count), checked in
// the order IDX, CIFAR-10, CIFAR-100. kNotFound, listing every name looked for, when none.
Expected<DatasetFormat> detect_dataset_format(const std::string& dir);

// detect_dataset_format, then the matching loader for `split`.
Expected<Dataset> load_dataset(const std::string& dir, Split split);

// --- Split, normalization, order ----------------------------------------------------------------

struct TrainValSplit {
  std::vector<int64_t> train, val;  // each sorted ascending; disjoint; together [0, count)
};

// `val_count` samples of [0, count) chosen uniformly at random for validation: the first
// val_count entries of the Fisher–Yates permutation drawn as epoch_order does, from stream
// RngStream::kSplit at step 0. val_count is clamped to [0, count].
TrainValSplit split_train_val(int64_t count, int64_t val_count, uint64_t seed);

// Mean and population standard deviation per channel over the images `indices` (each in
// [0, count); the training set, never the validation or test set), accumulated exactly in integers
// and finished in double. A channel with zero variance (or no indices) gets std 1 so normalizing
// stays finite.
Normalization compute_normalization(const Dataset& dataset, std::span<const int64_t> indices);

// The order of `indices` for `epoch`: a Fisher–Yates shuffle drawn from stream
// RngStream::kShuffle with the Philox counter's step = epoch, or `indices` unchanged when
// !shuffle. For i = n−1 down to 1, position i swaps with j = r mod (i + 1), where r is the
// 64-bit value (hi << 32 | lo) of the raw Philox words lo, hi at uniform_at indices 2i, 2i+1.
std::vector<int64_t> epoch_order(std::span<const int64_t> indices, uint64_t seed, int64_t epoch,
                                 bool shuffle);

// --- Batches ----------------------------------------------------------------------------------

// Whether make_batch may be called with these arguments: every index in [0, count), one mean
// and one positive finite std per channel, crop_padding and cutout >= 0. kInvalidArgument
// naming the first problem.
Status check_batch_inputs(const Dataset& dataset, std::span<const int64_t> sample_indices,
                          const Normalization& normalization, const AugmentConfig& augment);

// make_batch (kernels/augment/augment.h) on a dataset held on the host. Preconditions:
// check_batch_inputs.
template <class T>
void make_batch(const Dataset& dataset, std::span<const int64_t> sample_indices,
                const Normalization& normalization, const AugmentConfig& augment_config,
                bool augment, uint64_t seed, uint64_t step, T* images, int32_t* labels) {
  make_batch<T>(dataset_view(dataset), sample_indices, normalization, augment_config, augment,
                seed, step, images, labels);
}

}  // namespace wren
