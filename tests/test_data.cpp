// Datasets (include/wren/data.h): the IDX and CIFAR readers on small files with known contents,
// raw and gzipped, every kind of bad file, format detection, the real Fashion-MNIST when it is
// installed, the train/val split, the epoch order and normalization statistics. Batch gathering
// with augmentation (make_batch) is tested with its family, in tests/kernels/augment_test.cpp.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "support/datasets.h"
#include "wren/data.h"
#include "wren/rng.h"

namespace wren {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// --- Writing test files -------------------------------------------------------------------------

void put_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes idx_images(uint32_t n, uint32_t h, uint32_t w, const Bytes& pixels) {
  Bytes out;
  put_be32(out, 0x00000803);
  put_be32(out, n);
  put_be32(out, h);
  put_be32(out, w);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes out;
  put_be32(out, 0x00000801);
  put_be32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// Pixel k of image i: a value that differs between neighbours, images and channels.
uint8_t pattern(size_t i, size_t k) {
  return static_cast<uint8_t>((i * 37 + k * 11 + 5) % 256);
}

Bytes pattern_pixels(size_t n, size_t image_size) {
  Bytes out(n * image_size);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < image_size; ++k) out[i * image_size + k] = pattern(i, k);
  }
  return out;
}

// CIFAR records: label byte(s) then 3072 pattern pixels of image `first + r`.
Bytes cifar_records(const Bytes& labels, size_t first, bool cifar100) {
  Bytes out;
  for (size_t r = 0; r < labels.size(); ++r) {
    if (cifar100) out.push_back(static_cast<uint8_t>(labels[r] % 20));  // coarse, in [0, 20)
    out.push_back(labels[r]);
    for (size_t k = 0; k < 3072; ++k) out.push_back(pattern(first + r, k));
  }
  return out;
}

void write_raw(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const fs::path& path, const Bytes& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(gz), Z_OK);
}

Bytes read_raw(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh directory per test under the system temp dir, removed afterwards.
class DataFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("wren_data_" + std::to_string(::getpid()) + "_" +
                                        info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// Expects `result` to be an error with `code` whose message contains every one of `parts`.
template <class T>
void expect_error(const Expected<T>& result, ErrorCode code,
                  const std::vector<std::string>& parts) {
  ASSERT_FALSE(result.ok()) << "expected an error containing " << parts[0];
  EXPECT_EQ(result.error().code(), code)
      << to_string(result.error().code()) << ": " << result.error().message();
  for (const std::string& part : parts) {
    EXPECT_NE(result.error().message().find(part), std::string::npos)
        << "message \"" << result.error().message() << "\" lacks \"" << part << "\"";
  }
}

// --- IDX ----------------------------------------------------------------------------------------

constexpr uint32_t kN = 3, kH = 2, kW = 3;
const Bytes kIdxLabels = {2, 0, 9};

void expect_small_idx(const Dataset& ds) {
  EXPECT_EQ(ds.count, kN);
  EXPECT_EQ(ds.channels, 1);
  EXPECT_EQ(ds.height, static_cast<int>(kH));
  EXPECT_EQ(ds.width, static_cast<int>(kW));
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.pixels, pattern_pixels(kN, kH * kW));
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{2, 0, 9}));
}

TEST_F(DataFiles, IdxReadsRawAndGzip) {
  const Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  write_raw(path("img"), images);
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  Expected<Dataset> raw = read_idx(path("img"), path("lbl"));
  ASSERT_TRUE(raw.ok()) << raw.error().message();
  expect_small_idx(*raw);
  EXPECT_NE(raw->source.find(path("img")), std::string::npos);
  EXPECT_NE(raw->source.find(path("lbl")), std::string::npos);

  // gzip is recognised by its magic, not its name: a gzip file without .gz and a raw one with.
  write_gzip(path("img_gz_no_suffix"), images);
  write_raw(path("lbl_raw.gz"), idx_labels(kIdxLabels));
  Expected<Dataset> gz = read_idx(path("img_gz_no_suffix"), path("lbl_raw.gz"));
  ASSERT_TRUE(gz.ok()) << gz.error().message();
  expect_small_idx(*gz);
}

