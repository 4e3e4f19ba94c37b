// kernels/optimizer/optimizer.cu against the CPU reference (wren::Optimizer<float>, kernels/optimizer/reference.cpp):
// on the emulator under every fiber schedule, and on a GPU when one is present.
//
// Every configuration runs 3 steps with fresh random gradients and a changing lr (read by the
// kernel from the device scalar block), on ref-cnn's segment table (biases wd_mult 0) and on
// a custom table with lr_mult 2, an odd parameter count and segments starting at offsets that
// are not multiples of 4; each with 16-byte aligned buffers (float4 path) and with buffers
// shifted by one float (scalar path). Parameters and optimizer state must match BIT FOR BIT
// after every step: the kernel performs the CPU loop's fp32 operations in the same order, with
// the per-step scalars formed in double and rounded once, as the CPU does.
//
// One justified exception, clipping: the kernel sums ‖g‖² in a tree order, the CPU in index
// order, so the two double norms may differ in the last bits (checked to 1e-12 relative). When
// the two clip scales round to the same float, the step is still required bit for bit; when
// they do not (one fp32 ulp apart), the parameters and state are compared with a relative
// tolerance of 1e-6 (a one-ulp change of every gradient, 6e-8 relative, carried through three
// steps).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "emu/emu.h"
#include "optimizer/optimizer.h"
#include "wren/models.h"
#include "wren/optimizer.h"

#if defined(WREN_HAVE_CUDA)
#include <cuda_runtime.h>

#include "common/runtime.h"
#endif

namespace {

using wren::DecayMode;
using wren::FusedOptimizerArgs;
using wren::FusedOptimScalars;
using wren::OptimizerConfig;
using wren::OptimizerKind;
using wren::ParamSegment;

// How a test reaches a device: memory and the two launchers.
struct Backend {
  std::string name;
  std::function<void*(size_t)> alloc;
  std::function<void(void*)> release;
  std::function<void(void*, const void*, size_t)> upload;    // host → device
  std::function<void(void*, const void*, size_t)> download;  // device → host
  std::function<void(const FusedOptimizerArgs&)> step;
  std::function<void(const float*, int64_t, void*, double*)> norm;
  std::function<std::string()> sync;  // "" when the launches so far succeeded
};

Backend emu_backend() {
  Backend b;
  b.name = "emu";
  b.alloc = [](size_t bytes) { return wren::emu::malloc(std::max<size_t>(bytes, 16)); };
  b.release = [](void* p) { wren::emu::free(p); };
  b.upload = [](void* d, const void* s, size_t n) {
    if (n > 0) std::memcpy(d, s, n);  // an empty vector's data() may be null
  };
  b.download = [](void* d, const void* s, size_t n) {
    if (n > 0) std::memcpy(d, s, n);
  };
  b.step = [](const FusedOptimizerArgs& a) { wren::emu_kernels::fused_optimizer_step(a, nullptr); };
  b.norm = [](const float* g, int64_t n, void* ws, double* out) {
    wren::emu_kernels::global_grad_norm(g, n, ws, out, nullptr);
  };
  b.sync = [] { return wren::emu::take_error(); };
  return b;
}

#if defined(WREN_HAVE_CUDA)
Backend cuda_backend() {
  Backend b;
  b.name = "cuda";
  b.alloc = [](size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 16)) != cudaSuccess) return static_cast<void*>(nullptr);
    return p;
  };
  b.release = [](void* p) { cudaFree(p); };
  b.upload = [](void* d, const void* s, size_t n) {
    if (n > 0) cudaMemcpy(d, s, n, cudaMemcpyHostToDevice);
  };
  b.download = [](void* d, const void* s, size_t n) {
    if (n > 0) cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost);
  };
  b.step = [](const FusedOptimizerArgs& a) {
    wren::cuda_kernels::fused_optimizer_step(a, nullptr);
  };
  b.norm = [](const float* g, int64_t n, void* ws, double* out) {
    wren::cuda_kernels::global_grad_norm(g, n, ws, out, nullptr);
  };
  b.sync = [] {
    const cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
  };
  return b;
}
#endif

