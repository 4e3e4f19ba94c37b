// Setting a run up (host/train/trainer.h): device, data, model and executor, optimizer and
// schedule, the starting point, batches and step capture, and the run directory. Each step's
// errors name the flag or file at fault.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train/trainer.h"
#include "wren/atomic_file.h"
#include "wren/device.h"
#include "wren/model_file.h"
#include "wren/models.h"

namespace wren {
namespace train_internal {
namespace {

namespace fs = std::filesystem;

std::string timestamp_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", &tm);
  return buf;
}

}  // namespace

// --- Shared pieces --------------------------------------------------------------------------

Expected<ModelSource> read_model_source(const std::string& model) {
  const std::vector<std::string> zoo = model_names();
  if (std::find(zoo.begin(), zoo.end(), model) != zoo.end()) return ModelSource{model, ""};
  std::error_code ec;
  if (!fs::is_regular_file(model, ec)) {
    std::string known;
    for (const std::string& n : zoo) known += (known.empty() ? "" : ", ") + n;
    return not_found("--model '" + model + "' is neither a built-in model (" + known +
                     ") nor a model file");
  }
  std::ifstream in(model, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return io_error("--model '" + model + "': cannot read the file");
  return ModelSource{model, text.str()};
}

Expected<Graph> build_graph(const ModelSource& source, const ModelInput& input) {
  if (source.text.empty()) return build_model(source.name, input);
  return parse_model_text(source.text, input, source.name);
}

ModelInput model_input(const Dataset& d) {
  return ModelInput{.channels = d.channels, .height = d.height, .width = d.width,
                    .classes = d.num_classes};
}

Expected<std::unique_ptr<Backend<float>>> make_train_backend(DeviceChoice device, MathMode math,
                                                             LinearImpl linear, std::FILE* log) {
  BackendOptions options{.math = math, .linear = linear};
  switch (device) {
    case DeviceChoice::kCpu:
      options.device = Device::kCpu;
      break;
    case DeviceChoice::kCuda:
      options.device = Device::kCuda;
      break;
    case DeviceChoice::kEmu:
      options.device = Device::kEmu;
      break;
    case DeviceChoice::kAuto: {
      options.device = Device::kCuda;
      auto gpu = make_backend(options);
      if (gpu) {
        std::fprintf(log, "note: training on the GPU %s\n", cuda_device_name().c_str());
        return gpu;
      }
      options.device = Device::kCpu;
      options.linear = LinearImpl::kWren;  // OpenBLAS on the cpu device
      std::fprintf(log, "note: %s; training on the CPU\n",
                   !built_with_cuda()          ? "this build has no CUDA backend"
                   : cuda_device_count() == 0 ? "no CUDA device is visible"
                                              : gpu.error().message().c_str());
      break;
    }
  }
  auto backend = make_backend(options);
  if (!backend) return backend.error();
  if (options.device == Device::kEmu)
    std::fprintf(log, "note: device emu runs the CUDA kernels in the SIMT emulator on the CPU: "
                      "for checking them, not for speed\n");
  return backend;
}

DeviceScratch::DeviceScratch(Backend<float>& backend, size_t floats) : backend_(backend) {
  ptr_ = static_cast<float*>(backend.allocate(std::max<size_t>(floats, 1) * sizeof(float)));
}

DeviceScratch::~DeviceScratch() {
  if (ptr_) backend_.release(ptr_);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

Status MetricsLog::open(const std::string& path, bool append) {
  if (append) {
    // A run killed mid-write leaves a partial last line: cut back to the last newline so
    // the resumed run's records start on a line of their own (docs/PLOTS.md).
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    std::string text;
    if (!ec) {
      text.resize(size);
      std::FILE* in = std::fopen(path.c_str(), "rb");
      const size_t got = in ? std::fread(text.data(), 1, text.size(), in) : 0;
      if (in) std::fclose(in);
      text.resize(got);
    }
    const size_t last = text.rfind('\n');
    const size_t keep = last == std::string::npos ? 0 : last + 1;
    if (!ec && keep < text.size()) fs::resize_file(path, keep, ec);
    if (ec) return io_error(path + ": cannot trim the partial last line: " + ec.message());
  }
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!file_) return io_error(path + ": cannot open for writing: " + std::strerror(errno));
  path_ = path;
  return {};
}

Status MetricsLog::write(const Json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_)) {
    return io_error(path_ + ": write failed: " + std::strerror(errno));
  }
  return {};
}

// --- The optimizer pair ---------------------------------------------------------------------

Expected<RunOptimizer> RunOptimizer::create(const OptimizerConfig& config,
                                            Executor<float>& executor) {
  const Graph& graph = executor.graph();
  auto host = Optimizer<float>::create(config, param_segments(graph), graph.param_count());
  if (!host) return host.error();
  auto device =
      executor.backend().make_optimizer(config, param_segments(graph), graph.param_count());
  if (!device) return device.error();
  return RunOptimizer(std::move(*host), std::move(*device));
}

