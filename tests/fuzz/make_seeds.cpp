// Writes the fuzz targets' seed corpora with Wren's own writers (docs/TESTING.md "Fuzzing"):
//
//   fuzz_make_seeds OUT_DIR [SOURCE_DIR]
//
// OUT_DIR/<target>/<seed> for the targets idx, cifar, safetensors, model_file and run_config,
// each framed as tests/fuzz/fuzz_inputs.h describes. SOURCE_DIR (default: this file's
// checkout) provides examples/models/*.wren. The safetensors seeds include real checkpoints:
// a two-step training run (wren::train, the trainer's own save path) on a tiny IDX dataset
// written here. Every seed is run through its target's entry point once, and the program
// fails if a seed that should be valid is refused (a seed the readers reject is a poor start).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "fuzz_inputs.h"
#include "scratch_dir.h"
#include "wren/safetensors.h"
#include "wren/train.h"

namespace wren::fuzz {
namespace {

namespace fs = std::filesystem;

int g_failures = 0;
int g_seeds = 0;

// --- the byte layouts, as tests/test_data.cpp writes them -------------------------------------

void put_be32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

uint8_t pattern(size_t i, size_t k) { return static_cast<uint8_t>((i * 37 + k * 11 + 5) % 256); }

Bytes idx_images(uint32_t n, uint32_t h, uint32_t w) {
  Bytes out;
  put_be32(out, 0x00000803);
  put_be32(out, n);
  put_be32(out, h);
  put_be32(out, w);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < size_t{h} * w; ++k) out.push_back(pattern(i, k));
  }
  return out;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes out;
  put_be32(out, 0x00000801);
  put_be32(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// CIFAR records: label byte(s) then 3072 pattern pixels.
Bytes cifar_records(const Bytes& labels, bool cifar100) {
  Bytes out;
  for (size_t r = 0; r < labels.size(); ++r) {
    if (cifar100) out.push_back(static_cast<uint8_t>(labels[r] % 20));  // coarse, in [0, 20)
    out.push_back(labels[r]);
    for (size_t k = 0; k < 3072; ++k) out.push_back(pattern(r, k));
  }
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes one seed and runs it through its target's entry point; `valid`: the readers must
// accept it.
template <class Entry>
void seed(const fs::path& dir, const std::string& name, const Bytes& bytes, bool valid,
          Entry entry) {
  write_bytes(dir / name, bytes);
  ++g_seeds;
  const Status s = entry(std::span<const uint8_t>(bytes));
  if (valid && !s.ok()) {
    std::fprintf(stderr, "make_seeds: %s/%s is refused: %s\n", dir.filename().c_str(),
                 name.c_str(), s.message().c_str());
    ++g_failures;
  }
}

// --- idx, cifar --------------------------------------------------------------------------------

void idx_seeds(const fs::path& dir) {
  auto entry = [](std::span<const uint8_t> b) { return idx(b, scratch_dir()); };
  const Bytes images = idx_images(3, 5, 4), labels = idx_labels({0, 9, 4});
  seed(dir, "raw-3x5x4", frame_idx(0, images, labels), true, entry);
  seed(dir, "gzip-both", frame_idx(3, images, labels), true, entry);  // wrapped by the target
  seed(dir, "gzip-labels", frame_idx(2, images, labels), true, entry);
  // Already gzip in the seed: found by the magic, whatever the flags say.
  seed(dir, "gzip-files", frame_idx(0, gzip_bytes(images), gzip_bytes(labels)), true, entry);
  // Two gzip members (cat a.gz b.gz): read as one stream.
  const Bytes half_a(images.begin(), images.begin() + 30), half_b(images.begin() + 30, images.end());
  seed(dir, "gzip-two-members",
       frame_idx(0, concat(gzip_bytes(half_a), gzip_bytes(half_b)), labels), true, entry);
  seed(dir, "one-pixel", frame_idx(0, idx_images(1, 1, 1), idx_labels({0})), true, entry);
  seed(dir, "classes-256", frame_idx(2 << 2, idx_images(2, 2, 3), idx_labels({255, 128})), true,
       entry);
  seed(dir, "classes-47", frame_idx(3 << 2, idx_images(2, 3, 3), idx_labels({46, 0})), true,
       entry);
  seed(dir, "truncated", frame_idx(0, Bytes(images.begin(), images.end() - 7), labels), false,
       entry);
}

void cifar_seeds(const fs::path& dir) {
  auto entry = [](std::span<const uint8_t> b) { return cifar(b, scratch_dir()); };
  auto framed = [](uint8_t flags, const Bytes& file) { return concat(Bytes{flags}, file); };
  const Bytes c10 = cifar_records({3, 9}, false), c100 = cifar_records({99, 42}, true);
  seed(dir, "cifar10-raw", framed(0, c10), true, entry);
  seed(dir, "cifar100-raw", framed(1, c100), true, entry);
  seed(dir, "cifar10-gzip", framed(2, c10), true, entry);
  seed(dir, "cifar100-gzip", framed(3, c100), true, entry);
  seed(dir, "cifar10-gzip-file", framed(0, gzip_bytes(c10)), true, entry);
  seed(dir, "cifar10-two-files", framed(4, c10), true, entry);
  seed(dir, "cifar100-one-record", framed(1, cifar_records({7}, true)), true, entry);
}

// --- model_file ----------------------------------------------------------------------------------

// Every op, alias and key of docs/MODEL_FORMAT.md in one model (for 28x28 and 32x32 inputs).
constexpr std::string_view kAllOps = R"(# every op and key of the model format
input image auto
labels label
conv2d stem out=8 kernel=3 stride=1 padding=1 dilation=1 bias=false
batch_norm2d stem.bn eps=1e-5 momentum=0.1 affine=true
relu stem.relu
conv2d b.conv1 out=8 kernel=3,3 padding=1,1 in=8
batchnorm b.bn1 affine=false
leaky_relu b.act slope=0.1
conv2d b.conv2 out=8 kernel=3 padding=2 dilation=2
add b.add from=b.conv2,stem.relu
gelu
max_pool2d kernel=2 stride=2 padding=1
avg_pool2d pool2 kernel=3,3 stride=2 padding=1 count_include_pad=false
dropout drop p=0.25
avgpool kernel=2
global_avg_pool gap
flatten flat
linear fc1 out=16 in=8 bias=true
relu from=fc1
linear fc2 out=classes
softmax_cross_entropy loss label_smoothing=0.1 ignore_index=-100
param fc1.bias group=decay lr_mult=2
param stem.weight group=no_decay wd_mult=0.5
)";

// Per-pixel labels and class weights (10 classes).
constexpr std::string_view kPerPixel = R"(input image 1 28 28
labels mask 28 28
conv2d head out=10 kernel=1
softmax_ce loss class_weights=1,1,1,1,1,1,1,1,1,2.5
)";

// The model of the checkpoint seeds: small, with a convolution, batch norm and a linear layer.
constexpr std::string_view kTiny = R"(input image auto
labels label
conv2d conv out=2 kernel=3 padding=1
batch_norm2d bn
relu
linear fc out=classes
softmax_cross_entropy loss
)";