// A device buffer of `count` floats starting `offset` floats after a 256-byte boundary.
struct DeviceFloats {
  const Backend* backend = nullptr;
  void* base = nullptr;
  float* ptr = nullptr;
  size_t count = 0;
  DeviceFloats(const Backend& b, size_t n, size_t offset) : backend(&b), count(n) {
    base = b.alloc((n + offset) * sizeof(float));
    ptr = static_cast<float*>(base) + offset;
  }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  ~DeviceFloats() { backend->release(base); }
  void put(const std::vector<float>& v) { backend->upload(ptr, v.data(), count * sizeof(float)); }
  std::vector<float> get() const {
    std::vector<float> v(count);
    backend->download(v.data(), ptr, count * sizeof(float));
    return v;
  }
};

// Normal values; every 7th exactly 0 (sign(0) = 0), one -0.
std::vector<float> random_values(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 7 == 3 ? 0.0f : normal(rng);
  if (n > 5) v[5] = -0.0f;
  return v;
}

size_t count_bit_mismatches(const std::vector<float>& actual, const std::vector<float>& ref,
                            const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::bit_cast<uint32_t>(actual[i]) != std::bit_cast<uint32_t>(ref[i]) && ++bad <= 3) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  return bad;
}

size_t count_tolerance_mismatches(const std::vector<float>& actual, const std::vector<float>& ref,
                                  const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = actual[i], r = ref[i];
    const double tol = 1e-6 * std::max(std::abs(a), std::abs(r)) + 1e-12;
    if (!(std::abs(a - r) <= tol) && ++bad <= 3) {
      ADD_FAILURE() << what << "[" << i << "]: " << actual[i] << " vs " << ref[i];
    }
  }
  return bad;
}

struct Table {
  std::string name;
  std::vector<ParamSegment> segments;
  int64_t param_count;
};

Table ref_cnn_table() {
  wren::Expected<wren::Graph> g = wren::build_model("ref-cnn");
  if (!g.ok()) return {"ref-cnn (failed to build)", {}, 0};
  return {"ref-cnn", wren::param_segments(*g), g->param_count()};
}

// Odd count, lr_mult 2, segment starts 3, 253, 770 (not multiples of 4), a 1-element segment.
Table custom_table() {
  return {"custom",
          {{.offset = 0, .count = 3, .lr_mult = 2.0f, .wd_mult = 1.0f},
           {.offset = 3, .count = 250, .lr_mult = 1.0f, .wd_mult = 0.0f},
           {.offset = 253, .count = 517, .lr_mult = 2.0f, .wd_mult = 0.5f},
           {.offset = 770, .count = 1, .lr_mult = 0.5f, .wd_mult = 3.0f},
           {.offset = 771, .count = 230, .lr_mult = 1.0f, .wd_mult = 1.0f}},
          1001};
}

struct Config {
  const char* name;
  OptimizerConfig config;
};

OptimizerConfig sgd(double momentum = 0.0) {
  OptimizerConfig c;
  c.kind = OptimizerKind::kSgd;
  c.momentum = momentum;
  return c;
}
OptimizerConfig adam(OptimizerKind kind) {
  OptimizerConfig c;
  c.kind = kind;
  return c;
}
template <class F>
OptimizerConfig with(OptimizerConfig c, F f) {
  f(c);
  return c;
}

