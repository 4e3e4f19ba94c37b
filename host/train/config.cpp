// The run config as JSON (config.json, the checkpoint metadata) and the spellings of its
// fixed-choice settings (include/wren/train.h). The spellings are the CLI's and the files':
// a run config written before these settings were enums reads back the same, and is written
// the same.
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "train/json_value.h"
#include "wren/train.h"

namespace wren {
namespace {

using Json = nlohmann::json;

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

// Absent and null keys keep the field's default, so older configs still load. Throws (as
// json_value does) on a value of the wrong type; config_from_json reports it.
template <class T>
void get(const Json& obj, const char* key, T& field) {
  if (obj.contains(key) && !obj.at(key).is_null()) field = json_value<T>(obj.at(key), key);
}

// A fixed-choice field, spelled as on the CLI: an unknown spelling is the flag's own error.
template <class T, class Parse>
Status get_choice(const Json& obj, const char* key, T& field, Parse parse) {
  if (!obj.contains(key) || obj.at(key).is_null()) return {};
  std::string name;
  get(obj, key, name);
  Expected<T> parsed = parse(name);
  if (!parsed) return parsed.error();
  field = *parsed;
  return {};
}

void read_augment(const Json& a, TrainConfig& c) {
  get(a, "auto", c.augment_auto);
  get(a, "enabled", c.augment);
  get(a, "crop_padding", c.augment_config.crop_padding);
  get(a, "horizontal_flip", c.augment_config.horizontal_flip);
  get(a, "cutout", c.augment_config.cutout);
  std::string pad = "zero";
  get(a, "pad_mode", pad);
  c.augment_config.pad_mode = pad == "reflect" ? PadMode::kReflect : PadMode::kZero;
}

void read_optimizer(const Json& o, OptimizerConfig& c) {
  std::string kind = "adamw", wd_mode, l1_mode = "coupled";
  get(o, "kind", kind);
  c.kind = kind == "sgd"    ? OptimizerKind::kSgd
           : kind == "adam" ? OptimizerKind::kAdam
                            : OptimizerKind::kAdamW;
  get(o, "momentum", c.momentum);
  get(o, "dampening", c.dampening);
  get(o, "nesterov", c.nesterov);
  get(o, "beta1", c.beta1);
  get(o, "beta2", c.beta2);
  get(o, "eps", c.eps);
  get(o, "weight_decay", c.weight_decay);
  get(o, "wd_mode", wd_mode);
  if (!wd_mode.empty()) {
    c.wd_mode = wd_mode == "decoupled" ? DecayMode::kDecoupled : DecayMode::kCoupled;
  }
  get(o, "l1", c.l1);
  get(o, "l1_mode", l1_mode);
  c.l1_mode = l1_mode == "decoupled" ? DecayMode::kDecoupled : DecayMode::kCoupled;
  get(o, "clip_norm", c.clip_norm);
}

Status read_schedule(const Json& s, ScheduleConfig& c) {
  std::string kind = "constant";
  get(s, "kind", kind);
  auto parsed = parse_schedule_kind(kind);
  if (!parsed) return parsed.error();
  c.kind = *parsed;
  get(s, "lr", c.lr);
  get(s, "total_steps", c.total_steps);
  get(s, "lr_end", c.lr_end);
  get(s, "lr_min", c.lr_min);
  get(s, "gamma", c.gamma);
  get(s, "step_size", c.step_size);
  get(s, "milestones", c.milestones);
  get(s, "staircase", c.staircase);
  get(s, "power", c.power);
  get(s, "restart_period", c.restart_period);
  get(s, "restart_mult", c.restart_mult);
  get(s, "pct_start", c.pct_start);
  get(s, "div_factor", c.div_factor);
  get(s, "final_div_factor", c.final_div_factor);
  get(s, "inv_sqrt_warmup", c.inv_sqrt_warmup);
  get(s, "decay", c.decay);
  get(s, "warmup_steps", c.warmup_steps);
  get(s, "warmup_start_factor", c.warmup_start_factor);
  return {};
}

void read_schedule_epochs(const Json& e, EpochSpec& c) {
  auto opt = [&](const char* key, std::optional<double>& field) {
    if (e.contains(key)) field = e.at(key).get<double>();
  };
  opt("warmup", c.warmup);
  opt("step_size", c.step_size);
  opt("restart_period", c.restart_period);
  opt("inv_sqrt_warmup", c.inv_sqrt_warmup);
  get(e, "milestones", c.milestones);
}

}  // namespace

const char* to_string(DeviceChoice device) {
  switch (device) {
    case DeviceChoice::kAuto: return "auto";
    case DeviceChoice::kCpu: return "cpu";
    case DeviceChoice::kCuda: return "cuda";
    case DeviceChoice::kEmu: return "emu";
  }
  return "?";
}

Expected<DeviceChoice> parse_device_choice(std::string_view name) {
  for (DeviceChoice d :
       {DeviceChoice::kAuto, DeviceChoice::kCpu, DeviceChoice::kCuda, DeviceChoice::kEmu}) {
    if (name == to_string(d)) return d;
  }
  return invalid_argument("--device " + std::string(name) + ": expected auto, cpu, cuda or emu");
}

Expected<MathMode> parse_math_mode(std::string_view name) {
  for (MathMode m : {MathMode::kFp32, MathMode::kTf32}) {
    if (name == to_string(m)) return m;
  }
  return invalid_argument("--math " + std::string(name) + ": expected fp32 or tf32");
}

Expected<LinearImpl> parse_linear_impl(std::string_view name) {
  for (LinearImpl l : {LinearImpl::kWren, LinearImpl::kCublas}) {
    if (name == to_string(l)) return l;
  }
  return invalid_argument("--linear " + std::string(name) + ": expected wren or cublas");
}

const char* to_string(NonFinitePolicy policy) {
  switch (policy) {
    case NonFinitePolicy::kStop: return "stop";
    case NonFinitePolicy::kSkipStep: return "skip-step";
  }
  return "?";
}

Expected<NonFinitePolicy> parse_nonfinite_policy(std::string_view name) {
  for (NonFinitePolicy p : {NonFinitePolicy::kStop, NonFinitePolicy::kSkipStep}) {
    if (name == to_string(p)) return p;
  }
  return invalid_argument("--on-nonfinite " + std::string(name) +
                          ": expected stop or skip-step");
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
         {"device", to_string(c.device)},
         {"math", to_string(c.math)},
         {"cuda_graph", c.cuda_graph},
         {"linear", to_string(c.linear)},
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
         {"on_nonfinite", to_string(c.on_nonfinite)}};
  return j.dump(2);
}