void model_seeds(const fs::path& dir, const fs::path& source_dir) {
  const auto entry = [](std::span<const uint8_t> b) { return model_file(b); };
  // A model that does not build for every input is still a useful seed: check it for the
  // first input only.
  const auto entry_first = [](std::span<const uint8_t> b) {
    const std::string_view text(reinterpret_cast<const char*>(b.data()), b.size());
    return model_text(text, kModelInputs[0], "seed");
  };
  std::error_code ec;
  int examples = 0;
  for (const auto& e : fs::directory_iterator(source_dir / "examples" / "models", ec)) {
    if (e.path().extension() != ".wren") continue;
    seed(dir, e.path().filename().string(), read_file(e.path()), true, entry_first);
    ++examples;
  }
  if (examples == 0) {
    std::fprintf(stderr, "make_seeds: no examples/models/*.wren under %s\n", source_dir.c_str());
    ++g_failures;
  }
  seed(dir, "all-ops.wren", text_bytes(kAllOps), true, entry);
  seed(dir, "per-pixel.wren", text_bytes(kPerPixel), true, entry_first);
  seed(dir, "tiny.wren", text_bytes(kTiny), true, entry);
  seed(dir, "implicit-input.wren", text_bytes("linear fc out=classes\nsoftmax_ce\n"), true,
       entry);
}

