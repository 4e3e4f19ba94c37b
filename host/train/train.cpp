// The training loop, evaluation and the run directory (include/wren/train.h).
#include "wren/train.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "train/checkpoint.h"
#include "train/json_value.h"
#include "train/progress.h"
#include "wren/atomic_file.h"
#include "wren/device.h"
#include "wren/model_file.h"
#include "wren/models.h"

namespace wren {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

Json optimizer_json(const OptimizerConfig& o) {
  return Json{{"kind", to_string(o.kind)},
              {"momentum", o.momentum},
              {"dampening", o.dampening},
              {"nesterov", o.nesterov},
              {"beta1", o.beta1},
              {"beta2", o.beta2},
              {"eps", o.eps},
              {"weight_decay", o.weight_decay},
              {"wd_mode", to_string(o.weight_decay_mode())},
              {"l1", o.l1},
              {"l1_mode", to_string(o.l1_mode)},
              {"clip_norm", o.clip_norm}};
}

Json schedule_json(const ScheduleConfig& s) {
  return Json{{"kind", std::string(to_string(s.kind))},
              {"lr", s.lr},
              {"total_steps", s.total_steps},
              {"lr_end", s.lr_end},
              {"lr_min", s.lr_min},
              {"gamma", s.gamma},
              {"step_size", s.step_size},
              {"milestones", s.milestones},
              {"staircase", s.staircase},
              {"power", s.power},
              {"restart_period", s.restart_period},
              {"restart_mult", s.restart_mult},
              {"pct_start", s.pct_start},
              {"div_factor", s.div_factor},
              {"final_div_factor", s.final_div_factor},
              {"inv_sqrt_warmup", s.inv_sqrt_warmup},
              {"decay", s.decay},
              {"warmup_steps", s.warmup_steps},
              {"warmup_start_factor", s.warmup_start_factor}};
}

Json epochs_json(const EpochSpec& e) {
  Json j = Json::object();
  auto put = [&](const char* key, const std::optional<double>& v) {
    if (v) j[key] = *v;
  };
  put("total", e.total);
  put("warmup", e.warmup);
  put("step_size", e.step_size);
  put("restart_period", e.restart_period);
  put("inv_sqrt_warmup", e.inv_sqrt_warmup);
  if (!e.milestones.empty()) j["milestones"] = e.milestones;
  return j;
}

std::string timestamp_dir() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "runs/%Y%m%d-%H%M%S", &tm);
  return buf;
}

// Model text for a zoo name is empty: the checkpoint records the name instead.
struct ModelSource {
  std::string name;  // zoo name, or the file path
  std::string text;  // the model file's contents ("" for a zoo model)
};

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

// The logits: the loss op's first input.
Expected<Value> logits_value(const Graph& graph) {
  for (const Node& n : graph.nodes()) {
    if (n.output == graph.loss().id && !n.inputs.empty()) return Value{n.inputs[0]};
  }
  return invalid_argument("the model has no loss op (softmax_ce)");
}

// Mean CE and correct predictions of the first `valid` rows of logits [rows, classes].
void score_logits(const std::vector<float>& logits, int classes, std::span<const int32_t> labels,
                  int64_t valid, EvalResult& out) {
  for (int64_t i = 0; i < valid; ++i) {
    const float* row = logits.data() + i * classes;
    int best = 0;
    double max = row[0];
    for (int c = 1; c < classes; ++c) {
      if (row[c] > row[best]) best = c;
      max = std::max(max, static_cast<double>(row[c]));
    }
    double sum = 0.0;
    for (int c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(row[c]) - max);
    const int32_t label = labels[static_cast<size_t>(i)];
    out.loss += std::log(sum) + max - row[label];
    out.accuracy += best == label ? 1.0 : 0.0;
    out.confusion[static_cast<size_t>(label * classes + best)] += 1;
  }
}

// The device a run trains on. auto: the GPU when this build has the CUDA backend and one is
// visible, else the CPU, with a one-line note either way.
Expected<std::unique_ptr<Backend<float>>> make_train_backend(const std::string& device,
                                                             const std::string& math,
                                                             const std::string& linear,
                                                             std::FILE* log) {
  BackendOptions options;
  if (linear == "wren") {
    options.linear = LinearImpl::kWren;
  } else if (linear == "cublas") {
    options.linear = LinearImpl::kCublas;
  } else {
    return invalid_argument("--linear " + linear + ": expected wren or cublas");
  }
  if (math == "fp32") {
    options.math = MathMode::kFp32;
  } else if (math == "tf32") {
    options.math = MathMode::kTf32;
  } else {
    return invalid_argument("--math " + math + ": expected fp32 or tf32");
  }
  if (device == "cpu") {
    options.device = Device::kCpu;
  } else if (device == "cuda") {
    options.device = Device::kCuda;
  } else if (device == "emu") {
    options.device = Device::kEmu;
  } else if (device == "auto") {
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
  } else {
    return invalid_argument("--device " + device + ": expected auto, cpu, cuda or emu");
  }
  auto backend = make_backend(options);
  if (!backend) return backend.error();
  if (options.device == Device::kEmu)
    std::fprintf(log, "note: device emu runs the CUDA kernels in the SIMT emulator on the CPU: "
                      "for checking them, not for speed\n");
  return backend;
}

