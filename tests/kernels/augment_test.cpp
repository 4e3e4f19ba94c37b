// Batches and augmentation (kernels/augment/): the CPU reference in float and double, and the
// kernels on every device.
//
// The CPU reference (make_batch, kernels/augment/reference.cpp, through wren::make_batch on a
// Dataset, include/wren/data.h): check_batch_inputs, zero and wide reflect padding, draws that do
// not depend on which augmentations are on, the draws change the batch, device_dataset_view and
// the workspace size. Each augmentation against an independent computation from the documented
// draws holds on every device: one typed body each over the CPU reference in double and float
// and the kernels on emu and cuda (AugmentDevices/cpu_double, cpu_float, emu, cuda).
//
// The kernels (kernels/augment/augment.cu), one typed body per check on emu and cuda
// (AugmentKernels/emu, AugmentKernels/cuda; the cuda cases skip without a GPU), on the emulator under
// the forward, reverse and random fiber schedules: make_batch against make_batch<float> bit for
// bit, images and labels, and count_correct against the argmax rule of evaluate()
// (host/train/train.cpp, score_logits).
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
#include "augment/augment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/buffer.h"
#include "support/compare.h"
#include "support/datasets.h"
#include "support/device.h"
#include "wren/data.h"
#include "wren/rng.h"