std::vector<Config> all_configs() {
  return {
      {"sgd", sgd()},
      {"sgd momentum", sgd(0.9)},
      {"sgd dampening", with(sgd(0.9), [](auto& c) { c.dampening = 0.3; })},
      {"sgd nesterov", with(sgd(0.9), [](auto& c) { c.nesterov = true; })},
      {"sgd coupled L2", with(sgd(0.9), [](auto& c) { c.weight_decay = 5e-2; })},
      {"sgdw", with(sgd(0.9), [](auto& c) {
         c.weight_decay = 5e-2;
         c.wd_mode = DecayMode::kDecoupled;
       })},
      {"sgd L1 coupled", with(sgd(), [](auto& c) { c.l1 = 1e-2; })},
      {"sgd L1 decoupled", with(sgd(0.5), [](auto& c) {
         c.l1 = 1e-2;
         c.l1_mode = DecayMode::kDecoupled;
       })},
      {"adam", adam(OptimizerKind::kAdam)},
      {"adam L2", with(adam(OptimizerKind::kAdam), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw", with(adam(OptimizerKind::kAdamW), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw L1 decoupled", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
         c.l1_mode = DecayMode::kDecoupled;
       })},
      {"adamw L1 coupled", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
}

// Clipping: c is set relative to the gradients' norm (≈ 0.1·√n) by the caller.
std::vector<Config> clip_configs() {
  return {
      {"sgd nesterov clip", with(sgd(0.9), [](auto& c) {
         c.nesterov = true;
         c.weight_decay = 1e-2;
       })},
      {"adamw L1 clip", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
}

// Runs `config` on `table` for 3 steps through the backend and the CPU reference and compares
// after every step. clip_fraction > 0 turns clipping on with c = clip_fraction·(expected norm).
// check_finite: the non-finite check on both sides (finite gradients: it must change nothing).
void check_case(const Backend& be, const Table& table, const Config& cfg, size_t offset,
                double clip_fraction, uint32_t seed, bool check_finite = false) {
  const std::string where = be.name + " " + table.name + " " + cfg.name + " offset " +
                            std::to_string(offset) +
                            (clip_fraction > 0 ? " clip " + std::to_string(clip_fraction) : "") +
                            (check_finite ? " check_finite" : "");
  SCOPED_TRACE(where);
  const int64_t n = table.param_count;
  const size_t un = static_cast<size_t>(n);
  OptimizerConfig config = cfg.config;
  config.check_finite = check_finite;
  if (clip_fraction > 0) config.clip_norm = clip_fraction * 0.1 * std::sqrt(static_cast<double>(n));
  wren::Expected<wren::Optimizer<float>> opt =
      wren::Optimizer<float>::create(config, table.segments, n);
  ASSERT_TRUE(opt.ok()) << opt.error().message();

  const bool sgd_kind = config.kind == OptimizerKind::kSgd;
  const bool momentum = sgd_kind && config.momentum > 0.0;
  std::vector<float> params_ref = random_values(un, 0.1f, seed);
  const std::vector<float> initial = params_ref;

  DeviceFloats params(be, un, offset), grads(be, un, offset);
  DeviceFloats mom(be, momentum ? un : 0, offset), m(be, sgd_kind ? 0 : un, offset),
      v(be, sgd_kind ? 0 : un, offset);
  params.put(params_ref);
  const std::vector<float> zeros(un, 0.0f);
  if (momentum) mom.put(zeros);
  if (!sgd_kind) {
    m.put(zeros);
    v.put(zeros);
  }
  const std::vector<ParamSegment>& segs = table.segments;
  void* d_segs = be.alloc(segs.size() * sizeof(ParamSegment));
  be.upload(d_segs, segs.data(), segs.size() * sizeof(ParamSegment));
  void* d_scalars = be.alloc(sizeof(FusedOptimScalars));
  FusedOptimScalars scalars;
  be.upload(d_scalars, &scalars, sizeof scalars);
  const int32_t nseg = static_cast<int32_t>(segs.size());
  void* workspace = be.alloc(wren::fused_optimizer_workspace_bytes(nseg));

  FusedOptimizerArgs args;
  args.params = params.ptr;
  args.grads = grads.ptr;
  args.momentum = momentum ? mom.ptr : nullptr;
  args.m = sgd_kind ? nullptr : m.ptr;
  args.v = sgd_kind ? nullptr : v.ptr;
  args.param_count = n;
  args.segments = static_cast<const ParamSegment*>(d_segs);
  args.segment_count = nseg;
  args.scalars = static_cast<FusedOptimScalars*>(d_scalars);
  args.workspace = workspace;
  args.config = wren::fused_optim_config(config);

  const double lrs_sgd[] = {0.1, 0.05, 0.02};
  const double lrs_adam[] = {1e-2, 3e-3, 1e-3};
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    const double lr = sgd_kind ? lrs_sgd[s] : lrs_adam[s];
    const std::vector<float> g = random_values(un, 0.1f, seed * 31 + static_cast<uint32_t>(s) + 1);
    grads.put(g);
    // Only the lr changes on the host side between steps (the step count lives on the device).
    const size_t lr_offset = offsetof(FusedOptimScalars, lr);
    be.upload(static_cast<unsigned char*>(d_scalars) + lr_offset, &lr, sizeof lr);
    be.step(args);
    ASSERT_EQ(be.sync(), "");
    const wren::Status st = opt->step(params_ref, g, lr);
    ASSERT_TRUE(st.ok()) << st.message();
    be.download(&scalars, d_scalars, sizeof scalars);
    ASSERT_EQ(scalars.status, 0);
    ASSERT_EQ(scalars.step_count, s + 1);

    bool exact = true;
    if (check_finite) {
      const double ref_norm = opt->last_grad_norm();
      EXPECT_NEAR(scalars.grad_norm, ref_norm, 1e-12 * ref_norm);
      if (config.clip_norm == 0) {
        EXPECT_EQ(scalars.clip_scale, 1.0);
      }
    }
    if (config.clip_norm > 0) {
      const double ref_norm = opt->last_grad_norm();
      EXPECT_NEAR(scalars.grad_norm, ref_norm, 1e-12 * ref_norm);
      const double ref_scale = ref_norm > config.clip_norm ? config.clip_norm / ref_norm : 1.0;
      EXPECT_NEAR(scalars.clip_scale, ref_scale, 1e-12 * ref_scale);
      if (clip_fraction < 1.0) {
        EXPECT_LT(scalars.clip_scale, 1.0);  // clipping is active
      } else {
        EXPECT_EQ(scalars.clip_scale, 1.0);  // inactive: scale exactly 1 on both sides
      }
      exact = static_cast<float>(scalars.clip_scale) == static_cast<float>(ref_scale);
    }
    auto compare = [&](const std::vector<float>& actual, std::span<const float> ref,
                       const char* what) {
      const std::vector<float> r(ref.begin(), ref.end());
      const size_t bad = exact ? count_bit_mismatches(actual, r, what)
                               : count_tolerance_mismatches(actual, r, what);
      EXPECT_EQ(bad, 0u) << what << (exact ? " (bit for bit)" : " (tolerance 1e-6)");
    };
    compare(params.get(), params_ref, "params");
    if (momentum) compare(mom.get(), std::as_const(*opt).state("momentum"), "momentum");
    if (!sgd_kind) {
      compare(m.get(), std::as_const(*opt).state("m"), "m");
      compare(v.get(), std::as_const(*opt).state("v"), "v");
    }
  }
  EXPECT_NE(params_ref, initial);  // the steps did something
  be.release(workspace);
  be.release(d_scalars);
  be.release(d_segs);
}

// `full`: every configuration on both tables. Otherwise (the emulator's reverse and random
// schedules, which matter for the norm's barriers, not for the barrier-free update) the
// custom table in full and the ref-cnn table (421,642 parameters) with the clipping cases on
// aligned buffers only, to keep the ASan run short.
void check_all(const Backend& be, bool full) {
  const Table tables[] = {ref_cnn_table(), custom_table()};
  ASSERT_GT(tables[0].param_count, 0) << tables[0].name;
  uint32_t seed = 1;
  for (const Table& table : tables) {
    const bool reduced = !full && table.name == "ref-cnn";
    for (size_t offset : {size_t{0}, size_t{1}}) {
      if (reduced && offset != 0) continue;
      if (!reduced)
        for (const Config& c : all_configs()) check_case(be, table, c, offset, 0.0, ++seed);
      for (const Config& c : clip_configs()) {
        check_case(be, table, c, offset, 0.5, ++seed);  // active
        check_case(be, table, c, offset, 4.0, ++seed);  // inactive: bit for bit
      }
      // The non-finite check computes the norm every step and must change no bit of a finite
      // step: every configuration on the custom table, two on ref-cnn's (the full run only).
      // Under ASan (minutes for the whole suite there) every fourth configuration.
#if defined(WREN_EMU_ASAN)
      constexpr size_t kFiniteStride = 4;
#else
      constexpr size_t kFiniteStride = 1;
#endif
      if (table.name == "custom") {
        const std::vector<Config> finite_configs = all_configs();
        for (size_t i = 0; i < finite_configs.size(); i += kFiniteStride)
          check_case(be, table, finite_configs[i], offset, 0.0, ++seed, /*check_finite=*/true);
        check_case(be, table, clip_configs()[1], offset, 0.5, ++seed, /*check_finite=*/true);
      } else if (full && offset == 0) {
        const std::vector<Config> configs = all_configs();
        check_case(be, table, configs[3], offset, 0.0, ++seed, /*check_finite=*/true);
        check_case(be, table, configs[12], offset, 0.0, ++seed, /*check_finite=*/true);
      }
    }
  }
}

// The norm alone, against a plain index-order sum in double, over sizes that exercise the
// empty case, a partial chunk, both paths and the grid-stride loop of the first pass.
void check_norms(const Backend& be) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{4099}, int64_t{1 << 20} + 13}) {
    for (size_t offset : {size_t{0}, size_t{1}}) {
      SCOPED_TRACE(be.name + " norm n " + std::to_string(n) + " offset " + std::to_string(offset));
      const size_t un = static_cast<size_t>(n);
      const std::vector<float> g = random_values(un, 1.0f, static_cast<uint32_t>(n) + 5);
      double sum = 0.0;
      for (float x : g) sum += static_cast<double>(x) * static_cast<double>(x);
      const double ref = std::sqrt(sum);
      DeviceFloats d(be, un, offset);
      d.put(g);
      void* ws = be.alloc(sizeof(double) * wren::kFusedNormMaxBlocks);
      void* out = be.alloc(sizeof(double));
      be.norm(d.ptr, n, ws, static_cast<double*>(out));
      ASSERT_EQ(be.sync(), "");
      double norm = -1.0;
      be.download(&norm, out, sizeof norm);
      EXPECT_NEAR(norm, ref, 1e-12 * ref);
      be.release(out);
      be.release(ws);
    }
  }
}