Expected<TrainConfig> config_from_json(const std::string& text) {
  TrainConfig c;
  try {
    const Json j = Json::parse(text);
    get(j, "model", c.model);
    get(j, "data_dir", c.data_dir);
    WREN_RETURN_IF_ERROR(get_choice(j, "device", c.device, parse_device_choice));
    WREN_RETURN_IF_ERROR(get_choice(j, "math", c.math, parse_math_mode));
    get(j, "cuda_graph", c.cuda_graph);
    WREN_RETURN_IF_ERROR(get_choice(j, "linear", c.linear, parse_linear_impl));
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
    WREN_RETURN_IF_ERROR(get_choice(j, "on_nonfinite", c.on_nonfinite, parse_nonfinite_policy));
    if (j.contains("augment")) read_augment(j.at("augment"), c);
    if (j.contains("optimizer")) read_optimizer(j.at("optimizer"), c.optimizer);
    if (j.contains("schedule")) WREN_RETURN_IF_ERROR(read_schedule(j.at("schedule"), c.schedule));
    c.schedule_epochs = EpochSpec{};
    if (j.contains("schedule_epochs")) {
      read_schedule_epochs(j.at("schedule_epochs"), c.schedule_epochs);
    }
  } catch (const std::exception& e) {
    return data_error(std::string("run config: ") + e.what());
  }
  return c;
}

}  // namespace wren