// First op (in forward order) whose output holds a NaN or an infinity: where a divergence
// started.
std::string first_non_finite_op(Executor<float>& ex) {
  const Graph& g = ex.graph();
  for (const Node& n : g.nodes()) {
    if (n.kind == OpKind::kInput || n.kind == OpKind::kLabels || n.output < 0) continue;
    const std::vector<float> v = ex.download(ex.value(Value{n.output}));
    for (float x : v) {
      if (!std::isfinite(x)) return "'" + n.name + "' (" + to_string(n.kind) + ")";
    }
  }
  const std::vector<float> p = ex.download(ex.params());
  for (const ParamInfo& info : g.params()) {
    for (int64_t i = 0; i < info.shape.numel(); ++i) {
      if (!std::isfinite(p[static_cast<size_t>(info.offset + i)])) {
        return "parameter '" + info.name + "'";
      }
    }
  }
  return "the loss op";
}

bool any_non_finite(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
}

// Where a backward pass first produced a NaN or an infinity: the first op in backward order
// (the loss op first) whose parameter gradients or input gradients hold one, or else the
// first parameter (in offset order) whose gradient does (e.g. one written after the backward
// pass). Reads the gradients of the last backward pass, which the arena still holds.
std::string first_non_finite_gradient(Executor<float>& ex) {
  const Graph& g = ex.graph();
  const std::vector<float> grads = ex.download(ex.grads());
  auto param_bad = [&](int index) {
    const ParamInfo& info = g.params()[static_cast<size_t>(index)];
    for (int64_t i = 0; i < info.shape.numel(); ++i)
      if (!std::isfinite(grads[static_cast<size_t>(info.offset + i)])) return true;
    return false;
  };
  for (size_t k = g.nodes().size(); k-- > 0;) {
    const Node& n = g.nodes()[k];
    if (n.kind == OpKind::kInput || n.kind == OpKind::kLabels) continue;
    const std::string op = "'" + n.name + "' (" + to_string(n.kind) + ")";
    for (const int p : {n.weight, n.bias}) {
      if (p >= 0 && param_bad(p))
        return op + ", the gradient of parameter '" + g.params()[static_cast<size_t>(p)].name + "'";
    }
    for (const int in : n.inputs) {
      const TensorView<float> dx = ex.value_grad(Value{in});
      if (dx.data == nullptr || !any_non_finite(ex.download(dx))) continue;
      const int producer = g.values()[static_cast<size_t>(in)].producer;
      const std::string from = producer >= 0 ? g.nodes()[static_cast<size_t>(producer)].name
                                             : "value " + std::to_string(in);
      return op + ", the gradient of its input (the output of '" + from + "')";
    }
  }
  for (size_t p = 0; p < g.params().size(); ++p) {
    if (param_bad(static_cast<int>(p)))
      return "the gradient of parameter '" + g.params()[p].name + "'";
  }
  return "no gradient the trainer can read (a non-finite value inside the optimizer's input)";
}