// Rejected steps update nothing and keep the step count, as the CPU's errors do.
void check_rejected(const Backend& be) {
  const Table table = custom_table();
  const size_t un = static_cast<size_t>(table.param_count);
  OptimizerConfig config = with(adam(OptimizerKind::kAdamW), [](auto& c) { c.clip_norm = 1.0; });
  const std::vector<float> p0 = random_values(un, 0.1f, 77);
  std::vector<float> g = random_values(un, 0.1f, 78);
  DeviceFloats params(be, un, 0), grads(be, un, 0), m(be, un, 0), v(be, un, 0);
  params.put(p0);
  const std::vector<float> zeros(un, 0.0f);
  m.put(zeros);
  v.put(zeros);
  const std::vector<ParamSegment>& segs = table.segments;
  void* d_segs = be.alloc(segs.size() * sizeof(ParamSegment));
  be.upload(d_segs, segs.data(), segs.size() * sizeof(ParamSegment));
  void* d_scalars = be.alloc(sizeof(FusedOptimScalars));
  const int32_t nseg = static_cast<int32_t>(segs.size());
  void* workspace = be.alloc(wren::fused_optimizer_workspace_bytes(nseg));
  FusedOptimizerArgs args;
  args.params = params.ptr;
  args.grads = grads.ptr;
  args.m = m.ptr;
  args.v = v.ptr;
  args.param_count = table.param_count;
  args.segments = static_cast<const ParamSegment*>(d_segs);
  args.segment_count = nseg;
  args.scalars = static_cast<FusedOptimScalars*>(d_scalars);
  args.workspace = workspace;
  args.config = wren::fused_optim_config(config);

  auto run = [&](double lr, int32_t expected_status) {
    FusedOptimScalars sc;
    sc.lr = lr;
    sc.step_count = 4;
    be.upload(d_scalars, &sc, sizeof sc);
    grads.put(g);
    be.step(args);
    ASSERT_EQ(be.sync(), "");
    be.download(&sc, d_scalars, sizeof sc);
    EXPECT_EQ(sc.status, expected_status);
    EXPECT_EQ(sc.step_count, expected_status == 0 ? 5 : 4);
    const std::vector<float> p = params.get();
    if (expected_status == 0) {
      EXPECT_NE(p, p0);
    } else {
      EXPECT_EQ(count_bit_mismatches(p, p0, "params"), 0u);
      EXPECT_EQ(count_bit_mismatches(m.get(), zeros, "m"), 0u);
    }
  };
  run(-1.0, wren::kFusedStatusBadLr);
  run(std::nan(""), wren::kFusedStatusBadLr);
  g[500] = INFINITY;
  run(1e-3, wren::kFusedStatusBadNorm);
  g[500] = 0.5f;
  run(1e-3, 0);
  be.release(workspace);
  be.release(d_scalars);
  be.release(d_segs);
}

