// safetensors files (include/wren/safetensors.h): the reader, the validator and the writer of
// one format. Over 700 lines on purpose: the header's JSON, its offsets and its dtypes are
// validated in one place against one set of rules (the fuzz target
// tests/fuzz/fuzz_safetensors.cpp drives this file), and splitting the reader from the
// validator would put those rules in two places.
#include "wren/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <utility>

#include "wren/atomic_file.h"

namespace wren {
namespace {

using Json = nlohmann::json;

constexpr size_t kHeaderSizeBytes = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

struct DtypeInfo {
  SafeDtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafeDtype::kBool, "BOOL", 1},       {SafeDtype::kU8, "U8", 1},
    {SafeDtype::kI8, "I8", 1},           {SafeDtype::kF8E5M2, "F8_E5M2", 1},
    {SafeDtype::kF8E4M3, "F8_E4M3", 1},  {SafeDtype::kF8E8M0, "F8_E8M0", 1},
    {SafeDtype::kI16, "I16", 2},         {SafeDtype::kU16, "U16", 2},
    {SafeDtype::kF16, "F16", 2},         {SafeDtype::kBF16, "BF16", 2},
    {SafeDtype::kI32, "I32", 4},         {SafeDtype::kU32, "U32", 4},
    {SafeDtype::kF32, "F32", 4},         {SafeDtype::kC64, "C64", 8},
    {SafeDtype::kF64, "F64", 8},         {SafeDtype::kI64, "I64", 8},
    {SafeDtype::kU64, "U64", 8},
};

// info_of indexes the table by enum value.
constexpr bool table_follows_enum() {
  for (size_t i = 0; i < std::size(kDtypes); ++i) {
    if (static_cast<size_t>(kDtypes[i].dtype) != i) return false;
  }
  return std::size(kDtypes) == static_cast<size_t>(SafeDtype::kU64) + 1;
}
static_assert(table_follows_enum());

// Dtypes the reference knows that pack several elements per byte; named in the error so that
// "unknown dtype" is kept for typos and foreign files.
constexpr std::string_view kSubByteDtypes[] = {"F4", "F6_E2M3", "F6_E3M2"};

const DtypeInfo& info_of(SafeDtype dtype) { return kDtypes[static_cast<size_t>(dtype)]; }

// Strict UTF-8 as Rust's str::from_utf8 checks it (no overlong forms, no surrogates, nothing
// above U+10FFFF). Returns the offset of the first bad byte, or nullopt.
std::optional<size_t> invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::nullopt;
}

// A JSON string literal as serde_json writes one: '"', '\\' and the control characters
// escaped (short forms where JSON has them, else \u00xx in lower-case hex), everything else,
// non-ASCII included, verbatim.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string dims_str(std::span<const int64_t> dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(dims[i]);
  }
  return out + "]";
}

// numel · element size, or nullopt on a negative dimension or on overflow past int64.
std::optional<uint64_t> byte_length(std::span<const int64_t> shape, size_t element_size) {
  uint64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(element_size), &n)) return std::nullopt;
  if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return n;
}

Error data_error(const std::string& path, const std::string& what) {
  return Error(ErrorCode::kDataError, path + ": " + what);
}

// --- reading the header -----------------------------------------------------------------------

// Records the first key that repeats within one object, at any depth. nlohmann keeps the last
// of duplicate keys silently; a checkpoint with two values for one tensor is corrupt.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: frames_.emplace_back(); break;
      case Json::parse_event_t::object_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case Json::parse_event_t::key: {
        if (frames_.empty() || !parsed.is_string()) break;
        Frame& frame = frames_.back();
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!frame.keys.insert(key).second && duplicate_.empty()) {
          duplicate_ = "key " + in_quotes(key);
          if (frames_.size() > 1) {
            duplicate_ += " inside " + in_quotes(frames_[frames_.size() - 2].last_key);
          }
        }
        frame.last_key = key;
        break;
      }
      default: break;
    }
    return true;
  }
  const std::string& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> frames_;
  std::string duplicate_;
};

