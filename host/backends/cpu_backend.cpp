// The cpu device: each Backend method forwards to its family's CPU reference
// (kernels/<family>/reference.cpp).
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "dropout/dropout.h"
#include "elementwise/elementwise.h"
#include "wren/backend.h"

// OpenBLAS's own entry point (cblas.h declares it; declared here to keep cblas.h in
// kernels/common/cpu_gemm.cpp).
extern "C" void openblas_set_num_threads(int num_threads);

namespace wren {
namespace {

// TF32 rounding as the tensor cores' operand conversion does it (cvt.rna.tf32.f32: 10 mantissa
// bits, nearest, ties away from zero; kernels/common/ptx.cuh has the same rule for the emulator).
float round_to_tf32(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return x;  // Inf and NaN pass through
  return std::bit_cast<float>((bits + 0x1000u) & 0xffffe000u);
}

template <class T>
class CpuBackend final : public Backend<T> {
 public:
  explicit CpuBackend(const CpuBackendOptions& options) : tf32_operands_(options.tf32_operands) {}
  Device device() const override { return Device::kCpu; }
  std::string describe() const override {
    return tf32_operands_ ? "cpu (TF32-rounded matrix operands)" : "cpu";
  }

  void* allocate(size_t bytes) override {
    constexpr size_t kAlign = 256;
    return std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  }
  void release(void* ptr) override { std::free(ptr); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void fill_zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }

  size_t conv2d_workspace_elems(const Conv2dDims& d) const override {
    return cpu::conv2d_workspace_elems(d);
  }
  void conv2d_forward(const Conv2dDims& d, const T* x, const T* w, const T* b, T* y,
                      T* ws) override {
    cpu::conv2d_forward(d, operand(x, int64_t{d.n} * d.c * d.h * d.w, 0),
                        operand(w, int64_t{d.k} * d.c * d.r * d.s, 1), b, y, ws);
  }
  void conv2d_backward_data(const Conv2dDims& d, const T* dy, const T* w, T* dx,
                            T* ws) override {
    cpu::conv2d_backward_data(d, operand(dy, int64_t{d.n} * d.k * d.p() * d.q(), 0),
                              operand(w, int64_t{d.k} * d.c * d.r * d.s, 1), dx, ws);
  }
  void conv2d_backward_weights(const Conv2dDims& d, const T* x, const T* dy, T* dw, T* db,
                               T* ws) override {
    // The bias gradient is a plain fp32 sum of dy on every device (no matrix unit).
    if (tf32_operands_ && db != nullptr) {
      bias_scratch_.resize(static_cast<size_t>(d.k) * d.c * d.r * d.s);
      cpu::conv2d_backward_weights(d, x, dy, bias_scratch_.data(), db, ws);
      db = nullptr;
    }
    cpu::conv2d_backward_weights(d, operand(x, int64_t{d.n} * d.c * d.h * d.w, 0),
                                 operand(dy, int64_t{d.n} * d.k * d.p() * d.q(), 1), dw, db, ws);
  }

  void linear_forward(const LinearDims& d, const T* x, const T* w, const T* b, T* y) override {
    cpu::linear_forward(d, operand(x, int64_t{d.n} * d.in, 0),
                        operand(w, int64_t{d.out} * d.in, 1), b, y);
  }
  void linear_backward_data(const LinearDims& d, const T* dy, const T* w, T* dx) override {
    cpu::linear_backward_data(d, operand(dy, int64_t{d.n} * d.out, 0),
                              operand(w, int64_t{d.out} * d.in, 1), dx);
  }
  void linear_backward_weights(const LinearDims& d, const T* x, const T* dy, T* dw,
                               T* db) override {
    if (tf32_operands_ && db != nullptr) {
      bias_scratch_.resize(static_cast<size_t>(d.out) * d.in);
      cpu::linear_backward_weights(d, x, dy, bias_scratch_.data(), db);
      db = nullptr;
    }
    cpu::linear_backward_weights(d, operand(x, int64_t{d.n} * d.in, 0),
                                 operand(dy, int64_t{d.n} * d.out, 1), dw, db);
  }

  void max_pool2d_forward(const Pool2dDims& d, const T* x, T* y, int32_t* argmax) override {
    cpu::max_pool2d_forward(d, x, y, argmax);
  }
  void max_pool2d_backward(const Pool2dDims& d, const int32_t* argmax, const T* dy,
                           T* dx) override {
    cpu::max_pool2d_backward(d, argmax, dy, dx);
  }
  void avg_pool2d_forward(const Pool2dDims& d, const T* x, T* y) override {
    cpu::avg_pool2d_forward(d, x, y);
  }
  void avg_pool2d_backward(const Pool2dDims& d, const T* dy, T* dx) override {
    cpu::avg_pool2d_backward(d, dy, dx);
  }
  void global_avg_pool_forward(int n, int c, int hw, const T* x, T* y) override {
    cpu::global_avg_pool_forward(n, c, hw, x, y);
  }
  void global_avg_pool_backward(int n, int c, int hw, const T* dy, T* dx) override {
    cpu::global_avg_pool_backward(n, c, hw, dy, dx);
  }

