// The safetensors reader and writer (include/wren/safetensors.h) and the atomic file write
// under them (include/wren/atomic_file.h).
//
// Expected bytes are built by hand here, not by the code under test: the JSON header is a
// string literal, the lengths and the padding are counted out, and the data is spelled as
// little-endian bytes. The "Python fixture" is what safetensors' reference serializer (the
// Rust core behind safetensors.torch.save_file; checked against safetensors 0.8.0's
// safetensors.numpy.save) emits for a small dict, and two cases are the reference crate's own
// serialization known answers.
#include "wren/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "wren/atomic_file.h"

namespace wren {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

void append(std::vector<uint8_t>& out, std::initializer_list<uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// 8-byte little-endian size, the header text as given (no padding added), then `data`.
std::vector<uint8_t> file_with_header(std::string_view header, std::vector<uint8_t> data = {}) {
  std::vector<uint8_t> out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// A fresh directory per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("wren_" + std::string(info->test_suite_name()) + "_" +
                                        info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  // The names in the directory, sorted: shows any temporary file left behind.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

using SafetensorsTest = TempDirTest;
using AtomicFileTest = TempDirTest;

// --- exact bytes ------------------------------------------------------------------------------

TEST_F(SafetensorsTest, OneF32TensorExactBytes) {
  // 54 bytes of JSON + 2 spaces = 56, a multiple of 8; 1.0f = 0x3F800000, -2.0f = 0xC0000000.
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(header.size(), 54u);
  std::vector<uint8_t> expected = {56, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> text = bytes_of(header + "  ");
  expected.insert(expected.end(), text.begin(), text.end());
  append(expected, {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0});

  const std::vector<float> values = {1.0f, -2.0f};
  const std::vector<SafeTensor> tensors = {make_safetensor<float>("x", {2}, values)};
  Expected<std::vector<uint8_t>> bytes = serialize_safetensors(tensors);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message();
  EXPECT_EQ(*bytes, expected);

  const std::string file = path("x.safetensors");
  ASSERT_TRUE(write_safetensors(file, tensors).ok());
  EXPECT_EQ(read_all(file), expected);
  EXPECT_EQ(entries(), std::vector<std::string>{"x.safetensors"});
}

// The reference crate's test_serialization: one F32 [1, 2, 3] tensor whose 64-byte header
// needs no padding.
TEST_F(SafetensorsTest, ReferenceKnownAnswerNoPadding) {
  std::vector<uint8_t> expected = {64, 0, 0, 0, 0, 0, 0, 0};
  const auto text = bytes_of(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})");
  expected.insert(expected.end(), text.begin(), text.end());
  append(expected, {0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
                    160, 64});
  const std::vector<float> values = {0, 1, 2, 3, 4, 5};
  const std::vector<SafeTensor> tensors = {make_safetensor<float>("attn.0", {1, 2, 3}, values)};
  Expected<std::vector<uint8_t>> bytes = serialize_safetensors(tensors);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message();
  EXPECT_EQ(*bytes, expected);
}

// The reference crate's test_empty: no tensors, with and without metadata.
TEST_F(SafetensorsTest, ReferenceKnownAnswerEmpty) {
  Expected<std::vector<uint8_t>> none = serialize_safetensors({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, (std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ',
                                         ' ', ' '}));

  std::vector<uint8_t> expected = {40, 0, 0, 0, 0, 0, 0, 0};
  const auto text = bytes_of(R"({"__metadata__":{"framework":"pt"}}     )");
  expected.insert(expected.end(), text.begin(), text.end());
  Expected<std::vector<uint8_t>> with_metadata = serialize_safetensors({}, {{"framework", "pt"}});
  ASSERT_TRUE(with_metadata.ok());
  EXPECT_EQ(*with_metadata, expected);

  Expected<SafeTensorsFile> parsed = parse_safetensors(expected, "empty.safetensors");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_TRUE(parsed->tensors().empty());
  EXPECT_EQ(parsed->metadata(), (SafeMetadata{{"framework", "pt"}}));
}

// serde_json's escapes: \" \\ \n, \u00xx (lower-case) for other control characters, UTF-8 and
// '/' verbatim.
TEST_F(SafetensorsTest, MetadataEscapesLikeSerdeJson) {
  const std::string value = "a\"b\\c\nd\x01\xC3\xA9/";
  const std::string header = R"({"__metadata__":{"k":"a\"b\\c\nd\u0001)" "\xC3\xA9" R"(/"}})";
  ASSERT_EQ(header.size(), 44u);
  std::vector<uint8_t> expected = {48, 0, 0, 0, 0, 0, 0, 0};
  const auto text = bytes_of(header + "    ");
  expected.insert(expected.end(), text.begin(), text.end());
  Expected<std::vector<uint8_t>> bytes = serialize_safetensors({}, {{"k", value}});
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, expected);

  Expected<SafeTensorsFile> parsed = parse_safetensors(*bytes, "escapes.safetensors");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->metadata_value("k").value(), value);
}