namespace wren {
namespace {

// --- Shared inputs -------------------------------------------------------------------------------

// `count` images of c × h × w random bytes (std::mt19937), random labels in [0, classes).
Dataset random_dataset(int64_t count, int c, int h, int w, int classes, std::mt19937& rng) {
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

AugmentConfig augment(int crop, PadMode mode, bool flip, int cutout) {
  AugmentConfig a;
  a.crop_padding = crop;
  a.pad_mode = mode;
  a.horizontal_flip = flip;
  a.cutout = cutout;
  return a;
}

// --- The CPU reference ---------------------------------------------------------------------------

namespace reference_suite {

using testing::synthetic_dataset;

// The documented draws, recomputed here with floating-point floor (exact in double for these
// sizes) rather than make_batch's integer (m · n) >> 24.
struct Draws {
  int crop_y, crop_x;
  bool flip;
  int cutout_y, cutout_x;
};

Draws expected_draws(uint64_t seed, uint64_t step, size_t b, int pad, int height, int width) {
  const RngKey key = make_rng_key(seed, RngStream::kAugment);
  auto u = [&](int k) { return static_cast<double>(uniform_at(key, step, 8 * b + k)); };
  return Draws{static_cast<int>(std::floor(u(0) * (2 * pad + 1))),
               static_cast<int>(std::floor(u(1) * (2 * pad + 1))), u(2) < 0.5,
               static_cast<int>(std::floor(u(3) * height)),
               static_cast<int>(std::floor(u(4) * width))};
}

template <class T>
T normalized(uint8_t v, float mean, float std_dev) {
  return (static_cast<T>(v) / T(255) - static_cast<T>(mean)) / static_cast<T>(std_dev);
}

struct BatchFixture {
  Dataset ds = synthetic_dataset(10, 3, 5, 6, 2);
  Normalization norm{{0.4f, 0.5f, 0.3f}, {0.25f, 0.2f, 0.3f}};
  std::vector<int64_t> samples = {3, 0, 9, 3, 7, 1, 4, 8, 2, 6, 5, 3, 0, 9, 1, 2};
  size_t image_size() const { return static_cast<size_t>(ds.image_size()); }
  uint8_t pixel(int64_t sample, int c, int y, int x) const {
    return ds.pixels[static_cast<size_t>(sample) * image_size() +
                     static_cast<size_t>((c * ds.height + y) * ds.width + x)];
  }
  // The batch through device K (make_batch_on, below).
  template <class K, class T = typename K::Scalar>
  std::vector<T> batch_on(const AugmentConfig& config, bool augment, uint64_t seed, uint64_t step,
                          std::vector<int32_t>* labels = nullptr) const;
  template <class T>
  std::vector<T> batch(const AugmentConfig& config, bool augment, uint64_t seed, uint64_t step,
                       std::vector<int32_t>* labels = nullptr) const {
    EXPECT_TRUE(check_batch_inputs(ds, samples, norm, config).ok());
    std::vector<T> images(samples.size() * image_size());
    std::vector<int32_t> l(samples.size());
    make_batch<T>(ds, samples, norm, config, augment, seed, step, images.data(), l.data());
    if (labels) *labels = l;
    return images;
  }
};

// Source pixel of the padded image per pad mode, written independently of make_batch: an
// explicit mirror for reflect (valid for pad < size), raw 0 for zero padding.
int mirror_once(int i, int n) {
  return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i);
}

// A zero-padded pixel is raw 0 before normalization: −mean/std after it.
TEST(AugmentTest, ZeroPaddingIsRawBlack) {
  BatchFixture f;
  AugmentConfig crop;
  crop.crop_padding = 40;  // wider than the image: most outputs are padding
  const std::vector<float> out = f.batch<float>(crop, true, 3, 3);
  int black = 0;
  for (size_t b = 0; b < f.samples.size(); ++b) {
    for (int c = 0; c < 3; ++c) {
      const float want = (0.0f - f.norm.mean[c]) / f.norm.std[c];
      for (size_t k = 0; k < 30; ++k)
        black += out[b * 90 + static_cast<size_t>(c) * 30 + k] == want;
    }
  }
  EXPECT_GT(black, static_cast<int>(16 * 90 * 3 / 4));
}

// Reflection with a padding wider than the image keeps reflecting (period 2(n − 1)).
TEST(AugmentTest, ReflectWiderThanImageStaysInRange) {
  BatchFixture f;
  AugmentConfig crop;
  crop.crop_padding = 13;
  crop.pad_mode = PadMode::kReflect;
  const std::vector<double> out = f.batch<double>(crop, true, 8, 1);
  for (size_t b = 0; b < f.samples.size(); ++b) {
    const Draws d = expected_draws(8, 1, b, 13, 5, 6);
    for (int y = 0; y < 5; ++y) {
      for (int x = 0; x < 6; ++x) {
        // Reflect by unfolding repeatedly: independent of the modulo formula.
        int sy = y + d.crop_y - 13, sx = x + d.crop_x - 13;
        while (sy < 0 || sy >= 5) sy = sy < 0 ? -sy : 8 - sy;
        while (sx < 0 || sx >= 6) sx = sx < 0 ? -sx : 10 - sx;
        const size_t at = b * 90 + static_cast<size_t>(y * 6 + x);
        ASSERT_EQ(out[at], normalized<double>(f.pixel(f.samples[b], 0, sy, sx), 0.4f, 0.25f));
      }
    }
  }
}

// Each augmentation's draws are fixed whether or not the others are on: adding the flip does
// not move the crop of the samples that are not flipped.
TEST(AugmentTest, DrawsDoNotDependOnWhichAugmentationsAreOn) {
  BatchFixture f;
  AugmentConfig crop;
  crop.crop_padding = 2;
  AugmentConfig crop_flip = crop;
  crop_flip.horizontal_flip = true;
  const std::vector<float> a = f.batch<float>(crop, true, 4, 4);
  const std::vector<float> b = f.batch<float>(crop_flip, true, 4, 4);
  int unflipped = 0;
  for (size_t s = 0; s < f.samples.size(); ++s) {
    if (expected_draws(4, 4, s, 2, 5, 6).flip) continue;
    ++unflipped;
    for (size_t k = 0; k < 90; ++k) ASSERT_EQ(a[s * 90 + k], b[s * 90 + k]) << s;
  }
  EXPECT_GT(unflipped, 0);
}

TEST(AugmentTest, CheckBatchInputsNamesTheProblem) {
  BatchFixture f;
  const std::vector<int64_t> bad_index = {0, 10};
  Status s = check_batch_inputs(f.ds, bad_index, f.norm, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sample index 10 at batch position 1"), std::string::npos)
      << s.message();

  const Normalization two{{0.1f, 0.2f}, {1.0f, 1.0f}};
  s = check_batch_inputs(f.ds, f.samples, two, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("3 channels"), std::string::npos) << s.message();

  const Normalization zero_std{{0.1f, 0.2f, 0.3f}, {1.0f, 0.0f, 1.0f}};
  s = check_batch_inputs(f.ds, f.samples, zero_std, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("channel 1"), std::string::npos) << s.message();

  AugmentConfig negative;
  negative.crop_padding = -1;
  EXPECT_FALSE(check_batch_inputs(f.ds, f.samples, f.norm, negative).ok());
  EXPECT_TRUE(check_batch_inputs(f.ds, f.samples, f.norm, {}).ok());
}

// The draws do change the batch: over a few steps, flips, crops and cutouts all happen (a
// kernel that ignored them would still match a reference that ignored them; this guards the
// reference path the comparison relies on).
TEST(AugmentKernels, AugmentationChangesTheBatch) {
  std::mt19937 rng(5);
  const Dataset ds = random_dataset(4, 1, 5, 7, 10, rng);
  const std::vector<int64_t> indices = {0, 1, 2, 3};
  Normalization norm{{0.5f}, {0.25f}};
  std::vector<float> plain(4 * 35), aug(4 * 35);
  std::vector<int32_t> labels(4);
  make_batch<float>(ds, indices, norm, {}, false, 1, 0, plain.data(), labels.data());
  for (const AugmentConfig& c :
       {augment(2, PadMode::kZero, false, 0), augment(0, PadMode::kZero, true, 0),
        augment(0, PadMode::kZero, false, 3)}) {
    bool changed = false;
    for (uint64_t step = 0; step < 4 && !changed; ++step) {
      make_batch<float>(ds, indices, norm, c, true, 1, step, aug.data(), labels.data());
      changed = aug != plain;
    }
    EXPECT_TRUE(changed);
  }
}

TEST(AugmentKernels, DatasetView) {
  std::mt19937 rng(4);
  Dataset ds = random_dataset(3, 2, 5, 7, 10, rng);
  const uint8_t* images = ds.pixels.data();
  const int32_t* labels = ds.labels.data();
  const DatasetView v = device_dataset_view(ds, images, labels);
  EXPECT_EQ(v.images, images);
  EXPECT_EQ(v.labels, labels);
  EXPECT_EQ(v.count, 3);
  EXPECT_EQ(v.c, 2);
  EXPECT_EQ(v.h, 5);
  EXPECT_EQ(v.w, 7);
  EXPECT_THROW(device_dataset_view(ds, nullptr, labels), std::invalid_argument);
  ds.labels.pop_back();
  EXPECT_THROW(device_dataset_view(ds, images, labels), std::invalid_argument);
  EXPECT_EQ(make_batch_workspace_bytes(4, 3), 4 * 48 + 3 * 256 * 4u);
}

}  // namespace reference_suite

// --- The kernels on emu and cuda -----------------------------------------------------------------

#if WREN_TEST_KERNEL_DEVICES
namespace kernel_suite {

using testing::Buffer;
using testing::same_bits;

// --- Inputs -------------------------------------------------------------------------------------

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

constexpr float kFill = 7.25f;        // outputs start as this, never a correct result
constexpr int32_t kLabelFill = -777;  // labels likewise

// --- The devices ---------------------------------------------------------------------------------

#define WREN_AUGMENT_LAUNCHERS(ns)                                                               \
  static void make_batch(DatasetView data, const int64_t* indices, int n, const float* mean,     \
                         const float* std, AugmentConfig config, bool augment, uint64_t seed,    \
                         uint64_t step, float* out, int32_t* labels, void* ws) {                 \
    wren::ns::make_batch(data, indices, n, mean, std, config, augment, seed, step, out, labels,  \
                         ws, nullptr);                                                           \
  }                                                                                              \
  static void count_correct(int n, int classes, const float* logits, const int32_t* labels,     \
                            int64_t* correct) {                                                  \
    wren::ns::count_correct(n, classes, logits, labels, correct, nullptr);                       \
  }

#if defined(WREN_HAVE_EMU)
struct EmuAugment : testing::EmuDevice {
  WREN_AUGMENT_LAUNCHERS(emu_kernels)
};
#endif
struct CudaAugment : testing::CudaDevice {
  WREN_AUGMENT_LAUNCHERS(WREN_TEST_CUDA_KERNELS)
};
#undef WREN_AUGMENT_LAUNCHERS

template <class K>
class AugmentKernels : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(AugmentKernels, WREN_KERNEL_DEVICES(EmuAugment, CudaAugment), testing::DeviceNames);

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
  ASSERT_TRUE(check_batch_inputs(ds, indices, norm, config).ok()) << what;
  make_batch<float>(ds, indices, norm, config, aug, ss.seed, ss.step, ref.data(),
                          ref_labels.data());

  Buffer<float> out(K::kGpu, std::vector<float>(image * n + offset, kFill));
  Buffer<int32_t> labels(K::kGpu, std::vector<int32_t>(n, kLabelFill));
  Buffer<unsigned char> ws(K::kGpu,
                           std::vector<unsigned char>(make_batch_workspace_bytes(n, ds.channels)));
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
    const Dataset ds = random_dataset(count, s.c, s.h, s.w, 10, rng);
    // Indices: both ends, repeats, an odd batch size.
    std::vector<int64_t> indices = {count - 1, 0, 3, 3};
    std::uniform_int_distribution<int64_t> pick(0, count - 1);
    for (int k = 0; k < 3; ++k) indices.push_back(pick(rng));

    Normalization norm;
    if (shape_index % 2 == 0) {
      std::vector<int64_t> all(count);
      for (int64_t i = 0; i < count; ++i) all[i] = i;
      norm = compute_normalization(ds, all);
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
    const DatasetView view = device_dataset_view(ds, images.get(), labels.get());

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
    const Dataset ds = random_dataset(l.count, l.shape.c, l.shape.h, l.shape.w, 10, rng);
    std::vector<int64_t> indices(static_cast<size_t>(l.n));
    std::uniform_int_distribution<int64_t> pick(0, l.count - 1);
    for (int64_t& i : indices) i = pick(rng);
    std::vector<int64_t> all(static_cast<size_t>(l.count));
    for (int64_t i = 0; i < l.count; ++i) all[static_cast<size_t>(i)] = i;
    const Normalization norm = compute_normalization(ds, all);
    Buffer<uint8_t> images(K::kGpu, ds.pixels);
    Buffer<int32_t> labels(K::kGpu, ds.labels);
    Buffer<int64_t> indices_buf(K::kGpu, indices);
    Buffer<float> mean_buf(K::kGpu, norm.mean), std_buf(K::kGpu, norm.std);
    const DatasetView view = device_dataset_view(ds, images.get(), labels.get());
    for (bool aug : {true, false}) {
      const std::string what = std::string(K::kName) + " make_batch " + shape_name(l.shape) +
                               " n " + std::to_string(l.n) + (aug ? " augment" : " plain");
      check_one<K>(ds, view, indices_buf, indices, mean_buf, std_buf, norm, l.config, aug,
                   {77, l.step}, 0, what);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

// A sample index outside [0, count) reads nothing: its image is NaN and its label −1; the
// other samples are unaffected.
template <class K>
void check_out_of_range() {
  std::mt19937 rng(17);
  const Dataset ds = random_dataset(5, 3, 4, 8, 10, rng);
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
                           std::vector<unsigned char>(make_batch_workspace_bytes(n, 3)));
  K::make_batch(device_dataset_view(ds, images.get(), labels.get()), indices_buf.get(), n,
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
  make_batch<float>(ds, valid, norm, config, true, 9, 4, ref.data(), ref_labels.data());
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

TYPED_TEST(AugmentKernels, MakeBatch) {
  testing::under_schedules<TypeParam>(31, [] {
    check_make_batch<TypeParam>(testing::device_seed<TypeParam>(301, 401));
  });
}
// Forward schedule only: the gather has no shared memory and no barrier, and this is the
// slowest case on the emulator.
TYPED_TEST(AugmentKernels, MakeBatchLarge) {
  check_large_batches<TypeParam>(testing::device_seed<TypeParam>(303, 403));
}
TYPED_TEST(AugmentKernels, MakeBatchOutOfRangeIndex) {
  testing::under_schedules<TypeParam>(31, [] { check_out_of_range<TypeParam>(); });
}
TYPED_TEST(AugmentKernels, CountCorrect) {
  testing::under_schedules<TypeParam>(31, [] {
    check_count_correct<TypeParam>(testing::device_seed<TypeParam>(302, 402));
  });
}
TYPED_TEST(AugmentKernels, CountCorrectRules) {
  testing::under_schedules<TypeParam>(31, [] { check_count_correct_rows<TypeParam>(); });
}

// Host-side validation: std::invalid_argument before anything is enqueued; the valid calls run
// (so this needs the device: its buffers are device memory).
TYPED_TEST(AugmentKernels, ArgumentErrors) {
  using K = TypeParam;
  std::mt19937 rng(3);
  const Dataset ds = random_dataset(3, 1, 4, 4, 10, rng);
  Buffer<uint8_t> images(K::kGpu, ds.pixels);
  Buffer<int32_t> ds_labels(K::kGpu, ds.labels);
  const DatasetView view = device_dataset_view(ds, images.get(), ds_labels.get());
  Buffer<int64_t> indices(K::kGpu, std::vector<int64_t>{0, 1});
  Buffer<float> mean_buf(K::kGpu, 1, 0.5f), std_buf(K::kGpu, 1, 0.25f);
  const float* mean = mean_buf.get();
  const float* std_dev = std_buf.get();
  Buffer<float> out(K::kGpu, 32, 0.0f);
  Buffer<int32_t> labels(K::kGpu, 2, 0);
  Buffer<unsigned char> ws(K::kGpu, make_batch_workspace_bytes(2, 1) + 16, 0);
  void* const w = ws.get();
  auto call = [&](DatasetView v, const int64_t* idx, int n, const float* m, const float* s,
                  AugmentConfig c, float* o, int32_t* l, void* workspace) {
    K::make_batch(v, idx, n, m, s, c, true, 1, 2, o, l, workspace);
  };
  const AugmentConfig ok{};
  const int64_t* idx = indices.get();
  EXPECT_NO_THROW(call(view, idx, 2, mean, std_dev, ok, out.get(), labels.get(), w));
  EXPECT_EQ(K::finish(), "");
  EXPECT_THROW(call(view, idx, -1, mean, std_dev, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, nullptr, 2, mean, std_dev, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, nullptr, std_dev, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, nullptr, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, ok, nullptr, labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, ok, out.get(), nullptr, w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, ok, out.get(), labels.get(), nullptr),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, ok, out.get(), labels.get(),
                    static_cast<char*>(w) + 8),
               std::invalid_argument);
  DatasetView bad_view = view;
  bad_view.c = 0;
  EXPECT_THROW(call(bad_view, idx, 2, mean, std_dev, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  bad_view = view;
  bad_view.images = nullptr;
  EXPECT_THROW(call(bad_view, idx, 2, mean, std_dev, ok, out.get(), labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, augment(-1, PadMode::kZero, false, 0), out.get(),
                    labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, augment(0, PadMode::kZero, false, -2), out.get(),
                    labels.get(), w),
               std::invalid_argument);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev,
                    augment(std::numeric_limits<int>::max() / 2, PadMode::kZero, false, 0),
                    out.get(), labels.get(), w),
               std::invalid_argument);
  AugmentConfig bad_mode{};
  bad_mode.pad_mode = static_cast<PadMode>(7);
  EXPECT_THROW(call(view, idx, 2, mean, std_dev, bad_mode, out.get(), labels.get(), w),
               std::invalid_argument);
  // An empty batch needs no buffers and enqueues nothing.
  EXPECT_NO_THROW(call(view, nullptr, 0, nullptr, nullptr, ok, nullptr, nullptr, nullptr));

  Buffer<int64_t> correct(K::kGpu, 1, int64_t{0});
  Buffer<float> logits(K::kGpu, std::vector<float>{1, 2, 3, 4});
  Buffer<int32_t> lbl(K::kGpu, std::vector<int32_t>{3});
  EXPECT_THROW(K::count_correct(-1, 4, logits.get(), lbl.get(), correct.get()),
               std::invalid_argument);
  EXPECT_THROW(K::count_correct(1, 0, logits.get(), lbl.get(), correct.get()),
               std::invalid_argument);
  EXPECT_THROW(K::count_correct(1, 4, nullptr, lbl.get(), correct.get()), std::invalid_argument);
  EXPECT_THROW(K::count_correct(1, 4, logits.get(), nullptr, correct.get()),
               std::invalid_argument);
  EXPECT_THROW(K::count_correct(1, 4, logits.get(), lbl.get(), nullptr), std::invalid_argument);
  correct.write({42});
  K::count_correct(0, 0, nullptr, nullptr, correct.get());  // n = 0: 0
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(correct.read()[0], 0);
  K::count_correct(1, 4, logits.get(), lbl.get(), correct.get());
  ASSERT_EQ(K::finish(), "");
  EXPECT_EQ(correct.read()[0], 1);
}

}  // namespace kernel_suite
#endif  // WREN_TEST_KERNEL_DEVICES

// --- Every device: each augmentation against its independent computation ----------------------

namespace device_suite {

using reference_suite::BatchFixture;
using reference_suite::Draws;
using reference_suite::expected_draws;
using reference_suite::mirror_once;
using reference_suite::normalized;
using testing::Buffer;
using testing::synthetic_dataset;

// The CPU reference behind the kernel's launcher signature (no workspace).
template <class T>
struct CpuAugment : testing::CpuDevice<T> {
  static void make_batch(DatasetView data, const int64_t* indices, int n, const float* mean,
                         const float* stddev, AugmentConfig config, bool augment, uint64_t seed,
                         uint64_t step, T* out, int32_t* labels, void*) {
    const Normalization norm{std::vector<float>(mean, mean + data.c),
                             std::vector<float>(stddev, stddev + data.c)};
    ::wren::make_batch<T>(data, std::span<const int64_t>(indices, static_cast<size_t>(n)), norm,
                          config, augment, seed, step, out, labels);
  }
};

template <class K>
class AugmentDevices : public testing::DeviceTest<K> {};
TYPED_TEST_SUITE(AugmentDevices,
                 WREN_ALL_DEVICES(CpuAugment<double>, CpuAugment<float>,
                                  kernel_suite::EmuAugment, kernel_suite::CudaAugment),
                 testing::DeviceNames);

// make_batch of `samples` of `ds` through device K: the dataset, the indices and the
// normalization uploaded, the images (and the labels into `labels`) read back.
template <class K, class T = typename K::Scalar>
std::vector<T> make_batch_on(const Dataset& ds, const std::vector<int64_t>& samples,
                             const Normalization& norm, const AugmentConfig& config, bool augment,
                             uint64_t seed, uint64_t step, std::vector<int32_t>* labels = nullptr) {
  EXPECT_TRUE(check_batch_inputs(ds, samples, norm, config).ok());
  const int n = static_cast<int>(samples.size());
  Buffer<uint8_t> images(K::kGpu, ds.pixels);
  Buffer<int32_t> ds_labels(K::kGpu, ds.labels);
  const DatasetView view = device_dataset_view(ds, images.get(), ds_labels.get());
  Buffer<int64_t> indices(K::kGpu, samples);
  Buffer<float> mean(K::kGpu, norm.mean), stddev(K::kGpu, norm.std);
  Buffer<T> out(K::kGpu, samples.size() * static_cast<size_t>(ds.image_size()), T(7.25));
  Buffer<int32_t> out_labels(K::kGpu, samples.size(), -777);
  Buffer<unsigned char> ws(K::kGpu, make_batch_workspace_bytes(n, ds.channels), 0xff);
  K::make_batch(view, indices.get(), n, mean.get(), stddev.get(), config, augment, seed, step,
                out.get(), out_labels.get(), ws.get());
  EXPECT_EQ(K::finish(), "");
  if (labels) *labels = out_labels.read();
  return out.read();
}

TYPED_TEST(AugmentDevices, NoAugmentationIsExactNormalization) {
  using K = TypeParam;
  using T = typename K::Scalar;
  BatchFixture f;
  AugmentConfig everything;
  everything.crop_padding = 2;
  everything.horizontal_flip = true;
  everything.cutout = 3;
  std::vector<int32_t> labels;
  const std::vector<T> off = f.template batch_on<K>(everything, false, 1, 2, &labels);
  const std::vector<T> nothing_on = f.template batch_on<K>(AugmentConfig{}, true, 1, 2);
  for (size_t b = 0; b < f.samples.size(); ++b) {
    EXPECT_EQ(labels[b], f.ds.labels[static_cast<size_t>(f.samples[b])]);
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 6; ++x) {
          const size_t at = b * f.image_size() + static_cast<size_t>((c * 5 + y) * 6 + x);
          const T want =
              normalized<T>(f.pixel(f.samples[b], c, y, x), f.norm.mean[c], f.norm.std[c]);
          ASSERT_EQ(off[at], want) << b << " " << c << " " << y << " " << x;
          ASSERT_EQ(nothing_on[at], want) << b << " " << c << " " << y << " " << x;
        }
      }
    }
  }
}

TYPED_TEST(AugmentDevices, FlipMirrorsWhenDrawn) {
  using K = TypeParam;
  using T = typename K::Scalar;
  BatchFixture f;
  AugmentConfig flip;
  flip.horizontal_flip = true;
  const uint64_t seed = 5, step = 9;
  const std::vector<T> out = f.template batch_on<K>(flip, true, seed, step);
  int flipped = 0;
  for (size_t b = 0; b < f.samples.size(); ++b) {
    const bool mirror = expected_draws(seed, step, b, 0, 5, 6).flip;
    flipped += mirror;
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 6; ++x) {
          const size_t at = b * f.image_size() + static_cast<size_t>((c * 5 + y) * 6 + x);
          const uint8_t v = f.pixel(f.samples[b], c, y, mirror ? 5 - x : x);
          ASSERT_EQ(out[at], normalized<T>(v, f.norm.mean[c], f.norm.std[c]))
              << "sample " << b << " mirror " << mirror;
        }
      }
    }
  }
  // Both outcomes occur in 16 samples (each with probability 1/2).
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 16);
}