// The non-finite check (OptimizerConfig::check_finite, --on-nonfinite): a NaN or an infinity
// in the gradients (anywhere: a full chunk, the last partial chunk) or a non-finite loss scalar
// makes the kernel skip the step — status kFusedStatusBadNorm / BadLoss is the flag, the
// parameters, momentum / m / v and the step count stay bit for bit — and the steps around it
// match the CPU reference (which rejects the same step) bit for bit. Skipping the very first
// step keeps SGD's "first step" (b ← g) for the next one.
void check_skipped(const Backend& be) {
  const Table table = custom_table();
  const int64_t n = table.param_count;
  const size_t un = static_cast<size_t>(n);
  const Config configs[] = {
      {"sgd momentum", with(sgd(0.9), [](auto& c) { c.weight_decay = 1e-2; })},
      {"adamw L1", with(adam(OptimizerKind::kAdamW), [](auto& c) {
         c.weight_decay = 1e-2;
         c.l1 = 1e-3;
       })},
  };
  for (const Config& cfg : configs) {
    for (size_t offset : {size_t{0}, size_t{1}}) {
      SCOPED_TRACE(be.name + " skip " + cfg.name + " offset " + std::to_string(offset));
      OptimizerConfig config = cfg.config;
      config.check_finite = true;
      wren::Expected<wren::Optimizer<float>> opt =
          wren::Optimizer<float>::create(config, table.segments, n);
      ASSERT_TRUE(opt.ok()) << opt.error().message();
      const bool sgd_kind = config.kind == OptimizerKind::kSgd;
      std::vector<float> params_ref = random_values(un, 0.1f, 91);
      DeviceFloats params(be, un, offset), grads(be, un, offset), s0(be, un, offset),
          s1(be, un, offset);
      params.put(params_ref);
      const std::vector<float> zeros(un, 0.0f);
      s0.put(zeros);
      s1.put(zeros);
      const std::vector<ParamSegment>& segs = table.segments;
      void* d_segs = be.alloc(segs.size() * sizeof(ParamSegment));
      be.upload(d_segs, segs.data(), segs.size() * sizeof(ParamSegment));
      void* d_scalars = be.alloc(sizeof(FusedOptimScalars));
      FusedOptimScalars init;
      be.upload(d_scalars, &init, sizeof init);
      void* d_loss = be.alloc(sizeof(float));
      const int32_t nseg = static_cast<int32_t>(segs.size());
      void* workspace = be.alloc(wren::fused_optimizer_workspace_bytes(nseg));
      FusedOptimizerArgs args;
      args.params = params.ptr;
      args.grads = grads.ptr;
      args.momentum = sgd_kind ? s0.ptr : nullptr;
      args.m = sgd_kind ? nullptr : s0.ptr;
      args.v = sgd_kind ? nullptr : s1.ptr;
      args.param_count = n;
      args.segments = static_cast<const ParamSegment*>(d_segs);
      args.segment_count = nseg;
      args.scalars = static_cast<FusedOptimScalars*>(d_scalars);
      args.workspace = workspace;
      args.loss = static_cast<const float*>(d_loss);
      args.config = wren::fused_optim_config(config);

      auto device_state = [&] {
        std::vector<float> all = params.get();
        const std::vector<float> a = s0.get(), b = s1.get();
        all.insert(all.end(), a.begin(), a.end());
        if (!sgd_kind) all.insert(all.end(), b.begin(), b.end());
        return all;
      };
      auto ref_state = [&] {
        std::vector<float> all = params_ref;
        for (const std::string& name : opt->state_names()) {
          const std::span<const float> st = std::as_const(*opt).state(name);
          all.insert(all.end(), st.begin(), st.end());
        }
        return all;
      };
      // One step: gradients `g`, loss scalar `loss`; `expected` the status (0: applied).
      int64_t steps_done = 0;
      auto step = [&](const std::vector<float>& g, float loss, int32_t expected) {
        grads.put(g);
        be.upload(d_loss, &loss, sizeof loss);
        const double lr = sgd_kind ? 0.05 : 3e-3;
        be.upload(static_cast<unsigned char*>(d_scalars) + offsetof(FusedOptimScalars, lr), &lr,
                  sizeof lr);
        const std::vector<float> before = device_state();
        be.step(args);
        ASSERT_EQ(be.sync(), "");
        FusedOptimScalars sc;
        be.download(&sc, d_scalars, sizeof sc);
        EXPECT_EQ(sc.status, expected);
        if (expected == 0) {
          ++steps_done;
          ASSERT_TRUE(opt->step(params_ref, g, lr).ok());
          EXPECT_EQ(count_bit_mismatches(device_state(), ref_state(), "params and state"), 0u);
        } else {
          EXPECT_EQ(count_bit_mismatches(device_state(), before, "params and state"), 0u)
              << "a skipped step must touch nothing";
          if (expected == wren::kFusedStatusBadNorm) {
            EXPECT_FALSE(std::isfinite(sc.grad_norm));
            const wren::Status st = opt->step(params_ref, g, lr);  // the CPU rejects it too
            ASSERT_FALSE(st.ok());
            EXPECT_EQ(st.error().code(), wren::ErrorCode::kNumericError);
          }
        }
        EXPECT_EQ(sc.step_count, steps_done);
        EXPECT_EQ(opt->step_count(), steps_done);
      };
      std::vector<float> g = random_values(un, 0.1f, 92);
      g[500] = std::nanf("");
      step(g, 1.0f, wren::kFusedStatusBadNorm);  // the very first step
      step(random_values(un, 0.1f, 93), 1.0f, 0);
      g = random_values(un, 0.1f, 94);
      g[un - 1] = -INFINITY;  // in the last, partial chunk
      step(g, 1.0f, wren::kFusedStatusBadNorm);
      step(random_values(un, 0.1f, 95), INFINITY, wren::kFusedStatusBadLoss);
      step(random_values(un, 0.1f, 95), std::nanf(""), wren::kFusedStatusBadLoss);
      step(random_values(un, 0.1f, 96), 2.5f, 0);
      step(random_values(un, 0.1f, 97), 2.5f, 0);
      EXPECT_EQ(steps_done, 3);
      be.release(workspace);
      be.release(d_loss);
      be.release(d_scalars);
      be.release(d_segs);
    }
  }
}