// What safetensors.torch.save_file({"weight": f32 [2,2], "bias": f32 [2], "step": i64 [],
// "mask": u8 [3]}, p, metadata={"format": "pt"}) writes: "__metadata__" first, then the
// tensors by dtype alignment (I64 > F32 > U8), ties by name; 263 bytes of JSON + 1 space.
std::vector<uint8_t> python_fixture() {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("weight":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]},)"
      R"("mask":{"dtype":"U8","shape":[3],"data_offsets":[32,35]}})";
  std::vector<uint8_t> out = {0x08, 0x01, 0, 0, 0, 0, 0, 0};  // 264
  const auto text = bytes_of(header + " ");
  out.insert(out.end(), text.begin(), text.end());
  append(out, {7, 0, 0, 0, 0, 0, 0, 0});                          // step = 7
  append(out, {0x00, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x00, 0xBF});  // bias = 0.5, -0.5
  append(out, {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40,    // weight = 1, 2,
               0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40});  //          3, 4
  append(out, {1, 0, 1});                                         // mask
  return out;
}

TEST_F(SafetensorsTest, ReadsPythonWrittenFile) {
  const std::vector<uint8_t> fixture = python_fixture();
  ASSERT_EQ(fixture.size(), 8u + 264u + 35u);
  const std::string file = path("torch.safetensors");
  write_all(file, fixture);

  Expected<SafeTensorsFile> f = read_safetensors(file);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->path(), file);
  ASSERT_EQ(f->tensors().size(), 4u);
  EXPECT_EQ(f->tensors()[0].name, "step");  // file order
  EXPECT_EQ(f->tensors()[3].name, "mask");
  EXPECT_EQ(f->metadata(), (SafeMetadata{{"format", "pt"}}));
  EXPECT_EQ(f->as_f32("weight", Shape{2, 2}).value(), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(f->as_f32("bias").value(), (std::vector<float>{0.5f, -0.5f}));
  EXPECT_EQ(f->as_i64("step").value(), (std::vector<int64_t>{7}));
  EXPECT_TRUE(f->tensor("step").value()->shape.empty());
  EXPECT_EQ(f->as_u8("mask").value(), (std::vector<uint8_t>{1, 0, 1}));
}

TEST_F(SafetensorsTest, WritesWhatPythonWrites) {
  const std::vector<float> weight = {1, 2, 3, 4}, bias = {0.5f, -0.5f};
  const std::vector<int64_t> step = {7};
  const std::vector<uint8_t> mask = {1, 0, 1};
  // Deliberately not in file order.
  const std::vector<SafeTensor> tensors = {
      make_safetensor<uint8_t>("mask", {3}, mask),
      make_safetensor<float>("weight", {2, 2}, weight),
      make_safetensor<int64_t>("step", {}, step),
      make_safetensor<float>("bias", {2}, bias),
  };
  const std::string file = path("wren.safetensors");
  ASSERT_TRUE(write_safetensors(file, tensors, {{"format", "pt"}}).ok());
  EXPECT_EQ(read_all(file), python_fixture());
}