// `cat a.gz b.gz > c.gz` is one gzip file with two members; it reads as the concatenation.
TEST_F(DataFiles, IdxReadsMultiMemberGzip) {
  const Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  write_gzip(path("a.gz"), Bytes(images.begin(), images.begin() + 10));
  write_gzip(path("b.gz"), Bytes(images.begin() + 10, images.end()));
  Bytes joined = read_raw(path("a.gz"));
  const Bytes second = read_raw(path("b.gz"));
  joined.insert(joined.end(), second.begin(), second.end());
  write_raw(path("img.gz"), joined);
  write_gzip(path("lbl.gz"), idx_labels(kIdxLabels));
  Expected<Dataset> ds = read_idx(path("img.gz"), path("lbl.gz"));
  ASSERT_TRUE(ds.ok()) << ds.error().message();
  expect_small_idx(*ds);
}

TEST_F(DataFiles, IdxLoadsDirectoryInBothNamings) {
  const Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  write_gzip(path("train-images-idx3-ubyte.gz"), images);
  write_gzip(path("train-labels-idx1-ubyte.gz"), idx_labels(kIdxLabels));
  write_raw(path("t10k-images.idx3-ubyte"), idx_images(1, kH, kW, pattern_pixels(1, kH * kW)));
  write_raw(path("t10k-labels.idx1-ubyte"), idx_labels({7}));

  Expected<Dataset> train = load_mnist_dir(dir_.string(), Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.error().message();
  expect_small_idx(*train);
  EXPECT_NE(train->source.find("train-images-idx3-ubyte.gz"), std::string::npos);

  Expected<Dataset> test = load_dataset(dir_.string(), Split::kTest);
  ASSERT_TRUE(test.ok()) << test.error().message();
  EXPECT_EQ(test->count, 1);
  EXPECT_EQ(test->labels, std::vector<int32_t>{7});
  EXPECT_EQ(test->pixels, pattern_pixels(1, kH * kW));
}

TEST_F(DataFiles, IdxMissingFile) {
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  expect_error(read_idx(path("nope"), path("lbl")), ErrorCode::kNotFound, {path("nope")});
  expect_error(read_idx(dir_.string(), path("lbl")), ErrorCode::kIoError,
               {dir_.string(), "directory"});
  expect_error(load_mnist_dir(dir_.string(), Split::kTrain), ErrorCode::kNotFound,
               {dir_.string(), "train-images-idx3-ubyte", "train-images.idx3-ubyte.gz"});
}

TEST_F(DataFiles, IdxWrongMagic) {
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  Bytes bad = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  bad[3] = 0x04;
  write_raw(path("img"), bad);
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("img"), "wrong magic", "offset 0", "expected 0x00000803", "found 0x00000804"});
  // The two paths swapped: the labels file is seen first, with the labels magic.
  expect_error(read_idx(path("lbl"), path("img")), ErrorCode::kDataError,
               {path("lbl"), "expected 0x00000803", "found 0x00000801", "swapped"});
}

TEST_F(DataFiles, IdxTruncated) {
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  images.resize(16 + 10);  // 18 pixel bytes announced, 10 present
  write_raw(path("img"), images);
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("img"), "truncated", "expected 18 bytes", "offset 16", "file has 26 bytes"});

  write_gzip(path("img.gz"), images);  // offsets then refer to the decompressed data
  expect_error(read_idx(path("img.gz"), path("lbl")), ErrorCode::kDataError,
               {path("img.gz"), "expected 18 bytes", "offset 16 of the decompressed data",
                "decompressed data has 26 bytes"});

  write_raw(path("short_header"), Bytes{0, 0, 8, 3, 0, 0});
  expect_error(read_idx(path("short_header"), path("lbl")), ErrorCode::kDataError,
               {path("short_header"), "truncated", "16-byte header", "file has 6 bytes"});
  write_raw(path("two_bytes"), Bytes{0, 0});
  expect_error(read_idx(path("two_bytes"), path("lbl")), ErrorCode::kDataError,
               {path("two_bytes"), "truncated", "magic", "file has 2 bytes"});

  Bytes labels = idx_labels(kIdxLabels);
  labels.pop_back();
  write_raw(path("img_ok"), idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW)));
  write_raw(path("lbl_short"), labels);
  expect_error(read_idx(path("img_ok"), path("lbl_short")), ErrorCode::kDataError,
               {path("lbl_short"), "expected 3 bytes", "offset 8", "file has 10 bytes"});
}