TEST(OptimKernels, EmuMatchesCpuBitForBit) {
  const Backend be = emu_backend();
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    SCOPED_TRACE(static_cast<int>(schedule));
    wren::emu::set_schedule(schedule, 23);
    check_all(be, schedule == wren::emu::Schedule::kForward);
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(OptimKernels, EmuGradNormIsDeterministicAndAccurate) {
  const Backend be = emu_backend();
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    SCOPED_TRACE(static_cast<int>(schedule));
    wren::emu::set_schedule(schedule, 29);
    check_norms(be);
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(OptimKernels, EmuRejectedStepUpdatesNothing) {
  check_rejected(emu_backend());
}

TEST(OptimKernels, EmuNonFiniteCheckSkipsTheStepAndSetsTheFlag) {
  const Backend be = emu_backend();
  for (auto schedule : {wren::emu::Schedule::kForward, wren::emu::Schedule::kReverse,
                        wren::emu::Schedule::kRandom}) {
    SCOPED_TRACE(static_cast<int>(schedule));
    wren::emu::set_schedule(schedule, 31);
    check_skipped(be);
  }
  wren::emu::set_schedule(wren::emu::Schedule::kForward);
}

TEST(OptimKernels, CudaMatchesCpuBitForBit) {
#if defined(WREN_HAVE_CUDA)
  if (wren::kernels::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine";
  const Backend be = cuda_backend();
  check_all(be, true);
  check_norms(be);
  check_rejected(be);
  check_skipped(be);
#else
  GTEST_SKIP() << "built without the CUDA backend (WREN_HAVE_CUDA off)";
#endif
}

}  // namespace