// A JSON value for an error message, cut short: a corrupt header can hold anything.
std::string short_dump(const Json& value) {
  std::string text = value.dump();
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// A non-negative integer that fits int64, from a JSON number.
std::optional<uint64_t> json_count(const Json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return v;
    return std::nullopt;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

struct TensorEntry {
  std::string name;
  SafeDtype dtype = SafeDtype::kF32;
  std::vector<int64_t> shape{};
  uint64_t begin = 0;
  uint64_t end = 0;
};

Expected<TensorEntry> parse_entry(const std::string& path, const std::string& name,
                                  const Json& value) {
  const std::string where = "tensor " + in_quotes(name) + ": ";
  if (!value.is_object()) {
    return data_error(path, where + "header entry is " + value.type_name() + ", not an object");
  }
  TensorEntry entry{.name = name};

  const auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) return data_error(path, where + "missing \"dtype\"");
  if (!dtype_it->is_string()) return data_error(path, where + "\"dtype\" is not a string");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const std::optional<SafeDtype> dtype = safe_dtype_from_string(dtype_name);
  if (!dtype) {
    const bool sub_byte = std::find(std::begin(kSubByteDtypes), std::end(kSubByteDtypes),
                                    dtype_name) != std::end(kSubByteDtypes);
    return data_error(path, where + (sub_byte ? "unsupported sub-byte dtype " : "unknown dtype ") +
                                in_quotes(dtype_name));
  }
  entry.dtype = *dtype;

  const auto shape_it = value.find("shape");
  if (shape_it == value.end()) return data_error(path, where + "missing \"shape\"");
  if (!shape_it->is_array()) return data_error(path, where + "\"shape\" is not an array");
  for (const Json& dim : *shape_it) {
    const std::optional<uint64_t> d = json_count(dim);
    if (!d) {
      return data_error(path, where + "\"shape\" " + short_dump(*shape_it) +
                                  " holds something other than a non-negative integer");
    }
    entry.shape.push_back(static_cast<int64_t>(*d));
  }

  const auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) return data_error(path, where + "missing \"data_offsets\"");
  const std::optional<uint64_t> begin =
      offsets_it->is_array() && offsets_it->size() == 2 ? json_count((*offsets_it)[0])
                                                        : std::nullopt;
  const std::optional<uint64_t> end =
      offsets_it->is_array() && offsets_it->size() == 2 ? json_count((*offsets_it)[1])
                                                        : std::nullopt;
  if (!begin || !end) {
    return data_error(path, where + "\"data_offsets\" " + short_dump(*offsets_it) +
                                " is not [begin, end] with non-negative integers");
  }
  entry.begin = *begin;
  entry.end = *end;
  // Other fields are ignored, as the reference loader ignores them.
  return entry;
}

template <class To, class From>
std::vector<To> convert_all(std::span<const uint8_t> bytes) {
  std::vector<To> out(bytes.size() / sizeof(From));
  for (size_t i = 0; i < out.size(); ++i) {
    From v;
    std::memcpy(&v, bytes.data() + i * sizeof(From), sizeof(From));
    out[i] = static_cast<To>(v);
  }
  return out;
}

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(uint32_t{bits} << 16); }

float f16_to_float(uint16_t bits) {
  const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa · 2⁻²⁴, exact in float
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

template <class To>
std::vector<To> convert_half(std::span<const uint8_t> bytes, bool brain) {
  std::vector<To> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t bits;
    std::memcpy(&bits, bytes.data() + 2 * i, 2);
    out[i] = static_cast<To>(brain ? bf16_to_float(bits) : f16_to_float(bits));
  }
  return out;
}

// Integers of type From into To, failing at the first value out of To's range.
template <class To, class From>
Expected<std::vector<To>> narrow_all(const std::string& path, const SafeTensor& t) {
  std::vector<To> out(t.bytes.size() / sizeof(From));
  for (size_t i = 0; i < out.size(); ++i) {
    From v;
    std::memcpy(&v, t.bytes.data() + i * sizeof(From), sizeof(From));
    if (!std::in_range<To>(v)) {
      return data_error(path, "tensor " + in_quotes(t.name) + " (" + to_string(t.dtype) +
                                  "): element " + std::to_string(i) + " = " + std::to_string(v) +
                                  " does not fit the requested integer type");
    }
    out[i] = static_cast<To>(v);
  }
  return out;
}

}  // namespace