// --- run_config ----------------------------------------------------------------------------------

std::vector<TrainConfig> run_configs() {
  std::vector<TrainConfig> out(1);  // the defaults
  TrainConfig sgd;
  sgd.model = "resnet-cifar";
  sgd.device = DeviceChoice::kCuda;
  sgd.math = MathMode::kTf32;
  sgd.cuda_graph = false;
  sgd.linear = LinearImpl::kCublas;
  sgd.steps = 1000;
  sgd.batch = 512;
  sgd.seed = 42;
  sgd.augment_auto = false;
  sgd.augment = true;
  sgd.augment_config = AugmentConfig{.crop_padding = 2, .pad_mode = PadMode::kReflect,
                                     .horizontal_flip = true, .cutout = 8};
  sgd.val_count = 0;
  sgd.optimizer = OptimizerConfig{.kind = OptimizerKind::kSgd, .momentum = 0.9, .nesterov = true,
                                  .weight_decay = 5e-4, .clip_norm = 1.0};
  sgd.schedule = ScheduleConfig{.kind = ScheduleKind::kOneCycle, .lr = 0.4, .pct_start = 0.25};
  sgd.schedule_epochs = EpochSpec{};
  out.push_back(sgd);
  TrainConfig multistep;
  multistep.epochs = 12.5;
  multistep.optimizer = OptimizerConfig{.kind = OptimizerKind::kAdam, .weight_decay = 1e-4,
                                        .wd_mode = DecayMode::kDecoupled, .l1 = 1e-5,
                                        .l1_mode = DecayMode::kDecoupled};
  multistep.schedule = ScheduleConfig{.kind = ScheduleKind::kMultiStep, .lr = 1e-3, .gamma = 0.5};
  multistep.schedule_epochs = EpochSpec{.warmup = 0.5, .milestones = {3, 6.5, 9}};
  out.push_back(multistep);
  TrainConfig restarts;
  restarts.schedule = ScheduleConfig{.kind = ScheduleKind::kCosineRestarts, .lr = 0.1,
                                     .lr_min = 1e-4, .restart_mult = 2, .warmup_steps = 10,
                                     .warmup_start_factor = 0.1};
  restarts.schedule_epochs = EpochSpec{.restart_period = 1.5};
  out.push_back(restarts);
  return out;
}

void run_config_seeds(const fs::path& dir) {
  const auto entry = [](std::span<const uint8_t> b) { return run_config(b); };
  int i = 0;
  for (const TrainConfig& c : run_configs()) {
    seed(dir, "config-" + std::to_string(i++) + ".json", text_bytes(config_to_json(c)), true,
         entry);
  }
  seed(dir, "empty-object.json", text_bytes("{}"), true, entry);
}

// --- safetensors -----------------------------------------------------------------------------------

template <class T>
SafeTensor tensor_of(std::string name, std::vector<int64_t> shape, std::vector<T> values) {
  return make_safetensor<T>(std::move(name), std::move(shape), std::span<const T>(values));
}

