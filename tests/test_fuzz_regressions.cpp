// The fuzz targets' regressions (docs/TESTING.md "Fuzzing"): every input saved under
// tests/fuzz/regressions/<target>/ (a minimized crash the fuzzer found, kept after the fix) and
// a few hand-made malformed inputs per format go through the same entry points as the libFuzzer
// targets (tests/fuzz/fuzz_inputs.h) and must come back as a clean error naming the file, not
// a crash. Under the asan preset this also catches the undefined behaviour the fuzzer's UBSan
// reported. A saved input whose name starts with "valid-" must be accepted instead.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_inputs.h"

namespace wren::fuzz {
namespace {

namespace fs = std::filesystem;

fs::path regressions_dir() {
  return fs::path(__FILE__).parent_path() / "fuzz" / "regressions";
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

Bytes idx_header(uint32_t magic, std::initializer_list<uint32_t> dims) {
  Bytes out;
  put_be32(out, magic);
  for (uint32_t d : dims) put_be32(out, d);
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A safetensors file: the 8-byte little-endian header size, the header, then `data`.
Bytes safetensors_file(std::string_view header, const Bytes& data = {}) {
  Bytes out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  return concat(out, data);
}

// A checkpoint's metadata with `input` as wren.input (read_checkpoint_info's keys only).
Bytes checkpoint_with_input(std::string_view input, std::string_view normalization =
                                                        R"({\"mean\":[0.5],\"std\":[0.25]})") {
  return safetensors_file(std::string(R"({"__metadata__":{"wren.model":"ref-cnn",)") +
                          R"("wren.model_text":"","wren.config":"{}","wren.data_dir":"d",)" +
                          R"("wren.normalization":")" + std::string(normalization) + R"(",)" +
                          R"("wren.input":")" + std::string(input) + R"("}})");
}

class FuzzRegressions : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = fs::temp_directory_path() /
               ("wren_fuzz_regressions_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(scratch_);
    fs::create_directories(scratch_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(scratch_, ec);
  }

  // The target's entry point, as its libFuzzer target calls it.
  std::function<Status(std::span<const uint8_t>)> entry(const std::string& target) const {
    if (target == "idx") return [this](std::span<const uint8_t> b) { return idx(b, scratch_); };
    if (target == "cifar") return [this](std::span<const uint8_t> b) { return cifar(b, scratch_); };
    if (target == "safetensors") return [](std::span<const uint8_t> b) { return safetensors(b); };
    if (target == "model_file") return [](std::span<const uint8_t> b) { return model_file(b); };
    if (target == "run_config") return [](std::span<const uint8_t> b) { return run_config(b); };
    ADD_FAILURE() << "unknown target " << target;
    return [](std::span<const uint8_t>) { return Status(); };
  }

  // What the target's errors name: the file the reader was given. A run config is no file
  // (config_from_json's errors say "run config", the later checks name the option).
  std::string source(const std::string& target) const {
    if (target == "idx" || target == "cifar") return scratch_.string();
    if (target == "safetensors") return "fuzz.safetensors";
    if (target == "model_file") return "fuzz.wren";
    return "";
  }

  // Runs `input` through `target`'s entry point and expects an error naming the source and
  // containing `part`.
  void expect_error(const std::string& target, const Bytes& input, const std::string& part,
                    const std::string& what) {
    SCOPED_TRACE(target + ": " + what);
    const Status s = entry(target)(input);
    ASSERT_FALSE(s.ok()) << "accepted";
    EXPECT_NE(s.message().find(source(target)), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(part), std::string::npos)
        << "expected '" << part << "' in: " << s.message();
  }

  fs::path scratch_;
};

// Every saved input of every target. With none saved the test still checks the directory
// layout: one folder per target, nothing else.
TEST_F(FuzzRegressions, SavedInputsGiveCleanErrors) {
  const std::vector<std::string> targets = {"idx", "cifar", "safetensors", "model_file",
                                            "run_config"};
  int files = 0;
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(regressions_dir(), ec)) {
    const std::string target = dir.path().filename().string();
    ASSERT_TRUE(dir.is_directory()) << dir.path() << ": expected tests/fuzz/regressions/<target>/";
    ASSERT_NE(std::find(targets.begin(), targets.end(), target), targets.end())
        << dir.path() << " is not a fuzz target";
    for (const auto& file : fs::directory_iterator(dir.path())) {
      const std::string name = file.path().filename().string();
      SCOPED_TRACE(target + "/" + name);
      const Status s = entry(target)(read_file(file.path()));
      ++files;
      if (name.starts_with("valid-")) {
        EXPECT_TRUE(s.ok()) << s.message();
      } else {
        ASSERT_FALSE(s.ok()) << "accepted";
        EXPECT_NE(s.message().find(source(target)), std::string::npos) << s.message();
      }
    }
  }
  std::printf("[ info ] %d saved fuzz regression input(s) in %s\n", files,
              regressions_dir().c_str());
}

TEST_F(FuzzRegressions, MalformedIdx) {
  const Bytes images = concat(idx_header(0x803, {2, 2, 2}), Bytes(8, 7));
  const Bytes labels = concat(idx_header(0x801, {2}), Bytes{1, 2});
  ASSERT_TRUE(idx(frame_idx(0, images, labels), scratch_).ok());
  ASSERT_TRUE(idx(frame_idx(3, images, labels), scratch_).ok());  // both gzip
  expect_error("idx", frame_idx(0, Bytes(images.begin(), images.begin() + 10), labels),
               "truncated: expected a 16-byte header", "truncated header");
  expect_error("idx", frame_idx(0, idx_header(0x803, {0xffffffff, 0xffffffff, 0xffffffff}), labels),
               "overflow 64 bits", "dimensions whose product overflows");
  expect_error("idx", frame_idx(0, idx_header(0x803, {0xffffffff, 1, 1}), labels),
               "expected 4294967295 bytes", "a huge image count");
  expect_error("idx", frame_idx(0, labels, images), "are the two paths swapped?", "swapped files");
  expect_error("idx", frame_idx(0, images, concat(idx_header(0x801, {3}), Bytes{0, 0, 0})),
               "has 3 labels", "more labels than images");
  expect_error("idx", frame_idx(1 << 2, images, labels), "out of range [0, 1)",
               "a label out of range of 1 class");
  Bytes gz = gzip_bytes(images);
  expect_error("idx", frame_idx(0, Bytes(gz.begin(), gz.end() - 5), labels), "truncated gzip",
               "a truncated gzip file");
  gz[gz.size() / 2] ^= 0xff;
  expect_error("idx", frame_idx(0, gz, labels), "gzip", "a corrupt gzip stream");
  expect_error("idx", frame_idx(0, Bytes{0x1f, 0x8b, 0, 0, 0}, labels), "gzip",
               "a gzip magic and nothing else");
  EXPECT_FALSE(idx(Bytes{0, 1}, scratch_).ok());  // shorter than the frame
}

TEST_F(FuzzRegressions, MalformedCifar) {
  Bytes c10(1 + 3073, 9);
  c10[0] = 0;  // flags: CIFAR-10, raw, one file
  c10[1] = 3;  // the label
  ASSERT_TRUE(cifar(c10, scratch_).ok());
  expect_error("cifar", Bytes(100, 0), "is not a multiple of the 3073-byte CIFAR-10 record",
               "a partial record");
  expect_error("cifar", Bytes{0}, "contains zero images", "an empty file");
  expect_error("cifar", Bytes{2}, "contains zero images", "an empty gzip file");
  Bytes c100(1 + 3074, 0);
  c100[0] = 1;   // CIFAR-100
  c100[1] = 20;  // coarse label out of range
  expect_error("cifar", c100, "coarse label 20", "a coarse label out of range");
  c100[1] = 0;
  c100[2] = 100;
  expect_error("cifar", c100, "label 100", "a fine label out of range");
  Bytes bad_label(1 + 3073, 0);
  bad_label[0] = 4;  // two files
  bad_label[1] = 10;
  expect_error("cifar", bad_label, "out of range [0, 10)", "a CIFAR-10 label out of range");
  expect_error("cifar", Bytes{0, 0x1f, 0x8b, 8, 0}, "gzip", "a truncated gzip header");
}

TEST_F(FuzzRegressions, MalformedSafetensors) {
  ASSERT_TRUE(parse_safetensors(safetensors_file("{}      "), "x").ok());
  expect_error("safetensors", Bytes{1, 2, 3}, "too short for the 8-byte header size",
               "fewer than 8 bytes");
  expect_error("safetensors", Bytes(8, 0xff), "exceeds the 100000000-byte limit",
               "a header size of 2^64 - 1");
  expect_error("safetensors", concat(Bytes{64, 0, 0, 0, 0, 0, 0, 0}, bytes_of("{}")),
               "runs past the end", "a header size past the end of the file");
  expect_error("safetensors", safetensors_file("{\"a\":"), "not valid JSON",
               "a truncated header");
  expect_error("safetensors",
               safetensors_file(R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],)"
                                R"("data_offsets":[0,16]}})"),
               "overflows", "a shape whose byte length overflows");
  expect_error("safetensors",
               safetensors_file(R"({"t":{"dtype":"F32","shape":[2],)"
                                R"("data_offsets":[0,18446744073709551615]}})"),
               "data_offsets", "an end offset of 2^64 - 1");
  expect_error("safetensors",
               safetensors_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})"),
               "run past the end", "data past the end of the file");
  // Valid files, not checkpoints: read_checkpoint_info names the missing key.
  expect_error("safetensors", safetensors_file(R"({"__metadata__":{"wren.model":"x"}})"),
               "is missing", "a safetensors file that is not a checkpoint");
  // Checkpoint metadata: numbers out of int's range and malformed JSON.
  const std::string rest = R"(,\"height\":1,\"width\":1,\"classes\":1})";
  expect_error("safetensors", checkpoint_with_input(R"({\"channels\":1e300)" + rest),
               "\"channels\" = 1e+300 is not an integer", "an input size of 1e300");
  expect_error("safetensors", checkpoint_with_input(R"({\"channels\":4294967297)" + rest),
               "\"channels\" = 4294967297 is not an integer", "an input size beyond int");
  expect_error("safetensors", checkpoint_with_input(R"({\"channels\":1})"), "metadata",
               "an input without its height");
  expect_error("safetensors",
               checkpoint_with_input(R"({\"channels\":1,\"height\":1,\"width\":1,\"classes\":1})",
                                     R"({\"mean\":[)"),
               "metadata", "truncated normalization JSON");
}

