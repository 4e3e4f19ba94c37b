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
#include <span>
#include <string>
#include <vector>

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

// Per-channel mean and standard deviation in [0, 1] pixel units (x / 255).
struct Normalization {
  std::vector<float> mean, std;  // [channels]
};

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

// Whether make_batch may be called with these arguments: every index in [0, count), one mean
// and one positive finite std per channel, crop_padding and cutout >= 0. kInvalidArgument
// naming the first problem.
Status check_batch_inputs(const Dataset& dataset, std::span<const int64_t> sample_indices,
                          const Normalization& normalization, const AugmentConfig& augment);

// Gathers the samples `sample_indices` (B of them) into images [B, C, H, W] and labels [B]:
// value = (T(x) / T(255) − T(mean[c])) / T(std[c]) in T, with the augmentation above applied
// when `augment` (a pure function of (seed, step, b) and the inputs). Without augmentation the
// value is exactly that normalization of the stored pixel. Preconditions: check_batch_inputs.
template <class T>
void make_batch(const Dataset& dataset, std::span<const int64_t> sample_indices,
                const Normalization& normalization, const AugmentConfig& augment_config,
                bool augment, uint64_t seed, uint64_t step, T* images, int32_t* labels);

extern template void make_batch<float>(const Dataset&, std::span<const int64_t>,
                                       const Normalization&, const AugmentConfig&, bool, uint64_t,
                                       uint64_t, float*, int32_t*);
extern template void make_batch<double>(const Dataset&, std::span<const int64_t>,
                                        const Normalization&, const AugmentConfig&, bool, uint64_t,
                                        uint64_t, double*, int32_t*);

}  // namespace wren