TEST_F(DataFiles, IdxTrailingBytes) {
  Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  images.push_back(0);
  write_raw(path("img"), images);
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("img"), "1 unexpected bytes", "offset 34"});
}

TEST_F(DataFiles, IdxCountMismatch) {
  write_raw(path("img"), idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW)));
  write_raw(path("lbl"), idx_labels({1, 2}));
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("img"), path("lbl"), "3 images", "2 labels"});
}

TEST_F(DataFiles, IdxLabelOutOfRange) {
  write_raw(path("img"), idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW)));
  write_raw(path("lbl"), idx_labels({1, 10, 2}));
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("lbl"), "label 10", "index 1", "offset 9", "[0, 10)"});
  // With more classes the same file is fine.
  EXPECT_TRUE(read_idx(path("img"), path("lbl"), 11).ok());
  EXPECT_EQ(read_idx(path("img"), path("lbl"), 0).error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(DataFiles, IdxZeroImages) {
  write_raw(path("img"), idx_images(0, kH, kW, {}));
  write_raw(path("lbl"), idx_labels({}));
  expect_error(read_idx(path("img"), path("lbl")), ErrorCode::kDataError,
               {path("img"), "zero images"});
}

TEST_F(DataFiles, IdxCorruptGzip) {
  const Bytes images = idx_images(kN, kH, kW, pattern_pixels(kN, kH * kW));
  write_raw(path("lbl"), idx_labels(kIdxLabels));
  write_gzip(path("good.gz"), images);
  const Bytes good = read_raw(path("good.gz"));
  ASSERT_GT(good.size(), 20u);

  Bytes bad_crc = good;  // the trailer is CRC-32 then size, 4 bytes each
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  write_raw(path("bad_crc.gz"), bad_crc);
  expect_error(read_idx(path("bad_crc.gz"), path("lbl")), ErrorCode::kDataError,
               {path("bad_crc.gz"), "corrupt gzip", "offset"});

  Bytes bad_method = good;  // byte 2 is the compression method, 8 = deflate
  bad_method[2] = 7;
  write_raw(path("bad_method.gz"), bad_method);
  expect_error(read_idx(path("bad_method.gz"), path("lbl")), ErrorCode::kDataError,
               {path("bad_method.gz"), "corrupt gzip"});

  Bytes truncated = good;
  truncated.resize(good.size() - 10);
  write_raw(path("truncated.gz"), truncated);
  expect_error(
      read_idx(path("truncated.gz"), path("lbl")), ErrorCode::kDataError,
      {path("truncated.gz"), "truncated gzip", "offset " + std::to_string(truncated.size())});

  Bytes trailing = good;
  trailing.push_back(0x42);
  write_raw(path("trailing.gz"), trailing);
  expect_error(read_idx(path("trailing.gz"), path("lbl")), ErrorCode::kDataError,
               {path("trailing.gz"), "corrupt gzip", "offset " + std::to_string(good.size())});
}

// --- CIFAR --------------------------------------------------------------------------------------

TEST_F(DataFiles, CifarReads10And100) {
  write_raw(path("a.bin"), cifar_records({3, 9}, 0, false));
  write_gzip(path("b.bin"), cifar_records({0}, 2, false));
  const std::vector<std::string> files = {path("a.bin"), path("b.bin")};
  Expected<Dataset> c10 = read_cifar(files, CifarKind::kCifar10);
  ASSERT_TRUE(c10.ok()) << c10.error().message();
  EXPECT_EQ(c10->count, 3);
  EXPECT_EQ(c10->channels, 3);
  EXPECT_EQ(c10->height, 32);
  EXPECT_EQ(c10->width, 32);
  EXPECT_EQ(c10->num_classes, 10);
  EXPECT_EQ(c10->labels, (std::vector<int32_t>{3, 9, 0}));
  EXPECT_EQ(c10->pixels, pattern_pixels(3, 3072));
  EXPECT_EQ(c10->source, path("a.bin") + ", " + path("b.bin"));

  write_raw(path("train.bin"), cifar_records({99, 42, 0, 17}, 0, true));
  const std::vector<std::string> c100_files = {path("train.bin")};
  Expected<Dataset> c100 = read_cifar(c100_files, CifarKind::kCifar100);
  ASSERT_TRUE(c100.ok()) << c100.error().message();
  EXPECT_EQ(c100->num_classes, 100);
  EXPECT_EQ(c100->labels, (std::vector<int32_t>{99, 42, 0, 17}));  // fine, not coarse
  EXPECT_EQ(c100->pixels, pattern_pixels(4, 3072));
}

TEST_F(DataFiles, CifarBadFiles) {
  Bytes records = cifar_records({1, 2}, 0, false);
  records.resize(records.size() - 100);
  write_raw(path("partial.bin"), records);
  const std::vector<std::string> partial = {path("partial.bin")};
  expect_error(read_cifar(partial, CifarKind::kCifar10), ErrorCode::kDataError,
               {path("partial.bin"), "6046 bytes", "not a multiple", "3073-byte", "offset 3073",
                "2973 bytes"});

  write_raw(path("label.bin"), cifar_records({1, 10}, 0, false));
  const std::vector<std::string> label = {path("label.bin")};
  expect_error(read_cifar(label, CifarKind::kCifar10), ErrorCode::kDataError,
               {path("label.bin"), "label 10", "record 1", "offset 3073", "[0, 10)"});

  Bytes coarse = cifar_records({5}, 0, true);
  coarse[0] = 20;
  write_raw(path("coarse.bin"), coarse);
  const std::vector<std::string> coarse_files = {path("coarse.bin")};
  expect_error(read_cifar(coarse_files, CifarKind::kCifar100), ErrorCode::kDataError,
               {path("coarse.bin"), "coarse label 20", "record 0", "offset 0", "[0, 20)"});

  write_raw(path("fine.bin"), cifar_records({5, 100}, 0, true));
  const std::vector<std::string> fine = {path("fine.bin")};
  expect_error(read_cifar(fine, CifarKind::kCifar100), ErrorCode::kDataError,
               {path("fine.bin"), "label 100", "record 1", "offset 3075", "[0, 100)"});

  write_raw(path("empty.bin"), {});
  const std::vector<std::string> empty = {path("empty.bin")};
  expect_error(read_cifar(empty, CifarKind::kCifar10), ErrorCode::kDataError,
               {path("empty.bin"), "zero images"});

  const std::vector<std::string> missing = {path("missing.bin")};
  expect_error(read_cifar(missing, CifarKind::kCifar10), ErrorCode::kNotFound,
               {path("missing.bin")});
}

TEST_F(DataFiles, CifarDirectories) {
  // CIFAR-10 in the official archive's subdirectory.
  const fs::path c10 = dir_ / "c10" / "cifar-10-batches-bin";
  fs::create_directories(c10);
  for (int b = 1; b <= 5; ++b) {
    write_raw(c10 / ("data_batch_" + std::to_string(b) + ".bin"),
              cifar_records({static_cast<uint8_t>(b)}, static_cast<size_t>(b - 1), false));
  }
  write_raw(c10 / "test_batch.bin", cifar_records({7, 8}, 0, false));
  Expected<DatasetFormat> format = detect_dataset_format((dir_ / "c10").string());
  ASSERT_TRUE(format.ok()) << format.error().message();
  EXPECT_EQ(*format, DatasetFormat::kCifar10);
  Expected<Dataset> train = load_dataset((dir_ / "c10").string(), Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.error().message();
  EXPECT_EQ(train->labels, (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(train->pixels, pattern_pixels(5, 3072));
  Expected<Dataset> test = load_dataset((dir_ / "c10").string(), Split::kTest);
  ASSERT_TRUE(test.ok()) << test.error().message();
  EXPECT_EQ(test->labels, (std::vector<int32_t>{7, 8}));

  fs::remove(c10 / "data_batch_3.bin");
  expect_error(load_dataset((dir_ / "c10").string(), Split::kTrain), ErrorCode::kNotFound,
               {"data_batch_3.bin", "missing"});

  // CIFAR-100 directly in the directory.
  fs::create_directories(dir_ / "c100");
  write_raw(dir_ / "c100" / "train.bin", cifar_records({64, 3}, 0, true));
  write_raw(dir_ / "c100" / "test.bin", cifar_records({11}, 0, true));
  Expected<Dataset> c100 = load_dataset((dir_ / "c100").string(), Split::kTest);
  ASSERT_TRUE(c100.ok()) << c100.error().message();
  EXPECT_EQ(c100->num_classes, 100);
  EXPECT_EQ(c100->labels, std::vector<int32_t>{11});
}

TEST_F(DataFiles, DataLoadDatasetNothingFound) {
  expect_error(
      load_dataset(dir_.string(), Split::kTrain), ErrorCode::kNotFound,
      {dir_.string(), "train-images-idx3-ubyte", "t10k-images.idx3-ubyte.gz", "data_batch_1.bin",
       "test_batch.bin", "cifar-10-batches-bin", "train.bin", "cifar-100-binary"});
  expect_error(load_dataset(path("no_such_dir"), Split::kTrain), ErrorCode::kNotFound,
               {path("no_such_dir"), "does not exist"});
}

// --- The real Fashion-MNIST ---------------------------------------------------------------------

TEST(DataFashionMnist, RealFilesHaveKnownStatistics) {
  if (!fs::exists(fs::path(kDefaultDataDir) / "train-images-idx3-ubyte.gz")) {
    GTEST_SKIP() << "Fashion-MNIST not installed in " << kDefaultDataDir
                 << " (Debian package dataset-fashion-mnist)";
  }
  Expected<Dataset> train = load_dataset(kDefaultDataDir, Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.error().message();
  Expected<Dataset> test = load_dataset(kDefaultDataDir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.error().message();
  for (const Dataset* ds : {&*train, &*test}) {
    EXPECT_EQ(ds->channels, 1);
    EXPECT_EQ(ds->height, 28);
    EXPECT_EQ(ds->width, 28);
    EXPECT_EQ(ds->num_classes, 10);
    EXPECT_EQ(ds->pixels.size(), static_cast<size_t>(ds->count) * 28 * 28);  // uint8, once
  }
  EXPECT_EQ(train->count, 60000);
  EXPECT_EQ(test->count, 10000);
  std::vector<int> train_hist(10, 0), test_hist(10, 0);
  for (int32_t label : train->labels) ++train_hist[static_cast<size_t>(label)];
  for (int32_t label : test->labels) ++test_hist[static_cast<size_t>(label)];
  EXPECT_EQ(train_hist, std::vector<int>(10, 6000));
  EXPECT_EQ(test_hist, std::vector<int>(10, 1000));

  std::vector<int64_t> all(static_cast<size_t>(train->count));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  const Normalization norm = compute_normalization(*train, all);
  ASSERT_EQ(norm.mean.size(), 1u);
  EXPECT_NEAR(norm.mean[0], 0.2860, 1e-3);
  EXPECT_NEAR(norm.std[0], 0.3530, 1e-3);
}

// --- Split, order, normalization ----------------------------------------------------------------

TEST(DataSplit, DeterministicDisjointCovering) {
  const TrainValSplit a = split_train_val(1000, 100, 7);
  const TrainValSplit b = split_train_val(1000, 100, 7);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
  ASSERT_EQ(a.val.size(), 100u);
  ASSERT_EQ(a.train.size(), 900u);
  EXPECT_TRUE(std::is_sorted(a.val.begin(), a.val.end()));
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end()));
  std::vector<int64_t> all = a.train;
  all.insert(all.end(), a.val.begin(), a.val.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], static_cast<int64_t>(i));

  // Random, not a prefix or a stride, and seed-dependent.
  EXPECT_NE(a.val.back(), 99);
  EXPECT_NE(split_train_val(1000, 100, 8).val, a.val);
  // The validation set is spread over the range: each tenth holds 10 ± 8 of the 100.
  std::vector<int> tenths(10, 0);
  for (int64_t v : a.val) ++tenths[static_cast<size_t>(v / 100)];
  for (int t : tenths) EXPECT_NEAR(t, 10, 8);

  EXPECT_EQ(split_train_val(10, 20, 1).val.size(), 10u);  // clamped
  EXPECT_TRUE(split_train_val(10, 20, 1).train.empty());
  EXPECT_EQ(split_train_val(10, -1, 1).train.size(), 10u);
  EXPECT_TRUE(split_train_val(0, 5, 1).val.empty());
}

TEST(DataEpochOrder, PermutationThatDependsOnEpochAndSeed) {
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < 500; ++i) indices.push_back(3 * i + 1);
  const std::vector<int64_t> e0 = epoch_order(indices, 11, 0, true);
  EXPECT_EQ(e0, epoch_order(indices, 11, 0, true));
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, indices);
  EXPECT_NE(e0, indices);
  EXPECT_NE(e0, epoch_order(indices, 11, 1, true));
  EXPECT_NE(e0, epoch_order(indices, 12, 0, true));
  EXPECT_EQ(epoch_order(indices, 11, 5, false), indices);
  EXPECT_TRUE(epoch_order({}, 1, 0, true).empty());
}

// Fisher–Yates is unbiased only if j ranges over [0, i] exactly: over 24000 epochs, each of
// the 24 orders of 4 items appears 1000 times on average; allow 5σ (σ ≈ 31).
TEST(DataEpochOrder, ShuffleIsUniform) {
  const std::vector<int64_t> items = {0, 1, 2, 3};
  std::map<std::vector<int64_t>, int> counts;
  for (int64_t epoch = 0; epoch < 24000; ++epoch) ++counts[epoch_order(items, 3, epoch, true)];
  EXPECT_EQ(counts.size(), 24u);
  for (const auto& [order, count] : counts) EXPECT_NEAR(count, 1000, 160);
}

TEST(DataNormalization, MatchesDirectComputationOverIndices) {
  Dataset ds = testing::synthetic_dataset(6, 2, 3, 4, 1);
  // Channel 1 of every image constant: zero variance → std 1.
  for (int64_t i = 0; i < ds.count; ++i) {
    for (int k = 0; k < 12; ++k) ds.pixels[static_cast<size_t>(i * 24 + 12 + k)] = 77;
  }
  const std::vector<int64_t> indices = {0, 2, 5};
  const Normalization norm = compute_normalization(ds, indices);
  ASSERT_EQ(norm.mean.size(), 2u);
  ASSERT_EQ(norm.std.size(), 2u);
  double sum = 0, n = 0;
  for (int64_t i : indices) {
    for (int k = 0; k < 12; ++k) sum += ds.pixels[static_cast<size_t>(i * 24 + k)] / 255.0, ++n;
  }
  const double mean = sum / n;
  double sq = 0;
  for (int64_t i : indices) {
    for (int k = 0; k < 12; ++k) {
      const double d = ds.pixels[static_cast<size_t>(i * 24 + k)] / 255.0 - mean;
      sq += d * d;
    }
  }
  EXPECT_NEAR(norm.mean[0], mean, 1e-7);
  EXPECT_NEAR(norm.std[0], std::sqrt(sq / n), 1e-7);
  EXPECT_NEAR(norm.mean[1], 77 / 255.0, 1e-7);
  EXPECT_EQ(norm.std[1], 1.0f);
  // Other indices give other statistics: the indices are honoured.
  const std::vector<int64_t> others = {1, 3, 4};
  EXPECT_NE(compute_normalization(ds, others).mean[0], norm.mean[0]);
}

}  // namespace
}  // namespace wren