// --- round trip -------------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripsEveryKind) {
  const std::vector<float> f32 = {1.5f, -0.0f, std::numeric_limits<float>::infinity(), 3e-39f,
                                  -7.25f, 1e30f};
  const std::vector<double> f64 = {0.1, -1e300};
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -1, 0,
                                    std::numeric_limits<int64_t>::max()};
  const std::vector<int32_t> i32 = {-5, 6};
  const std::vector<uint8_t> u8 = {0, 255, 17};
  const std::vector<float> scalar = {42.0f};
  const std::vector<float> none;
  const std::vector<SafeTensor> tensors = {
      make_safetensor<float>("conv1.weight", shape_dims(Shape{2, 1, 1, 3}), f32),
      make_safetensor<double>("f64", {2}, f64),
      make_safetensor<int64_t>("i64", {2, 2}, i64),
      make_safetensor<int32_t>("i32", {2}, i32),
      make_safetensor<uint8_t>("u8", {3}, u8),
      make_safetensor<float>("scalar", {}, scalar),
      make_safetensor<float>("empty", {0, 3}, none),
  };
  const SafeMetadata metadata = {{"wren.step", "1200"},
                                 {"wren.config", R"({"model": "ref-cnn", "lr": 0.1})"},
                                 {"unicode", "µ∑ tab\there"}};
  const std::string file = path("round.safetensors");
  ASSERT_TRUE(write_safetensors(file, tensors, metadata).ok());

  Expected<SafeTensorsFile> f = read_safetensors(file);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->metadata(), metadata);
  ASSERT_EQ(f->tensors().size(), tensors.size());
  for (const SafeTensor& t : tensors) {
    const SafeTensor* got = f->find(t.name);
    ASSERT_NE(got, nullptr) << t.name;
    EXPECT_EQ(got->dtype, t.dtype) << t.name;
    EXPECT_EQ(got->shape, t.shape) << t.name;
    EXPECT_EQ(got->bytes, t.bytes) << t.name;
  }
  const std::vector<float> f32_back = f->as_f32("conv1.weight", Shape{2, 1, 1, 3}).value();
  ASSERT_EQ(f32_back.size(), f32.size());
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_EQ(std::memcmp(&f32_back[i], &f32[i], sizeof(float)), 0) << i;  // -0.0 too
  }
  EXPECT_EQ(f->as_f64("f64").value(), f64);
  EXPECT_EQ(f->as_i64("i64").value(), i64);
  EXPECT_EQ(f->as_i32("i32").value(), i32);
  EXPECT_EQ(f->as_u8("u8").value(), u8);
  EXPECT_EQ(f->as_f32("scalar", Shape{}).value(), scalar);
  EXPECT_TRUE(f->as_f32("empty").value().empty());
  EXPECT_EQ(f->tensor("empty").value()->numel(), 0);
  EXPECT_EQ(f->tensor("scalar").value()->numel(), 1);

  // Every tensor starts at a multiple of its element size within an 8-aligned data section.
  const std::vector<uint8_t> raw = read_all(file);
  uint64_t header_size = 0;
  std::memcpy(&header_size, raw.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);
}

// --- typed access -----------------------------------------------------------------------------