SafeTensor raw_tensor(std::string name, SafeDtype dtype, std::vector<int64_t> shape,
                      Bytes bytes) {
  return SafeTensor{.name = std::move(name), .dtype = dtype, .shape = std::move(shape),
                    .bytes = std::move(bytes)};
}

// A tensor of every dtype the reader knows, values that reach each accessor's range checks.
std::vector<SafeTensor> every_dtype() {
  std::vector<SafeTensor> t;
  t.push_back(tensor_of<float>("f32", {2, 3}, {0.f, -1.5f, 3.25f, 1e30f, -0.f, 7.f}));
  t.push_back(tensor_of<double>("f64", {2}, {1e300, -2.5}));
  t.push_back(tensor_of<int64_t>("i64", {3}, {-1, INT64_MAX, 3000000000}));
  t.push_back(tensor_of<uint64_t>("u64", {2}, {UINT64_MAX, 5}));
  t.push_back(tensor_of<int32_t>("i32", {1, 2}, {-7, 2147483647}));
  t.push_back(tensor_of<uint32_t>("u32", {2}, {4000000000u, 1}));
  t.push_back(tensor_of<int16_t>("i16", {2}, {-32768, 12}));
  t.push_back(tensor_of<uint16_t>("u16", {2}, {65535, 0}));
  t.push_back(tensor_of<int8_t>("i8", {2}, {-128, 127}));
  t.push_back(tensor_of<uint8_t>("u8", {1, 1, 1, 3}, {0, 1, 255}));
  t.push_back(raw_tensor("bool", SafeDtype::kBool, {2}, {0, 1}));
  t.push_back(raw_tensor("f16", SafeDtype::kF16, {4}, {0x00, 0x3c, 0x01, 0x00, 0x00, 0x7c,
                                                       0x01, 0xfe}));  // 1, subnormal, inf, nan
  t.push_back(raw_tensor("bf16", SafeDtype::kBF16, {2}, {0x80, 0x3f, 0x80, 0xff}));
  t.push_back(raw_tensor("f8_e4m3", SafeDtype::kF8E4M3, {2}, {0x38, 0xb8}));
  t.push_back(raw_tensor("f8_e5m2", SafeDtype::kF8E5M2, {1}, {0x3c}));
  t.push_back(raw_tensor("f8_e8m0", SafeDtype::kF8E8M0, {1}, {0x7f}));
  t.push_back(raw_tensor("c64", SafeDtype::kC64, {1}, Bytes(8, 0)));
  t.push_back(tensor_of<float>("scalar", {}, {2.f}));
  t.push_back(tensor_of<float>("empty", {0, 4}, {}));
  return t;
}

