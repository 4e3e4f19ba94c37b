// IDX files (Y. LeCun's MNIST format, also used by Fashion-MNIST, KMNIST and EMNIST):
//   offset 0: magic 00 00 08 <ndims> (08 = unsigned byte), big-endian
//   offset 4: ndims big-endian uint32 dimensions
//   then the data, row-major, 1 byte per value.
// Images are ndims = 3 (N, H, W), labels ndims = 1 (N).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "wren/data.h"
#include "wren/error.h"

namespace wren {
namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;
constexpr uint32_t kIdxLabelsMagic = 0x00000801;

uint32_t read_be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

Error data_error(const std::string& path, const std::string& what) {
  return Error(ErrorCode::kDataError, path + ": " + what);
}

// ", file has Y bytes" or ", decompressed data has Y bytes" for a gzip file, whose offsets
// are offsets into the decompressed data.
std::string size_clause(const FileBytes& file) {
  return std::string(file.gzip ? ", decompressed data has " : ", file has ") +
         std::to_string(file.bytes.size()) + " bytes";
}

std::string offset_clause(const FileBytes& file, uint64_t offset) {
  return "at offset " + std::to_string(offset) + (file.gzip ? " of the decompressed data" : "");
}

// Checks the magic and the header of an IDX file with `ndims` dimensions and that its data
// (the product of the dimensions, `what` each) is exactly the rest of the file. Returns the
// dimensions.
Expected<std::vector<uint32_t>> check_idx(const std::string& path, const FileBytes& file,
                                          uint32_t expected_magic, const char* what) {
  const std::vector<uint8_t>& b = file.bytes;
  const int ndims = static_cast<int>(expected_magic & 0xff);
  const uint64_t header = 4 + 4 * static_cast<uint64_t>(ndims);
  if (b.size() < 4) {
    return data_error(
        path, "truncated: expected a 4-byte magic " + offset_clause(file, 0) + size_clause(file));
  }
  const uint32_t magic = read_be32(b.data());
  if (magic != expected_magic) {
    std::string hint;
    if (magic == kIdxImagesMagic) hint = " (an IDX images file: are the two paths swapped?)";
    if (magic == kIdxLabelsMagic) hint = " (an IDX labels file: are the two paths swapped?)";
    return data_error(path, "wrong magic " + offset_clause(file, 0) + ": expected " +
                                hex32(expected_magic) + " (IDX " + what + "), found " +
                                hex32(magic) + hint);
  }
  if (b.size() < header) {
    return data_error(path, "truncated: expected a " + std::to_string(header) + "-byte header " +
                                offset_clause(file, 0) + size_clause(file));
  }
  std::vector<uint32_t> dims(static_cast<size_t>(ndims));
  uint64_t values = 1;
  bool overflow = false;
  for (int d = 0; d < ndims; ++d) {
    dims[static_cast<size_t>(d)] = read_be32(b.data() + 4 + 4 * d);
    overflow |= __builtin_mul_overflow(values, uint64_t{dims[static_cast<size_t>(d)]}, &values);
  }
  std::string shape;
  for (int d = 0; d < ndims; ++d) {
    shape += (d ? "×" : "") + std::to_string(dims[static_cast<size_t>(d)]);
  }
  if (overflow) {
    return data_error(
        path, "header dimensions " + shape + " " + offset_clause(file, 4) + " overflow 64 bits");
  }
  if (values > b.size() - header) {
    return data_error(path, "truncated: expected " + std::to_string(values) + " bytes of " + what +
                                " (" + shape + ") " + offset_clause(file, header) +
                                size_clause(file));
  }
  if (values < b.size() - header) {
    return data_error(path, std::to_string(b.size() - header - values) +
                                " unexpected bytes after the " + what + " " +
                                offset_clause(file, header + values) + " (header says " +
                                std::to_string(values) + " bytes" + size_clause(file) + ")");
  }
  return dims;
}

bool is_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// The first of `names` present in `dir`, or a kNotFound error listing them.
Expected<std::string> find_one(const std::string& dir, const std::vector<std::string>& names,
                               const std::string& what) {
  for (const std::string& name : names) {
    const std::filesystem::path p = std::filesystem::path(dir) / name;
    if (is_file(p)) return p.string();
  }
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
  return not_found("no " + what + " in " + dir + ": looked for " + list);
}

}  // namespace