Status RunOptimizer::step(Executor<float>& ex, double lr) {
  if (device_) return device_->step(ex.params().data, ex.grads().data, lr);
  return host_.step(
      std::span<float>(ex.params().data, static_cast<size_t>(ex.params().numel())),
      std::span<const float>(ex.grads().data, static_cast<size_t>(ex.grads().numel())), lr);
}

double RunOptimizer::last_grad_norm() const {
  return device_ ? device_->last_grad_norm() : host_.last_grad_norm();
}

Expected<RunState> RunOptimizer::resume(const std::string& checkpoint, Executor<float>& executor) {
  auto state = load_checkpoint(checkpoint, executor, host_);
  if (!state) return state.error();
  if (device_) device_->upload_state(host_);
  return state;
}

Status RunOptimizer::save(const std::string& path, Executor<float>& executor,
                          const RunState& state, const CheckpointInfo& info) {
  WREN_RETURN_IF_ERROR(executor.backend().synchronize());  // a device fault never reaches a file
  if (device_) device_->download_state(host_);
  return save_checkpoint(path, executor, host_, state, info);
}

// --- Set-up steps -------------------------------------------------------------------------------

// The training set (and the test set when evaluated), the seeded train/val split, the
// normalization of the training part, and the augmentation (`augment_auto`: from the format).
Status Trainer::set_up_data() {
  auto train_set = load_dataset(config_.data_dir, Split::kTrain);
  if (!train_set) return train_set.error();
  train_set_ = std::move(*train_set);
  if (config_.evaluate_test) {
    auto t = load_dataset(config_.data_dir, Split::kTest);
    if (!t) return t.error();
    test_set_ = std::move(*t);
  }
  val_count_ = config_.val_count >= 0 ? config_.val_count : train_set_.count / 12;
  if (val_count_ >= train_set_.count) {
    return invalid_argument("--val (" + std::to_string(val_count_) +
                            ") must be smaller than the training set (" +
                            std::to_string(train_set_.count) + " images)");
  }
  split_ = split_train_val(train_set_.count, val_count_, config_.seed);
  norm_ = compute_normalization(train_set_, split_.train);
  steps_per_epoch_ = static_cast<int64_t>(split_.train.size()) / config_.batch;
  if (steps_per_epoch_ == 0) {
    return invalid_argument("--batch " + std::to_string(config_.batch) + " is larger than the " +
                            std::to_string(split_.train.size()) + " training images");
  }
  augment_ = config_.augment;
  aug_ = config_.augment_config;
  if (config_.augment_auto) {
    auto format = detect_dataset_format(config_.data_dir);
    augment_ = format && *format != DatasetFormat::kIdx;
    if (augment_) aug_ = AugmentConfig{.crop_padding = 4, .pad_mode = PadMode::kReflect,
                                       .horizontal_flip = true};
  }
  return {};
}

// The model for the dataset's input shape, and the executor on `backend` (its initial weights
// drawn from the seed).
Status Trainer::set_up_model(std::unique_ptr<Backend<float>> backend) {
  auto source = read_model_source(config_.model);
  if (!source) return source.error();
  source_ = std::move(*source);
  auto graph = build_graph(source_, model_input(train_set_));
  if (!graph) return graph.error();
  auto created = Executor<float>::create(
      *graph, std::move(backend),
      ExecutorOptions{.batch_size = config_.batch, .seed = config_.seed});
  if (!created) return created.error();
  executor_ = std::move(*created);
  return {};
}

// The optimizer (checking every step's gradients for finiteness unless the test hook turns it
// off) and the LR schedule over the run's total steps, its epoch-valued arguments in steps.
Status Trainer::set_up_optimizer() {
  WREN_RETURN_IF_ERROR(config_.optimizer.validate());
  // Every step's optimizer computes the global gradient norm and skips itself when it is not
  // finite (on cuda/emu the kernel decides on the device, inside a recorded step too).
  OptimizerConfig optimizer_config = config_.optimizer;
  optimizer_config.check_finite = config_.check_gradients;
  auto optimizer = RunOptimizer::create(optimizer_config, executor());
  if (!optimizer) return optimizer.error();
  optimizer_.emplace(std::move(*optimizer));
  total_steps_ = config_.steps > 0
                     ? config_.steps
                     : static_cast<int64_t>(std::llround(
                           config_.epochs * static_cast<double>(steps_per_epoch_)));
  if (total_steps_ <= 0) return invalid_argument("--epochs/--steps give no training steps");
  EpochSpec epochs = config_.schedule_epochs;
  epochs.steps_per_epoch = steps_per_epoch_;
  epochs.total.reset();
  ScheduleConfig sched_config = config_.schedule;
  sched_config.total_steps = total_steps_;
  auto converted = to_steps(sched_config, epochs);
  if (!converted) return converted.error();
  schedule_config_ = *converted;
  if (config_.default_warmup && schedule_config_.warmup_steps >= total_steps_) {
    schedule_config_.warmup_steps = total_steps_ / 10;
  }
  auto schedule = Schedule::create(schedule_config_);
  if (!schedule) return schedule.error();
  schedule_.emplace(std::move(*schedule));
  return {};
}

