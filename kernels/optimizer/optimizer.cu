// The fused optimizer step: see optim.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// Bit-exactness with kernels/optimizer/reference.cpp rests on three things:
//  - the per-element arithmetic is the CPU loop's, operation by operation and in its order;
//    under nvcc every fp32 operation goes through a __f*_rn intrinsic, which nvcc never fuses
//    into an FMA (the CPU reference, built for baseline x86-64, has no FMA either);
//  - the per-step scalars are formed in double and rounded to float once, with the same
//    expressions as the CPU (float constants of the config on the host in the launcher, the
//    per-step ones — which depend on the device lr and step — in the 1-block prologue);
//  - sqrt and division are IEEE round-to-nearest in fp32 (__fsqrt_rn, __fdiv_rn).
// What can differ on a GPU: pow(β, t) in double (CUDA's pow has a 1-2 ulp bound, glibc's is
// almost always correctly rounded); after the rounding of 1 − β^t to float that practically
// never changes a bit. The gradient norm is summed in another order than the CPU's index
// order (relative difference ~1e-15), so with clipping active the float clip scale can differ
// by one ulp from the CPU's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/launch.h"
#include "common/rounded.cuh"
#include "common/vec.cuh"
#include "optimizer/optimizer.h"

namespace wren::WREN_KERNELS_NS {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
constexpr int kNormThreads = 256;
constexpr int kPrologueThreads = 128;

// Per-step values the prologue writes at the start of the workspace.
struct StepHeader {
  float bias_correction1;
  float bias_correction2;
  float clip_scale;
  int32_t first;  // t == 1: SGD's momentum buffer starts as g
  int32_t skip;   // the step is rejected: the update does nothing
  int32_t pad;
};
static_assert(sizeof(StepHeader) <= 64);

// Per-segment coefficients (32 bytes, see fused_optimizer_workspace_bytes).
struct SegCoeff {
  int64_t end;       // offset + count
  float lr_e;        // float(lr·lr_mult)
  float wd_e;        // float(wd·wd_mult)
  float l1_e;        // float(l1·wd_mult)
  float decay_step;  // float((lr·lr_mult)·(wd·wd_mult))
  float l1_step;     // float((lr·lr_mult)·(l1·wd_mult))
  float pad;
};
static_assert(sizeof(SegCoeff) == 32);
static_assert(sizeof(ParamSegment) == 24);
static_assert(fused_optimizer_workspace_bytes(1) - fused_optimizer_workspace_bytes(0) ==
              sizeof(SegCoeff));

__device__ __forceinline__ bool finite(double a) {
#if defined(__CUDACC__)
  return isfinite(a);
#else
  return std::isfinite(a);
#endif
}

// Fully unrolled loops over a chunk's 4 elements, so that chunks stay in registers.
#if defined(__CUDACC__)
#define WREN_UNROLL4 _Pragma("unroll")
#else
#define WREN_UNROLL4 _Pragma("GCC unroll 4")
#endif

// A 4-element chunk [i0, i0 + cnt) of one buffer, in registers.
struct Quad {
  float x[4];
};
template <bool kVector>
__device__ inline Quad load_quad(const float* base, int64_t i0, int cnt) {
  Quad q;
  if (kVector && cnt == 4) {
    const float4 v = load4(base + i0);
    q.x[0] = v.x;
    q.x[1] = v.y;
    q.x[2] = v.z;
    q.x[3] = v.w;
  } else {
    WREN_UNROLL4
    for (int e = 0; e < 4; ++e) q.x[e] = e < cnt ? base[i0 + e] : 0.0f;
  }
  return q;
}
template <bool kVector>
__device__ inline void store_quad(float* base, int64_t i0, int cnt, const Quad& q) {
  if (kVector && cnt == 4) {
    store4(base + i0, make_float4(q.x[0], q.x[1], q.x[2], q.x[3]));
  } else {
    WREN_UNROLL4
    for (int e = 0; e < 4; ++e)
      if (e < cnt) base[i0 + e] = q.x[e];
  }
}

// --- Global gradient norm ---------------------------------------------------------------------
// Pass 1: thread `i` of the grid sums g² in double over its chunks c = i, i + stride, … (the
// elements of a chunk in order), then the block adds its threads in a fixed tree. The chunk
// partition is by index, so the vector and scalar paths add the same terms in the same order.
template <bool kVector>
__global__ void grad_norm_partials_kernel(const float* grads, int64_t count, double* partials) {
  __shared__ double sums[kNormThreads];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t chunks = (count + 3) / 4;
  double acc = 0.0;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    const int64_t i0 = 4 * c;
    const int cnt = count - i0 < 4 ? static_cast<int>(count - i0) : 4;
    const Quad g = load_quad<kVector>(grads, i0, cnt);
    WREN_UNROLL4
    for (int e = 0; e < 4; ++e) {
      const double d = static_cast<double>(g.x[e]);
      if (e < cnt) acc += d * d;
    }
  }
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kNormThreads / 2; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) sums[threadIdx.x] += sums[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = sums[0];
}