TEST_F(FuzzRegressions, MalformedModelFiles) {
  ASSERT_TRUE(model_file(bytes_of("linear fc out=classes\nsoftmax_ce\n")).ok());
  expect_error("model_file", bytes_of(""), "has no loss", "an empty file");
  expect_error("model_file", bytes_of("conv3d c out=1\n"), "unknown op 'conv3d'", "an unknown op");
  expect_error("model_file", bytes_of("conv2d c out=1 padding=2147483647\nsoftmax_ce\n"),
               "fuzz.wren:1:", "a convolution padding of INT_MAX");
  expect_error("model_file", bytes_of("maxpool kernel=2147483647 padding=2147483647\n"),
               "fuzz.wren:1:", "a pool padding of INT_MAX");
  expect_error("model_file",
               bytes_of("conv2d c out=2147483647 kernel=1\nflatten\nlinear fc out=2147483647\n"),
               "output [N, 2147483647, 28, 28] has 2^31 elements or more per sample",
               "layers of more than 2^63 elements");
  expect_error("model_file", bytes_of("linear fc out=2147483647\nsoftmax_ce\n"),
               "weight [2147483647, 784] has 2^31 elements or more", "a linear weight of 1.7e12 elements");
  expect_error("model_file", bytes_of("linear fc out=99999999999999999999\n"),
               "bad value '99999999999999999999' for out", "an integer beyond int64");
  expect_error("model_file", bytes_of("dropout p=nan\n"), "expected a finite number",
               "a NaN");
  expect_error("model_file", bytes_of("input image 1 28\n"), "expected C H W", "two dims");
}