// The starting point: the executor's seeded weights, --init-from's weights, or (--resume) a
// checkpoint's weights, optimizer state and run position.
Status Trainer::set_up_start() {
  if (!config_.init_from.empty()) {
    WREN_RETURN_IF_ERROR(load_weights(config_.init_from, executor(), /*require_buffers=*/false));
  }
  if (!config_.resume.empty()) {
    auto resumed = optimizer_->resume(config_.resume, executor());
    if (!resumed) return resumed.error();
    state_ = *resumed;
  }
  return {};
}

// On cuda and emu the training set is held in device memory and batches are made there
// (bit-identical to make_batch<float>), straight into the executor's input and labels; on the
// cpu they are made on the host (run_epochs sizes images_ and labels_).
Status Trainer::set_up_batches() {
  auto batcher = executor().backend().make_batcher(train_set_, norm_, aug_, config_.batch);
  if (!batcher) return batcher.error();
  batcher_ = std::move(*batcher);
  if (batcher_) {
    auto in = executor().input("image");
    if (!in) return in.error();
    auto lab = executor().labels("label");
    if (!lab) return lab.error();
    device_images_ = in->data;
    device_labels_ = lab->data;
  }
  return {};
}

// Step capture (CUDA graphs): forward, backward and the optimizer recorded once and replayed
// each step; the host only uploads the LR and makes the batch. Needs the device optimizer and
// batcher, and no dropout (its step number would be frozen into the recording).
Status Trainer::set_up_step() {
  DeviceOptimizer* dev_opt = optimizer_->device();
  bool has_dropout = false;
  for (const Node& n : graph().nodes()) has_dropout = has_dropout || n.kind == OpKind::kDropout;
  use_capture_ = config_.cuda_graph && dev_opt && batcher_ && executor().backend().can_capture() &&
                 !has_dropout;
  if (config_.cuda_graph && dev_opt && has_dropout)
    std::fprintf(log_, "note: the model has dropout: the step is launched op by op, not replayed "
                       "from a CUDA graph\n");
  // A recorded step also checks the loss on the device (op by op, the host reads it first).
  device_loss_ = config_.check_gradients ? executor().value(graph().loss()).data : nullptr;
  return {};
}

// The run directory: config.json (the config as resolved: schedule in steps, augmentation and
// validation size decided), metrics.jsonl (appended to on --resume; a fresh run refuses a
// directory that already holds one), the checkpoints' metadata, and the run's summary line.
Status Trainer::set_up_run_directory() {
  result_.out_dir = config_.out_dir.empty() ? timestamp_dir() : config_.out_dir;
  std::error_code ec;
  fs::create_directories(result_.out_dir, ec);
  if (ec) return io_error("--out " + result_.out_dir + ": " + ec.message());
  const std::string metrics_path = result_.out_dir + "/metrics.jsonl";
  if (config_.resume.empty() && fs::exists(metrics_path)) {
    return invalid_argument("--out " + result_.out_dir +
                            " already holds a run (metrics.jsonl); choose another directory or "
                            "--resume " + result_.out_dir + "/last.safetensors");
  }
  TrainConfig resolved = config_;
  resolved.out_dir = result_.out_dir;
  resolved.schedule = schedule_config_;
  resolved.schedule_epochs = EpochSpec{};  // converted into `schedule` by set_up_optimizer
  resolved.default_warmup = false;
  resolved.augment = augment_;
  resolved.augment_config = aug_;
  resolved.augment_auto = false;
  resolved.val_count = val_count_;
  const std::string config_json = config_to_json(resolved);
  WREN_RETURN_IF_ERROR(write_file_atomic(result_.out_dir + "/config.json", config_json));
  WREN_RETURN_IF_ERROR(metrics_.open(metrics_path, !config_.resume.empty()));

  checkpoint_info_ = CheckpointInfo{.config_json = config_json,
                                    .model_name = source_.name,
                                    .model_text = source_.text,
                                    .data_dir = config_.data_dir,
                                    .normalization = norm_,
                                    .input = model_input(train_set_)};

  std::fprintf(log_, "model %s: %lld parameters; data %s: %lld train, %lld val, %lld test; "
                     "%lld steps of batch %d (%lld per epoch)%s\n",
               source_.name.c_str(), static_cast<long long>(graph().param_count()),
               config_.data_dir.c_str(), static_cast<long long>(split_.train.size()),
               static_cast<long long>(split_.val.size()),
               static_cast<long long>(test_set_ ? test_set_->count : 0),
               static_cast<long long>(total_steps_), config_.batch,
               static_cast<long long>(steps_per_epoch_), augment_ ? ", augmented" : "");
  std::fprintf(log_, "run directory: %s\n", result_.out_dir.c_str());
  return {};
}

}  // namespace train_internal

Expected<Graph> load_model(const std::string& model, const ModelInput& input) {
  auto source = train_internal::read_model_source(model);
  if (!source) return source.error();
  return train_internal::build_graph(*source, input);
}

}  // namespace wren
