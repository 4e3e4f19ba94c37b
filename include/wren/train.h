// Training, evaluation and checkpoints: what `wren train`, `wren eval` and `wren sweep` run.
//
// Data flow of one run (docs/ARCHITECTURE.md): dataset files -> Dataset (uint8, held once) ->
// seeded train/val split and per-channel normalization -> per step: epoch_order + make_batch
// (augmentation) -> Executor forward/backward on the device -> Optimizer step over the flat
// parameter buffer at the Schedule's LR -> metrics.jsonl, and at every epoch end
// last.safetensors (and best.safetensors when validation accuracy improves).
//
// A run is a pure function of its config and seed: the shuffle order, the augmentation draws,
// dropout masks and the initial weights all come from counter-based streams indexed by
// (seed, epoch or step), so a resumed run continues bit-identically.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wren/backend.h"
#include "wren/data.h"
#include "wren/error.h"
#include "wren/executor.h"
#include "wren/math_mode.h"
#include "wren/models.h"
#include "wren/optimizer.h"
#include "wren/schedule.h"

namespace wren {

// A weight counts as near zero (the sparsity L1 produces) when |w| is below this.
inline constexpr double kNearZeroWeight = 1e-4;

// The fixed-choice settings of a run. Each has the spelling the CLI flag, config.json and the
// checkpoint metadata use (to_string), and a parser that accepts exactly those spellings; its
// error names the flag and the choices ("--device gpu: expected auto, cpu, cuda or emu").

// --device. kAuto: the GPU when this build has the CUDA backend and one is visible, else the
// CPU (with a one-line note either way).
enum class DeviceChoice { kAuto, kCpu, kCuda, kEmu };
const char* to_string(DeviceChoice device);  // "auto", "cpu", "cuda", "emu"
Expected<DeviceChoice> parse_device_choice(std::string_view name);

// --math (MathMode, wren/math_mode.h; to_string in wren/backend.h): "fp32", "tf32".
Expected<MathMode> parse_math_mode(std::string_view name);

// --linear (LinearImpl, wren/backend.h): "wren", "cublas".
Expected<LinearImpl> parse_linear_impl(std::string_view name);

// --on-nonfinite: what a NaN or an infinity in the loss or the gradients does to the run
// (TrainConfig::on_nonfinite).
enum class NonFinitePolicy { kStop, kSkipStep };
const char* to_string(NonFinitePolicy policy);  // "stop", "skip-step"
Expected<NonFinitePolicy> parse_nonfinite_policy(std::string_view name);

struct TrainConfig {
  // Model: a zoo name (wren::model_names()) or the path of a model file (docs/MODEL_FORMAT.md).
  std::string model = "ref-cnn";
  std::string data_dir = kDefaultDataDir;
  DeviceChoice device = DeviceChoice::kAuto;
  MathMode math = MathMode::kFp32;  // cuda and emu (wren/math_mode.h)
  // cuda and emu: record forward, backward and optimizer once and replay them each step (a
  // CUDA graph on cuda; the same enqueue-only path re-run on emu). Off for models with dropout.
  bool cuda_graph = true;
  LinearImpl linear = LinearImpl::kWren;  // cuda: the linear layers' GEMM
  double epochs = 5.0;  // used when steps == 0
  int64_t steps = 0;    // > 0: total optimizer steps (overrides epochs)
  int batch = 128;
  uint64_t seed = 0;
  bool shuffle = true;
  // Augmentation of training batches; `augment_auto` picks it from the dataset: CIFAR gets
  // flip + 4-pixel reflect crop, MNIST-family data none (digits and short schedules gain nothing
  // from it: docs/BENCHMARKS.md, "Anchors").
  bool augment_auto = true;
  bool augment = false;
  AugmentConfig augment_config{};
  // Validation split carved from the training set; -1: 1/12 of it (5,000 of Fashion-MNIST's
  // 60,000), 0: none (best.safetensors then follows the training loss).
  int64_t val_count = -1;
  bool evaluate_test = true;  // test-set accuracy every epoch
  OptimizerConfig optimizer{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4};
  ScheduleConfig schedule{.kind = ScheduleKind::kCosine, .lr = 1e-3};
  EpochSpec schedule_epochs{.warmup = 1.0};  // epoch-valued schedule arguments
  // The default recipe's one-epoch warmup shrinks to a tenth of a run shorter than it (a
  // warmup the user asked for is checked instead).
  bool default_warmup = true;
  std::string out_dir;                      // "" = runs/<timestamp>
  int64_t log_every = 50;                   // steps between step records in metrics.jsonl
  std::string init_from;                    // weights to start from (e.g. exported from PyTorch)
  std::string resume;                       // a last.safetensors to continue
  // > 0: stop after this many steps of this invocation, saving last.safetensors where it
  // stopped (the schedule still spans the whole run; --resume continues bit-identically).
  // SIGINT (Ctrl-C) and SIGTERM stop the same way at the next step boundary.
  int64_t stop_after_steps = 0;
  bool progress = true;                     // progress bar on stderr
  bool write_checkpoints = true;
  // A NaN or an infinity in the loss or in the gradients (--on-nonfinite). Every step checks
  // the loss and the global gradient norm (one reduction, on the device on cuda/emu) before the
  // optimizer applies anything.
  //   kStop ("stop", the default): the run ends with a kNumericError naming the step, the epoch
  //     and batch and where the values first went non-finite; the weights are those of the step
  //     before and no checkpoint is written (the last good last.safetensors stays).
  //   kSkipStep ("skip-step"): as a loss scaler does, the update is skipped (parameters,
  //     buffers and optimizer state untouched, the optimizer's step count not advanced; the
  //     global step and the LR schedule go on), a {"kind":"skipped_step",...} record goes to
  //     metrics.jsonl, a note to the log, and the run continues. Skipped steps are left out of
  //     the epoch's train loss and accuracy.
  NonFinitePolicy on_nonfinite = NonFinitePolicy::kStop;