// Pass 2 (one block): the partials in a fixed order, then the norm and, for the fused step, the
// clip scale exactly as the CPU forms it.
__global__ void grad_norm_finish_kernel(const double* partials, int blocks, double* norm_out,
                                        FusedOptimScalars* scalars, double clip_norm) {
  __shared__ double sums[kNormThreads];
  double acc = 0.0;
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += kNormThreads) acc += partials[b];
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kNormThreads / 2; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) sums[threadIdx.x] += sums[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double norm = dsqrt(sums[0]);
    if (norm_out != nullptr) *norm_out = norm;
    if (scalars != nullptr) {
      scalars->grad_norm = norm;
      // clip_norm 0: the norm is only checked (OptimizerConfig::check_finite), no scaling.
      scalars->clip_scale = clip_norm > 0.0 && norm > clip_norm ? clip_norm / norm : 1.0;
    }
  }
}

// --- Prologue: the per-step scalars, in double, rounded once ------------------------------------
__global__ void prologue_kernel(FusedOptimScalars* scalars, const ParamSegment* segments,
                                int32_t segment_count, double weight_decay, double l1, double beta1,
                                double beta2, bool clipping, bool check_finite, const float* loss,
                                StepHeader* header, SegCoeff* coeffs) {
  const double lr = scalars->lr;
  for (int k = static_cast<int>(threadIdx.x); k < segment_count; k += kPrologueThreads) {
    const ParamSegment seg = segments[k];
    const double seg_lr = dmul(lr, static_cast<double>(seg.lr_mult));
    const double seg_wd = dmul(weight_decay, static_cast<double>(seg.wd_mult));
    const double seg_l1 = dmul(l1, static_cast<double>(seg.wd_mult));
    SegCoeff c;
    c.end = seg.offset + seg.count;
    c.lr_e = static_cast<float>(seg_lr);
    c.wd_e = static_cast<float>(seg_wd);
    c.l1_e = static_cast<float>(seg_l1);
    c.decay_step = static_cast<float>(dmul(seg_lr, seg_wd));
    c.l1_step = static_cast<float>(dmul(seg_lr, seg_l1));
    c.pad = 0.0f;
    coeffs[k] = c;
  }
  if (threadIdx.x == 0) {
    const int64_t steps = scalars->step_count;
    int32_t status = 0;
    if (steps < 0) {
      status = kFusedStatusBadStepCount;
    } else if (!(finite(lr) && lr >= 0.0)) {
      status = kFusedStatusBadLr;
    } else if ((clipping || check_finite) && !finite(scalars->grad_norm)) {
      status = kFusedStatusBadNorm;  // a NaN or an infinity somewhere in the gradients
    } else if (check_finite && loss != nullptr && !finite(static_cast<double>(*loss))) {
      status = kFusedStatusBadLoss;
    }
    const double t = static_cast<double>(steps + 1);
    StepHeader h;
    h.bias_correction1 = static_cast<float>(1.0 - dpow(beta1, t));
    h.bias_correction2 = static_cast<float>(1.0 - dpow(beta2, t));
    h.clip_scale = clipping ? static_cast<float>(scalars->clip_scale) : 1.0f;
    h.first = steps == 0 ? 1 : 0;
    h.skip = status != 0 ? 1 : 0;
    h.pad = 0;
    *header = h;
    scalars->status = status;
    if (status == 0) scalars->step_count = steps + 1;
  }
}

// --- The update ------------------------------------------------------------------------------
enum class Mode { kSgd, kSgdMomentum, kAdam };

struct UpdateArgs {
  float* params;
  const float* grads;
  float* s0;  // momentum (kSgdMomentum) or m (kAdam)
  float* s1;  // v (kAdam)
  int64_t count;
  const SegCoeff* coeffs;
  int32_t segment_count;
  const StepHeader* header;
  float mu, one_minus_dampening;
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  bool clipping, coupled_wd, coupled_l1, nesterov;
};

