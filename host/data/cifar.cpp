// CIFAR-10 and CIFAR-100 binary versions (https://www.cs.toronto.edu/~kriz/cifar.html): a file
// is a sequence of fixed-size records with no header,
//   CIFAR-10:  <label: 1 byte, 0..9> <pixels: 3072 bytes>
//   CIFAR-100: <coarse label: 1 byte, 0..19> <fine label: 1 byte, 0..99> <pixels: 3072 bytes>
// the pixels being the 1024 red, then green, then blue values of a 32×32 image, row-major:
// already [C, H, W]. Also: the dataset-format detection and load_dataset.
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "wren/data.h"
#include "wren/error.h"

namespace wren {
namespace {

constexpr int kCifarChannels = 3, kCifarSide = 32;
constexpr size_t kCifarPixels = size_t{kCifarChannels} * kCifarSide * kCifarSide;  // 3072

struct CifarLayout {
  const char* name = "";
  size_t label_bytes = 1;   // label bytes before the pixels of each record
  int classes = 0;          // of the label used (the last label byte)
  int coarse_classes = 0;   // of the first label byte of CIFAR-100; 0 for CIFAR-10
  const char* subdir = "";  // of the official archive
  std::vector<std::string> train_files, test_files;
};

const CifarLayout& layout(CifarKind kind) {
  static const CifarLayout cifar10{
      .name = "CIFAR-10",
      .label_bytes = 1,
      .classes = 10,
      .subdir = "cifar-10-batches-bin",
      .train_files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                      "data_batch_4.bin", "data_batch_5.bin"},
      .test_files = {"test_batch.bin"},
  };
  static const CifarLayout cifar100{
      .name = "CIFAR-100",
      .label_bytes = 2,
      .classes = 100,
      .coarse_classes = 20,
      .subdir = "cifar-100-binary",
      .train_files = {"train.bin"},
      .test_files = {"test.bin"},
  };
  return kind == CifarKind::kCifar10 ? cifar10 : cifar100;
}

bool is_file(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

bool is_dir(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}

std::string offset_clause(const FileBytes& file, uint64_t offset) {
  return "at offset " + std::to_string(offset) + (file.gzip ? " of the decompressed data" : "");
}

// The directory holding `kind`'s files: `dir` itself or its archive subdirectory, whichever
// has any of the files of either split; empty when neither has.
std::string cifar_base(const std::string& dir, CifarKind kind) {
  const CifarLayout& l = layout(kind);
  for (const std::filesystem::path& base :
       {std::filesystem::path(dir), std::filesystem::path(dir) / l.subdir}) {
    for (const auto* files : {&l.train_files, &l.test_files}) {
      for (const std::string& name : *files) {
        if (is_file(base / name)) return base.string();
      }
    }
  }
  return "";
}

// The IDX file names load_mnist_dir accepts, for detection.
std::vector<std::string> idx_names() {
  std::vector<std::string> out;
  for (const char* prefix : {"train", "t10k"}) {
    for (const char* sep : {"-images-", "-images."}) {
      out.push_back(std::string(prefix) + sep + "idx3-ubyte");
      out.push_back(std::string(prefix) + sep + "idx3-ubyte.gz");
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

const char* to_string(DatasetFormat format) {
  switch (format) {
    case DatasetFormat::kIdx:
      return "IDX (MNIST family)";
    case DatasetFormat::kCifar10:
      return "CIFAR-10";
    case DatasetFormat::kCifar100:
      return "CIFAR-100";
  }
  return "?";
}

Expected<Dataset> read_cifar(std::span<const std::string> files, CifarKind kind) {
  const CifarLayout& l = layout(kind);
  if (files.empty()) return invalid_argument(std::string("read_cifar: no ") + l.name + " files");
  const size_t record = l.label_bytes + kCifarPixels;

  // Reserve the pixels of every file up front (sizes of raw files; a hint only), so the
  // dataset is not reallocated, briefly doubling its footprint, while it is appended to.
  uint64_t expected_records = 0;
  for (const std::string& path : files) {
    std::error_code ec;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec) expected_records += size / record;
  }
  Dataset ds;
  ds.pixels.reserve(static_cast<size_t>(expected_records) * kCifarPixels);
  ds.labels.reserve(static_cast<size_t>(expected_records));

  for (const std::string& path : files) {
    Expected<FileBytes> file = read_file_bytes(path);
    if (!file) return file.error();
    const std::vector<uint8_t>& b = file->bytes;
    if (b.empty()) {
      return Error(ErrorCode::kDataError, path + ": contains zero images (the file is empty)");
    }
    if (b.size() % record != 0) {
      const size_t last = b.size() / record * record;
      return Error(ErrorCode::kDataError,
                   path + ": size " + std::to_string(b.size()) + " bytes" +
                       (file->gzip ? " (decompressed)" : "") + " is not a multiple of the " +
                       std::to_string(record) + "-byte " + l.name + " record (" +
                       std::to_string(l.label_bytes) + " label byte" +
                       (l.label_bytes > 1 ? "s" : "") + " + 3072 pixel bytes): the record " +
                       offset_clause(*file, last) + " has only " + std::to_string(b.size() - last) +
                       " bytes");
    }
    const size_t records = b.size() / record;
    for (size_t r = 0; r < records; ++r) {
      const size_t at = r * record;
      if (l.coarse_classes > 0 && b[at] >= l.coarse_classes) {
        return Error(ErrorCode::kDataError,
                     path + ": coarse label " + std::to_string(b[at]) + " of record " +
                         std::to_string(r) + " (" + offset_clause(*file, at) +
                         ") is out of range [0, " + std::to_string(l.coarse_classes) + ")");
      }
      const size_t label_at = at + l.label_bytes - 1;
      const uint8_t label = b[label_at];
      if (label >= l.classes) {
        return Error(ErrorCode::kDataError,
                     path + ": label " + std::to_string(label) + " of record " + std::to_string(r) +
                         " (index " + std::to_string(ds.labels.size()) + " in the dataset, " +
                         offset_clause(*file, label_at) + ") is out of range [0, " +
                         std::to_string(l.classes) + ")");
      }
      ds.labels.push_back(label);
      ds.pixels.insert(ds.pixels.end(), b.begin() + static_cast<ptrdiff_t>(at + l.label_bytes),
                       b.begin() + static_cast<ptrdiff_t>(at + record));
    }
    ds.source += (ds.source.empty() ? "" : ", ") + path;
  }
  ds.count = static_cast<int64_t>(ds.labels.size());
  ds.channels = kCifarChannels;
  ds.height = ds.width = kCifarSide;
  ds.num_classes = l.classes;
  return ds;
}

Expected<Dataset> load_cifar_dir(const std::string& dir, CifarKind kind, Split split) {
  const CifarLayout& l = layout(kind);
  const std::vector<std::string>& names = split == Split::kTrain ? l.train_files : l.test_files;
  std::string base = cifar_base(dir, kind);
  if (base.empty()) {
    return not_found(std::string("no ") + l.name + " files in " + dir + " or " + dir + "/" +
                     l.subdir + ": looked for " + join(l.train_files) + ", " + join(l.test_files));
  }
  std::vector<std::string> paths, missing;
  for (const std::string& name : names) {
    const std::filesystem::path p = std::filesystem::path(base) / name;
    (is_file(p) ? paths : missing).push_back(p.string());
  }
  if (!missing.empty()) {
    return not_found(std::string(l.name) + " " + to_string(split) + " split incomplete: missing " +
                     join(missing));
  }
  return read_cifar(paths, kind);
}

Expected<DatasetFormat> detect_dataset_format(const std::string& dir) {
  if (!is_dir(dir)) return not_found("data directory " + dir + " does not exist");
  const std::vector<std::string> idx = idx_names();
  for (const std::string& name : idx) {
    if (is_file(std::filesystem::path(dir) / name)) return DatasetFormat::kIdx;
  }
  if (!cifar_base(dir, CifarKind::kCifar10).empty()) return DatasetFormat::kCifar10;
  if (!cifar_base(dir, CifarKind::kCifar100).empty()) return DatasetFormat::kCifar100;
  const CifarLayout& c10 = layout(CifarKind::kCifar10);
  const CifarLayout& c100 = layout(CifarKind::kCifar100);
  return not_found("no dataset found in " + dir + ": looked for MNIST-family IDX files (" +
                   join(idx) + "), CIFAR-10 files (" + join(c10.train_files) + ", " +
                   join(c10.test_files) + ", here or in " + c10.subdir +
                   "/) and CIFAR-100 files (" + join(c100.train_files) + ", " +
                   join(c100.test_files) + ", here or in " + c100.subdir + "/)");
}

Expected<Dataset> load_dataset(const std::string& dir, Split split) {
  Expected<DatasetFormat> format = detect_dataset_format(dir);
  if (!format) return format.error();
  switch (*format) {
    case DatasetFormat::kIdx:
      return load_mnist_dir(dir, split);
    case DatasetFormat::kCifar10:
      return load_cifar_dir(dir, CifarKind::kCifar10, split);
    case DatasetFormat::kCifar100:
      return load_cifar_dir(dir, CifarKind::kCifar100, split);
  }
  return internal_error("load_dataset: unknown format");
}

}  // namespace wren