TEST_F(SafetensorsTest, ConvertsHalfAndBfloat16AndDoubleToFloat) {
  // F16: 1.0 = 0x3C00, -2.0 = 0xC000, smallest subnormal 2^-24 = 0x0001, +inf = 0x7C00,
  // 65504 = 0x7BFF (largest finite). BF16: 1.0 = 0x3F80, -3.0 = 0xC040.
  std::vector<uint8_t> data;
  append(data, {0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00, 0x00, 0x7C, 0xFF, 0x7B});
  append(data, {0x80, 0x3F, 0x40, 0xC0});
  append(data, {0, 0, 0, 0, 0, 0, 0xF0, 0x3F});  // F64 1.0
  append(data, {0, 0, 0, 0, 0, 0, 0xF0, 0x7F});  // F64 +inf
  append(data, {0, 0, 0, 0, 0, 0, 0xF0, 0x47});  // F64 2^128: finite, too large for float
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[10,14]},)"
      R"("d":{"dtype":"F64","shape":[2],"data_offsets":[14,30]},)"
      R"("big":{"dtype":"F64","shape":[1],"data_offsets":[30,38]}})";
  Expected<SafeTensorsFile> f = parse_safetensors(file_with_header(header, data), "h.st");
  ASSERT_TRUE(f.ok()) << f.error().message();

  const std::vector<float> h = f->as_f32("h").value();
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -2.0f);
  EXPECT_EQ(h[2], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(h[3]) && h[3] > 0);
  EXPECT_EQ(h[4], 65504.0f);
  EXPECT_EQ(f->as_f64("h").value()[1], -2.0);
  EXPECT_EQ(f->as_f32("b").value(), (std::vector<float>{1.0f, -3.0f}));
  const std::vector<float> d = f->as_f32("d").value();
  EXPECT_EQ(d[0], 1.0f);
  EXPECT_TRUE(std::isinf(d[1]));  // infinity stays infinity

  Expected<std::vector<float>> big = f->as_f32("big");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code(), ErrorCode::kDataError);
  EXPECT_NE(big.error().message().find("h.st"), std::string::npos);
  EXPECT_NE(big.error().message().find("\"big\""), std::string::npos);
}

TEST_F(SafetensorsTest, TypedAccessErrors) {
  const std::vector<int64_t> wide = {1, int64_t{1} << 40};
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  const std::vector<SafeTensor> tensors = {make_safetensor<int64_t>("wide", {2}, wide),
                                           make_safetensor<float>("w", {2, 3}, w)};
  const std::string file = path("t.safetensors");
  ASSERT_TRUE(write_safetensors(file, tensors, {{"a", "b"}}).ok());
  Expected<SafeTensorsFile> f = read_safetensors(file);
  ASSERT_TRUE(f.ok());

  const auto expect_error = [&](const Status& s, ErrorCode code, const std::string& part) {
    ASSERT_FALSE(s.ok()) << part;
    EXPECT_EQ(s.error().code(), code) << s.message();
    EXPECT_NE(s.message().find(file), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(part), std::string::npos) << s.message();
  };
  expect_error(f->as_f32("missing").status(), ErrorCode::kNotFound, "\"missing\"");
  expect_error(f->tensor("missing").status(), ErrorCode::kNotFound, "\"missing\"");
  expect_error(f->metadata_value("nope").status(), ErrorCode::kNotFound, "\"nope\"");
  expect_error(f->as_f32("wide").status(), ErrorCode::kDataError, "I64");
  expect_error(f->as_u8("w").status(), ErrorCode::kDataError, "F32");
  expect_error(f->as_i32("wide").status(), ErrorCode::kDataError, "element 1");
  expect_error(f->as_f32("w", Shape{3, 2}).status(), ErrorCode::kDataError, "[2, 3]");
  EXPECT_EQ(f->as_i64("wide").value(), wide);
  EXPECT_EQ(f->metadata_value("a").value(), "b");
  EXPECT_FALSE(f->contains("missing"));
  EXPECT_TRUE(f->contains("w"));
}

// --- the writer's checks ----------------------------------------------------------------------

TEST_F(SafetensorsTest, WriterRejectsBadTensorsAndWritesNothing) {
  const std::vector<float> three = {1, 2, 3};
  const auto expect_rejected = [&](std::vector<SafeTensor> tensors, SafeMetadata metadata,
                                   const std::string& part) {
    const std::string file = path("bad.safetensors");
    Status s = write_safetensors(file, tensors, metadata);
    ASSERT_FALSE(s.ok()) << part;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(s.message().find(file), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(part), std::string::npos) << s.message();
    EXPECT_TRUE(entries().empty());
  };
  expect_rejected({make_safetensor<float>("a", {2, 2}, three)}, {}, "needs 16 bytes, got 12");
  const SafeTensor a = make_safetensor<float>("a", {3}, three);
  expect_rejected({a, a}, {}, "duplicate");
  expect_rejected({make_safetensor<float>("__metadata__", {3}, three)}, {}, "reserved");
  expect_rejected({make_safetensor<float>("a", {-1, -3}, three)}, {}, "negative");
  expect_rejected({make_safetensor<float>("bad\xFF", {3}, three)}, {}, "UTF-8");
  expect_rejected({}, {{"k", "\xC0\x80"}}, "UTF-8");  // overlong NUL
}