// Checkpoints as the trainer writes them: two steps of a tiny model on a tiny IDX dataset.
void checkpoint_seeds(const fs::path& dir, const fs::path& run_config_dir) {
  const auto entry = [](std::span<const uint8_t> b) { return safetensors(b); };
  const fs::path work = scratch_dir() / "train";
  const fs::path data = work / "data";
  std::error_code ec;
  fs::create_directories(data, ec);
  for (const char* prefix : {"train", "t10k"}) {
    Bytes labels;
    for (uint8_t i = 0; i < 32; ++i) labels.push_back(i % 10);
    write_bytes(data / (std::string(prefix) + "-images-idx3-ubyte"), idx_images(32, 4, 4));
    write_bytes(data / (std::string(prefix) + "-labels-idx1-ubyte"), idx_labels(labels));
  }
  write_bytes(work / "tiny.wren", text_bytes(kTiny));
  std::FILE* quiet = std::fopen("/dev/null", "w");
  const struct {
    const char* name;
    OptimizerKind kind;
  } runs[] = {{"adamw", OptimizerKind::kAdamW}, {"sgd-momentum", OptimizerKind::kSgd}};
  for (const auto& run : runs) {
    TrainConfig c;
    c.model = (work / "tiny.wren").string();
    c.data_dir = data.string();
    c.device = DeviceChoice::kCpu;
    c.out_dir = (work / run.name).string();
    c.steps = 2;
    c.batch = 8;
    c.val_count = 8;
    c.progress = false;
    c.optimizer.kind = run.kind;
    if (run.kind == OptimizerKind::kSgd) c.optimizer.momentum = 0.9;
    c.schedule = ScheduleConfig{.kind = ScheduleKind::kCosine, .lr = 1e-2};
    c.schedule_epochs = EpochSpec{};
    Expected<TrainResult> result = train(c, quiet ? quiet : stderr);
    if (!result) {
      std::fprintf(stderr, "make_seeds: training the checkpoint seed failed: %s\n",
                   result.error().message().c_str());
      ++g_failures;
      continue;
    }
    const Bytes last = read_file(work / run.name / "last.safetensors");
    seed(dir, std::string("checkpoint-") + run.name, last, true, entry);
    // Its run config (the resolved one, as --resume reads it) is a run_config seed.
    Expected<SafeTensorsFile> file = parse_safetensors(last, "last.safetensors");
    if (file) {
      if (Expected<std::string> config = file->metadata_value("wren.config")) {
        seed(run_config_dir, std::string("checkpoint-") + run.name + ".json", text_bytes(*config),
             true, [](std::span<const uint8_t> b) { return run_config(b); });
      }
    }
  }
  if (quiet) std::fclose(quiet);
  fs::remove_all(work, ec);
}

void safetensors_seeds(const fs::path& dir, const fs::path& run_config_dir) {
  checkpoint_seeds(dir, run_config_dir);
  // Not checkpoints (read_checkpoint_info refuses them), but valid files: seed() only needs
  // parse_safetensors to accept them.
  const auto parses = [](std::span<const uint8_t> b) -> Status {
    Expected<SafeTensorsFile> f = parse_safetensors(b, "seed");
    if (!f) return f.error();
    (void)safetensors(b);
    return {};
  };
  const SafeMetadata metadata{{"format", "pt"}, {"wren.step", "12"}, {"note", "é \"quoted\"\n"}};
  const std::vector<SafeTensor> dtypes = every_dtype();
  struct File {
    const char* name;
    std::span<const SafeTensor> tensors;
    SafeMetadata metadata;
  };
  const File files[] = {{"every-dtype", dtypes, metadata},
                        {"every-dtype-no-metadata", dtypes, {}},
                        {"empty", {}, {}},
                        {"metadata-only", {}, metadata}};
  for (const File& f : files) {
    Expected<Bytes> bytes = serialize_safetensors(f.tensors, f.metadata);
    if (!bytes) {
      std::fprintf(stderr, "make_seeds: serialize_safetensors(%s): %s\n", f.name,
                   bytes.error().message().c_str());
      ++g_failures;
      continue;
    }
    seed(dir, f.name, *bytes, true, parses);
  }
}

}  // namespace
}  // namespace wren::fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using namespace wren::fuzz;
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR [SOURCE_DIR]\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  const fs::path source =
      argc == 3 ? fs::path(argv[2]) : fs::path(__FILE__).parent_path().parent_path().parent_path();
  for (const char* target : {"idx", "cifar", "safetensors", "model_file", "run_config"}) {
    std::error_code ec;
    fs::create_directories(out / target, ec);
    if (ec) {
      std::fprintf(stderr, "make_seeds: cannot create %s: %s\n", (out / target).c_str(),
                   ec.message().c_str());
      return 1;
    }
  }
  idx_seeds(out / "idx");
  cifar_seeds(out / "cifar");
  model_seeds(out / "model_file", source);
  run_config_seeds(out / "run_config");
  safetensors_seeds(out / "safetensors", out / "run_config");
  std::printf("make_seeds: %d seeds in %s (%d refused)\n", g_seeds, out.c_str(), g_failures);
  return g_failures == 0 ? 0 : 1;
}
