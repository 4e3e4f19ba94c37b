// Fully connected kernels: see linear.h. Compiled by nvcc (wren::cuda_kernels) and by g++ for
// the emulator (wren::emu_kernels).
//
// The three GEMMs read their operands in place with the generic dense operands of
// gemm_tile.cuh (RowMajorOperand: the reduction index is contiguous, consecutive threads load
// consecutive k; ColMajorOperand: the output index is contiguous, consecutive threads load
// consecutive i):
//   pass              A [M, red]                       B [red, N]
//   forward           x  [N, in]     row-major         wᵀ: w [out, in]  row-major (line = o)
//   backward data     dy [N, out]    row-major         w  [out, in]     col-major (line = i)
//   backward weights  dyᵀ: dy [N, out] col-major       x  [N, in]       col-major (line = i)
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/gemm_tile.cuh"
#include "common/launch.h"
#include "linear/linear.h"

namespace wren::WREN_KERNELS_NS {
namespace {

using ForwardProblem =
    gemm::Problem<gemm::RowMajorOperand, gemm::RowMajorOperand, gemm::MatrixEpilogue>;
using DataProblem =
    gemm::Problem<gemm::RowMajorOperand, gemm::ColMajorOperand, gemm::MatrixEpilogue>;
using WeightsProblem =
    gemm::Problem<gemm::ColMajorOperand, gemm::ColMajorOperand, gemm::MatrixEpilogue>;

std::string describe(const LinearDims& d) {
  return "N=" + std::to_string(d.n) + " in=" + std::to_string(d.in) +
         " out=" + std::to_string(d.out);
}

[[noreturn]] void bad(const char* fn, const LinearDims& d, const std::string& why) {
  throw std::invalid_argument(std::string(fn) + ": " + why + " (" + describe(d) + ")");
}

// 32-bit indexing inside the kernels, with room for a tile's overhang past the end (k0 + BK,
// n0 + BN, ...).
constexpr int64_t kMaxIndex = int64_t{INT32_MAX} - 1024;
// M (N or out) goes on grid.y in tiles of 16 rows at the least.
constexpr int64_t kMaxRows = int64_t{gemm::kMaxGridY} * 16;

void check_dims(const char* fn, const LinearDims& d) {
  if (d.n < 0 || d.in < 1 || d.out < 1) bad(fn, d, "in and out must be positive (N >= 0)");
  const int64_t n = d.n, in = d.in, out = d.out;
  if (n * in > kMaxIndex || n * out > kMaxIndex || out * in > kMaxIndex)
    bad(fn, d, "a tensor exceeds 2^31 - 1024 elements (32-bit indexing)");
  if (n > kMaxRows || out > kMaxRows) bad(fn, d, "N or out exceeds 1048560");
}

void check_workspace(const char* fn, const LinearDims& d, size_t need, const void* ws) {
  if (need > 0 && ws == nullptr)
    bad(fn, d, "needs " + std::to_string(need) + " bytes of workspace, got null");
  if (reinterpret_cast<uintptr_t>(ws) % alignof(float) != 0)
    bad(fn, d, "workspace is not 4-byte aligned");
}

void check_pointer(const char* fn, const LinearDims& d, const void* p, const char* name) {
  if (p == nullptr) bad(fn, d, std::string(name) + " is null");
}

}  // namespace

size_t linear_workspace_bytes(LinearDims d, MathMode math) {
  (void)math;  // both math paths use the same tiles and splits
  check_dims("linear_workspace_bytes", d);
  const size_t forward = gemm::workspace_bytes(d.n, d.out, d.in);
  const size_t data = gemm::workspace_bytes(d.n, d.in, d.out);
  const size_t weights = gemm::workspace_bytes(d.out, d.in, d.n);
  size_t bytes = forward > data ? forward : data;
  return bytes > weights ? bytes : weights;
}

void linear_forward(LinearDims d, MathMode math, const float* x, const float* w, const float* b,
                    float* y, void* ws, StreamHandle stream) {
  constexpr const char* kFn = "linear_forward";
  check_dims(kFn, d);
  if (d.n == 0) return;
  check_pointer(kFn, d, x, "x");
  check_pointer(kFn, d, w, "w");
  check_pointer(kFn, d, y, "y");
  ForwardProblem pr{};
  pr.m = d.n;
  pr.n = d.out;
  pr.kred = d.in;
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {x, d.n, d.in};
  pr.b = {w, d.out, d.in};
  pr.epi = {y, d.out, b};
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), as_stream(stream));
}

void linear_backward_data(LinearDims d, MathMode math, const float* dy, const float* w, float* dx,
                          void* ws, StreamHandle stream) {
  constexpr const char* kFn = "linear_backward_data";
  check_dims(kFn, d);
  if (d.n == 0) return;
  check_pointer(kFn, d, dy, "dy");
  check_pointer(kFn, d, w, "w");
  check_pointer(kFn, d, dx, "dx");
  DataProblem pr{};
  pr.m = d.n;
  pr.n = d.in;
  pr.kred = d.out;
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {dy, d.n, d.out};
  pr.b = {w, d.in, d.in};
  pr.epi = {dx, d.in, nullptr};
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), as_stream(stream));
}

void linear_backward_weights(LinearDims d, MathMode math, const float* x, const float* dy,
                             float* dw, float* db, void* ws, StreamHandle stream) {
  constexpr const char* kFn = "linear_backward_weights";
  check_dims(kFn, d);
  check_pointer(kFn, d, dw, "dw");
  if (d.n > 0) {
    check_pointer(kFn, d, x, "x");
    check_pointer(kFn, d, dy, "dy");
  }
  WeightsProblem pr{};
  pr.m = d.out;
  pr.n = d.in;
  pr.kred = d.n;
  check_workspace(kFn, d, gemm::workspace_bytes(pr.m, pr.n, pr.kred), ws);
  pr.a = {dy, d.out, d.out};
  pr.b = {x, d.in, d.in};
  pr.epi = {dw, d.in, nullptr};
  const Stream s = as_stream(stream);
  gemm::run_gemm(pr, math == MathMode::kTf32, static_cast<float*>(ws), s);
  if (db != nullptr) gemm::run_bias_grad(dy, d.n, d.out, 1, db, s);
}

}  // namespace wren::WREN_KERNELS_NS