// --- malformed files --------------------------------------------------------------------------

struct Malformed {
  const char* what;
  std::vector<uint8_t> bytes;
  const char* message_part;
};

std::vector<Malformed> malformed_cases() {
  const std::vector<uint8_t> one_f32 = {0, 0, 0x80, 0x3F};
  const auto f32 = [](const std::string& offsets, const std::string& shape = "[1]") {
    return R"("dtype":"F32","shape":)" + shape + R"(,"data_offsets":)" + offsets;
  };
  std::vector<Malformed> cases;
  cases.push_back({"empty file", {}, "too short"});
  cases.push_back({"7 bytes", {1, 2, 3, 4, 5, 6, 7}, "too short"});
  cases.push_back({"header over 100 MB", {0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0}, "limit"});
  cases.push_back({"header size 2^64-1", {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
                   "limit"});
  cases.push_back({"header past the end", {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, "past the end"});
  cases.push_back({"not UTF-8", file_with_header("{\"\xFF\":1}"), "UTF-8 at byte offset 10"});
  cases.push_back({"not an object", file_with_header("[1, 2]  "), "start with '{'"});
  cases.push_back({"leading space", file_with_header(" {}"), "start with '{'"});
  cases.push_back({"truncated JSON", file_with_header(R"({"a":)"), "not valid JSON"});
  cases.push_back({"bad JSON offset", file_with_header(R"({"a":?})"), "byte offset 13"});
  cases.push_back({"trailing JSON", file_with_header("{} x"), "not valid JSON"});
  cases.push_back({"entry not an object", file_with_header(R"({"a":[1]})"), "not an object"});
  cases.push_back({"missing dtype",
                   file_with_header(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", one_f32),
                   "missing \"dtype\""});
  cases.push_back({"missing shape",
                   file_with_header(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", one_f32),
                   "missing \"shape\""});
  cases.push_back({"missing data_offsets",
                   file_with_header(R"({"a":{"dtype":"F32","shape":[1]}})", one_f32),
                   "missing \"data_offsets\""});
  cases.push_back({"dtype not a string",
                   file_with_header(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})",
                                    one_f32),
                   "not a string"});
  cases.push_back({"unknown dtype",
                   file_with_header(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})",
                                    one_f32),
                   "unknown dtype \"F33\""});
  cases.push_back({"sub-byte dtype",
                   file_with_header(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})",
                                    {0}),
                   "unsupported sub-byte dtype"});
  cases.push_back({"shape not an array", file_with_header("{\"a\":{" + f32("[0,4]", "1") + "}}",
                                                          one_f32),
                   "\"shape\" is not an array"});
  cases.push_back({"negative dimension",
                   file_with_header("{\"a\":{" + f32("[0,4]", "[-1]") + "}}", one_f32),
                   "non-negative integer"});
  cases.push_back({"fractional dimension",
                   file_with_header("{\"a\":{" + f32("[0,4]", "[1.0]") + "}}", one_f32),
                   "non-negative integer"});
  cases.push_back({"three offsets", file_with_header("{\"a\":{" + f32("[0,4,4]") + "}}", one_f32),
                   "[begin, end]"});
  cases.push_back({"negative offset", file_with_header("{\"a\":{" + f32("[-4,0]") + "}}",
                                                       one_f32),
                   "[begin, end]"});
  cases.push_back({"end before begin", file_with_header("{\"a\":{" + f32("[4,0]") + "}}",
                                                        one_f32),
                   "end before begin"});
  cases.push_back({"gap at the start", file_with_header("{\"a\":{" + f32("[4,8]") + "}}",
                                                        {0, 0, 0, 0, 0, 0, 0x80, 0x3F}),
                   "gap"});
  cases.push_back({"overlap",
                   file_with_header("{\"a\":{" + f32("[0,4]") + "},\"b\":{" + f32("[2,6]") + "}}",
                                    {0, 0, 0x80, 0x3F, 0, 0}),
                   "overlap"});
  cases.push_back({"gap between",
                   file_with_header("{\"a\":{" + f32("[0,4]") + "},\"b\":{" + f32("[6,10]") +
                                        "}}",
                                    std::vector<uint8_t>(10, 0)),
                   "gap"});
  cases.push_back({"length vs dtype x shape",
                   file_with_header("{\"a\":{" + f32("[0,4]", "[2]") + "}}", one_f32),
                   "4 bytes, but F32 [2] needs 8"});
  cases.push_back({"shape overflows",
                   file_with_header("{\"a\":{" +
                                        f32("[0,4]", "[4294967296,4294967296]") + "}}",
                                    one_f32),
                   "overflows"});
  cases.push_back({"data past the end", file_with_header("{\"a\":{" + f32("[0,4]") + "}}",
                                                         {0, 0}),
                   "run past the end"});
  cases.push_back({"trailing bytes", file_with_header("{\"a\":{" + f32("[0,4]") + "}}",
                                                      {0, 0, 0x80, 0x3F, 9}),
                   "file bytes 66-67 follow the last tensor"});
  cases.push_back({"duplicate tensor",
                   file_with_header("{\"a\":{" + f32("[0,4]") + "},\"a\":{" + f32("[0,4]") + "}}",
                                    one_f32),
                   "repeats key \"a\""});
  cases.push_back({"duplicate field",
                   file_with_header(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],)"
                                    R"("data_offsets":[0,4]}})",
                                    one_f32),
                   "repeats key \"dtype\" inside \"a\""});
  cases.push_back({"metadata not an object", file_with_header(R"({"__metadata__":[]})"),
                   "\"__metadata__\" is not an object"});
  cases.push_back({"metadata value not a string",
                   file_with_header(R"({"__metadata__":{"step":3}})"), "not a string"});
  return cases;
}