// --- dtypes -----------------------------------------------------------------------------------

const char* to_string(SafeDtype dtype) { return info_of(dtype).name; }

std::optional<SafeDtype> safe_dtype_from_string(std::string_view name) {
  for (const DtypeInfo& info : kDtypes) {
    if (name == info.name) return info.dtype;
  }
  return std::nullopt;
}

size_t dtype_size(SafeDtype dtype) { return info_of(dtype).size; }

int64_t SafeTensor::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

std::vector<int64_t> shape_dims(const Shape& shape) {
  std::vector<int64_t> dims(static_cast<size_t>(shape.rank()));
  for (int i = 0; i < shape.rank(); ++i) dims[static_cast<size_t>(i)] = shape[i];
  return dims;
}

// --- writing ----------------------------------------------------------------------------------

Expected<std::vector<uint8_t>> serialize_safetensors(std::span<const SafeTensor> tensors,
                                                     const SafeMetadata& metadata) {
  std::set<std::string_view> names;
  for (const SafeTensor& t : tensors) {
    const std::string what = "safetensors: tensor " + in_quotes(t.name) + ": ";
    if (t.name == kMetadataKey) {
      return invalid_argument(what + "the name is reserved for the metadata");
    }
    if (invalid_utf8_at(t.name)) return invalid_argument(what + "the name is not valid UTF-8");
    if (!names.insert(t.name).second) return invalid_argument(what + "duplicate name");
    const std::optional<uint64_t> expected = byte_length(t.shape, dtype_size(t.dtype));
    if (!expected) {
      return invalid_argument(what + "shape " + dims_str(t.shape) +
                              " has a negative dimension or too many elements");
    }
    if (*expected != t.bytes.size()) {
      return invalid_argument(what + to_string(t.dtype) + " " + dims_str(t.shape) + " needs " +
                              std::to_string(*expected) + " bytes, got " +
                              std::to_string(t.bytes.size()));
    }
  }
  for (const auto& [key, value] : metadata) {
    if (invalid_utf8_at(key) || invalid_utf8_at(value)) {
      return invalid_argument("safetensors: metadata " + in_quotes(key) + " is not valid UTF-8");
    }
  }

  // The reference order: alignment descending, then name. With the data section 8-aligned,
  // every tensor then starts at a multiple of its element size.
  std::vector<const SafeTensor*> order;
  order.reserve(tensors.size());
  for (const SafeTensor& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafeTensor* a, const SafeTensor* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;
    return a->name < b->name;
  });

  std::string header = "{";
  if (!metadata.empty()) {
    append_json_string(header, kMetadataKey);
    header += ":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ',';
      first = false;
      append_json_string(header, key);
      header += ':';
      append_json_string(header, value);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (const SafeTensor* t : order) {
    if (header.size() > 1) header += ',';
    append_json_string(header, t->name);
    header += ":{\"dtype\":";
    append_json_string(header, to_string(t->dtype));
    header += ",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t->shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += t->bytes.size();
    header += std::to_string(offset) + "]}";
  }
  header += '}';
  header.resize((header.size() + 7) / 8 * 8, ' ');
  if (header.size() > kSafetensorsMaxHeaderBytes) {
    return invalid_argument("safetensors: the header would be " + std::to_string(header.size()) +
                            " bytes, over the " + std::to_string(kSafetensorsMaxHeaderBytes) +
                            "-byte limit readers enforce");
  }

  std::vector<uint8_t> file;
  file.reserve(kHeaderSizeBytes + header.size() + offset);
  for (size_t i = 0; i < kHeaderSizeBytes; ++i) {
    file.push_back(static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i)));  // little-endian
  }
  file.insert(file.end(), header.begin(), header.end());
  for (const SafeTensor* t : order) file.insert(file.end(), t->bytes.begin(), t->bytes.end());
  return file;
}

