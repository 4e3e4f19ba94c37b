// Checkpoints of a training run (docs/CHECKPOINTS.md): the executor's parameters and buffers
// under the graph's names (PyTorch's state_dict names), the optimizer state as
// "optim.<state>.<param>", and in the metadata the run position, the resolved config, the
// model (zoo name or model-file text), the normalization and the input shape, so that
// `wren eval` and `--resume` need nothing but the file.
#pragma once

#include <cstdint>
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

inline constexpr char kCheckpointFormatVersion[] = "1";

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