  void relu_forward(int64_t count, const T* x, T* y) override { cpu::relu_forward(count, x, y); }
  void relu_backward(int64_t count, const T* x, const T* dy, T* dx) override {
    cpu::relu_backward(count, x, dy, dx);
  }
  void leaky_relu_forward(int64_t count, T slope, const T* x, T* y) override {
    cpu::leaky_relu_forward(count, slope, x, y);
  }
  void leaky_relu_backward(int64_t count, T slope, const T* x, const T* dy, T* dx) override {
    cpu::leaky_relu_backward(count, slope, x, dy, dx);
  }
  void gelu_forward(int64_t count, const T* x, T* y) override { cpu::gelu_forward(count, x, y); }
  void gelu_backward(int64_t count, const T* x, const T* dy, T* dx) override {
    cpu::gelu_backward(count, x, dy, dx);
  }
  void add_forward(int64_t count, const T* a, const T* b, T* y) override {
    cpu::add_forward(count, a, b, y);
  }
  void accumulate(int64_t count, const T* x, T* y) override { cpu::accumulate(count, x, y); }
  void copy(int64_t count, const T* x, T* y) override { cpu::copy(count, x, y); }

  void dropout_forward(int64_t count, float p, RngKey key, uint64_t step, const T* x, T* y,
                       uint8_t* mask) override {
    cpu::dropout_forward(count, p, key, step, x, y, mask);
  }
  void dropout_backward(int64_t count, float p, const uint8_t* mask, const T* dy,
                        T* dx) override {
    cpu::dropout_backward(count, p, mask, dy, dx);
  }

  void batch_norm2d_forward_train(const BatchNormDims& d, T eps, T momentum, const T* x,
                                  const T* gamma, const T* beta, T* y, T* save_mean,
                                  T* save_invstd, T* running_mean, T* running_var) override {
    cpu::batch_norm2d_forward_train(d, eps, momentum, x, gamma, beta, y, save_mean, save_invstd,
                                    running_mean, running_var);
  }
  void batch_norm2d_forward_infer(const BatchNormDims& d, T eps, const T* x, const T* gamma,
                                  const T* beta, const T* running_mean, const T* running_var,
                                  T* y) override {
    cpu::batch_norm2d_forward_infer(d, eps, x, gamma, beta, running_mean, running_var, y);
  }
  void batch_norm2d_backward_train(const BatchNormDims& d, const T* x, const T* dy,
                                   const T* gamma, const T* save_mean, const T* save_invstd,
                                   T* dx, T* dgamma, T* dbeta) override {
    cpu::batch_norm2d_backward_train(d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  }
  void batch_norm2d_backward_infer(const BatchNormDims& d, T eps, const T* x, const T* dy,
                                   const T* gamma, const T* running_mean, const T* running_var,
                                   T* dx, T* dgamma, T* dbeta) override {
    cpu::batch_norm2d_backward_infer(d, eps, x, dy, gamma, running_mean, running_var, dx, dgamma,
                                     dbeta);
  }

  void softmax_cross_entropy_forward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                     const T* logits, const int32_t* labels,
                                     const T* class_weights, T* loss) override {
    cpu::softmax_cross_entropy_forward(d, o, logits, labels, class_weights, loss);
  }
  void softmax_cross_entropy_backward(const SoftmaxCeDims& d, const SoftmaxCeOptions& o,
                                      const T* logits, const int32_t* labels,
                                      const T* class_weights, T dloss, T* dlogits) override {
    cpu::softmax_cross_entropy_backward(d, o, logits, labels, class_weights, dloss, dlogits);
  }

 private:
  // The matrix operands of conv and linear as the device's TF32 path sees them (when
  // tf32_operands_): a rounded copy in scratch `slot` (two operands per call); else `p` itself.
  const T* operand(const T* p, int64_t count, int slot) {
    if constexpr (std::is_same_v<T, float>) {
      if (tf32_operands_) {
        std::vector<float>& v = operand_scratch_[slot];
        v.resize(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) v[static_cast<size_t>(i)] = round_to_tf32(p[i]);
        return v.data();
      }
    }
    return p;
  }

  bool tf32_operands_ = false;
  std::vector<T> operand_scratch_[2];
  std::vector<T> bias_scratch_;  // the weight gradient computed beside the fp32 bias gradient

};

}  // namespace

// Threads: Wren's own loops (elementwise, pooling) run on OpenMP's threads (OMP_NUM_THREADS,
// default: every core). OpenBLAS's threads spin for a while after each call and then compete
// with them (measured on 2 cores: 57 ms per ref-cnn step with one BLAS thread, 65 ms with two),
// so unless the user chose a count with OPENBLAS_NUM_THREADS, GEMMs run on one thread.
void configure_blas_threads() {
  static const bool once = [] {
    if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

template <class T>
std::unique_ptr<Backend<T>> make_cpu_backend(const CpuBackendOptions& options) {
  configure_blas_threads();
  return std::make_unique<CpuBackend<T>>(options);
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(const CpuBackendOptions&);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(const CpuBackendOptions&);

}  // namespace wren
