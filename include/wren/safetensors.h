// The safetensors file format (https://github.com/huggingface/safetensors), Wren's checkpoint
// format (docs/CHECKPOINTS.md), readable by PyTorch's `safetensors.torch.load_file`.
//
//   bytes 0..7   N, the header size: unsigned 64-bit little-endian
//   bytes 8..    N bytes of UTF-8 JSON, padded with spaces so that the data starts 8-aligned:
//                {"__metadata__": {"key": "value", ...},          (optional, strings only)
//                 "conv1.weight": {"dtype": "F32", "shape": [6, 1, 5, 5],
//                                  "data_offsets": [begin, end]}, ...}
//   bytes 8+N..  the data section: each tensor's elements, little-endian, row-major; the
//                [begin, end) ranges (relative to the data section) tile it exactly.
//
// The writer produces what the reference implementation (the Rust crate behind the Python
// package) writes for the same tensors, byte for byte: tensors ordered by dtype alignment,
// largest first, then by name; compact JSON with "__metadata__" first and its keys sorted;
// spaces up to a multiple of 8. The reader applies the reference loader's checks and reports
// each failure as an Error naming the file and, where there is one, the byte offset and tensor.
//
//   std::vector<SafeTensor> tensors = {make_safetensor<float>("fc.weight", {10, 84}, w)};
//   Status s = write_safetensors("model.safetensors", tensors, {{"wren.step", "1200"}});
//   Expected<SafeTensorsFile> f = read_safetensors("model.safetensors");
//   Expected<std::vector<float>> w2 = f->as_f32("fc.weight", Shape{10, 84});
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "wren/error.h"
#include "wren/shape.h"

namespace wren {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

// Element types, in the reference implementation's order of increasing alignment (the writer
// sorts by it). The sub-byte types (F4, F6_E2M3, F6_E3M2) are not supported: reading a file
// that holds them is a kDataError.
enum class SafeDtype : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,  // complex: two F32
  kF64,
  kI64,
  kU64,
};

const char* to_string(SafeDtype dtype);  // the file's spelling: "F32", "BF16", "F8_E4M3"
std::optional<SafeDtype> safe_dtype_from_string(std::string_view name);
size_t dtype_size(SafeDtype dtype);  // bytes per element

// The C++ element type of a dtype, for make_safetensor.
template <class T>
constexpr SafeDtype safe_dtype_of() {
  if constexpr (std::is_same_v<T, float>) return SafeDtype::kF32;
  else if constexpr (std::is_same_v<T, double>) return SafeDtype::kF64;
  else if constexpr (std::is_same_v<T, int64_t>) return SafeDtype::kI64;
  else if constexpr (std::is_same_v<T, uint64_t>) return SafeDtype::kU64;
  else if constexpr (std::is_same_v<T, int32_t>) return SafeDtype::kI32;
  else if constexpr (std::is_same_v<T, uint32_t>) return SafeDtype::kU32;
  else if constexpr (std::is_same_v<T, int16_t>) return SafeDtype::kI16;
  else if constexpr (std::is_same_v<T, uint16_t>) return SafeDtype::kU16;
  else if constexpr (std::is_same_v<T, int8_t>) return SafeDtype::kI8;
  else if constexpr (std::is_same_v<T, uint8_t>) return SafeDtype::kU8;
  else static_assert(sizeof(T) == 0, "no safetensors dtype for this element type");
}

// One named tensor. `bytes` holds numel(shape) · dtype_size(dtype) bytes, little-endian,
// row-major; a shape of [] is a scalar (1 element), a shape with a 0 is empty (0 bytes).
struct SafeTensor {
  std::string name;
  SafeDtype dtype = SafeDtype::kF32;
  std::vector<int64_t> shape{};
  std::vector<uint8_t> bytes{};

  int64_t numel() const;  // product of shape (1 for a scalar); assumes no overflow
};

// The dims of a Wren Shape, as a SafeTensor stores them.
std::vector<int64_t> shape_dims(const Shape& shape);

