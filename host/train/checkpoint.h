// Checkpoints of a training run (docs/CHECKPOINTS.md): the executor's parameters and buffers
// under the graph's names (PyTorch's state_dict names), the optimizer state as
// "optim.<state>.<param>", and in the metadata the run position, the resolved config, the
// model (zoo name or model-file text), the normalization and the input shape, so that
// `wren eval` and `--resume` need nothing but the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "wren/data.h"
#include "wren/error.h"
#include "wren/executor.h"
#include "wren/models.h"
#include "wren/optimizer.h"
#include "wren/safetensors.h"

namespace wren {

// Where a run stands; the RNG needs no state of its own (every stream is indexed by the seed
// and the step or epoch), so this is the whole position.
struct RunState {
  int64_t step = 0;         // optimizer steps done
  int64_t epoch = 0;        // the epoch to continue in
  int64_t epoch_batch = 0;  // batches of that epoch already done
  double best_val_accuracy = -1.0;
};

struct CheckpointInfo {
  std::string config_json;
  std::string model_name;  // zoo name or model-file path
  std::string model_text;  // model-file contents; "" for a zoo model
  std::string data_dir;
  Normalization normalization{};
  ModelInput input{};
};

// 2: per-tensor and metadata checksums ("wren.crc32"); files of format 1 load without them.
inline constexpr char kCheckpointFormatVersion[] = "2";

// Checksums. "wren.crc32" in the metadata is a JSON object: each tensor's name -> the CRC-32
// (zlib's) of its dtype, shape and bytes, and "__metadata__" -> the CRC-32 of every other
// metadata key and value, each as 8 hex digits. A flipped bit or a torn copy anywhere in the
// file is then refused on load, naming the tensor (or the metadata) that no longer matches.
SafeMetadata with_checksums(std::span<const SafeTensor> tensors, SafeMetadata metadata);
// ok when the file carries no "wren.crc32" and is not a Wren checkpoint of format 2 or later
// (PyTorch's files, older checkpoints); else every tensor and the metadata must match.
Status verify_checksums(const SafeTensorsFile& file);
// read_safetensors + verify_checksums: what every reader of a checkpoint uses.
Expected<SafeTensorsFile> read_checkpoint_file(const std::string& path);

Status save_checkpoint(const std::string& path, Executor<float>& executor,
                       const Optimizer<float>& optimizer, const RunState& state,
                       const CheckpointInfo& info);

// Parameters (every one required, shapes checked) and, when present or required, buffers.
Status load_weights(const SafeTensorsFile& file, Executor<float>& executor, bool require_buffers);
Status load_weights(const std::string& path, Executor<float>& executor, bool require_buffers);

// Weights, buffers and optimizer state, and the run position.
Expected<RunState> load_checkpoint(const std::string& path, Executor<float>& executor,
                                   Optimizer<float>& optimizer);

Expected<CheckpointInfo> read_checkpoint_info(const SafeTensorsFile& file);

}  // namespace wren