template <class K, class T = typename K::Scalar>
void check_crop(PadMode mode) {
  BatchFixture f;
  AugmentConfig crop;
  crop.crop_padding = 3;  // < H = 5 and W = 6, so one mirror suffices
  crop.pad_mode = mode;
  const uint64_t seed = 21, step = 4;
  const std::vector<T> out = f.template batch_on<K>(crop, true, seed, step);
  std::set<std::pair<int, int>> offsets;
  int padded_pixels = 0;
  for (size_t b = 0; b < f.samples.size(); ++b) {
    const Draws d = expected_draws(seed, step, b, 3, 5, 6);
    ASSERT_GE(d.crop_y, 0);
    ASSERT_LE(d.crop_y, 6);
    offsets.insert({d.crop_y, d.crop_x});
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 6; ++x) {
          const int sy = y + d.crop_y - 3, sx = x + d.crop_x - 3;
          const bool inside = sy >= 0 && sy < 5 && sx >= 0 && sx < 6;
          padded_pixels += !inside;
          uint8_t v = 0;
          if (mode == PadMode::kReflect) {
            v = f.pixel(f.samples[b], c, mirror_once(sy, 5), mirror_once(sx, 6));
          } else if (inside) {
            v = f.pixel(f.samples[b], c, sy, sx);
          }
          const size_t at = b * f.image_size() + static_cast<size_t>((c * 5 + y) * 6 + x);
          ASSERT_EQ(out[at], normalized<T>(v, f.norm.mean[c], f.norm.std[c]))
              << "sample " << b << " offset " << d.crop_y << "," << d.crop_x << " at " << c << ","
              << y << "," << x;
        }
      }
    }
  }
  EXPECT_GE(offsets.size(), 8u);  // 16 samples over 49 possible offsets
  EXPECT_GT(padded_pixels, 0);    // the borders were exercised
}