// A tensor of `values` (copied). The writer checks that the count matches the shape. For a
// graph parameter: make_safetensor<float>(info.name, shape_dims(info.shape), values).
template <class T>
SafeTensor make_safetensor(std::string name, std::vector<int64_t> shape,
                           std::span<const T> values) {
  SafeTensor t{.name = std::move(name), .dtype = safe_dtype_of<T>(), .shape = std::move(shape)};
  t.bytes.resize(values.size_bytes());
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), values.size_bytes());
  return t;
}

using SafeMetadata = std::map<std::string, std::string>;

// The header's hard limit (the reference loader refuses larger headers).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// The complete file contents. Errors (kInvalidArgument, naming the tensor): a byte count that
// does not match dtype × shape, a negative dimension, a duplicate name, the name
// "__metadata__", a name, metadata key or value that is not valid UTF-8, a header over the
// limit. `tensors` may be in any order.
Expected<std::vector<uint8_t>> serialize_safetensors(std::span<const SafeTensor> tensors,
                                                     const SafeMetadata& metadata = {});

// serialize_safetensors, then write_file_atomic (include/wren/atomic_file.h): `path` holds
// either its old contents or the complete new file. Errors are prefixed with `path`.
Status write_safetensors(const std::string& path, std::span<const SafeTensor> tensors,
                         const SafeMetadata& metadata = {});

// A file read completely into memory (checkpoints are small; no mmap).
class SafeTensorsFile {
 public:
  const std::string& path() const { return path_; }
  // In file order (by data offset).
  const std::vector<SafeTensor>& tensors() const { return tensors_; }
  const SafeMetadata& metadata() const { return metadata_; }

  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const SafeTensor* find(std::string_view name) const;  // nullptr when absent
  // kNotFound naming the file and the tensor.
  Expected<const SafeTensor*> tensor(std::string_view name) const;
  // kNotFound naming the file and the key.
  Expected<std::string> metadata_value(std::string_view key) const;

  // The elements converted to the requested type, where that is exact or a plain widening;
  // any other dtype is a kDataError naming the file, the tensor and its dtype. Absent: kNotFound.
  //   as_f32: F32; F16, BF16 (exact); F64 (rounded; a finite value beyond float's range is
  //           a kDataError naming the element)
  //   as_f64: F64, F32, F16, BF16
  //   as_i64: I64, I32, I16, I8, U32, U16, U8, BOOL; U64 when every value fits
  //   as_i32: I32, I16, I8, U16, U8, BOOL; I64, U32, U64 when every value fits
  //   as_u8:  U8, BOOL
  Expected<std::vector<float>> as_f32(std::string_view name) const;
  // As above, and the tensor's shape must equal `expected` (kDataError showing both).
  Expected<std::vector<float>> as_f32(std::string_view name, const Shape& expected) const;
  Expected<std::vector<double>> as_f64(std::string_view name) const;
  Expected<std::vector<int64_t>> as_i64(std::string_view name) const;
  Expected<std::vector<int32_t>> as_i32(std::string_view name) const;
  Expected<std::vector<uint8_t>> as_u8(std::string_view name) const;

 private:
  friend Expected<SafeTensorsFile> parse_safetensors(std::span<const uint8_t> file_bytes,
                                                     const std::string& path);
  std::string path_;
  std::vector<SafeTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  SafeMetadata metadata_;
};

// Parses a whole file's bytes; `path` only names the file in errors. Every malformed input is
// a kDataError "<path>: ...": fewer than 8 bytes; a header size over the limit or past the end
// of the file; a header that is not UTF-8, does not start with '{' or is not valid JSON (with
// the parser's byte offset); a duplicate key at any level; "__metadata__" that is not an
// object of strings; a tensor entry that is not an object or lacks "dtype", "shape" or
// "data_offsets", or has them of the wrong type; an unknown or unsupported dtype; negative or
// non-integer numbers; data_offsets that overlap, leave a gap, run backwards or run past the
// end of the file; a byte length other than dtype size × shape product (or one that
// overflows); bytes after the last tensor.
Expected<SafeTensorsFile> parse_safetensors(std::span<const uint8_t> file_bytes,
                                            const std::string& path);

// Reads and parses `path`. A missing file is kNotFound, any other failure to read it kIoError
// (naming the system call and the reason); then as parse_safetensors.
Expected<SafeTensorsFile> read_safetensors(const std::string& path);

}  // namespace wren
