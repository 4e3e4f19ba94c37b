// The entry points of the fuzz targets (tests/fuzz/fuzz_<target>.cpp, docs/TESTING.md
// "Fuzzing"): each takes one fuzz input, feeds it to the reader it targets the way Wren's
// programs do, and returns the reader's Status. A malformed input must come back as an error;
// a crash, a sanitizer report or an uncaught exception is a bug. The same functions run the
// saved regression inputs in the normal test suite (tests/test_fuzz_regressions.cpp), so a
// crash the fuzzer found stays fixed in the gcc builds too.
//
// Input layouts (every byte after the framing is the file's own content):
//   idx          [flags][images size: uint32 LE][images file][labels file]
//                flags bit 0: gzip the images file, bit 1: gzip the labels file,
//                bits 2-3: num_classes 10, 1, 256 or 47. A file that already starts with the
//                gzip magic is inflated anyway (read_file_bytes detects it), so a seed can
//                also hold a gzip file as it is.
//   cifar        [flags][file]
//                flags bit 0: CIFAR-100 (else CIFAR-10), bit 1: gzip the file, bit 2: read
//                the file twice (two files, as data_batch_1..5 are read in one call)
//   safetensors  the file (parse_safetensors, then every accessor on every tensor and
//                metadata key, then read_checkpoint_info and what `wren eval`/`--resume` do
//                with its model text and run config)
//   model_file   the model text, built for Fashion-MNIST, CIFAR-10 and CIFAR-100 inputs
//   run_config   the run config JSON (config_from_json, then the checks train() applies)
#pragma once

#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "train/checkpoint.h"
#include "wren/data.h"
#include "wren/error.h"
#include "wren/model_file.h"
#include "wren/optimizer.h"
#include "wren/safetensors.h"
#include "wren/schedule.h"
#include "wren/shape.h"
#include "wren/train.h"

namespace wren::fuzz {

using Bytes = std::vector<uint8_t>;

// `data` as a gzip file (one member, default level), as gzip(1) would write it.
inline Bytes gzip_bytes(std::span<const uint8_t> data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    std::fprintf(stderr, "gzip_bytes: deflateInit2 failed\n");
    std::abort();
  }
  Bytes out(deflateBound(&zs, static_cast<uLong>(data.size())) + 32);
  zs.next_in = const_cast<Bytes::value_type*>(data.data());
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int ret = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (ret != Z_STREAM_END) {
    std::fprintf(stderr, "gzip_bytes: deflate returned %d\n", ret);
    std::abort();
  }
  return out;
}

// Writes `data` to `path`; a failure here is the harness's, not the reader's: abort.
inline void write_bytes(const std::filesystem::path& path, std::span<const uint8_t> data) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) ||
      std::fclose(f) != 0) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
}

inline Bytes maybe_gzip(std::span<const uint8_t> data, bool gzip) {
  return gzip ? gzip_bytes(data) : Bytes(data.begin(), data.end());
}

// --- idx ------------------------------------------------------------------------------------

inline constexpr int kIdxClasses[4] = {10, 1, 256, 47};

// Frames an IDX pair as the idx target reads it (make_seeds and the tests use it).
inline Bytes frame_idx(uint8_t flags, std::span<const uint8_t> images,
                       std::span<const uint8_t> labels) {
  Bytes out{flags};
  const auto n = static_cast<uint32_t>(images.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), images.begin(), images.end());
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// read_idx on the two files the input frames, written into `scratch` (a directory).
inline Status idx(std::span<const uint8_t> data, const std::filesystem::path& scratch) {
  if (data.size() < 5) return invalid_argument("fuzz idx: input shorter than its 5-byte frame");
  const uint8_t flags = data[0];
  uint32_t images_size = 0;
  for (int i = 0; i < 4; ++i) images_size |= uint32_t{data[1 + static_cast<size_t>(i)]} << (8 * i);
  const std::span<const uint8_t> rest = data.subspan(5);
  const size_t split = std::min<size_t>(images_size, rest.size());
  const std::filesystem::path images = scratch / "images", labels = scratch / "labels";
  write_bytes(images, maybe_gzip(rest.first(split), (flags & 1) != 0));
  write_bytes(labels, maybe_gzip(rest.subspan(split), (flags & 2) != 0));
  Expected<Dataset> ds = read_idx(images.string(), labels.string(), kIdxClasses[(flags >> 2) & 3]);
  if (!ds) return ds.error();
  // What the trainer does next with a dataset: statistics over every image.
  std::vector<int64_t> all(static_cast<size_t>(ds->count));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  (void)compute_normalization(*ds, all);
  return {};
}

// --- cifar ----------------------------------------------------------------------------------

inline Status cifar(std::span<const uint8_t> data, const std::filesystem::path& scratch) {
  if (data.empty()) return invalid_argument("fuzz cifar: empty input (no flags byte)");
  const uint8_t flags = data[0];
  const CifarKind kind = (flags & 1) ? CifarKind::kCifar100 : CifarKind::kCifar10;
  const Bytes file = maybe_gzip(data.subspan(1), (flags & 2) != 0);
  std::vector<std::string> paths{(scratch / "batch_1.bin").string()};
  if (flags & 4) paths.push_back((scratch / "batch_2.bin").string());
  for (const std::string& p : paths) write_bytes(p, file);
  Expected<Dataset> ds = read_cifar(paths, kind);
  if (!ds) return ds.error();
  std::vector<int64_t> all(static_cast<size_t>(ds->count));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  (void)compute_normalization(*ds, all);
  return {};
}

// --- model_file -----------------------------------------------------------------------------