// The first segment k' >= k whose end lies past i (segment_count if none).
__device__ inline int32_t find_segment(const SegCoeff* coeffs, int32_t segment_count, int32_t k,
                                       int64_t i) {
  if (k >= segment_count || coeffs[k].end > i) return k;
  int32_t lo = k + 1, hi = segment_count;  // answer in [lo, hi]
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (coeffs[mid].end > i) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

template <Mode M, bool kVector>
__global__ void update_kernel(UpdateArgs a) {
  const StepHeader h = *a.header;
  if (h.skip) return;  // uniform; no barriers in this kernel
  const bool first = h.first != 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t chunks = (a.count + 3) / 4;
  int32_t k = 0;
  SegCoeff seg{};
  int32_t loaded = -1;  // index of the segment in `seg`
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < chunks;
       c += stride) {
    const int64_t i0 = 4 * c;
    const int cnt = a.count - i0 < 4 ? static_cast<int>(a.count - i0) : 4;
    Quad p = load_quad<kVector>(a.params, i0, cnt);
    const Quad g = load_quad<kVector>(a.grads, i0, cnt);
    Quad s0{}, s1{};
    if constexpr (M != Mode::kSgd) s0 = load_quad<kVector>(a.s0, i0, cnt);
    if constexpr (M == Mode::kAdam) s1 = load_quad<kVector>(a.s1, i0, cnt);
    k = find_segment(a.coeffs, a.segment_count, k, i0);
    WREN_UNROLL4
    for (int e = 0; e < 4; ++e) {
      const int64_t i = i0 + e;
      if (e >= cnt) continue;
      while (k < a.segment_count && (loaded == k ? seg.end : a.coeffs[k].end) <= i) ++k;
      if (k >= a.segment_count) continue;  // past the table: left untouched
      if (loaded != k) {
        seg = a.coeffs[k];
        loaded = k;
      }
      // The CPU loop (kernels/optimizer/reference.cpp), operation by operation.
      const float pv = p.x[e];
      const float sign_p = static_cast<float>((pv > 0.0f) - (pv < 0.0f));
      float gv = g.x[e];
      if (a.clipping) gv = fmul(gv, h.clip_scale);
      if (a.coupled_wd) gv = fadd(gv, fmul(seg.wd_e, pv));
      if (a.coupled_l1) gv = fadd(gv, fmul(seg.l1_e, sign_p));
      float p_new = pv;
      if (!a.coupled_wd) p_new = fsub(p_new, fmul(seg.decay_step, pv));
      if (!a.coupled_l1) p_new = fsub(p_new, fmul(seg.l1_step, sign_p));
      if constexpr (M == Mode::kAdam) {
        const float m = fadd(fmul(a.beta1, s0.x[e]), fmul(a.one_minus_beta1, gv));
        const float v = fadd(fmul(a.beta2, s1.x[e]), fmul(fmul(a.one_minus_beta2, gv), gv));
        s0.x[e] = m;
        s1.x[e] = v;
        const float m_hat = fdiv(m, h.bias_correction1);
        const float v_hat = fdiv(v, h.bias_correction2);
        p_new = fsub(p_new, fdiv(fmul(seg.lr_e, m_hat), fadd(fsqrt(v_hat), a.eps)));
      } else {
        if constexpr (M == Mode::kSgdMomentum) {
          const float b = first ? gv : fadd(fmul(a.mu, s0.x[e]), fmul(a.one_minus_dampening, gv));
          s0.x[e] = b;
          gv = a.nesterov ? fadd(gv, fmul(a.mu, b)) : b;
        }
        p_new = fsub(p_new, fmul(seg.lr_e, gv));
      }
      p.x[e] = p_new;
    }
    store_quad<kVector>(a.params, i0, cnt, p);
    if constexpr (M != Mode::kSgd) store_quad<kVector>(a.s0, i0, cnt, s0);
    if constexpr (M == Mode::kAdam) store_quad<kVector>(a.s1, i0, cnt, s1);
  }
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

int blocks_for(int64_t count, int64_t max_blocks) {
  const int64_t chunks = (count + 3) / 4;
  return static_cast<int>(std::clamp<int64_t>((chunks + kThreads - 1) / kThreads, 1, max_blocks));
}

// Enqueues both passes of the norm; returns nothing, the result lands in norm_out / scalars.
void launch_norm(const float* grads, int64_t count, double* partials, double* norm_out,
                 FusedOptimScalars* scalars, double clip_norm, Stream stream) {
  const int blocks = blocks_for(count, kFusedNormMaxBlocks);
  if (aligned(grads, 16)) {
    WREN_LAUNCH(blocks, kNormThreads, 0, stream, grad_norm_partials_kernel<true>)
    (grads, count, partials);
  } else {
    WREN_LAUNCH(blocks, kNormThreads, 0, stream, grad_norm_partials_kernel<false>)
    (grads, count, partials);
  }
  WREN_LAUNCH(1, kNormThreads, 0, stream, grad_norm_finish_kernel)
  (partials, blocks, norm_out, scalars, clip_norm);
}

template <Mode M>
void launch_update(const UpdateArgs& u, bool vector, Stream stream) {
  const int blocks = blocks_for(u.count, kMaxBlocks);
  if (vector) {
    WREN_LAUNCH(blocks, kThreads, 0, stream, update_kernel<M, true>)(u);
  } else {
    WREN_LAUNCH(blocks, kThreads, 0, stream, update_kernel<M, false>)(u);
  }
}

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("fused_optimizer_step: " + what);
}

}  // namespace