TEST_F(FuzzRegressions, MalformedRunConfigs) {
  ASSERT_TRUE(run_config(bytes_of("{}")).ok());
  expect_error("run_config", bytes_of("{\"batch\":"), "parse error", "truncated JSON");
  expect_error("run_config", bytes_of(R"({"batch":1e300})"),
               "\"batch\" = 1e+300 is not an integer", "a batch of 1e300");
  expect_error("run_config", bytes_of(R"({"batch":4294967424})"),
               "\"batch\" = 4294967424 is not an integer", "a batch beyond int");
  expect_error("run_config", bytes_of(R"({"seed":-1})"), "\"seed\" = -1 is not an integer",
               "a negative seed");
  expect_error("run_config", bytes_of(R"({"steps":2.5})"), "\"steps\" = 2.5 is not an integer",
               "a fractional step count");
  expect_error("run_config", bytes_of(R"({"schedule":{"milestones":[1,1e99]}})"),
               "\"milestones\" = 1e+99 is not an integer", "a milestone of 1e99");
  expect_error("run_config", bytes_of(R"({"batch":"128"})"), "type must be number",
               "a string for a number");
  expect_error("run_config", bytes_of(R"({"schedule":{"kind":"sometimes"}})"), "sometimes",
               "an unknown schedule");
}

}  // namespace
}  // namespace wren::fuzz
