// The trainer behind wren::train (include/wren/train.h), as steps. Internal to host/train/.
//
//   Trainer::run                           train.cpp      the backend, set-up, the epochs
//     set_up_data, set_up_model,           setup.cpp      data, model and executor, optimizer
//     set_up_optimizer, set_up_start,                     and schedule, --init-from/--resume,
//     set_up_batches, set_up_step,                        batches, step capture, run directory
//     set_up_run_directory
//     set_up_nonfinite                     nonfinite.cpp  skip-step's buffer copy, test hook
//     run_epochs > run_epoch > train_step  train.cpp      batch, forward, backward, optimizer
//     on_nonfinite                         nonfinite.cpp  --on-nonfinite stop | skip-step
//     end_epoch                            evaluate.cpp   evaluation, epoch record, weight norms
//     checkpoint_epoch, stop_early         train.cpp      last/best.safetensors
//   config_to_json, config_from_json       config.cpp     config.json, the enums' spellings
//
// The set-up steps run in the order of their checks and notes, which is what a user sees when
// several things are wrong at once: the device note first, then data, model, optimizer and
// schedule errors, then the run directory. Every RNG stream is indexed by (seed, epoch or
// step), not by call order, so how the work is cut into functions cannot change a run.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "train/progress.h"
#include "wren/backend.h"
#include "wren/data.h"
#include "wren/executor.h"
#include "wren/graph.h"
#include "wren/optimizer.h"
#include "wren/schedule.h"
#include "wren/train.h"

namespace wren::train_internal {

using Json = nlohmann::json;

// --- Shared by training and `wren eval` (setup.cpp, evaluate.cpp) -----------------------------

// A run's model: a zoo name (text "") or a model file and its contents. Checkpoints record
// both, so `wren eval` rebuilds the model without the file.
struct ModelSource {
  std::string name;  // zoo name, or the file path
  std::string text;  // the model file's contents ("" for a zoo model)
};
Expected<ModelSource> read_model_source(const std::string& model);
Expected<Graph> build_graph(const ModelSource& source, const ModelInput& input);
ModelInput model_input(const Dataset& dataset);

// The backend of a run. kAuto: the GPU when this build has the CUDA backend and one is
// visible, else the CPU (then always on OpenBLAS, whatever `linear` says), with a one-line
// note to `log` either way; emu gets a note that it is for checking, not speed.
Expected<std::unique_ptr<Backend<float>>> make_train_backend(DeviceChoice device, MathMode math,
                                                             LinearImpl linear, std::FILE* log);

// The logits: the loss op's first input.
Expected<Value> logits_value(const Graph& graph);
// Adds the cross-entropy, correct predictions and confusion counts of the first `valid` rows
// of logits [rows, classes] to `out` (sums: the caller divides).
void score_logits(const std::vector<float>& logits, int classes, std::span<const int32_t> labels,
                  int64_t valid, EvalResult& out);

// --- Pieces of a run ----------------------------------------------------------------------------

// A device allocation of the trainer's own (the test hook's scalar, the buffer backup),
// released before the backend that made it.
class DeviceScratch {
 public:
  DeviceScratch(Backend<float>& backend, size_t floats);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  float* get() const { return ptr_; }

 private:
  Backend<float>& backend_;
  float* ptr_ = nullptr;
};

// <out>/metrics.jsonl: one JSON record a line, flushed as written (docs/PLOTS.md).
class MetricsLog {
 public:
  MetricsLog() = default;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog();
  // append (a resumed run): a partial last line left by a killed run is cut off first.
  Status open(const std::string& path, bool append);
  Status write(const Json& record);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// The optimizer of a run, which exists twice on cuda and emu. The parameters live where the
// backend keeps them: on the cpu in host memory, stepped by the host Optimizer<float>; on cuda
// and emu in device memory, stepped by the backend's DeviceOptimizer (the fused kernel, its
// state in device memory too; it is also what a recorded step replays). Checkpoints
// (train/checkpoint.h) are written once, against the host Optimizer<float>, whose state they
// read and write by name; so on cuda and emu the host optimizer only holds that state, and this
// class is the one place where the two meet: save() copies the device state down before every
// checkpoint and resume() copies a loaded state up. Between checkpoints the host copy is stale.
class RunOptimizer {
 public:
  // `config` already validated; the host optimizer is made first, then the device one (none on
  // the cpu), each refusing the config in its own words.
  static Expected<RunOptimizer> create(const OptimizerConfig& config, Executor<float>& executor);

  // nullptr on the cpu.
  DeviceOptimizer* device() const { return device_.get(); }
  // One step op by op on the executor's parameters and gradients at `lr`: on the device when
  // there is one. Errors as Optimizer::step (kNumericError: a non-finite gradient, nothing
  // applied).
  Status step(Executor<float>& executor, double lr);
  // ‖grad‖₂ of the last step (with clipping or the finiteness check on).
  double last_grad_norm() const;

  // Weights, buffers, optimizer state and run position from a checkpoint (--resume).
  Expected<RunState> resume(const std::string& checkpoint, Executor<float>& executor);
  // A checkpoint of the run as it stands once the device has finished its work.
  Status save(const std::string& path, Executor<float>& executor, const RunState& state,
              const CheckpointInfo& info);