Status write_safetensors(const std::string& path, std::span<const SafeTensor> tensors,
                         const SafeMetadata& metadata) {
  Expected<std::vector<uint8_t>> file = serialize_safetensors(tensors, metadata);
  if (!file) return file.error().with_context(path);
  return write_file_atomic(path, std::span<const uint8_t>(*file));
}

// --- reading ----------------------------------------------------------------------------------

Expected<SafeTensorsFile> parse_safetensors(std::span<const uint8_t> file_bytes,
                                            const std::string& path) {
  const uint64_t file_size = file_bytes.size();
  if (file_size < kHeaderSizeBytes) {
    return data_error(path, "file is " + std::to_string(file_size) +
                                " bytes, too short for the 8-byte header size");
  }
  uint64_t header_size = 0;
  std::memcpy(&header_size, file_bytes.data(), kHeaderSizeBytes);
  if (header_size > kSafetensorsMaxHeaderBytes) {
    return data_error(path, "header size " + std::to_string(header_size) +
                                " (bytes 0-7) exceeds the " +
                                std::to_string(kSafetensorsMaxHeaderBytes) + "-byte limit");
  }
  if (kHeaderSizeBytes + header_size > file_size) {
    return data_error(path, "header size " + std::to_string(header_size) +
                                " (bytes 0-7) runs past the end of the " +
                                std::to_string(file_size) + "-byte file");
  }
  const std::string_view header(reinterpret_cast<const char*>(file_bytes.data()) +
                                    kHeaderSizeBytes,
                                header_size);
  if (const std::optional<size_t> bad = invalid_utf8_at(header)) {
    return data_error(path, "header is not valid UTF-8 at byte offset " +
                                std::to_string(kHeaderSizeBytes + *bad));
  }
  // JSON ends at the object; only the padding spaces may follow. A NUL would end the parse
  // early for some JSON readers (and the reference loader refuses it as trailing characters).
  if (const size_t nul = header.find('\0'); nul != std::string_view::npos) {
    return data_error(path, "header holds a NUL byte at byte offset " +
                                std::to_string(kHeaderSizeBytes + nul));
  }
  // The reference loader reserves this check (InvalidHeaderStart); no writer emits anything
  // else, and it rules out a JSON value that is not an object early.
  if (header.empty() || header.front() != '{') {
    return data_error(path, "header does not start with '{' at byte offset 8");
  }

  DuplicateKeyFinder duplicates;
  Json root;
  try {
    root = Json::parse(header.begin(), header.end(), std::ref(duplicates));
  } catch (const Json::parse_error& e) {
    // e.byte counts the bytes read, the offending one included.
    const uint64_t offset = kHeaderSizeBytes + (e.byte > 0 ? e.byte - 1 : 0);
    return data_error(path, "header is not valid JSON at byte offset " + std::to_string(offset) +
                                ": " + e.what());
  } catch (const Json::exception& e) {
    return data_error(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicates.duplicate().empty()) {
    return data_error(path, "header repeats " + duplicates.duplicate());
  }
  if (!root.is_object()) return data_error(path, "header is not a JSON object");

  SafeTensorsFile file;
  file.path_ = path;
  std::vector<TensorEntry> entries;
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) return data_error(path, "\"__metadata__\" is not an object");
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          return data_error(path, "\"__metadata__\" value of " + in_quotes(meta_key) + " is " +
                                      meta_value.type_name() + ", not a string");
        }
        file.metadata_[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    Expected<TensorEntry> entry = parse_entry(path, key, value);
    if (!entry) return entry.error();
    entries.push_back(std::move(*entry));
  }

  // The reference orders by offsets, whatever the header's key order, and then requires the
  // ranges to tile the data section from 0 to its end.
  std::stable_sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_start = kHeaderSizeBytes + header_size;
  const uint64_t data_size = file_size - data_start;
  uint64_t covered = 0;
  for (const TensorEntry& e : entries) {
    const std::string where = "tensor " + in_quotes(e.name) + " data_offsets [" +
                              std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.end < e.begin) return data_error(path, where + ": end before begin");
    if (e.begin < covered) {
      return data_error(path, where + " overlap the data before them, which ends at " +
                                  std::to_string(covered));
    }
    if (e.begin > covered) {
      return data_error(path, where + " leave a gap: the data before them ends at " +
                                  std::to_string(covered));
    }
    const std::optional<uint64_t> expected = byte_length(e.shape, dtype_size(e.dtype));
    if (!expected) {
      return data_error(path, where + ": shape " + dims_str(e.shape) + " overflows");
    }
    if (*expected != e.end - e.begin) {
      return data_error(path, where + ": " + std::to_string(e.end - e.begin) + " bytes, but " +
                                  to_string(e.dtype) + " " + dims_str(e.shape) + " needs " +
                                  std::to_string(*expected));
    }
    if (e.end > data_size) {
      return data_error(path, where + " (file bytes " + std::to_string(data_start + e.begin) +
                                  "-" + std::to_string(data_start + e.end) +
                                  ") run past the end of the " + std::to_string(file_size) +
                                  "-byte file");
    }
    covered = e.end;
  }
  if (covered != data_size) {
    return data_error(path, "file bytes " + std::to_string(data_start + covered) + "-" +
                                std::to_string(file_size) +
                                " follow the last tensor; the data section must end with it");
  }

  file.tensors_.reserve(entries.size());
  for (TensorEntry& e : entries) {
    const auto* first = file_bytes.data() + data_start + e.begin;
    const auto* last = file_bytes.data() + data_start + e.end;
    file.index_.emplace(e.name, file.tensors_.size());
    file.tensors_.push_back(SafeTensor{.name = std::move(e.name),
                                       .dtype = e.dtype,
                                       .shape = std::move(e.shape),
                                       .bytes = std::vector<uint8_t>(first, last)});
  }
  return file;
}