TYPED_TEST(AugmentDevices, CropZeroPaddingShiftsByDrawnOffset) {
  check_crop<TypeParam>(PadMode::kZero);
}

TYPED_TEST(AugmentDevices, CropReflectPaddingShiftsByDrawnOffset) {
  check_crop<TypeParam>(PadMode::kReflect);
}

TYPED_TEST(AugmentDevices, SameSeedAndStepSameBatch) {
  using K = TypeParam;
  using T = typename K::Scalar;
  BatchFixture f;
  AugmentConfig all;
  all.crop_padding = 2;
  all.horizontal_flip = true;
  all.cutout = 2;
  const std::vector<T> a = f.template batch_on<K>(all, true, 17, 100);
  EXPECT_EQ(a, f.template batch_on<K>(all, true, 17, 100));
  EXPECT_NE(a, f.template batch_on<K>(all, true, 17, 101));
  EXPECT_NE(a, f.template batch_on<K>(all, true, 18, 100));
}

TYPED_TEST(AugmentDevices, CutoutZeroesTheDocumentedSquare) {
  using K = TypeParam;
  using T = typename K::Scalar;
  for (int side : {3, 4}) {
    Dataset ds = synthetic_dataset(4, 2, 9, 11, 3);
    std::fill(ds.pixels.begin(), ds.pixels.end(), uint8_t{200});  // normalizes to nonzero
    const Normalization norm{{0.5f, 0.1f}, {0.2f, 0.3f}};
    std::vector<int64_t> samples;
    for (int i = 0; i < 40; ++i) samples.push_back(i % 4);
    AugmentConfig cutout;
    cutout.cutout = side;
    ASSERT_TRUE(check_batch_inputs(ds, samples, norm, cutout).ok());
    const std::vector<T> out = make_batch_on<K>(ds, samples, norm, cutout, true, 6, 2);
    int full_squares = 0;
    for (size_t b = 0; b < samples.size(); ++b) {
      const Draws d = expected_draws(6, 2, b, 0, 9, 11);
      const int y0 = d.cutout_y - side / 2, x0 = d.cutout_x - side / 2;
      int zeros = 0;
      for (int c = 0; c < 2; ++c) {
        for (int y = 0; y < 9; ++y) {
          for (int x = 0; x < 11; ++x) {
            const bool in_square = y >= y0 && y < y0 + side && x >= x0 && x < x0 + side;
            const T v = out[b * 198 + static_cast<size_t>((c * 9 + y) * 11 + x)];
            zeros += in_square;
            ASSERT_EQ(v, in_square ? T(0) : normalized<T>(200, norm.mean[c], norm.std[c]))
                << "side " << side << " sample " << b << " centre " << d.cutout_y << ","
                << d.cutout_x << " at " << c << "," << y << "," << x;
          }
        }
      }
      full_squares += zeros == 2 * side * side;
    }
    EXPECT_GT(full_squares, 0) << side;   // some squares lie wholly inside
    EXPECT_LT(full_squares, 40) << side;  // and some are clipped at a border
  }
}

}  // namespace device_suite

template <class K, class T>
std::vector<T> reference_suite::BatchFixture::batch_on(const AugmentConfig& config, bool augment,
                                                       uint64_t seed, uint64_t step,
                                                       std::vector<int32_t>* labels) const {
  return device_suite::make_batch_on<K>(ds, samples, norm, config, augment, seed, step, labels);
}

}  // namespace
}  // namespace wren