const char* to_string(Split split) {
  return split == Split::kTrain ? "train" : "test";
}

Expected<Dataset> read_idx(const std::string& images_path, const std::string& labels_path,
                           int num_classes) {
  if (num_classes <= 0 || num_classes > 256) {
    return invalid_argument("read_idx: num_classes must be in [1, 256] (labels are bytes), got " +
                            std::to_string(num_classes));
  }
  Expected<FileBytes> images = read_file_bytes(images_path);
  if (!images) return images.error();
  Expected<std::vector<uint32_t>> image_dims =
      check_idx(images_path, *images, kIdxImagesMagic, "images");
  if (!image_dims) return image_dims.error();
  const uint32_t n = (*image_dims)[0], h = (*image_dims)[1], w = (*image_dims)[2];
  if (n == 0) return data_error(images_path, "contains zero images (header at offset 4)");
  if (h == 0 || w == 0 || h > 65535 || w > 65535) {
    return data_error(images_path, "unusable image size " + std::to_string(h) + "×" +
                                       std::to_string(w) + " (header at offset 8)");
  }

  Expected<FileBytes> labels = read_file_bytes(labels_path);
  if (!labels) return labels.error();
  Expected<std::vector<uint32_t>> label_dims =
      check_idx(labels_path, *labels, kIdxLabelsMagic, "labels");
  if (!label_dims) return label_dims.error();
  if ((*label_dims)[0] != n) {
    return Error(ErrorCode::kDataError, "label/image count mismatch: " + images_path + " has " +
                                            std::to_string(n) + " images but " + labels_path +
                                            " has " + std::to_string((*label_dims)[0]) + " labels");
  }

  Dataset ds;
  constexpr size_t kLabelsHeader = 8, kImagesHeader = 16;
  ds.labels.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint8_t label = labels->bytes[kLabelsHeader + i];
    if (label >= num_classes) {
      return data_error(labels_path,
                        "label " + std::to_string(label) + " at index " + std::to_string(i) + " (" +
                            offset_clause(*labels, kLabelsHeader + i) + ") is out of range [0, " +
                            std::to_string(num_classes) + ")");
    }
    ds.labels[i] = label;
  }
  // The pixels are the file minus its header: moved down in place, not copied, so the dataset
  // costs its own size once.
  std::vector<uint8_t>& bytes = images->bytes;
  bytes.erase(bytes.begin(), bytes.begin() + kImagesHeader);
  ds.pixels = std::move(bytes);
  ds.count = n;
  ds.channels = 1;
  ds.height = static_cast<int>(h);
  ds.width = static_cast<int>(w);
  ds.num_classes = num_classes;
  ds.source = images_path + ", " + labels_path;
  return ds;
}

Expected<Dataset> load_mnist_dir(const std::string& dir, Split split, int num_classes) {
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  auto names = [&](const char* kind, const char* idx) {
    // train-images-idx3-ubyte (the official names) and train-images.idx3-ubyte (a common
    // re-packaging), each raw or gzipped.
    std::vector<std::string> out;
    for (const std::string& base :
         {prefix + "-" + kind + "-" + idx + "-ubyte", prefix + "-" + kind + "." + idx + "-ubyte"}) {
      out.push_back(base);
      out.push_back(base + ".gz");
    }
    return out;
  };
  const std::string which = std::string(to_string(split)) + " split";
  Expected<std::string> images =
      find_one(dir, names("images", "idx3"), "IDX images for the " + which);
  if (!images) return images.error();
  Expected<std::string> labels =
      find_one(dir, names("labels", "idx1"), "IDX labels for the " + which);
  if (!labels) return labels.error();
  return read_idx(*images, *labels, num_classes);
}

}  // namespace wren