Expected<SafeTensorsFile> read_safetensors(const std::string& path) {
  const auto os_error = [&](const std::string& call, int err) {
    const ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError;
    return Error(code, path + ": " + call + ": " + std::system_category().message(err));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return os_error("open", err);
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    return os_error("fstat", err);
  }
  if (!S_ISREG(st.st_mode)) return Error(ErrorCode::kIoError, path + ": not a regular file");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return os_error("read", err);
    }
    if (n == 0) {
      return Error(ErrorCode::kIoError, path + ": read: the file shrank to " +
                                            std::to_string(done) + " bytes while being read");
    }
    done += static_cast<size_t>(n);
  }
  return parse_safetensors(bytes, path);
}

// --- typed access -----------------------------------------------------------------------------

const SafeTensor* SafeTensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Expected<const SafeTensor*> SafeTensorsFile::tensor(std::string_view name) const {
  const SafeTensor* t = find(name);
  if (!t) return not_found(path_ + ": no tensor " + in_quotes(name));
  return t;
}

Expected<std::string> SafeTensorsFile::metadata_value(std::string_view key) const {
  const auto it = metadata_.find(std::string(key));
  if (it == metadata_.end()) return not_found(path_ + ": no metadata key " + in_quotes(key));
  return it->second;
}

namespace {

Error wrong_dtype(const std::string& path, const SafeTensor& t, const char* requested,
                  const char* accepted) {
  return data_error(path, "tensor " + in_quotes(t.name) + " is " + to_string(t.dtype) +
                              ", which cannot be read as " + requested + " (accepted: " +
                              accepted + ")");
}

}  // namespace

Expected<std::vector<float>> SafeTensorsFile::as_f32(std::string_view name) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const SafeTensor& t = **found;
  switch (t.dtype) {
    case SafeDtype::kF32: return convert_all<float, float>(t.bytes);
    case SafeDtype::kF16: return convert_half<float>(t.bytes, /*brain=*/false);
    case SafeDtype::kBF16: return convert_half<float>(t.bytes, /*brain=*/true);
    case SafeDtype::kF64: {
      std::vector<double> wide = convert_all<double, double>(t.bytes);
      std::vector<float> out(wide.size());
      for (size_t i = 0; i < wide.size(); ++i) {
        out[i] = static_cast<float>(wide[i]);
        if (std::isfinite(wide[i]) && !std::isfinite(out[i])) {
          return data_error(path_, "tensor " + in_quotes(t.name) + " (F64): element " +
                                       std::to_string(i) + " = " + std::to_string(wide[i]) +
                                       " is beyond float's range");
        }
      }
      return out;
    }
    default: return wrong_dtype(path_, t, "F32", "F32, F16, BF16, F64");
  }
}