TEST_F(SafetensorsTest, EveryMalformedFileIsADataErrorNamingTheFile) {
  for (const Malformed& c : malformed_cases()) {
    Expected<SafeTensorsFile> f = parse_safetensors(c.bytes, "broken.safetensors");
    ASSERT_FALSE(f.ok()) << c.what;
    EXPECT_EQ(f.error().code(), ErrorCode::kDataError) << c.what << ": " << f.error().message();
    const std::string& message = f.error().message();
    EXPECT_EQ(message.rfind("broken.safetensors: ", 0), 0u) << c.what << ": " << message;
    EXPECT_NE(message.find(c.message_part), std::string::npos)
        << c.what << ": \"" << message << "\" lacks \"" << c.message_part << "\"";
  }
}

// The same checks through a real file, and the file system's own failures.
TEST_F(SafetensorsTest, ReadErrorsNameThePath) {
  const std::string truncated = path("truncated.safetensors");
  std::vector<uint8_t> bytes = python_fixture();
  bytes.resize(bytes.size() - 1);
  write_all(truncated, bytes);
  Expected<SafeTensorsFile> f = read_safetensors(truncated);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code(), ErrorCode::kDataError);
  EXPECT_NE(f.error().message().find(truncated), std::string::npos);
  EXPECT_NE(f.error().message().find("\"mask\""), std::string::npos) << f.error().message();

  const std::string missing = path("missing.safetensors");
  f = read_safetensors(missing);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(f.error().message().find(missing), std::string::npos);

  f = read_safetensors(dir_.string());
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code(), ErrorCode::kIoError);
  EXPECT_NE(f.error().message().find(dir_.string()), std::string::npos);
}