 private:
  RunOptimizer(Optimizer<float> host, std::unique_ptr<DeviceOptimizer> device)
      : host_(std::move(host)), device_(std::move(device)) {}

  Optimizer<float> host_;
  std::unique_ptr<DeviceOptimizer> device_;
};

// Where the values first went non-finite, for the error and the skipped_step record.
// After a forward pass: the first op (forward order) whose output holds a NaN or an infinity.
std::string first_non_finite_op(Executor<float>& executor);
// After a backward pass: the first op (backward order) whose gradients hold one.
std::string first_non_finite_gradient(Executor<float>& executor);

// Sums over the steps of one epoch for its record. Skipped steps are not in them.
struct EpochTally {
  double loss_sum = 0.0;  // of the steps' mean losses
  int64_t seen = 0;       // images
  EvalResult score{};     // score.accuracy: correct predictions (a count until the epoch ends)
};

// What forward, backward and optimizer made of one step.
struct StepOutcome {
  float loss = 0.0f;
  bool loss_finite = true;
  // The optimizer's verdict: ok, or a kNumericError when the gradient norm was not finite
  // (nothing applied). Untouched (ok) when a non-finite loss skipped backward and optimizer.
  Status applied{};
};

// One call of wren::train. Members are declared in the order set-up makes them, so that the
// device allocations (batcher, scratch buffers, device optimizer) are released before the
// executor that owns the backend.
class Trainer {
 public:
  Trainer(const TrainConfig& config, std::FILE* log) : config_(config), log_(log) {}
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  Expected<TrainResult> run();

 private:
  Executor<float>& executor() { return *executor_; }
  const Graph& graph() const { return executor_->graph(); }

  // --- set-up (setup.cpp, nonfinite.cpp), in this order ---
  Status set_up_data();
  Status set_up_model(std::unique_ptr<Backend<float>> backend);
  Status set_up_optimizer();
  Status set_up_start();
  Status set_up_batches();
  Status set_up_step();
  Status set_up_nonfinite();
  Status set_up_run_directory();

  // --- the loop (train.cpp) ---
  Status run_epochs();
  Status run_epoch(int64_t epoch);
  Status train_step(int64_t epoch, int64_t batch, std::span<const int64_t> chunk,
                    EpochTally& tally);
  Status load_batch(std::span<const int64_t> chunk, bool inject_now);
  Expected<StepOutcome> forward_backward_update(double lr, bool inject_now);
  Status record_step(int64_t epoch, int64_t batch, float loss, double lr,
                     std::chrono::steady_clock::time_point t0, EpochTally& tally);
  // --- the non-finite policy (nonfinite.cpp) ---
  Status on_nonfinite(int64_t epoch, int64_t batch, const StepOutcome& outcome);
  // --- epoch end (evaluate.cpp) ---
  Status end_epoch(int64_t epoch, const EpochTally& tally);
  Expected<TrainEpoch> evaluate_epoch(int64_t epoch, const EpochTally& tally);
  Json epoch_record(const TrainEpoch& epoch);
  // --- checkpoints (train.cpp) ---
  Status checkpoint_epoch(int64_t epoch, const TrainEpoch& record);
  Status stop_early(int64_t epoch);
  Status save(const std::string& path);

  const TrainConfig& config_;
  std::FILE* log_;

  // set_up_data
  Dataset train_set_{};
  std::optional<Dataset> test_set_{};
  int64_t val_count_ = 0;
  TrainValSplit split_{};
  Normalization norm_{};
  int64_t steps_per_epoch_ = 0;
  bool augment_ = false;
  AugmentConfig aug_{};
  // set_up_model
  ModelSource source_{};
  std::unique_ptr<Executor<float>> executor_{};
  // set_up_optimizer
  std::optional<RunOptimizer> optimizer_{};
  int64_t total_steps_ = 0;
  ScheduleConfig schedule_config_{};  // in steps, as config.json records it
  std::optional<Schedule> schedule_{};
  // set_up_start
  RunState state_{};
  // set_up_batches: on cuda and emu batches are made in device memory, into the executor's
  // input and labels; on the cpu on the host, into images_ and labels_.
  std::unique_ptr<DeviceBatcher> batcher_{};
  float* device_images_ = nullptr;
  int32_t* device_labels_ = nullptr;
  // set_up_step
  bool use_capture_ = false;
  bool captured_ = false;
  const float* device_loss_ = nullptr;
  // set_up_nonfinite
  std::optional<DeviceScratch> buffer_backup_{};
  int64_t buffer_count_ = 0;
  std::optional<DeviceScratch> poison_{};  // the test hook's `value` at its step, else 0
  float* poison_target_ = nullptr;         // the gradient element it is added to
  float* poison() const { return poison_ ? poison_->get() : nullptr; }
  // set_up_run_directory
  TrainResult result_{};
  MetricsLog metrics_{};
  CheckpointInfo checkpoint_info_{};
  // run_epochs
  std::vector<float> images_{};
  std::vector<int32_t> labels_{};
  Value logits_{};
  std::chrono::steady_clock::time_point start_{};
  double train_seconds_ = 0.0;
  int64_t trained_images_ = 0;
  std::optional<Progress> progress_{};
  int64_t total_epochs_ = 0;
  int64_t stop_at_ = 0;
};

}  // namespace wren::train_internal
