// kernels/augment/augment.cu against the CPU reference: make_batch against wren::make_batch<float>
// (kernels/augment/reference.cpp) bit for bit, images and labels, and count_correct against the argmax
// rule of evaluate() (host/train/train.cpp, score_logits); on the emulator under the forward,
// reverse and random fiber schedules, and on a GPU when one is present.
//
// make_batch: synthetic datasets of random bytes (C=1 28×28, C=3 32×32, odd 5×7 and 7×5,
// degenerate 1×3 and 4×1 images, where reflection has period 0 along one axis), normalized by
// compute_normalization or by arbitrary means and stds; every augmentation alone and combined,
// both pad modes, crop paddings wider than the image and cutouts larger than it; augment on
// and off; several seeds and steps (including steps ≥ 2³², which use the counter's high word);
// batches with repeated samples and odd sizes; float4 and scalar stores (a misaligned `out`).
//
// count_correct: random logits, logits with many ties (the first maximum wins), and logits with
// NaN (in column 0 too), ±∞; labels chosen so that a different tie rule would change the count.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "augment/augment.h"
#include "emu/emu.h"
#include "wren/data.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::AugmentConfig;
using wren::Dataset;
using wren::DatasetView;
using wren::Normalization;
using wren::PadMode;

// --- Backends: the emulator (device memory is host memory) and CUDA --------------------------

