#include "train/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "train/json_value.h"

namespace wren {
namespace {

using Json = nlohmann::json;

std::string optim_name(const std::string& state, const std::string& param) {
  return "optim." + state + "." + param;
}

// Copies a checkpoint tensor into `dst` after checking its shape.
Status copy_in(const SafeTensorsFile& file, const std::string& name, const Shape& shape,
               float* dst) {
  auto values = file.as_f32(name, shape);
  if (!values) return values.error();
  std::memcpy(dst, values->data(), values->size() * sizeof(float));
  return {};
}

Expected<int64_t> metadata_int(const SafeTensorsFile& file, const char* key) {
  auto v = file.metadata_value(key);
  if (!v) return v.error();
  try {
    size_t used = 0;
    const long long x = std::stoll(*v, &used);
    if (used != v->size()) throw std::invalid_argument(*v);
    return static_cast<int64_t>(x);
  } catch (const std::exception&) {
    return data_error(file.path() + ": metadata " + key + " = '" + *v + "' is not an integer");
  }
}

constexpr char kChecksumKey[] = "wren.crc32";
constexpr char kMetadataEntry[] = "__metadata__";

uint32_t crc_update(uint32_t crc, const void* data, size_t bytes) {
  // zlib takes uInt lengths; checkpoints' tensors can exceed 4 GiB in principle.
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (bytes > 0) {
    const auto n = static_cast<uInt>(std::min<size_t>(bytes, 1u << 30));
    c = crc32(c, p, n);
    p += n;
    bytes -= n;
  }
  return static_cast<uint32_t>(c);
}

uint32_t crc_text(uint32_t crc, const std::string& text) {
  crc = crc_update(crc, text.data(), text.size());
  return crc_update(crc, "", 1);  // the terminating NUL separates fields
}

uint32_t tensor_crc(const SafeTensor& t) {
  uint32_t crc = crc_text(0, to_string(t.dtype));
  std::string dims;
  for (int64_t d : t.shape) dims += std::to_string(d) + ",";
  crc = crc_text(crc, dims);
  return crc_update(crc, t.bytes.data(), t.bytes.size());
}

// Every metadata entry but the checksums themselves, in key order.
uint32_t metadata_crc(const SafeMetadata& metadata) {
  uint32_t crc = 0;
  for (const auto& [key, value] : metadata) {
    if (key == kChecksumKey) continue;
    crc = crc_text(crc_text(crc, key), value);
  }
  return crc;
}

std::string hex8(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

Error damaged(const std::string& path, const std::string& what) {
  return data_error(path + ": " + what +
                    ": the file is damaged (a flipped bit or a torn copy) and is not loaded; "
                    "restore it or use another checkpoint");
}

}  // namespace

SafeMetadata with_checksums(std::span<const SafeTensor> tensors, SafeMetadata metadata) {
  metadata.erase(kChecksumKey);
  Json crcs = Json::object();
  for (const SafeTensor& t : tensors) crcs[t.name] = hex8(tensor_crc(t));
  crcs[kMetadataEntry] = hex8(metadata_crc(metadata));
  metadata[kChecksumKey] = crcs.dump();
  return metadata;
}

Status verify_checksums(const SafeTensorsFile& file) {
  const std::string& path = file.path();
  const auto found = file.metadata().find(kChecksumKey);
  if (found == file.metadata().end()) {
    // A Wren checkpoint of format 2+ always has them: their absence is damage, not age.
    const auto version = file.metadata().find("wren.format_version");
    if (version != file.metadata().end() && version->second != "1") {
      return damaged(path, std::string("metadata '") + kChecksumKey + "' is missing");
    }
    return {};
  }
  Json crcs;
  try {
    crcs = Json::parse(found->second);
  } catch (const Json::exception&) {
    return damaged(path, std::string("metadata '") + kChecksumKey + "' is not valid JSON");
  }
  if (!crcs.is_object()) {
    return damaged(path, std::string("metadata '") + kChecksumKey + "' is not an object");
  }
  const auto stored = [&](const std::string& name) -> std::string {
    const auto it = crcs.find(name);
    return it != crcs.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string meta_stored = stored(kMetadataEntry);
  const std::string meta_computed = hex8(metadata_crc(file.metadata()));
  if (meta_stored != meta_computed) {
    return damaged(path, "the metadata fails its CRC-32 check (stored " +
                             (meta_stored.empty() ? std::string("none") : meta_stored) +
                             ", computed " + meta_computed + ")");
  }
  size_t checked = 0;
  for (const SafeTensor& t : file.tensors()) {
    const std::string s = stored(t.name);
    if (s.empty()) {
      return damaged(path, "tensor '" + t.name + "' has no checksum (a name changed?)");
    }
    const std::string computed = hex8(tensor_crc(t));
    if (s != computed) {
      return damaged(path, "tensor '" + t.name + "' fails its CRC-32 check (stored " + s +
                               ", computed " + computed + ")");
    }
    ++checked;
  }
  if (checked + 1 != crcs.size()) {
    for (const auto& [name, value] : crcs.items()) {
      if (name != kMetadataEntry && !file.contains(name)) {
        return damaged(path, "tensor '" + name + "' is listed in the checksums but missing");
      }
    }
    return damaged(path, "the checksums list " + std::to_string(crcs.size() - 1) +
                             " tensors, the file holds " + std::to_string(checked));
  }
  return {};
}

Expected<SafeTensorsFile> read_checkpoint_file(const std::string& path) {
  auto file = read_safetensors(path);
  if (!file) return file.error();
  WREN_RETURN_IF_ERROR(verify_checksums(*file));
  return file;
}

Status save_checkpoint(const std::string& path, Executor<float>& ex,
                       const Optimizer<float>& optimizer, const RunState& state,
                       const CheckpointInfo& info) {
  const Graph& g = ex.graph();
  const std::vector<float> params = ex.download(ex.params());
  const std::vector<float> buffers = ex.download(ex.buffers());
  std::vector<SafeTensor> tensors;
  for (const ParamInfo& p : g.params()) {
    const auto n = static_cast<size_t>(p.shape.numel());
    tensors.push_back(make_safetensor<float>(
        p.name, shape_dims(p.shape),
        std::span<const float>(params.data() + p.offset, n)));
    for (const std::string& s : optimizer.state_names()) {
      const std::span<const float> st = optimizer.state(s);
      tensors.push_back(make_safetensor<float>(optim_name(s, p.name), shape_dims(p.shape),
                                               st.subspan(static_cast<size_t>(p.offset), n)));
    }
  }
  for (const BufferInfo& b : g.buffers()) {
    tensors.push_back(make_safetensor<float>(
        b.name, shape_dims(b.shape),
        std::span<const float>(buffers.data() + b.offset, static_cast<size_t>(b.shape.numel()))));
  }
  const Json norm{{"mean", info.normalization.mean}, {"std", info.normalization.std}};
  const Json input{{"channels", info.input.channels},
                   {"height", info.input.height},
                   {"width", info.input.width},
                   {"classes", info.input.classes}};
  SafeMetadata meta{{"wren.format_version", kCheckpointFormatVersion},
                    {"wren.step", std::to_string(state.step)},
                    {"wren.optimizer_step", std::to_string(optimizer.step_count())},
                    {"wren.epoch", std::to_string(state.epoch)},
                    {"wren.epoch_batch", std::to_string(state.epoch_batch)},
                    {"wren.best_val_accuracy", std::to_string(state.best_val_accuracy)},
                    {"wren.config", info.config_json},
                    {"wren.model", info.model_name},
                    {"wren.model_text", info.model_text},
                    {"wren.data_dir", info.data_dir},
                    {"wren.normalization", norm.dump()},
                    {"wren.input", input.dump()},
                    {"wren.executor_step", std::to_string(ex.step())}};
  return write_safetensors(path, tensors, with_checksums(tensors, std::move(meta)));
}

Status load_weights(const SafeTensorsFile& file, Executor<float>& ex, bool require_buffers) {
  const Graph& g = ex.graph();
  std::vector<float> params = ex.download(ex.params());
  for (const ParamInfo& p : g.params()) {
    if (!file.contains(p.name)) {
      return not_found(file.path() + ": no tensor '" + p.name + "' (the model's parameter " +
                       p.shape.str() + ")");
    }
    WREN_RETURN_IF_ERROR(copy_in(file, p.name, p.shape, params.data() + p.offset));
  }
  ex.backend().upload(ex.params().data, params.data(), params.size() * sizeof(float));
  if (g.buffer_count() > 0) {
    std::vector<float> buffers = ex.download(ex.buffers());
    for (const BufferInfo& b : g.buffers()) {
      if (!file.contains(b.name)) {
        if (require_buffers) {
          return not_found(file.path() + ": no tensor '" + b.name + "' (the model's buffer " +
                           b.shape.str() + ")");
        }
        continue;
      }
      WREN_RETURN_IF_ERROR(copy_in(file, b.name, b.shape, buffers.data() + b.offset));
    }
    ex.backend().upload(ex.buffers().data, buffers.data(), buffers.size() * sizeof(float));
  }
  return {};
}

Status load_weights(const std::string& path, Executor<float>& ex, bool require_buffers) {
  auto file = read_checkpoint_file(path);
  if (!file) return file.error();
  return load_weights(*file, ex, require_buffers);
}

Expected<RunState> load_checkpoint(const std::string& path, Executor<float>& ex,
                                   Optimizer<float>& optimizer) {
  auto file = read_checkpoint_file(path);
  if (!file) return file.error();
  WREN_RETURN_IF_ERROR(load_weights(*file, ex, /*require_buffers=*/true));
  for (const std::string& s : optimizer.state_names()) {
    std::span<float> st = optimizer.state(s);
    for (const ParamInfo& p : ex.graph().params()) {
      const std::string name = optim_name(s, p.name);
      if (!file->contains(name)) {
        return not_found(path + ": no optimizer state '" + name +
                         "' (was the run trained with another --opt?)");
      }
      WREN_RETURN_IF_ERROR(copy_in(*file, name, p.shape, st.data() + p.offset));
    }
  }
  RunState state;
  auto step = metadata_int(*file, "wren.step");
  auto opt_step = metadata_int(*file, "wren.optimizer_step");
  auto epoch = metadata_int(*file, "wren.epoch");
  auto epoch_batch = metadata_int(*file, "wren.epoch_batch");
  auto ex_step = metadata_int(*file, "wren.executor_step");
  for (const auto* v : {&step, &opt_step, &epoch, &epoch_batch, &ex_step}) {
    if (!*v) return v->error();
  }
  state.step = *step;
  state.epoch = *epoch;
  state.epoch_batch = *epoch_batch;
  if (auto best = file->metadata_value("wren.best_val_accuracy")) {
    state.best_val_accuracy = std::atof(best->c_str());
  }
  optimizer.set_step_count(*opt_step);
  ex.set_step(static_cast<uint64_t>(*ex_step));
  return state;
}

Expected<CheckpointInfo> read_checkpoint_info(const SafeTensorsFile& file) {
  CheckpointInfo info;
  auto get = [&](const char* key) -> Expected<std::string> {
    auto v = file.metadata_value(key);
    if (!v) {
      return data_error(file.path() + ": metadata key '" + key +
                        "' is missing (not a checkpoint written by wren train)");
    }
    return *v;
  };
  auto model = get("wren.model");
  auto text = get("wren.model_text");
  auto config = get("wren.config");
  auto data_dir = get("wren.data_dir");
  auto norm = get("wren.normalization");
  auto input = get("wren.input");
  for (const auto* v : {&model, &text, &config, &data_dir, &norm, &input}) {
    if (!*v) return v->error();
  }
  info.model_name = *model;
  info.model_text = *text;
  info.config_json = *config;
  info.data_dir = *data_dir;
  try {
    const Json n = Json::parse(*norm), in = Json::parse(*input);
    info.normalization.mean = n.at("mean").get<std::vector<float>>();
    info.normalization.std = n.at("std").get<std::vector<float>>();
    info.input.channels = json_value<int>(in.at("channels"), "channels");
    info.input.height = json_value<int>(in.at("height"), "height");
    info.input.width = json_value<int>(in.at("width"), "width");
    info.input.classes = json_value<int>(in.at("classes"), "classes");
  } catch (const std::exception& e) {
    return data_error(file.path() + ": metadata: " + e.what());
  }
  return info;
}

}  // namespace wren
