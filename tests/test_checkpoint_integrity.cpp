// What a checkpoint guarantees (docs/CHECKPOINTS.md, "Guarantees"): a crash at any point of a
// write leaves the previous file or the complete new one, never a torn mix; a file damaged
// afterwards (any flipped bit) is refused on load, naming what no longer matches.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "wren/atomic_file.h"
#include "wren/safetensors.h"

namespace wren {
namespace {

namespace fs = std::filesystem;

// A checkpoint-shaped file: tensors of several dtypes and ranks, Wren's metadata keys, checksums.
std::vector<uint8_t> checkpoint_bytes(float scale) {
  const std::vector<float> w = {0.5f * scale, -1.25f * scale, 3.0f * scale, 7.5f * scale};
  const std::vector<float> b = {0.125f * scale, -2.0f * scale};
  const std::vector<int64_t> count = {static_cast<int64_t>(42 * scale)};
  const std::vector<SafeTensor> tensors = {
      make_safetensor<float>("conv1.weight", {2, 1, 1, 2}, std::span<const float>(w)),
      make_safetensor<float>("conv1.bias", {2}, std::span<const float>(b)),
      make_safetensor<int64_t>("bn1.num_batches_tracked", {}, std::span<const int64_t>(count))};
  SafeMetadata meta{{"wren.format_version", kCheckpointFormatVersion},
                    {"wren.step", std::to_string(static_cast<int>(12 * scale))},
                    {"wren.config", R"({"model":"ref-cnn","lr":0.001})"}};
  auto bytes = serialize_safetensors(tensors, with_checksums(tensors, meta));
  EXPECT_TRUE(bytes) << bytes.error().message();
  return *bytes;
}

Status parse_and_verify(const std::vector<uint8_t>& bytes) {
  auto file = parse_safetensors(bytes, "ckpt");
  if (!file) return file.error();
  return verify_checksums(*file);
}

TEST(CheckpointChecksums, TheWrittenFileVerifies) {
  EXPECT_TRUE(parse_and_verify(checkpoint_bytes(1.0f)).ok());
}

// Every single-bit flip anywhere in the file (size field, header JSON, metadata, padding,
// tensor data) is refused: by the parser where the structure breaks, by the checksums where
// it does not. Flips in a tensor's data name that tensor.
TEST(CheckpointChecksums, EverySingleBitFlipIsRefused) {
  const std::vector<uint8_t> good = checkpoint_bytes(1.0f);
  uint64_t header = 0;
  std::memcpy(&header, good.data(), 8);
  auto file = parse_safetensors(good, "ckpt");
  ASSERT_TRUE(file);
  size_t data_begin = 8 + header, refused_by_checksum = 0;
  for (size_t byte = 0; byte < good.size(); ++byte) {
    std::string owner;  // the tensor whose data holds this byte, if any
    size_t at = data_begin;
    for (const SafeTensor& t : file->tensors()) {
      if (byte >= at && byte < at + t.bytes.size()) owner = t.name;
      at += t.bytes.size();
    }
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> flipped = good;
      flipped[byte] ^= static_cast<uint8_t>(1u << bit);
      auto parsed = parse_safetensors(flipped, "ckpt");
      if (!parsed) continue;  // refused by the parser
      const Status s = verify_checksums(*parsed);
      ASSERT_FALSE(s.ok()) << "byte " << byte << " bit " << bit << " went unnoticed";
      EXPECT_EQ(s.error().code(), ErrorCode::kDataError);
      ++refused_by_checksum;
      if (!owner.empty()) {
        EXPECT_NE(s.message().find("tensor '" + owner + "' fails its CRC-32 check"),
                  std::string::npos)
            << "byte " << byte << ": " << s.message();
      }
    }
  }
  // The data section alone is 48 bytes = 384 flips the parser cannot see.
  EXPECT_GE(refused_by_checksum, 384u);
}

TEST(CheckpointChecksums, FilesWithoutChecksumsLoadUnlessTheySayTheyHaveThem) {
  const std::vector<float> w = {1, 2};
  const std::vector<SafeTensor> tensors = {make_safetensor<float>("w", {2}, std::span<const float>(w))};
  // PyTorch's files and Wren checkpoints of format 1 carry none.
  for (const SafeMetadata& meta : {SafeMetadata{{"format", "pt"}},
                                   SafeMetadata{{"wren.format_version", "1"}}}) {
    auto bytes = serialize_safetensors(tensors, meta);
    ASSERT_TRUE(bytes);
    EXPECT_TRUE(parse_and_verify(*bytes).ok());
  }
  // A format-2 checkpoint whose checksums are gone has been damaged.
  auto bytes = serialize_safetensors(tensors, {{"wren.format_version", "2"}});
  ASSERT_TRUE(bytes);
  const Status s = parse_and_verify(*bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'wren.crc32' is missing"), std::string::npos) << s.message();
}

// A crash (SIGKILL, nothing cleaned up) at each point of the atomic write: before the temporary
// file exists, mid-write, before and after fsync, before the rename, after it. The checkpoint
// at the path is then the complete old one (every point before the rename) or the complete new
// one (after it), and it verifies; a temporary file may be left beside it, never read.
class CheckpointCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    // The threadsafe death test re-executes this binary for each EXPECT_EXIT: the child must
    // find the parent's folder, so its name travels in the environment, not in getpid().
    if (std::getenv("WREN_CRASH_TEST_DIR") == nullptr) {
      const std::string name = (fs::temp_directory_path() /
                                ("wren_crash_" + std::to_string(::getpid()) + "_" +
                                 ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                                   .string();
      ::setenv("WREN_CRASH_TEST_DIR", name.c_str(), 1);
    }
    dir_ = std::getenv("WREN_CRASH_TEST_DIR");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::vector<uint8_t> read_all(const fs::path& p) {
    std::vector<uint8_t> bytes(fs::file_size(p));
    std::ifstream(p, std::ios::binary)
        .read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return bytes;
  }

  fs::path dir_;
};

TEST_F(CheckpointCrashTest, ACrashAtAnyPointLeavesTheOldOrTheNewFileComplete) {
  const std::vector<uint8_t> old_bytes = checkpoint_bytes(1.0f), new_bytes = checkpoint_bytes(2.0f);
  ASSERT_NE(old_bytes, new_bytes);
  struct Point {
    AtomicWriteFault fault;
    bool new_file_expected;
    const char* name;
  };
  const Point points[] = {
      {{.step = AtomicWriteStep::kOpen, .kill = true}, false, "before open"},
      {{.step = AtomicWriteStep::kWrite, .write_fails_after_bytes = 0, .kill = true}, false,
       "after open, nothing written"},
      {{.step = AtomicWriteStep::kWrite, .write_fails_after_bytes = new_bytes.size() / 2,
        .kill = true},
       false, "half written"},
      {{.step = AtomicWriteStep::kFsync, .kill = true}, false, "written, before fsync"},
      {{.step = AtomicWriteStep::kRename, .kill = true}, false, "fsynced, before rename"},
      {{.step = AtomicWriteStep::kDirectoryFsync, .kill = true}, true,
       "renamed, before the directory fsync"},
  };
  for (const Point& p : points) {
    const std::string path = (dir_ / "last.safetensors").string();
    ASSERT_TRUE(write_file_atomic(path, old_bytes).ok());
    EXPECT_EXIT(
        {
          (void)write_file_atomic(path, new_bytes, p.fault);
          std::_Exit(0);  // not reached: the fault kills the process first
        },
        ::testing::KilledBySignal(SIGKILL), "")
        << p.name;
    ASSERT_TRUE(fs::exists(path)) << p.name;
    EXPECT_EQ(read_all(path), p.new_file_expected ? new_bytes : old_bytes) << p.name;
    auto file = read_checkpoint_file(path);
    ASSERT_TRUE(file) << p.name << ": " << file.error().message();
    EXPECT_EQ(file->metadata_value("wren.step").value(), p.new_file_expected ? "24" : "12")
        << p.name;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      const std::string name = entry.path().filename().string();
      EXPECT_TRUE(name == "last.safetensors" || name.rfind("last.safetensors.tmp.", 0) == 0)
          << p.name << ": " << name;
    }
    // The next write (a later save) succeeds over the leftovers.
    ASSERT_TRUE(write_file_atomic(path, new_bytes).ok()) << p.name;
    EXPECT_EQ(read_all(path), new_bytes);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
}

}  // namespace
}  // namespace wren