// A device array initialised from a host vector. Host vectors come from operator new, so they
// are 16-byte aligned, as cudaMalloc's memory is.
template <class T>
class Buffer {
 public:
  Buffer(bool gpu, const std::vector<T>& host) : gpu_(gpu), host_(host) {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      const size_t bytes = std::max<size_t>(host.size(), 1) * sizeof(T);
      EXPECT_EQ(cudaMalloc(&device_, bytes), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(device_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                cudaSuccess);
    }
#endif
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
#if defined(WREN_HAVE_CUDA)
    if (device_ != nullptr) cudaFree(device_);
#endif
  }
  T* get() { return gpu_ ? device_ : host_.data(); }
  std::vector<T> read() {
#if defined(WREN_HAVE_CUDA)
    if (gpu_) {
      EXPECT_EQ(cudaMemcpy(host_.data(), device_, host_.size() * sizeof(T), cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
#endif
    return host_;
  }

 private:
  bool gpu_;
  std::vector<T> host_;
  T* device_ = nullptr;
};

struct EmuKernels {
  static constexpr bool kGpu = false;
  static constexpr const char* kName = "emu";
  static void make_batch(DatasetView data, const int64_t* indices, int n, const float* mean,
                         const float* std, AugmentConfig config, bool augment, uint64_t seed,
                         uint64_t step, float* out, int32_t* labels, void* ws) {
    wren::emu_kernels::make_batch(data, indices, n, mean, std, config, augment, seed, step, out,
                                  labels, ws, nullptr);
  }
  static void count_correct(int n, int classes, const float* logits, const int32_t* labels,
                            int64_t* correct) {
    wren::emu_kernels::count_correct(n, classes, logits, labels, correct, nullptr);
  }
  static std::string finish() { return wren::emu::take_error(); }
};

#if defined(WREN_HAVE_CUDA)
struct CudaKernels {
  static constexpr bool kGpu = true;
  static constexpr const char* kName = "cuda";
  static void make_batch(DatasetView data, const int64_t* indices, int n, const float* mean,
                         const float* std, AugmentConfig config, bool augment, uint64_t seed,
                         uint64_t step, float* out, int32_t* labels, void* ws) {
    wren::cuda_kernels::make_batch(data, indices, n, mean, std, config, augment, seed, step, out,
                                   labels, ws, nullptr);
  }
  static void count_correct(int n, int classes, const float* logits, const int32_t* labels,
                            int64_t* correct) {
    wren::cuda_kernels::count_correct(n, classes, logits, labels, correct, nullptr);
  }
  static std::string finish() {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? "" : cudaGetErrorString(e);
  }
};
#endif

// --- Inputs -------------------------------------------------------------------------------------

Dataset make_dataset(int64_t count, int c, int h, int w, int classes, std::mt19937& rng) {
  Dataset d;
  d.count = count;
  d.channels = c;
  d.height = h;
  d.width = w;
  d.num_classes = classes;
  d.source = "synthetic";
  d.pixels.resize(static_cast<size_t>(count * d.image_size()));
  std::uniform_int_distribution<int> byte(0, 255), label(0, classes - 1);
  for (uint8_t& p : d.pixels) p = static_cast<uint8_t>(byte(rng));
  d.labels.resize(static_cast<size_t>(count));
  for (int32_t& l : d.labels) l = label(rng);
  return d;
}

struct Shape {
  int c, h, w;
};
const Shape kShapes[] = {{1, 28, 28}, {3, 32, 32}, {1, 5, 7}, {2, 7, 5}, {1, 1, 3}, {3, 4, 1}};

std::string shape_name(const Shape& s) {
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

struct NamedConfig {
  std::string name;
  AugmentConfig config;
};

AugmentConfig augment(int crop, PadMode mode, bool flip, int cutout) {
  AugmentConfig a;
  a.crop_padding = crop;
  a.pad_mode = mode;
  a.horizontal_flip = flip;
  a.cutout = cutout;
  return a;
}

// Every option alone and combined, for an h×w image.
std::vector<NamedConfig> configs(int h, int w) {
  const int wide = 2 * std::max(h, w) + 1;  // padding wider than the image (reflect wraps)
  const PadMode z = PadMode::kZero, r = PadMode::kReflect;
  return {
      {"none", augment(0, z, false, 0)},
      {"reflect only", augment(0, r, false, 0)},
      {"crop1 zero", augment(1, z, false, 0)},
      {"crop4 zero", augment(4, z, false, 0)},
      {"crop2 reflect", augment(2, r, false, 0)},
      {"crop4 reflect", augment(4, r, false, 0)},
      {"crop wide zero", augment(wide, z, false, 0)},
      {"crop wide reflect", augment(wide, r, false, 0)},
      {"flip", augment(0, z, true, 0)},
      {"cutout1", augment(0, z, false, 1)},
      {"cutout4", augment(0, z, false, 4)},
      {"cutout5", augment(0, z, false, 5)},
      {"cutout huge", augment(0, z, false, 2 * std::max(h, w) + 3)},
      {"crop+flip zero", augment(3, z, true, 0)},
      {"crop+flip reflect", augment(3, r, true, 0)},
      {"flip+cutout", augment(0, z, true, 3)},
      {"crop+cutout reflect", augment(2, r, false, 6)},
      {"all zero", augment(4, z, true, 8)},
      {"all reflect", augment(4, r, true, 7)},
  };
}

struct SeedStep {
  uint64_t seed, step;
};
const SeedStep kSeedSteps[] = {
    {0, 0}, {12345, 7}, {0xDEADBEEF12345678ull, (uint64_t{1} << 33) + 5}};

bool same_bits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

constexpr float kFill = 7.25f;        // outputs start as this, never a correct result
constexpr int32_t kLabelFill = -777;  // labels likewise

// One make_batch call against the reference; `offset` floats before `out` (1: not 16-byte
// aligned, so the scalar stores run) must stay untouched.
template <class K>
void check_one(const Dataset& ds, const DatasetView& view, Buffer<int64_t>& indices_buf,
               const std::vector<int64_t>& indices, Buffer<float>& mean_buf,
               Buffer<float>& std_buf, const Normalization& norm, const AugmentConfig& config,
               bool aug, SeedStep ss, int offset, const std::string& what) {
  const int n = static_cast<int>(indices.size());
  const size_t image = static_cast<size_t>(ds.image_size());
  std::vector<float> ref(image * n, kFill);
  std::vector<int32_t> ref_labels(n, kLabelFill);
  ASSERT_TRUE(wren::check_batch_inputs(ds, indices, norm, config).ok()) << what;
  wren::make_batch<float>(ds, indices, norm, config, aug, ss.seed, ss.step, ref.data(),
                          ref_labels.data());

  Buffer<float> out(K::kGpu, std::vector<float>(image * n + offset, kFill));
  Buffer<int32_t> labels(K::kGpu, std::vector<int32_t>(n, kLabelFill));
  Buffer<unsigned char> ws(K::kGpu,
                           std::vector<unsigned char>(wren::make_batch_workspace_bytes(n, ds.channels)));
  K::make_batch(view, indices_buf.get(), n, mean_buf.get(), std_buf.get(), config, aug, ss.seed,
                ss.step, out.get() + offset, labels.get(), ws.get());
  ASSERT_EQ(K::finish(), "") << what;

  const std::vector<float> got = out.read();
  size_t bad = 0;
  for (int k = 0; k < offset; ++k) EXPECT_TRUE(same_bits(got[k], kFill)) << what << " wrote before out";
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!same_bits(got[i + offset], ref[i]) && ++bad <= 5) {
      const size_t b = i / image, rest = i % image;
      const size_t plane = static_cast<size_t>(ds.height) * ds.width;
      ADD_FAILURE() << what << " image " << b << " c " << rest / plane << " y "
                    << rest % plane / ds.width << " x " << rest % ds.width << ": "
                    << got[i + offset] << " vs reference " << ref[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
  EXPECT_EQ(labels.read(), ref_labels) << what;
}

template <class K>
void check_make_batch(uint32_t seed) {
  std::mt19937 rng(seed);
  int shape_index = 0;
  for (const Shape& s : kShapes) {
    const int64_t count = 11;
    const Dataset ds = make_dataset(count, s.c, s.h, s.w, 10, rng);
    // Indices: both ends, repeats, an odd batch size.
    std::vector<int64_t> indices = {count - 1, 0, 3, 3};
    std::uniform_int_distribution<int64_t> pick(0, count - 1);
    for (int k = 0; k < 3; ++k) indices.push_back(pick(rng));

    Normalization norm;
    if (shape_index % 2 == 0) {
      std::vector<int64_t> all(count);
      for (int64_t i = 0; i < count; ++i) all[i] = i;
      norm = wren::compute_normalization(ds, all);
    } else {
      std::uniform_real_distribution<float> mean(-0.5f, 1.5f), std_dev(0.05f, 2.0f);
      for (int c = 0; c < s.c; ++c) {
        norm.mean.push_back(mean(rng));
        norm.std.push_back(std_dev(rng));
      }
    }
    ++shape_index;

    Buffer<uint8_t> images(K::kGpu, ds.pixels);
    Buffer<int32_t> labels(K::kGpu, ds.labels);
    Buffer<int64_t> indices_buf(K::kGpu, indices);
    Buffer<float> mean_buf(K::kGpu, norm.mean), std_buf(K::kGpu, norm.std);
    const DatasetView view = wren::device_dataset_view(ds, images.get(), labels.get());

    int call = 0;
    for (const NamedConfig& nc : configs(s.h, s.w)) {
      for (bool aug : {true, false}) {
        for (const SeedStep& ss : kSeedSteps) {
          // Without augmentation the config and the draws do not matter: one seed is enough.
          if (!aug && ss.seed != 0) continue;
          const int offset = call++ % 3 == 2 ? 1 : 0;
          const std::string what = std::string(K::kName) + " make_batch " + shape_name(s) + " " +
                                   nc.name + (aug ? " augment" : " plain") + " seed " +
                                   std::to_string(ss.seed) + " step " + std::to_string(ss.step) +
                                   (offset ? " (scalar stores)" : "");
          check_one<K>(ds, view, indices_buf, indices, mean_buf, std_buf, norm, nc.config, aug,
                       ss, offset, what);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

// Training-sized batches: Fashion-MNIST-like 256 × 1×28×28 and CIFAR-like 1400 × 3×32×32 with
// the usual augmentations; the latter has more 4-output chunks (1.08M) than the gather's grid
// has threads, so its grid-stride loop takes a second turn.
template <class K>
void check_large_batches(uint32_t seed) {
  std::mt19937 rng(seed);
  struct Large {
    Shape shape;
    int64_t count;
    int n;
    AugmentConfig config;
    uint64_t step;
  };
  const Large cases[] = {{{1, 28, 28}, 600, 256, augment(4, PadMode::kReflect, true, 10), 1234},
                         {{3, 32, 32}, 2000, 1400, augment(4, PadMode::kZero, true, 8), 99}};
  for (const Large& l : cases) {
    const Dataset ds = make_dataset(l.count, l.shape.c, l.shape.h, l.shape.w, 10, rng);
    std::vector<int64_t> indices(static_cast<size_t>(l.n));
    std::uniform_int_distribution<int64_t> pick(0, l.count - 1);
    for (int64_t& i : indices) i = pick(rng);
    std::vector<int64_t> all(static_cast<size_t>(l.count));
    for (int64_t i = 0; i < l.count; ++i) all[static_cast<size_t>(i)] = i;
    const Normalization norm = wren::compute_normalization(ds, all);
    Buffer<uint8_t> images(K::kGpu, ds.pixels);
    Buffer<int32_t> labels(K::kGpu, ds.labels);
    Buffer<int64_t> indices_buf(K::kGpu, indices);
    Buffer<float> mean_buf(K::kGpu, norm.mean), std_buf(K::kGpu, norm.std);
    const DatasetView view = wren::device_dataset_view(ds, images.get(), labels.get());
    for (bool aug : {true, false}) {
      const std::string what = std::string(K::kName) + " make_batch " + shape_name(l.shape) +
                               " n " + std::to_string(l.n) + (aug ? " augment" : " plain");
      check_one<K>(ds, view, indices_buf, indices, mean_buf, std_buf, norm, l.config, aug,
                   {77, l.step}, 0, what);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

// The draws do change the batch: over a few steps, flips, crops and cutouts all happen (a
// kernel that ignored them would still match a reference that ignored them; this guards the
// reference path the comparison relies on).
TEST(DataKernels, AugmentationChangesTheBatch) {
  std::mt19937 rng(5);
  const Dataset ds = make_dataset(4, 1, 5, 7, 10, rng);
  const std::vector<int64_t> indices = {0, 1, 2, 3};
  Normalization norm{{0.5f}, {0.25f}};
  std::vector<float> plain(4 * 35), aug(4 * 35);
  std::vector<int32_t> labels(4);
  wren::make_batch<float>(ds, indices, norm, {}, false, 1, 0, plain.data(), labels.data());
  for (const AugmentConfig& c :
       {augment(2, PadMode::kZero, false, 0), augment(0, PadMode::kZero, true, 0),
        augment(0, PadMode::kZero, false, 3)}) {
    bool changed = false;
    for (uint64_t step = 0; step < 4 && !changed; ++step) {
      wren::make_batch<float>(ds, indices, norm, c, true, 1, step, aug.data(), labels.data());
      changed = aug != plain;
    }
    EXPECT_TRUE(changed);
  }
}

// A sample index outside [0, count) reads nothing: its image is NaN and its label −1; the
// other samples are unaffected.
template <class K>
void check_out_of_range() {
  std::mt19937 rng(17);
  const Dataset ds = make_dataset(5, 3, 4, 8, 10, rng);
  const std::vector<int64_t> indices = {2, -1, 5, 4, std::numeric_limits<int64_t>::max()};
  const int n = static_cast<int>(indices.size());
  const Normalization norm{{0.1f, 0.2f, 0.3f}, {0.5f, 0.6f, 0.7f}};
  const AugmentConfig config = augment(2, PadMode::kReflect, true, 3);
  const size_t image = static_cast<size_t>(ds.image_size());

  Buffer<uint8_t> images(K::kGpu, ds.pixels);
  Buffer<int32_t> labels(K::kGpu, ds.labels);
  Buffer<int64_t> indices_buf(K::kGpu, indices);
  Buffer<float> mean_buf(K::kGpu, norm.mean), std_buf(K::kGpu, norm.std);
  Buffer<float> out(K::kGpu, std::vector<float>(image * n, kFill));
  Buffer<int32_t> out_labels(K::kGpu, std::vector<int32_t>(n, kLabelFill));
  Buffer<unsigned char> ws(K::kGpu,
                           std::vector<unsigned char>(wren::make_batch_workspace_bytes(n, 3)));
  K::make_batch(wren::device_dataset_view(ds, images.get(), labels.get()), indices_buf.get(), n,
                mean_buf.get(), std_buf.get(), config, true, 9, 4, out.get(), out_labels.get(),
                ws.get());
  ASSERT_EQ(K::finish(), "");
  const std::vector<float> got = out.read();
  const std::vector<int32_t> got_labels = out_labels.read();

  // The valid rows as the reference makes them at their batch positions: positions 0 and 3
  // (the draws depend on the position, so the reference batch keeps the positions).
  std::vector<int64_t> valid = indices;
  for (int64_t& i : valid) i = i >= 0 && i < ds.count ? i : 0;
  std::vector<float> ref(image * n);
  std::vector<int32_t> ref_labels(n);
  wren::make_batch<float>(ds, valid, norm, config, true, 9, 4, ref.data(), ref_labels.data());
  for (int b = 0; b < n; ++b) {
    const bool ok = indices[b] >= 0 && indices[b] < ds.count;
    EXPECT_EQ(got_labels[b], ok ? ref_labels[b] : -1) << "position " << b;
    for (size_t i = 0; i < image; ++i) {
      const float g = got[b * image + i];
      if (ok) {
        ASSERT_TRUE(same_bits(g, ref[b * image + i])) << "position " << b << " element " << i;
      } else {
        ASSERT_TRUE(std::isnan(g)) << "position " << b << " element " << i;
      }
    }
  }
}

// --- count_correct ------------------------------------------------------------------------------

// evaluate()'s argmax (host/train/train.cpp, score_logits), verbatim: a strict `>` scan from
// column 0 against row[best].
int64_t reference_correct(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                          int n, int classes) {
  int64_t correct = 0;
  for (int i = 0; i < n; ++i) {
    const float* row = logits.data() + static_cast<size_t>(i) * classes;
    int best = 0;
    for (int c = 1; c < classes; ++c) {
      if (row[c] > row[best]) best = c;
    }
    correct += best == labels[i] ? 1 : 0;
  }
  return correct;
}

enum class LogitKind { kRandom, kTies, kNan };
const char* logit_kind_name(LogitKind k) {
  return k == LogitKind::kRandom ? "random" : (k == LogitKind::kTies ? "ties" : "nan");
}

struct CountShape {
  int n, classes;
};
const CountShape kCountShapes[] = {{0, 10},  {1, 1},    {1, 10},    {37, 10},
                                   {300, 2}, {257, 100}, {5000, 10}, {70, 3}};

template <class K>
void check_count_correct(uint32_t seed) {
  std::mt19937 rng(seed);
  for (const CountShape& s : kCountShapes) {
    for (LogitKind kind : {LogitKind::kRandom, LogitKind::kTies, LogitKind::kNan}) {
      const std::string what = std::string(K::kName) + " count_correct [" + std::to_string(s.n) +
                               "," + std::to_string(s.classes) + "] " + logit_kind_name(kind);
      const size_t size = static_cast<size_t>(s.n) * s.classes;
      std::vector<float> logits(size);
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::uniform_int_distribution<int> small(0, 2), percent(0, 99);
      for (float& x : logits) {
        switch (kind) {
          case LogitKind::kRandom:
            x = normal(rng);
            break;
          case LogitKind::kTies:  // three values: most rows have a tied maximum
            x = static_cast<float>(small(rng));
            break;
          case LogitKind::kNan: {
            const int r = percent(rng);
            x = r < 15 ? NAN
                       : (r < 20 ? INFINITY : (r < 25 ? -INFINITY : static_cast<float>(small(rng))));
            break;
          }
        }
      }
      // Labels: a third the reference's argmax, a third the LAST maximum (different from the
      // first one under ties; a NaN-aware or last-wins rule would count differently), a third
      // random.
      std::vector<int32_t> labels(s.n);
      std::uniform_int_distribution<int> label(0, s.classes - 1), third(0, 2);
      for (int i = 0; i < s.n; ++i) {
        const float* row = logits.data() + static_cast<size_t>(i) * s.classes;
        int first = 0, last = 0;
        for (int c = 1; c < s.classes; ++c) {
          if (row[c] > row[first]) first = c;
          if (row[c] >= row[last]) last = c;
        }
        const int t = third(rng);
        labels[i] = t == 0 ? first : (t == 1 ? last : label(rng));
      }
      const int64_t expected = reference_correct(logits, labels, s.n, s.classes);

      Buffer<float> logits_buf(K::kGpu, logits);
      Buffer<int32_t> labels_buf(K::kGpu, labels);
      Buffer<int64_t> correct(K::kGpu, std::vector<int64_t>{999999});
      K::count_correct(s.n, s.classes, logits_buf.get(), labels_buf.get(), correct.get());
      ASSERT_EQ(K::finish(), "") << what;
      EXPECT_EQ(correct.read()[0], expected) << what;
    }
  }
}

// The rule's corner cases, one row each.
template <class K>
void check_count_correct_rows() {
  struct Row {
    std::vector<float> logits;
    int32_t argmax;
  };
  const std::vector<Row> rows = {
      {{1, 3, 3, 2}, 1},           // tie: the first maximum
      {{NAN, 5, 9, 1}, 0},         // NaN in column 0 stays the argmax
      {{1, NAN, 0.5f, 4}, 3},      // a NaN never wins
      {{2, NAN, 2, 1}, 0},         // nor does it stop the scan
      {{NAN, NAN, NAN, NAN}, 0},   // all NaN: column 0
      {{-INFINITY, -INFINITY, -INFINITY, -INFINITY}, 0},
      {{-INFINITY, -1e30f, INFINITY, INFINITY}, 2},
      {{-0.0f, 0.0f, 0.0f, -1}, 0},  // −0 == +0: a tie
  };
  const int classes = 4, n = static_cast<int>(rows.size());
  for (int mode = 0; mode < 2; ++mode) {
    // mode 0: every label is the argmax (count n); mode 1: every label is argmax + 1 (count 0).
    std::vector<float> logits;
    std::vector<int32_t> labels;
    for (const Row& r : rows) {
      logits.insert(logits.end(), r.logits.begin(), r.logits.end());
      labels.push_back(mode == 0 ? r.argmax : (r.argmax + 1) % classes);
    }
    ASSERT_EQ(reference_correct(logits, labels, n, classes), mode == 0 ? n : 0);
    Buffer<float> logits_buf(K::kGpu, logits);
    Buffer<int32_t> labels_buf(K::kGpu, labels);
    Buffer<int64_t> correct(K::kGpu, std::vector<int64_t>{-5});
    K::count_correct(n, classes, logits_buf.get(), labels_buf.get(), correct.get());
    ASSERT_EQ(K::finish(), "");
    EXPECT_EQ(correct.read()[0], mode == 0 ? n : 0) << "mode " << mode;
  }
}

// Runs `check` under the three fiber schedules, then restores the default.
template <class F>
void under_all_schedules(F check) {
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    wren::emu::set_schedule(schedule, 31);
    SCOPED_TRACE(
        schedule == wren::emu::Schedule::kForward
            ? "forward schedule"
            : (schedule == wren::emu::Schedule::kReverse ? "reverse schedule" : "random schedule"));
    check();
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(DataKernels, EmuMakeBatch) {
  under_all_schedules([] { check_make_batch<EmuKernels>(301); });
}
// Forward schedule only: the gather has no shared memory and no barrier, and this is the
// slowest case on the emulator.
TEST(DataKernels, EmuMakeBatchLarge) {
  check_large_batches<EmuKernels>(303);
}
TEST(DataKernels, EmuMakeBatchOutOfRangeIndex) {
  under_all_schedules([] { check_out_of_range<EmuKernels>(); });
}
TEST(DataKernels, EmuCountCorrect) {
  under_all_schedules([] { check_count_correct<EmuKernels>(302); });
}
TEST(DataKernels, EmuCountCorrectRules) {
  under_all_schedules([] { check_count_correct_rows<EmuKernels>(); });
}

// Host-side validation: std::invalid_argument before anything is enqueued.
TEST(DataKernels, EmuArgumentErrors) {
  std::mt19937 rng(3);
  const Dataset ds = make_dataset(3, 1, 4, 4, 10, rng);
  const DatasetView view = wren::device_dataset_view(ds, ds.pixels.data(), ds.labels.data());
  const std::vector<int64_t> indices = {0, 1};
  const float mean = 0.5f, std_dev = 0.25f;
  std::vector<float> out(32);
  std::vector<int32_t> labels(2);
  std::vector<double> ws(wren::make_batch_workspace_bytes(2, 1) / sizeof(double) + 2);
  void* const w = ws.data();
  auto call = [&](DatasetView v, const int64_t* idx, int n, const float* m,
                  const float* s, AugmentConfig c, float* o, int32_t* l, void* workspace) {
    wren::emu_kernels::make_batch(v, idx, n, m, s, c, true, 1, 2, o, l, workspace, nullptr);
  };
  const AugmentConfig ok{};
  EXPECT_NO_THROW(call(view, indices.data(), 2, &mean, &std_dev, ok, out.data(), labels.data(), w));
  EXPECT_EQ(wren::emu::take_error(), "");
  EXPECT_THROW(call(view, indices.data(), -1, &mean, &std_dev, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, nullptr, 2, &mean, &std_dev, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, nullptr, &std_dev, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, nullptr, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, ok, nullptr, labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, ok, out.data(), nullptr, w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, ok, out.data(), labels.data(),
                    nullptr),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, ok, out.data(), labels.data(),
                    static_cast<char*>(w) + 8),
               std::invalid_argument);
  DatasetView bad_view = view;
  bad_view.c = 0;
  EXPECT_THROW(call(bad_view, indices.data(), 2, &mean, &std_dev, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  bad_view = view;
  bad_view.images = nullptr;
  EXPECT_THROW(call(bad_view, indices.data(), 2, &mean, &std_dev, ok, out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, augment(-1, PadMode::kZero, false, 0),
                    out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, augment(0, PadMode::kZero, false, -2),
                    out.data(), labels.data(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev,
                    augment(std::numeric_limits<int>::max() / 2, PadMode::kZero, false, 0),
                    out.data(), labels.data(), w),
               std::invalid_argument);
  AugmentConfig bad_mode{};
  bad_mode.pad_mode = static_cast<PadMode>(7);
  EXPECT_THROW(call(view, indices.data(), 2, &mean, &std_dev, bad_mode, out.data(), labels.data(),
                    w),
               std::invalid_argument);
  // An empty batch needs no buffers and enqueues nothing.
  EXPECT_NO_THROW(call(view, nullptr, 0, nullptr, nullptr, ok, nullptr, nullptr, nullptr));

  int64_t correct = 0;
  const float logits[4] = {1, 2, 3, 4};
  const int32_t lbl[1] = {3};
  EXPECT_THROW(wren::emu_kernels::count_correct(-1, 4, logits, lbl, &correct, nullptr),
               std::invalid_argument);
  EXPECT_THROW(wren::emu_kernels::count_correct(1, 0, logits, lbl, &correct, nullptr),
               std::invalid_argument);
  EXPECT_THROW(wren::emu_kernels::count_correct(1, 4, nullptr, lbl, &correct, nullptr),
               std::invalid_argument);
  EXPECT_THROW(wren::emu_kernels::count_correct(1, 4, logits, nullptr, &correct, nullptr),
               std::invalid_argument);
  EXPECT_THROW(wren::emu_kernels::count_correct(1, 4, logits, lbl, nullptr, nullptr),
               std::invalid_argument);
  correct = 42;
  wren::emu_kernels::count_correct(0, 0, nullptr, nullptr, &correct, nullptr);  // n = 0: 0
  EXPECT_EQ(correct, 0);
  wren::emu_kernels::count_correct(1, 4, logits, lbl, &correct, nullptr);
  EXPECT_EQ(correct, 1);
  EXPECT_EQ(wren::emu::take_error(), "");
}

TEST(DataKernels, DatasetView) {
  std::mt19937 rng(4);
  Dataset ds = make_dataset(3, 2, 5, 7, 10, rng);
  const uint8_t* images = ds.pixels.data();
  const int32_t* labels = ds.labels.data();
  const DatasetView v = wren::device_dataset_view(ds, images, labels);
  EXPECT_EQ(v.images, images);
  EXPECT_EQ(v.labels, labels);
  EXPECT_EQ(v.count, 3);
  EXPECT_EQ(v.c, 2);
  EXPECT_EQ(v.h, 5);
  EXPECT_EQ(v.w, 7);
  EXPECT_THROW(wren::device_dataset_view(ds, nullptr, labels), std::invalid_argument);
  ds.labels.pop_back();
  EXPECT_THROW(wren::device_dataset_view(ds, images, labels), std::invalid_argument);
  EXPECT_EQ(wren::make_batch_workspace_bytes(4, 3), 4 * 48 + 3 * 256 * 4u);
}

// The CUDA cases: skipped without a GPU (or without the CUDA backend).
#if defined(WREN_HAVE_CUDA)
#define WREN_DATA_CUDA_TEST(test, ...)                                                        \
  TEST(DataKernels, test) {                                                                   \
    if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine"; \
    __VA_ARGS__;                                                                              \
  }
#else
#define WREN_DATA_CUDA_TEST(test, ...)                                     \
  TEST(DataKernels, test) {                                                \
    GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)"; \
  }
#endif

WREN_DATA_CUDA_TEST(CudaMakeBatch, check_make_batch<CudaKernels>(401))
WREN_DATA_CUDA_TEST(CudaMakeBatchLarge, check_large_batches<CudaKernels>(403))
WREN_DATA_CUDA_TEST(CudaMakeBatchOutOfRangeIndex, check_out_of_range<CudaKernels>())
WREN_DATA_CUDA_TEST(CudaCountCorrect, check_count_correct<CudaKernels>(402))
WREN_DATA_CUDA_TEST(CudaCountCorrectRules, check_count_correct_rows<CudaKernels>())

#undef WREN_DATA_CUDA_TEST

}  // namespace