  // --- Test hooks: not on the CLI and not saved in config.json ---------------------------------
  // Makes one step non-finite on any device. At global step `step` (0-based, as the divergence
  // error counts), `value` is added to the first gradient element of parameter `param` after
  // the backward pass and before the optimizer (on cuda/emu inside the recorded step: the
  // trainer then records an add from a device scalar that is `value` at that step and 0
  // otherwise), or, with `param` empty, written into the first pixel of the batch before the
  // forward pass. step < 0: off.
  struct NonFiniteInjection {
    int64_t step = -1;
    std::string param;
    float value = std::numeric_limits<float>::quiet_NaN();
  };
  NonFiniteInjection inject_nonfinite{};
  // false: the optimizer does not check the gradients and only the loss is checked, as before
  // --on-nonfinite existed (tests compare the two to show the check changes no result).
  bool check_gradients = true;
};

// What --model accepts: a zoo name or a model file, built for `input`.
Expected<Graph> load_model(const std::string& model, const ModelInput& input);

// The JSON form written to <out>/config.json and into checkpoints; from_json reads it back.
std::string config_to_json(const TrainConfig& config);
Expected<TrainConfig> config_from_json(const std::string& json);

struct EvalResult {
  int64_t count = 0;
  double loss = 0.0;      // mean cross-entropy (no label smoothing)
  double accuracy = 0.0;  // fraction of argmax == label
  int classes = 0;
  std::vector<int64_t> confusion{};  // [classes][classes]: row = true label, column = predicted
};

struct TrainEpoch {
  int64_t epoch = 0;  // 0-based
  int64_t step = 0;   // optimizer steps done at its end
  double train_loss = 0.0, train_accuracy = 0.0;
  std::optional<EvalResult> val{}, test{};
  double lr = 0.0;
  double seconds = 0.0;  // wall time since the run (or resume) started
};

struct TrainResult {
  std::string out_dir;
  int64_t steps = 0;
  bool stopped_early = false;  // by stop_after_steps or a signal; last.safetensors resumes it
  int64_t skipped_steps = 0;   // steps of this invocation skipped by --on-nonfinite skip-step
  std::vector<TrainEpoch> epochs{};
  double best_val_accuracy = -1.0;  // -1: no validation split
  std::optional<EvalResult> final_test{};
  double images_per_second = 0.0;  // training steps only
  // Wall seconds of each training step of this invocation, in order (batch, forward, backward,
  // optimizer, the loss read that checks it is finite): `wren-bench train` takes its medians
  // from these.
  std::vector<double> step_seconds{};
  size_t device_peak_bytes = 0;  // Backend::peak_allocated_bytes() at the end (0 on the cpu)
};

// Trains; `log` receives human-readable notes (device choice, dataset, summary); the progress
// bar goes to stderr. Errors name the file, flag or step that caused them.
Expected<TrainResult> train(const TrainConfig& config, std::FILE* log);

// Accuracy, loss and confusion matrix of an executor's model (eval mode) on `indices` of a
// dataset, in batches of the executor's batch size (the last batch padded and the padding
// ignored).
Expected<EvalResult> evaluate(Executor<float>& executor, const Dataset& dataset,
                              std::span<const int64_t> indices,
                              const Normalization& normalization);

// `wren eval`: rebuilds the model a checkpoint was trained with (its metadata holds the config,
// the model text and the normalization) and evaluates it on a split of `data_dir`
// ("" = the data directory recorded in the checkpoint).
// `device`: cpu (the default), cuda, emu or auto, as for training.
Expected<EvalResult> evaluate_checkpoint(const std::string& checkpoint, const std::string& data_dir,
                                         Split split, int batch,
                                         DeviceChoice device = DeviceChoice::kCpu);

// Formats a confusion matrix as a table with per-class accuracy.
std::string format_confusion(const EvalResult& result);

}  // namespace wren