// Empty tensors share an offset with their neighbour; the reference accepts that.
TEST_F(SafetensorsTest, EmptyTensorsMayShareOffsets) {
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
      R"("c":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("a":{"dtype":"F32","shape":[0,2],"data_offsets":[0,0]}})";
  Expected<SafeTensorsFile> f = parse_safetensors(file_with_header(header, {9}), "e.st");
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->as_u8("c").value(), std::vector<uint8_t>{9});
  EXPECT_TRUE(f->as_f32("a").value().empty());
}

// --- atomic writes ----------------------------------------------------------------------------

TEST_F(AtomicFileTest, CreatesAndReplaces) {
  const std::string file = path("config.json");
  ASSERT_TRUE(write_file_atomic(file, std::string_view("first")).ok());
  EXPECT_EQ(read_all(file), bytes_of("first"));
  ASSERT_TRUE(write_file_atomic(file, std::string_view("second, longer")).ok());
  EXPECT_EQ(read_all(file), bytes_of("second, longer"));
  ASSERT_TRUE(write_file_atomic(file, std::string_view("")).ok());
  EXPECT_TRUE(read_all(file).empty());
  EXPECT_EQ(entries(), std::vector<std::string>{"config.json"});
}

TEST_F(AtomicFileTest, RelativePathInCurrentDirectory) {
  const fs::path old_cwd = fs::current_path();
  fs::current_path(dir_);
  const Status s = write_file_atomic("plain.txt", std::string_view("x"));
  fs::current_path(old_cwd);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(read_all(dir_ / "plain.txt"), bytes_of("x"));
  EXPECT_EQ(entries(), std::vector<std::string>{"plain.txt"});
}

// Each step failing before the rename leaves the old file intact and no temporary file.
TEST_F(AtomicFileTest, FailureBeforeRenameKeepsOldFile) {
  const std::string file = path("model.safetensors");
  const std::vector<float> old_values = {1, 2, 3};
  const std::vector<SafeTensor> old_tensors = {make_safetensor<float>("w", {3}, old_values)};
  ASSERT_TRUE(write_safetensors(file, old_tensors).ok());
  const std::vector<uint8_t> old_bytes = read_all(file);

  const std::vector<float> new_values(1000, 7.0f);
  const std::vector<SafeTensor> new_tensors = {make_safetensor<float>("w", {1000}, new_values)};
  Expected<std::vector<uint8_t>> new_bytes = serialize_safetensors(new_tensors);
  ASSERT_TRUE(new_bytes.ok());

  struct Case {
    AtomicWriteFault fault;
    const char* call;
  };
  const Case cases[] = {
      {{.step = AtomicWriteStep::kOpen}, "open(\""},
      {{.step = AtomicWriteStep::kWrite, .write_fails_after_bytes = 0}, "write(\""},
      {{.step = AtomicWriteStep::kWrite, .write_fails_after_bytes = 100}, "write(\""},
      {{.step = AtomicWriteStep::kFsync}, "fsync(\""},
      {{.step = AtomicWriteStep::kRename}, "rename(\""},
  };
  for (const Case& c : cases) {
    const Status s = write_file_atomic(file, *new_bytes, c.fault);
    ASSERT_FALSE(s.ok()) << c.call;
    EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
    EXPECT_EQ(s.message().rfind(file + ": ", 0), 0u) << s.message();
    EXPECT_NE(s.message().find(c.call), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("(injected)"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("Input/output error"), std::string::npos) << s.message();
    EXPECT_EQ(read_all(file), old_bytes) << c.call;
    EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"}) << c.call;
  }
  // The old checkpoint still loads.
  Expected<SafeTensorsFile> f = read_safetensors(file);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->as_f32("w").value(), old_values);
}