// A device allocation of the trainer's own (the test hook's scalar, the buffer backup),
// released with the backend.
class DeviceScratch {
 public:
  DeviceScratch(Backend<float>& backend, size_t floats) : backend_(backend) {
    ptr_ = static_cast<float*>(backend.allocate(std::max<size_t>(floats, 1) * sizeof(float)));
  }
  ~DeviceScratch() {
    if (ptr_) backend_.release(ptr_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  float* get() const { return ptr_; }

 private:
  Backend<float>& backend_;
  float* ptr_ = nullptr;
};

// Set by SIGINT/SIGTERM while train() runs: the loop stops at the next step boundary and saves
// last.safetensors, so an interrupted run loses nothing and resumes bit-identically.
volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void request_stop(int) { g_stop_requested = 1; }

// Installs the handlers for the lifetime of a train() call and restores the previous ones.
class StopSignals {
 public:
  StopSignals() {
    g_stop_requested = 0;
    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_{};
};

class MetricsLog {
 public:
  Status open(const std::string& path, bool append) {
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
  ~MetricsLog() {
    if (file_) std::fclose(file_);
  }
  Status write(const Json& record) {
    const std::string line = record.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_)) {
      return io_error(path_ + ": write failed: " + std::strerror(errno));
    }
    return {};
  }

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

Json eval_json(const std::optional<EvalResult>& r, const char* what) {
  Json j = Json::object();
  if (r) {
    j[std::string(what) + "_loss"] = r->loss;
    j[std::string(what) + "_acc"] = r->accuracy;
  }
  return j;
}

}  // namespace

Expected<Graph> load_model(const std::string& model, const ModelInput& input) {
  auto source = read_model_source(model);
  if (!source) return source.error();
  return build_graph(*source, input);
}

std::string config_to_json(const TrainConfig& c) {
  Json aug{{"auto", c.augment_auto},
           {"enabled", c.augment},
           {"crop_padding", c.augment_config.crop_padding},
           {"pad_mode", c.augment_config.pad_mode == PadMode::kReflect ? "reflect" : "zero"},
           {"horizontal_flip", c.augment_config.horizontal_flip},
           {"cutout", c.augment_config.cutout}};
  Json j{{"model", c.model},
         {"data_dir", c.data_dir},
         {"device", c.device},
         {"math", c.math},
         {"cuda_graph", c.cuda_graph},
         {"linear", c.linear},
         {"epochs", c.epochs},
         {"steps", c.steps},
         {"batch", c.batch},
         {"seed", c.seed},
         {"shuffle", c.shuffle},
         {"augment", aug},
         {"val_count", c.val_count},
         {"evaluate_test", c.evaluate_test},
         {"optimizer", optimizer_json(c.optimizer)},
         {"schedule", schedule_json(c.schedule)},
         {"schedule_epochs", epochs_json(c.schedule_epochs)},
         {"out_dir", c.out_dir},
         {"log_every", c.log_every},
         {"init_from", c.init_from},
         {"resume", c.resume},
         {"on_nonfinite", c.on_nonfinite}};
  return j.dump(2);
}

Expected<TrainConfig> config_from_json(const std::string& text) {
  TrainConfig c;
  try {
    const Json j = Json::parse(text);
    // Absent keys keep their defaults, so older configs still load.
    auto get = [](const Json& obj, const char* key, auto& field) {
      if (obj.contains(key) && !obj.at(key).is_null()) {
        field = json_value<std::remove_reference_t<decltype(field)>>(obj.at(key), key);
      }
    };
    get(j, "model", c.model);
    get(j, "data_dir", c.data_dir);
    get(j, "device", c.device);
    get(j, "math", c.math);
    get(j, "cuda_graph", c.cuda_graph);
    get(j, "linear", c.linear);
    get(j, "epochs", c.epochs);
    get(j, "steps", c.steps);
    get(j, "batch", c.batch);
    get(j, "seed", c.seed);
    get(j, "shuffle", c.shuffle);
    get(j, "val_count", c.val_count);
    get(j, "evaluate_test", c.evaluate_test);
    get(j, "out_dir", c.out_dir);
    get(j, "log_every", c.log_every);
    get(j, "init_from", c.init_from);
    get(j, "on_nonfinite", c.on_nonfinite);
    if (j.contains("augment")) {
      const Json& a = j.at("augment");
      get(a, "auto", c.augment_auto);
      get(a, "enabled", c.augment);
      get(a, "crop_padding", c.augment_config.crop_padding);
      get(a, "horizontal_flip", c.augment_config.horizontal_flip);
      get(a, "cutout", c.augment_config.cutout);
      std::string pad = "zero";
      get(a, "pad_mode", pad);
      c.augment_config.pad_mode = pad == "reflect" ? PadMode::kReflect : PadMode::kZero;
    }
    if (j.contains("optimizer")) {
      const Json& o = j.at("optimizer");
      std::string kind = "adamw", wd_mode, l1_mode = "coupled";
      get(o, "kind", kind);
      c.optimizer.kind = kind == "sgd"    ? OptimizerKind::kSgd
                         : kind == "adam" ? OptimizerKind::kAdam
                                          : OptimizerKind::kAdamW;
      get(o, "momentum", c.optimizer.momentum);
      get(o, "dampening", c.optimizer.dampening);
      get(o, "nesterov", c.optimizer.nesterov);
      get(o, "beta1", c.optimizer.beta1);
      get(o, "beta2", c.optimizer.beta2);
      get(o, "eps", c.optimizer.eps);
      get(o, "weight_decay", c.optimizer.weight_decay);
      get(o, "wd_mode", wd_mode);
      if (!wd_mode.empty()) {
        c.optimizer.wd_mode = wd_mode == "decoupled" ? DecayMode::kDecoupled : DecayMode::kCoupled;
      }
      get(o, "l1", c.optimizer.l1);
      get(o, "l1_mode", l1_mode);
      c.optimizer.l1_mode = l1_mode == "decoupled" ? DecayMode::kDecoupled : DecayMode::kCoupled;
      get(o, "clip_norm", c.optimizer.clip_norm);
    }
    if (j.contains("schedule")) {
      const Json& s = j.at("schedule");
      std::string kind = "constant";
      get(s, "kind", kind);
      auto parsed = parse_schedule_kind(kind);
      if (!parsed) return parsed.error();
      c.schedule.kind = *parsed;
      get(s, "lr", c.schedule.lr);
      get(s, "total_steps", c.schedule.total_steps);
      get(s, "lr_end", c.schedule.lr_end);
      get(s, "lr_min", c.schedule.lr_min);
      get(s, "gamma", c.schedule.gamma);
      get(s, "step_size", c.schedule.step_size);
      get(s, "milestones", c.schedule.milestones);
      get(s, "staircase", c.schedule.staircase);
      get(s, "power", c.schedule.power);
      get(s, "restart_period", c.schedule.restart_period);
      get(s, "restart_mult", c.schedule.restart_mult);
      get(s, "pct_start", c.schedule.pct_start);
      get(s, "div_factor", c.schedule.div_factor);
      get(s, "final_div_factor", c.schedule.final_div_factor);
      get(s, "inv_sqrt_warmup", c.schedule.inv_sqrt_warmup);
      get(s, "decay", c.schedule.decay);
      get(s, "warmup_steps", c.schedule.warmup_steps);
      get(s, "warmup_start_factor", c.schedule.warmup_start_factor);
    }
    c.schedule_epochs = EpochSpec{};
    if (j.contains("schedule_epochs")) {
      const Json& e = j.at("schedule_epochs");
      auto opt = [&](const char* key, std::optional<double>& field) {
        if (e.contains(key)) field = e.at(key).get<double>();
      };
      opt("warmup", c.schedule_epochs.warmup);
      opt("step_size", c.schedule_epochs.step_size);
      opt("restart_period", c.schedule_epochs.restart_period);
      opt("inv_sqrt_warmup", c.schedule_epochs.inv_sqrt_warmup);
      get(e, "milestones", c.schedule_epochs.milestones);
    }
  } catch (const std::exception& e) {
    return data_error(std::string("run config: ") + e.what());
  }
  return c;
}

Expected<EvalResult> evaluate(Executor<float>& ex, const Dataset& dataset,
                              std::span<const int64_t> indices,
                              const Normalization& normalization) {
  auto logits = logits_value(ex.graph());
  if (!logits) return logits.error();
  const int batch = ex.batch_size();
  const int classes = dataset.num_classes;
  const int64_t logit_width = ex.graph().value_info(*logits).shape.numel();
  if (logit_width != classes) {
    return invalid_argument("the model has " + std::to_string(logit_width) +
                            " outputs but the dataset has " + std::to_string(classes) +
                            " classes");
  }
  EvalResult r;
  r.classes = classes;
  r.confusion.assign(static_cast<size_t>(classes * classes), 0);
  std::vector<float> images(static_cast<size_t>(batch * dataset.image_size()));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  std::vector<int64_t> chunk(static_cast<size_t>(batch));
  for (size_t begin = 0; begin < indices.size(); begin += static_cast<size_t>(batch)) {
    const size_t valid = std::min(indices.size() - begin, static_cast<size_t>(batch));
    // Pad the last batch by repeating its first sample; padded rows are not scored.
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = indices[begin + (i < valid ? i : 0)];
    make_batch<float>(dataset, chunk, normalization, AugmentConfig{}, false, 0, 0, images.data(),
                      labels.data());
    WREN_RETURN_IF_ERROR(ex.set_input("image", images));
    WREN_RETURN_IF_ERROR(ex.set_labels("label", labels));
    WREN_RETURN_IF_ERROR(ex.forward(Mode::kEval));
    score_logits(ex.download(ex.value(*logits)), classes, labels, static_cast<int64_t>(valid), r);
  }
  r.count = static_cast<int64_t>(indices.size());
  if (r.count > 0) {
    r.loss /= static_cast<double>(r.count);
    r.accuracy /= static_cast<double>(r.count);
  }
  return r;
}

std::string format_confusion(const EvalResult& r) {
  std::ostringstream out;
  const int k = r.classes;
  out << "confusion matrix (rows: true label, columns: predicted)\n      ";
  for (int c = 0; c < k; ++c) out << std::setw(6) << c;
  out << "   accuracy\n";
  for (int t = 0; t < k; ++t) {
    out << std::setw(6) << t;
    int64_t row_total = 0;
    for (int p = 0; p < k; ++p) {
      const int64_t v = r.confusion[static_cast<size_t>(t * k + p)];
      row_total += v;
      out << std::setw(6) << v;
    }
    const double acc = row_total ? static_cast<double>(r.confusion[static_cast<size_t>(t * k + t)]) /
                                       static_cast<double>(row_total)
                                 : 0.0;
    out << "   " << std::fixed << std::setprecision(4) << acc << "\n";
  }
  return out.str();
}

Expected<TrainResult> train(const TrainConfig& config, std::FILE* log) {
  // --- device ----------------------------------------------------------------------------------
  if (config.on_nonfinite != "stop" && config.on_nonfinite != "skip-step")
    return invalid_argument("--on-nonfinite " + config.on_nonfinite +
                            ": expected stop or skip-step");
  const bool skip_nonfinite = config.on_nonfinite == "skip-step";
  auto backend = make_train_backend(config.device, config.math, config.linear, log);
  if (!backend) return backend.error();
  if (config.batch <= 0) return invalid_argument("--batch must be positive");

  // --- data ------------------------------------------------------------------------------------
  auto train_set = load_dataset(config.data_dir, Split::kTrain);
  if (!train_set) return train_set.error();
  std::optional<Dataset> test_set;
  if (config.evaluate_test) {
    auto t = load_dataset(config.data_dir, Split::kTest);
    if (!t) return t.error();
    test_set = std::move(*t);
  }
  const int64_t val_count = config.val_count >= 0 ? config.val_count : train_set->count / 12;
  if (val_count >= train_set->count) {
    return invalid_argument("--val (" + std::to_string(val_count) +
                            ") must be smaller than the training set (" +
                            std::to_string(train_set->count) + " images)");
  }
  const TrainValSplit split = split_train_val(train_set->count, val_count, config.seed);
  const Normalization norm = compute_normalization(*train_set, split.train);
  const int64_t steps_per_epoch = static_cast<int64_t>(split.train.size()) / config.batch;
  if (steps_per_epoch == 0) {
    return invalid_argument("--batch " + std::to_string(config.batch) + " is larger than the " +
                            std::to_string(split.train.size()) + " training images");
  }
  bool augment = config.augment;
  AugmentConfig aug = config.augment_config;
  if (config.augment_auto) {
    auto format = detect_dataset_format(config.data_dir);
    augment = format && *format != DatasetFormat::kIdx;
    if (augment) aug = AugmentConfig{.crop_padding = 4, .pad_mode = PadMode::kReflect,
                                     .horizontal_flip = true};
  }

  // --- model, executor -------------------------------------------------------------------------
  auto source = read_model_source(config.model);
  if (!source) return source.error();
  auto graph = build_graph(*source, model_input(*train_set));
  if (!graph) return graph.error();
  auto created = Executor<float>::create(*graph, std::move(*backend),
                                         ExecutorOptions{.batch_size = config.batch,
                                                         .seed = config.seed});
  if (!created) return created.error();
  Executor<float>& ex = **created;

  // --- optimizer and schedule ------------------------------------------------------------------
  WREN_RETURN_IF_ERROR(config.optimizer.validate());
  // Every step's optimizer computes the global gradient norm and skips itself when it is not
  // finite (on cuda/emu the kernel decides on the device, inside a recorded step too).
  OptimizerConfig optimizer_config = config.optimizer;
  optimizer_config.check_finite = config.check_gradients;
  auto optimizer =
      Optimizer<float>::create(optimizer_config, param_segments(*graph), graph->param_count());
  if (!optimizer) return optimizer.error();
  // On cuda and emu the parameters live in device memory and the fused optimizer kernel updates
  // them there; `optimizer` then only holds the state for checkpoints (synced at save/resume).
  auto device_optimizer =
      ex.backend().make_optimizer(optimizer_config, param_segments(*graph), graph->param_count());
  if (!device_optimizer) return device_optimizer.error();
  DeviceOptimizer* dev_opt = device_optimizer->get();
  const int64_t total_steps =
      config.steps > 0 ? config.steps
                       : static_cast<int64_t>(std::llround(config.epochs *
                                                           static_cast<double>(steps_per_epoch)));
  if (total_steps <= 0) return invalid_argument("--epochs/--steps give no training steps");
  EpochSpec epochs = config.schedule_epochs;
  epochs.steps_per_epoch = steps_per_epoch;
  epochs.total.reset();
  ScheduleConfig sched_config = config.schedule;
  sched_config.total_steps = total_steps;
  auto converted = to_steps(sched_config, epochs);
  if (!converted) return converted.error();
  if (config.default_warmup && converted->warmup_steps >= total_steps) {
    converted->warmup_steps = total_steps / 10;
  }
  auto schedule = Schedule::create(*converted);
  if (!schedule) return schedule.error();

  // --- starting point: fresh, --init-from or --resume ------------------------------------------
  RunState state;
  if (!config.init_from.empty()) {
    WREN_RETURN_IF_ERROR(load_weights(config.init_from, ex, /*require_buffers=*/false));
  }
  if (!config.resume.empty()) {
    auto resumed = load_checkpoint(config.resume, ex, *optimizer);
    if (!resumed) return resumed.error();
    state = *resumed;
    if (dev_opt) dev_opt->upload_state(*optimizer);
  }

  // On cuda and emu the training set is held in device memory and batches are made there
  // (bit-identical to make_batch<float>); on the cpu they are made on the host.
  auto batcher_made = ex.backend().make_batcher(*train_set, norm, aug, config.batch);
  if (!batcher_made) return batcher_made.error();
  DeviceBatcher* batcher = batcher_made->get();
  float* device_images = nullptr;
  int32_t* device_labels = nullptr;
  if (batcher) {
    auto in = ex.input("image");
    if (!in) return in.error();
    auto lab = ex.labels("label");
    if (!lab) return lab.error();
    device_images = in->data;
    device_labels = lab->data;
  }
  // Step capture (CUDA graphs): forward, backward and the optimizer recorded once and replayed
  // each step; the host only uploads the LR and makes the batch. Needs the device optimizer
  // and batcher, and no dropout (its step number would be frozen into the recording).
  bool has_dropout = false;
  for (const Node& n : graph->nodes()) has_dropout = has_dropout || n.kind == OpKind::kDropout;
  const bool use_capture = config.cuda_graph && dev_opt && batcher && ex.backend().can_capture() &&
                           !has_dropout;
  if (config.cuda_graph && dev_opt && has_dropout)
    std::fprintf(log, "note: the model has dropout: the step is launched op by op, not replayed "
                      "from a CUDA graph\n");
  bool captured = false;
  // A recorded step also checks the loss on the device (op by op, the host reads it first).
  const float* device_loss = config.check_gradients ? ex.value(graph->loss()).data : nullptr;

  // skip-step leaves the batch-norm running statistics as they were too: a copy of the buffers
  // is taken on the device before each forward pass and put back when the step is skipped.
  std::optional<DeviceScratch> buffer_backup;
  const int64_t buffer_count = graph->buffer_count();
  if (skip_nonfinite && buffer_count > 0) {
    buffer_backup.emplace(ex.backend(), static_cast<size_t>(buffer_count));
    if (!buffer_backup->get())
      return unavailable("--on-nonfinite skip-step: no memory for a copy of the model's buffers");
  }

  // The test hook (TrainConfig::inject_nonfinite).
  const TrainConfig::NonFiniteInjection& inject = config.inject_nonfinite;
  const bool inject_input = inject.step >= 0 && inject.param.empty();
  std::optional<DeviceScratch> poison;  // `value` at the injected step, else 0
  float* poison_target = nullptr;       // the gradient element it is added to
  if (inject.step >= 0 && !inject.param.empty()) {
    auto target = ex.grad(inject.param);
    if (!target) return invalid_argument("inject_nonfinite: " + target.error().message());
    poison_target = target->data;
    poison.emplace(ex.backend(), 1);
    if (!poison->get()) return unavailable("inject_nonfinite: no device memory");
    const float zero = 0.0f;
    ex.backend().upload(poison->get(), &zero, sizeof zero);
  }
  float* const poison_ptr = poison ? poison->get() : nullptr;

  // --- run directory ---------------------------------------------------------------------------
  TrainResult result;
  result.out_dir = config.out_dir.empty() ? timestamp_dir() : config.out_dir;
  std::error_code ec;
  fs::create_directories(result.out_dir, ec);
  if (ec) return io_error("--out " + result.out_dir + ": " + ec.message());
  const std::string metrics_path = result.out_dir + "/metrics.jsonl";
  if (config.resume.empty() && fs::exists(metrics_path)) {
    return invalid_argument("--out " + result.out_dir +
                            " already holds a run (metrics.jsonl); choose another directory or "
                            "--resume " + result.out_dir + "/last.safetensors");
  }
  TrainConfig resolved = config;
  resolved.out_dir = result.out_dir;
  resolved.schedule = *converted;
  resolved.schedule_epochs = EpochSpec{};  // converted into `schedule` above
  resolved.default_warmup = false;
  resolved.augment = augment;
  resolved.augment_config = aug;
  resolved.augment_auto = false;
  resolved.val_count = val_count;
  const std::string config_json = config_to_json(resolved);
  WREN_RETURN_IF_ERROR(write_file_atomic(result.out_dir + "/config.json", config_json));
  MetricsLog metrics;
  WREN_RETURN_IF_ERROR(metrics.open(metrics_path, !config.resume.empty()));

  CheckpointInfo info{.config_json = config_json,
                      .model_name = source->name,
                      .model_text = source->text,
                      .data_dir = config.data_dir,
                      .normalization = norm,
                      .input = model_input(*train_set)};
  // Checkpoints read the optimizer state from `optimizer` (host memory): a device run copies its
  // state there first.
  auto save = [&](const std::string& path) -> Status {
    WREN_RETURN_IF_ERROR(ex.backend().synchronize());  // a device fault never reaches a file
    if (dev_opt) dev_opt->download_state(*optimizer);
    return save_checkpoint(path, ex, *optimizer, state, info);
  };

  std::fprintf(log, "model %s: %lld parameters; data %s: %lld train, %lld val, %lld test; "
                    "%lld steps of batch %d (%lld per epoch)%s\n",
               source->name.c_str(), static_cast<long long>(graph->param_count()),
               config.data_dir.c_str(), static_cast<long long>(split.train.size()),
               static_cast<long long>(split.val.size()),
               static_cast<long long>(test_set ? test_set->count : 0),
               static_cast<long long>(total_steps), config.batch,
               static_cast<long long>(steps_per_epoch), augment ? ", augmented" : "");
  std::fprintf(log, "run directory: %s\n", result.out_dir.c_str());

  // --- the loop --------------------------------------------------------------------------------
  std::vector<float> images(batcher ? 0 : static_cast<size_t>(config.batch * train_set->image_size()));
  std::vector<int32_t> labels(batcher ? 0 : static_cast<size_t>(config.batch));
  auto logits = logits_value(*graph);
  if (!logits) return logits.error();
  const auto start = std::chrono::steady_clock::now();
  double train_seconds = 0.0;
  int64_t trained_images = 0;
  Progress progress(config.progress, total_steps, state.step);
  const int64_t total_epochs = (total_steps + steps_per_epoch - 1) / steps_per_epoch;
  const int64_t stop_at = config.stop_after_steps > 0
                              ? std::min(total_steps, state.step + config.stop_after_steps)
                              : total_steps;
  StopSignals signals;
  for (int64_t epoch = state.epoch; epoch < total_epochs && state.step < total_steps; ++epoch) {
    const std::vector<int64_t> order = epoch_order(split.train, config.seed, epoch,
                                                   config.shuffle);
    double loss_sum = 0.0, correct = 0.0;
    int64_t seen = 0;
    EvalResult batch_score;
    batch_score.confusion.assign(
        static_cast<size_t>(train_set->num_classes * train_set->num_classes), 0);
    const int64_t first_batch = epoch == state.epoch ? state.epoch_batch : 0;
    for (int64_t b = first_batch; b < steps_per_epoch && state.step < total_steps; ++b) {
      if (state.step >= stop_at || g_stop_requested) {
        result.stopped_early = true;
        break;
      }
      const auto t0 = std::chrono::steady_clock::now();
      const std::span<const int64_t> chunk(order.data() + b * config.batch,
                                           static_cast<size_t>(config.batch));
      const bool inject_now = inject.step == state.step;
      if (batcher) {
        WREN_RETURN_IF_ERROR(batcher->make_batch(chunk, augment, config.seed,
                                                 static_cast<uint64_t>(state.step),
                                                 device_images, device_labels));
        if (inject_now && inject_input)
          ex.backend().upload(device_images, &inject.value, sizeof(float));
      } else {
        make_batch<float>(*train_set, chunk, norm, aug, augment, config.seed,
                          static_cast<uint64_t>(state.step), images.data(), labels.data());
        if (inject_now && inject_input) images[0] = inject.value;
        WREN_RETURN_IF_ERROR(ex.set_input("image", images));
        WREN_RETURN_IF_ERROR(ex.set_labels("label", labels));
      }
      if (inject_now && poison_ptr) ex.backend().upload(poison_ptr, &inject.value, sizeof(float));
      if (buffer_backup) ex.backend().copy(buffer_count, ex.buffers().data, buffer_backup->get());
      const double lr = schedule->lr(state.step);
      if (use_capture) {
        if (!captured) {
          WREN_RETURN_IF_ERROR(ex.check_train_shapes());
          WREN_RETURN_IF_ERROR(
              ex.backend().capture_step([&ex, dev_opt, poison_ptr, poison_target, device_loss] {
                ex.enqueue_train_step();
                if (poison_ptr) ex.backend().accumulate(1, poison_ptr, poison_target);
                dev_opt->enqueue_step(ex.params().data, ex.grads().data, device_loss);
              }));
          captured = true;
        }
        WREN_RETURN_IF_ERROR(dev_opt->set_lr(lr));
        WREN_RETURN_IF_ERROR(ex.backend().replay_step());
        ex.set_step(ex.step() + 1);
      } else {
        WREN_RETURN_IF_ERROR(ex.forward(Mode::kTrain));
      }
      const float loss = ex.loss();
      const bool loss_finite = std::isfinite(loss);
      // The optimizer computes the global gradient norm and applies nothing when it is not
      // finite (a kNumericError; on cuda/emu the kernel decided on the device and finish_step
      // read its flag). Op by op, a non-finite loss skips backward and optimizer altogether.
      Status applied;
      if (use_capture) {
        applied = dev_opt->finish_step();
      } else if (loss_finite) {
        WREN_RETURN_IF_ERROR(ex.backward());
        if (poison_ptr) ex.backend().accumulate(1, poison_ptr, poison_target);
        if (dev_opt) {
          applied = dev_opt->step(ex.params().data, ex.grads().data, lr);
        } else {
          applied = optimizer->step(
              std::span<float>(ex.params().data, static_cast<size_t>(ex.params().numel())),
              std::span<const float>(ex.grads().data, static_cast<size_t>(ex.grads().numel())), lr);
        }
      }
      if (inject_now && poison_ptr) {
        const float zero = 0.0f;
        ex.backend().upload(poison_ptr, &zero, sizeof zero);
      }
      const bool numeric = !applied.ok() && applied.error().code() == ErrorCode::kNumericError;
      if (!applied.ok() && !numeric) return applied.error();
      // Without the gradient check (a test hook) only clipping reports a non-finite norm: the
      // error it always was.
      if (numeric && loss_finite && !config.check_gradients) return applied.error();
      if (!loss_finite || numeric) {
        const std::string where =
            !loss_finite ? first_non_finite_op(ex) : first_non_finite_gradient(ex);
        const std::string at = "step " + std::to_string(state.step) + " (epoch " +
                               std::to_string(epoch) + ", batch " + std::to_string(b) + ")";
        if (!skip_nonfinite) {
          progress.finish();
          if (!loss_finite)
            return Error(ErrorCode::kNumericError,
                         "the loss is " + std::string(std::isnan(loss) ? "NaN" : "infinite") +
                             " at " + at + "; first non-finite values in the output of " + where +
                             ". The last good checkpoint is " + result.out_dir +
                             "/last.safetensors; try a lower --lr or --clip-norm");
          const std::string hint = ". The step was not applied; the last good checkpoint is " +
                                   result.out_dir +
                                   "/last.safetensors; try a lower --lr or --clip-norm, or "
                                   "--on-nonfinite skip-step";
          return Error(ErrorCode::kNumericError,
                       "the gradients are not finite at " + at + ", with a finite loss of " +
                           std::to_string(loss) +
                           "; first non-finite gradient in backward order: " + where + hint);
        }
        // skip-step: nothing was applied; the global step and the schedule go on.
        if (buffer_backup) ex.backend().copy(buffer_count, buffer_backup->get(), ex.buffers().data);
        const char* reason = !loss_finite ? "non-finite loss" : "non-finite gradient";
        WREN_RETURN_IF_ERROR(metrics.write(Json{{"kind", "skipped_step"},
                                                {"step", state.step},
                                                {"epoch", epoch},
                                                {"reason", reason},
                                                {"where", where}}));
        progress.pause();
        std::fprintf(log, "note: skipped %s: %s in %s; parameters and optimizer state unchanged\n",
                     at.c_str(), reason, where.c_str());
        progress.resume();
        ++result.skipped_steps;
        ++state.step;
        state.epoch_batch = b + 1;
        continue;
      }
      // Training accuracy from this step's logits (computed before the update).
      if (batcher) {
        auto right = batcher->count_correct(config.batch, train_set->num_classes,
                                            ex.value(*logits).data, device_labels);
        if (!right) return right.error();
        batch_score.accuracy += static_cast<double>(*right);
      } else {
        score_logits(ex.download(ex.value(*logits)), train_set->num_classes, labels,
                     config.batch, batch_score);
      }
      loss_sum += loss;
      seen += config.batch;
      ++state.step;
      state.epoch_batch = b + 1;
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      train_seconds += dt;
      result.step_seconds.push_back(dt);
      trained_images += config.batch;
      progress.update(epoch, total_epochs, state.step, loss, config.batch / dt);
      if (state.step % config.log_every == 0 || state.step == 1) {
        Json rec{{"kind", "step"},
                 {"step", state.step},
                 {"epoch", epoch},
                 {"loss", loss},
                 {"lr", lr},
                 {"images_per_s", trained_images / std::max(train_seconds, 1e-9)},
                 {"time_s", std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                          start).count()}};
        if (config.optimizer.clip_norm > 0)
          rec["grad_norm"] = dev_opt ? dev_opt->last_grad_norm() : optimizer->last_grad_norm();
        WREN_RETURN_IF_ERROR(metrics.write(rec));
      }
    }
    correct = batch_score.accuracy;
    if (result.stopped_early) {
      // Mid-epoch stop: save where we are (no evaluation; the epoch is not over).
      progress.finish();
      state.epoch = epoch;
      if (config.write_checkpoints) {
        WREN_RETURN_IF_ERROR(save(result.out_dir + "/last.safetensors"));
      }
      std::fprintf(log, "stopped at step %lld of %lld; continue with --resume %s/last.safetensors\n",
                   static_cast<long long>(state.step), static_cast<long long>(total_steps),
                   result.out_dir.c_str());
      break;
    }
    // --- epoch end: evaluate, log, checkpoint ---------------------------------------------------
    progress.pause();
    TrainEpoch rec;
    rec.epoch = epoch;
    rec.step = state.step;
    rec.train_loss = seen ? loss_sum / static_cast<double>(seen / config.batch) : 0.0;
    rec.train_accuracy = seen ? correct / static_cast<double>(seen) : 0.0;
    rec.lr = schedule->lr(std::max<int64_t>(state.step - 1, 0));
    if (!split.val.empty()) {
      auto v = evaluate(ex, *train_set, split.val, norm);
      if (!v) return v.error();
      rec.val = *v;
    }
    if (test_set) {
      std::vector<int64_t> all(static_cast<size_t>(test_set->count));
      for (int64_t i = 0; i < test_set->count; ++i) all[static_cast<size_t>(i)] = i;
      auto t = evaluate(ex, *test_set, all, norm);
      if (!t) return t.error();
      rec.test = *t;
      result.final_test = *t;
    }
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    Json j{{"kind", "epoch"},
           {"epoch", epoch},
           {"step", state.step},
           {"train_loss", rec.train_loss},
           {"train_acc", rec.train_accuracy},
           {"lr", rec.lr},
           {"time_s", rec.seconds}};
    j.update(eval_json(rec.val, "val"));
    j.update(eval_json(rec.test, "test"));
    const std::vector<float> params = ex.download(ex.params());
    Json norms = Json::object(), near_zero = Json::object();
    for (const ParamInfo& p : graph->params()) {
      double sq = 0.0;
      int64_t zeros = 0;
      for (int64_t i = 0; i < p.shape.numel(); ++i) {
        const double w = params[static_cast<size_t>(p.offset + i)];
        sq += w * w;
        zeros += std::fabs(w) < kNearZeroWeight;
      }
      norms[p.name] = std::sqrt(sq);
      near_zero[p.name] = static_cast<double>(zeros) / static_cast<double>(p.shape.numel());
    }
    j["weight_norm"] = norms;
    if (config.optimizer.l1 > 0) j["near_zero_fraction"] = near_zero;
    WREN_RETURN_IF_ERROR(metrics.write(j));

    std::string line = "epoch " + std::to_string(epoch + 1) + "/" +
                       std::to_string(total_epochs) + ": train loss " +
                       std::to_string(rec.train_loss) + " acc " +
                       std::to_string(rec.train_accuracy);
    if (rec.val) line += ", val acc " + std::to_string(rec.val->accuracy);
    if (rec.test) line += ", test acc " + std::to_string(rec.test->accuracy);
    std::fprintf(log, "%s (%.1f s)\n", line.c_str(), rec.seconds);

    // Checkpoints: `last` every epoch; `best` when validation accuracy improves (or, without a
    // validation split, every epoch).
    if (state.epoch_batch >= steps_per_epoch) {
      state.epoch = epoch + 1;
      state.epoch_batch = 0;
    } else {
      state.epoch = epoch;
    }
    const double score = rec.val ? rec.val->accuracy : 0.0;
    const bool best = !rec.val || score > result.best_val_accuracy;
    if (rec.val) result.best_val_accuracy = std::max(result.best_val_accuracy, score);
    state.best_val_accuracy = result.best_val_accuracy;
    if (config.write_checkpoints) {
      WREN_RETURN_IF_ERROR(save(result.out_dir + "/last.safetensors"));
      if (best) {
        WREN_RETURN_IF_ERROR(save(result.out_dir + "/best.safetensors"));
      }
    }
    result.epochs.push_back(rec);
    progress.resume();
  }
  progress.finish();
  result.steps = state.step;
  result.images_per_second = trained_images / std::max(train_seconds, 1e-9);
  result.device_peak_bytes = ex.backend().peak_allocated_bytes();
  return result;
}

Expected<EvalResult> evaluate_checkpoint(const std::string& path, const std::string& data_dir,
                                         Split split, int batch, const std::string& device) {
  auto file = read_checkpoint_file(path);
  if (!file) return file.error();
  auto info = read_checkpoint_info(*file);
  if (!info) return info.error();
  const std::string dir = data_dir.empty() ? info->data_dir : data_dir;
  auto dataset = load_dataset(dir, split);
  if (!dataset) return dataset.error();
  const ModelInput in = model_input(*dataset);
  if (in.channels != info->input.channels || in.height != info->input.height ||
      in.width != info->input.width || in.classes != info->input.classes) {
    return invalid_argument(path + " was trained on " + std::to_string(info->input.channels) +
                            "x" + std::to_string(info->input.height) + "x" +
                            std::to_string(info->input.width) + " images with " +
                            std::to_string(info->input.classes) + " classes; " + dir +
                            " holds " + std::to_string(in.channels) + "x" +
                            std::to_string(in.height) + "x" + std::to_string(in.width) +
                            " with " + std::to_string(in.classes));
  }
  auto graph = build_graph(ModelSource{info->model_name, info->model_text}, in);
  if (!graph) return graph.error();
  std::FILE* quiet = std::fopen("/dev/null", "w");
  auto backend = make_train_backend(device, "fp32", "wren", quiet ? quiet : stderr);
  if (quiet) std::fclose(quiet);
  if (!backend) return backend.error();
  auto created = Executor<float>::create(*graph, std::move(*backend),
                                         ExecutorOptions{.batch_size = batch, .seed = 0});
  if (!created) return created.error();
  WREN_RETURN_IF_ERROR(load_weights(*file, **created, /*require_buffers=*/true));
  std::vector<int64_t> all(static_cast<size_t>(dataset->count));
  for (int64_t i = 0; i < dataset->count; ++i) all[static_cast<size_t>(i)] = i;
  return evaluate(**created, *dataset, all, info->normalization);
}

}  // namespace wren