// The inputs a dataset reader gives the model parser: Fashion-MNIST, CIFAR-10, CIFAR-100.
inline constexpr ModelInput kModelInputs[3] = {
    {.channels = 1, .height = 28, .width = 28, .classes = 10},
    {.channels = 3, .height = 32, .width = 32, .classes = 10},
    {.channels = 3, .height = 32, .width = 32, .classes = 100}};

// Parses `text` for `input` and, when it builds, what training reads from the graph before it
// allocates anything: the summary and the optimizer's segment table.
inline Status model_text(std::string_view text, const ModelInput& input, std::string_view source) {
  Expected<Graph> graph = parse_model_text(text, input, source);
  if (!graph) return graph.error();
  (void)graph->summary();
  const std::vector<ParamSegment> segments = param_segments(*graph);
  return validate_segments(segments, graph->param_count());
}

// The first error of the three inputs, or ok when the model builds for all of them.
inline Status model_file(std::span<const uint8_t> data) {
  const std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  Status first;
  for (const ModelInput& input : kModelInputs) {
    Status s = model_text(text, input, "fuzz.wren");
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

// --- run_config -----------------------------------------------------------------------------

// config_from_json, then what train() checks of a config before it reads data (with a
// Fashion-MNIST-sized epoch): the optimizer, the epoch-to-step conversion, the schedule and its
// learning rates; and config_to_json, which train() writes into config.json and checkpoints:
// its output must read back.
inline Status run_config_text(const std::string& text) {
  Expected<TrainConfig> config = config_from_json(text);
  if (!config) return config.error();
  const std::string again = config_to_json(*config);
  if (Expected<TrainConfig> back = config_from_json(again); !back) {
    std::fprintf(stderr, "config_to_json wrote a config config_from_json refuses: %s\n%s\n",
                 back.error().message().c_str(), again.c_str());
    std::abort();
  }
  WREN_RETURN_IF_ERROR(config->optimizer.validate());
  constexpr int64_t kStepsPerEpoch = 468;  // 60,000 images in batches of 128
  const int64_t total_steps =
      config->steps > 0 ? config->steps
                        : static_cast<int64_t>(std::llround(
                              config->epochs * static_cast<double>(kStepsPerEpoch)));
  if (total_steps <= 0) return invalid_argument("--epochs/--steps give no training steps");
  EpochSpec epochs = config->schedule_epochs;
  epochs.steps_per_epoch = kStepsPerEpoch;
  epochs.total.reset();
  ScheduleConfig schedule_config = config->schedule;
  schedule_config.total_steps = total_steps;
  Expected<ScheduleConfig> converted = to_steps(schedule_config, epochs);
  if (!converted) return converted.error();
  Expected<Schedule> schedule = Schedule::create(*converted);
  if (!schedule) return schedule.error();
  for (const int64_t t : {int64_t{0}, int64_t{1}, total_steps / 2, total_steps - 1, total_steps})
    (void)schedule->lr(t);
  return {};
}

inline Status run_config(std::span<const uint8_t> data) {
  return run_config_text(std::string(data.begin(), data.end()));
}

// --- safetensors ----------------------------------------------------------------------------

// A Shape of `dims` when it has one (rank <= 4, dims that fit).
inline bool to_shape(const std::vector<int64_t>& dims, Shape& shape) {
  if (dims.size() > static_cast<size_t>(Shape::kMaxRank)) return false;
  shape = Shape{};
  switch (dims.size()) {
    case 0: shape = Shape{}; break;
    case 1: shape = Shape{dims[0]}; break;
    case 2: shape = Shape{dims[0], dims[1]}; break;
    case 3: shape = Shape{dims[0], dims[1], dims[2]}; break;
    default: shape = Shape{dims[0], dims[1], dims[2], dims[3]}; break;
  }
  return true;
}

inline Status safetensors(std::span<const uint8_t> data) {
  Expected<SafeTensorsFile> file = parse_safetensors(data, "fuzz.safetensors");
  if (!file) return file.error();
  // Every accessor on every tensor: a successful parse promises that each either converts or
  // returns an error.
  for (const SafeTensor& t : file->tensors()) {
    (void)file->contains(t.name);
    (void)file->tensor(t.name);
    (void)file->as_f32(t.name);
    Shape shape;
    if (to_shape(t.shape, shape)) (void)file->as_f32(t.name, shape);
    (void)file->as_f32(t.name, Shape{1});
    (void)file->as_f64(t.name);
    (void)file->as_i64(t.name);
    (void)file->as_i32(t.name);
    (void)file->as_u8(t.name);
  }
  for (const auto& [key, value] : file->metadata()) (void)file->metadata_value(key);
  (void)file->as_f32("absent");
  (void)file->metadata_value("absent");

  // A checkpoint: what `wren eval` and `wren train --resume` read from it. The checksums are
  // checked (a reader stops at a mismatch; the target goes on, so that mutated files still
  // reach the metadata parsing below).
  (void)verify_checksums(*file);
  Expected<CheckpointInfo> info = read_checkpoint_info(*file);
  if (!info) return info.error();
  (void)run_config_text(info->config_json);
  // eval builds the model for the dataset's shape after checking that it equals the recorded
  // one, so the recorded input is used only when a dataset could have it.
  const ModelInput& in = info->input;
  const bool dataset_shape = (in.channels == 1 || in.channels == 3) && in.height >= 1 &&
                             in.height <= 65535 && in.width >= 1 && in.width <= 65535 &&
                             in.classes >= 1 && in.classes <= 256;
  if (dataset_shape && !info->model_text.empty()) {
    (void)model_text(info->model_text, in, "fuzz.safetensors");
  }
  return {};
}

}  // namespace wren::fuzz