// A failed directory fsync comes after the rename: the new file is in place, and the error
// says so.
TEST_F(AtomicFileTest, DirectoryFsyncFailureReportsTheNewFileIsInPlace) {
  const std::string file = path("a.bin");
  ASSERT_TRUE(write_file_atomic(file, std::string_view("old")).ok());
  const std::vector<uint8_t> fresh = bytes_of("new");
  const Status s =
      write_file_atomic(file, fresh, {.step = AtomicWriteStep::kDirectoryFsync});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_NE(s.message().find("fsync(\"" + dir_.string() + "\")"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("renamed into place"), std::string::npos) << s.message();
  EXPECT_EQ(read_all(file), fresh);
  EXPECT_EQ(entries(), std::vector<std::string>{"a.bin"});
}

// Real failures, no injection: a real write that runs into the file-size limit (EFBIG, works
// as root), a rename onto a directory, a missing directory.
TEST_F(AtomicFileTest, RealWriteFailureKeepsOldFile) {
  const std::string file = path("big.bin");
  ASSERT_TRUE(write_file_atomic(file, std::string_view("old contents")).ok());

  rlimit old_limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  if (old_limit.rlim_max != RLIM_INFINITY && old_limit.rlim_max < 4096) GTEST_SKIP();
  // Exceeding RLIMIT_FSIZE raises SIGXFSZ, which would kill the test; ignored, write(2)
  // returns EFBIG instead.
  struct sigaction ignore {}, old_action {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old_action), 0);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::vector<uint8_t> big(1 << 16, 0xAB);
  const Status s = write_file_atomic(file, big);
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::sigaction(SIGXFSZ, &old_action, nullptr);

  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_NE(s.message().find("write(\"" + file + ".tmp."), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("File too large"), std::string::npos) << s.message();
  EXPECT_EQ(read_all(file), bytes_of("old contents"));
  EXPECT_EQ(entries(), std::vector<std::string>{"big.bin"});
}

TEST_F(AtomicFileTest, RenameOntoDirectoryFailsCleanly) {
  const std::string target = path("occupied");
  fs::create_directories(fs::path(target) / "inside");
  const Status s = write_file_atomic(target, std::string_view("data"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_NE(s.message().find("rename("), std::string::npos) << s.message();
  EXPECT_TRUE(fs::is_directory(fs::path(target) / "inside"));
  EXPECT_EQ(entries(), std::vector<std::string>{"occupied"});
}

TEST_F(AtomicFileTest, MissingDirectoryNamesOpen) {
  const std::string file = path("no/such/dir/x.bin");
  const Status s = write_file_atomic(file, std::string_view("data"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_EQ(s.message().rfind(file + ": ", 0), 0u) << s.message();
  EXPECT_NE(s.message().find("open(\""), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("No such file or directory"), std::string::npos) << s.message();
}

// Permissions: root ignores them, so this only runs as an ordinary user.
TEST_F(AtomicFileTest, ReadOnlyDirectoryKeepsOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string file = path("ro.bin");
  ASSERT_TRUE(write_file_atomic(file, std::string_view("old")).ok());
  fs::permissions(dir_, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  const Status s = write_file_atomic(file, std::string_view("new"));
  fs::permissions(dir_, fs::perms::owner_write, fs::perm_options::add);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_NE(s.message().find("Permission denied"), std::string::npos) << s.message();
  EXPECT_EQ(read_all(file), bytes_of("old"));
  EXPECT_EQ(entries(), std::vector<std::string>{"ro.bin"});
}

// Writers on several threads of one process use distinct temporary names; the file ends up
// as one complete version.
TEST_F(AtomicFileTest, ConcurrentWritersLeaveOneCompleteVersion) {
  const std::string file = path("shared.bin");
  std::vector<std::vector<uint8_t>> versions;
  for (int i = 0; i < 4; ++i) versions.emplace_back(100000, static_cast<uint8_t>('a' + i));
  std::vector<std::thread> threads;
  std::vector<int> ok(versions.size(), 0);
  for (size_t i = 0; i < versions.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 5; ++k) ok[i] += write_file_atomic(file, versions[i]).ok() ? 1 : 0;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const int n : ok) EXPECT_EQ(n, 5);
  const std::vector<uint8_t> final_bytes = read_all(file);
  EXPECT_NE(std::find(versions.begin(), versions.end(), final_bytes), versions.end());
  EXPECT_EQ(entries(), std::vector<std::string>{"shared.bin"});
}

}  // namespace
}  // namespace wren