void global_grad_norm(const float* grads, int64_t count, void* workspace, double* norm,
                      StreamHandle stream) {
  if (count < 0 || (count > 0 && grads == nullptr) || workspace == nullptr || norm == nullptr ||
      !aligned(workspace, 8))
    throw std::invalid_argument("global_grad_norm: bad arguments");
  launch_norm(grads, count, static_cast<double*>(workspace), norm, nullptr, 0.0,
              as_stream(stream));
}

void fused_optimizer_step(const FusedOptimizerArgs& args, StreamHandle stream_handle) {
  const FusedOptimConfig& c = args.config;
  const int64_t n = args.param_count;
  const bool sgd = c.kind == FusedOptimKind::kSgd;
  const bool use_momentum = sgd && c.momentum > 0.0;
  if (n < 0) bad("param_count < 0");
  if (args.scalars == nullptr) bad("no scalar block");
  if (args.workspace == nullptr || !aligned(args.workspace, 16))
    bad("workspace missing or not 16-byte aligned");
  if (args.segment_count < 0 || (args.segment_count > 0 && args.segments == nullptr))
    bad("bad segment table");
  if (n > 0 && (args.params == nullptr || args.grads == nullptr)) bad("no params or grads");
  if (n > 0 && use_momentum && args.momentum == nullptr) bad("SGD with momentum needs a buffer");
  if (n > 0 && !sgd && (args.m == nullptr || args.v == nullptr)) bad("Adam needs m and v");
  if (c.nesterov && !(c.momentum > 0.0 && c.dampening == 0.0))
    bad("Nesterov needs momentum > 0 and dampening 0");
  if (c.kind == FusedOptimKind::kAdamW && !c.wd_decoupled) bad("AdamW decays decoupled");

  const Stream stream = as_stream(stream_handle);
  // Workspace layout: StepHeader (64 bytes), SegCoeff[segment_count], double partials.
  auto* const base = static_cast<unsigned char*>(args.workspace);
  const size_t coeff_bytes = sizeof(SegCoeff) * static_cast<size_t>(args.segment_count);
  auto* const header = static_cast<StepHeader*>(static_cast<void*>(base));
  auto* const coeffs = static_cast<SegCoeff*>(static_cast<void*>(base + 64));
  auto* const partials = static_cast<double*>(static_cast<void*>(base + 64 + coeff_bytes));

  const bool clipping = c.clip_norm > 0.0;
  // One norm serves clipping and the non-finite check; the check adds no other work, and a
  // finite step is bit for bit the unchecked one (the norm only decides whether to skip).
  if (clipping || c.check_finite)
    launch_norm(args.grads, n, partials, nullptr, args.scalars, c.clip_norm, stream);

  WREN_LAUNCH(1, kPrologueThreads, 0, stream, prologue_kernel)
  (args.scalars, args.segments, args.segment_count, c.weight_decay, c.l1, c.beta1, c.beta2,
   clipping, c.check_finite, c.check_finite ? args.loss : nullptr, header, coeffs);

  if (n == 0) return;
  // The config's float constants, formed on the host exactly as the CPU reference forms them.
  UpdateArgs u{};
  u.params = args.params;
  u.grads = args.grads;
  u.s0 = sgd ? args.momentum : args.m;
  u.s1 = sgd ? nullptr : args.v;
  u.count = n;
  u.coeffs = coeffs;
  u.segment_count = args.segment_count;
  u.header = header;
  u.mu = static_cast<float>(c.momentum);
  u.one_minus_dampening = static_cast<float>(1.0 - c.dampening);
  u.beta1 = static_cast<float>(c.beta1);
  u.beta2 = static_cast<float>(c.beta2);
  u.one_minus_beta1 = static_cast<float>(1.0 - c.beta1);
  u.one_minus_beta2 = static_cast<float>(1.0 - c.beta2);
  u.eps = static_cast<float>(c.eps);
  u.clipping = clipping;
  u.coupled_wd = !c.wd_decoupled;
  u.coupled_l1 = !c.l1_decoupled;
  u.nesterov = c.nesterov;

  bool vector = aligned(u.params, 16) && aligned(u.grads, 16);
  if (use_momentum || !sgd) vector = vector && aligned(u.s0, 16);
  if (!sgd) vector = vector && aligned(u.s1, 16);
  if (!sgd) {
    launch_update<Mode::kAdam>(u, vector, stream);
  } else if (use_momentum) {
    launch_update<Mode::kSgdMomentum>(u, vector, stream);
  } else {
    launch_update<Mode::kSgd>(u, vector, stream);
  }
}

}  // namespace wren::WREN_KERNELS_NS