Expected<std::vector<float>> SafeTensorsFile::as_f32(std::string_view name,
                                                     const Shape& expected) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const std::vector<int64_t> want = shape_dims(expected);
  if ((*found)->shape != want) {
    return data_error(path_, "tensor " + in_quotes(name) + " has shape " +
                                 dims_str((*found)->shape) + ", expected " + dims_str(want));
  }
  return as_f32(name);
}

Expected<std::vector<double>> SafeTensorsFile::as_f64(std::string_view name) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const SafeTensor& t = **found;
  switch (t.dtype) {
    case SafeDtype::kF64: return convert_all<double, double>(t.bytes);
    case SafeDtype::kF32: return convert_all<double, float>(t.bytes);
    case SafeDtype::kF16: return convert_half<double>(t.bytes, /*brain=*/false);
    case SafeDtype::kBF16: return convert_half<double>(t.bytes, /*brain=*/true);
    default: return wrong_dtype(path_, t, "F64", "F64, F32, F16, BF16");
  }
}

Expected<std::vector<int64_t>> SafeTensorsFile::as_i64(std::string_view name) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const SafeTensor& t = **found;
  switch (t.dtype) {
    case SafeDtype::kI64: return convert_all<int64_t, int64_t>(t.bytes);
    case SafeDtype::kI32: return convert_all<int64_t, int32_t>(t.bytes);
    case SafeDtype::kI16: return convert_all<int64_t, int16_t>(t.bytes);
    case SafeDtype::kI8: return convert_all<int64_t, int8_t>(t.bytes);
    case SafeDtype::kU32: return convert_all<int64_t, uint32_t>(t.bytes);
    case SafeDtype::kU16: return convert_all<int64_t, uint16_t>(t.bytes);
    case SafeDtype::kU8:
    case SafeDtype::kBool: return convert_all<int64_t, uint8_t>(t.bytes);
    case SafeDtype::kU64: return narrow_all<int64_t, uint64_t>(path_, t);
    default: return wrong_dtype(path_, t, "I64", "I64, I32, I16, I8, U64, U32, U16, U8, BOOL");
  }
}

Expected<std::vector<int32_t>> SafeTensorsFile::as_i32(std::string_view name) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const SafeTensor& t = **found;
  switch (t.dtype) {
    case SafeDtype::kI32: return convert_all<int32_t, int32_t>(t.bytes);
    case SafeDtype::kI16: return convert_all<int32_t, int16_t>(t.bytes);
    case SafeDtype::kI8: return convert_all<int32_t, int8_t>(t.bytes);
    case SafeDtype::kU16: return convert_all<int32_t, uint16_t>(t.bytes);
    case SafeDtype::kU8:
    case SafeDtype::kBool: return convert_all<int32_t, uint8_t>(t.bytes);
    case SafeDtype::kI64: return narrow_all<int32_t, int64_t>(path_, t);
    case SafeDtype::kU32: return narrow_all<int32_t, uint32_t>(path_, t);
    case SafeDtype::kU64: return narrow_all<int32_t, uint64_t>(path_, t);
    default: return wrong_dtype(path_, t, "I32", "I32, I16, I8, I64, U64, U32, U16, U8, BOOL");
  }
}

Expected<std::vector<uint8_t>> SafeTensorsFile::as_u8(std::string_view name) const {
  Expected<const SafeTensor*> found = tensor(name);
  if (!found) return found.error();
  const SafeTensor& t = **found;
  if (t.dtype == SafeDtype::kU8 || t.dtype == SafeDtype::kBool) return t.bytes;
  return wrong_dtype(path_, t, "U8", "U8, BOOL");
}

}  // namespace wren
