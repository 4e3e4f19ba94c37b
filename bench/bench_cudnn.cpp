#include "bench_cudnn.h"

#if defined(WREN_HAVE_CUDA) && defined(WREN_BENCH_HAVE_CUDNN)
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>
#endif

namespace wren::bench {

#if defined(WREN_HAVE_CUDA) && defined(WREN_BENCH_HAVE_CUDNN)
namespace {

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH:
      return "default math";
    case CUDNN_TENSOR_OP_MATH:
      return "tensor-op math";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
      return "tensor-op math with conversion";
    case CUDNN_FMA_MATH:
      return "FMA math";
  }
  return "unknown math";
}

class CudnnPeer final : public ConvPeer {
 public:
  CudnnPeer(cudaStream_t stream, MathMode math) : stream_(stream), math_(math) {}
  ~CudnnPeer() override {
    free_buffers();
    if (conv_) cudnnDestroyConvolutionDescriptor(conv_);
    if (w_desc_) cudnnDestroyFilterDescriptor(w_desc_);
    if (x_desc_) cudnnDestroyTensorDescriptor(x_desc_);
    if (y_desc_) cudnnDestroyTensorDescriptor(y_desc_);
    if (b_desc_) cudnnDestroyTensorDescriptor(b_desc_);
    if (handle_) cudnnDestroy(handle_);
  }
  CudnnPeer(const CudnnPeer&) = delete;
  CudnnPeer& operator=(const CudnnPeer&) = delete;

  Status init() {
    if (cudnnStatus_t s = cudnnCreate(&handle_); s != CUDNN_STATUS_SUCCESS)
      return unavailable(std::string("cudnnCreate: ") + cudnnGetErrorString(s));
    cudnnSetStream(handle_, stream_);
    if (cudnnCreateTensorDescriptor(&x_desc_) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateTensorDescriptor(&y_desc_) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateTensorDescriptor(&b_desc_) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateFilterDescriptor(&w_desc_) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateConvolutionDescriptor(&conv_) != CUDNN_STATUS_SUCCESS)
      return unavailable("cuDNN: creating descriptors failed");
    return {};
  }

  Expected<PeerRun> prepare(const Conv2dDims& d, bool bias, ConvPass pass, int sets) override {
    free_buffers();
    error_.clear();
    const int p = d.p(), q = d.q();
    if (!ok(cudnnSetTensor4dDescriptor(x_desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.n, d.c, d.h,
                                       d.w)) ||
        !ok(cudnnSetTensor4dDescriptor(y_desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, d.n, d.k, p,
                                       q)) ||
        !ok(cudnnSetTensor4dDescriptor(b_desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, d.k, 1,
                                       1)) ||
        !ok(cudnnSetFilter4dDescriptor(w_desc_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, d.k, d.c, d.r,
                                       d.s)) ||
        !ok(cudnnSetConvolution2dDescriptor(conv_, d.pad_h, d.pad_w, d.stride_h, d.stride_w,
                                            d.dil_h, d.dil_w, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT)))
      return internal_error("cuDNN descriptors: " + error_);
    int on = 0, oc = 0, oh = 0, ow = 0;
    cudnnGetConvolution2dForwardOutputDim(conv_, x_desc_, w_desc_, &on, &oc, &oh, &ow);
    if (on != d.n || oc != d.k || oh != p || ow != q)
      return internal_error("cuDNN's output shape differs from Wren's");
    // fp32: FMA kernels only. tf32: TF32 tensor cores permitted (float data, sm_80+).
    const cudnnMathType_t requested =
        math_ == MathMode::kTf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    cudnnSetConvolutionMathType(conv_, requested);

    const size_t x_elems = size_t(d.n) * d.c * d.h * d.w, y_elems = size_t(d.n) * d.k * p * q,
                 w_elems = size_t(d.k) * d.c * d.r * d.s;
    std::vector<float*> x, w, dy;
    for (int s = 0; s < sets; ++s) {
      if (pass != ConvPass::kBackwardData) x.push_back(random(x_elems, 2 * s));
      if (pass != ConvPass::kBackwardWeights) w.push_back(random(w_elems, 2 * s + 1));
      if (pass != ConvPass::kForward) dy.push_back(random(y_elems, 2 * s + 7));
    }
    float* b = bias && pass == ConvPass::kForward ? random(d.k, 99) : nullptr;
    float* out = alloc((pass == ConvPass::kForward        ? y_elems
                        : pass == ConvPass::kBackwardData ? x_elems
                                                          : w_elems) *
                       sizeof(float));
    float* db =
        bias && pass == ConvPass::kBackwardWeights ? alloc(size_t(d.k) * sizeof(float)) : nullptr;
    if (!error_.empty()) return unavailable("cuDNN peer buffers: " + error_);

    PeerRun run;
    if (pass == ConvPass::kForward) {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int count = 0;
      if (!ok(cudnnFindConvolutionForwardAlgorithm(handle_, x_desc_, w_desc_, conv_, y_desc_,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf)))
        return internal_error("cudnnFindConvolutionForwardAlgorithm: " + error_);
      const auto* best = choose(perf, count);
      if (!best) return unavailable("cuDNN found no forward algorithm at this precision");
      cudnnConvolutionFwdAlgo_t algo = best->algo;
      void* ws = workspace(best->memory);
      const size_t ws_bytes = best->memory;
      run.algo = describe("fwd algo", static_cast<int>(algo), *best);
      run.run = [this, x, w, b, out, algo, ws, ws_bytes, sets](int rep) {
        const size_t s = static_cast<size_t>(rep % sets);
        const float one = 1.0f, zero = 0.0f;
        ok(cudnnConvolutionForward(handle_, &one, x_desc_, x[s], w_desc_, w[s], conv_, algo, ws,
                                   ws_bytes, &zero, y_desc_, out));
        if (b) ok(cudnnAddTensor(handle_, &one, b_desc_, b, &one, y_desc_, out));
      };
    } else if (pass == ConvPass::kBackwardData) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int count = 0;
      if (!ok(cudnnFindConvolutionBackwardDataAlgorithm(handle_, w_desc_, y_desc_, conv_, x_desc_,
                                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                        &count, perf)))
        return internal_error("cudnnFindConvolutionBackwardDataAlgorithm: " + error_);
      const auto* best = choose(perf, count);
      if (!best) return unavailable("cuDNN found no backward-data algorithm at this precision");
      cudnnConvolutionBwdDataAlgo_t algo = best->algo;
      void* ws = workspace(best->memory);
      const size_t ws_bytes = best->memory;
      run.algo = describe("bwd-data algo", static_cast<int>(algo), *best);
      run.run = [this, w, dy, out, algo, ws, ws_bytes, sets](int rep) {
        const size_t s = static_cast<size_t>(rep % sets);
        const float one = 1.0f, zero = 0.0f;
        ok(cudnnConvolutionBackwardData(handle_, &one, w_desc_, w[s], y_desc_, dy[s], conv_, algo,
                                        ws, ws_bytes, &zero, x_desc_, out));
      };
    } else {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int count = 0;
      if (!ok(cudnnFindConvolutionBackwardFilterAlgorithm(handle_, x_desc_, y_desc_, conv_, w_desc_,
                                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                          &count, perf)))
        return internal_error("cudnnFindConvolutionBackwardFilterAlgorithm: " + error_);
      const auto* best = choose(perf, count);
      if (!best) return unavailable("cuDNN found no backward-filter algorithm at this precision");
      cudnnConvolutionBwdFilterAlgo_t algo = best->algo;
      void* ws = workspace(best->memory);
      const size_t ws_bytes = best->memory;
      run.algo = describe("bwd-filter algo", static_cast<int>(algo), *best);
      run.run = [this, x, dy, out, db, algo, ws, ws_bytes, sets](int rep) {
        const size_t s = static_cast<size_t>(rep % sets);
        const float one = 1.0f, zero = 0.0f;
        ok(cudnnConvolutionBackwardFilter(handle_, &one, x_desc_, x[s], y_desc_, dy[s], conv_, algo,
                                          ws, ws_bytes, &zero, w_desc_, out));
        if (db) ok(cudnnConvolutionBackwardBias(handle_, &one, y_desc_, dy[s], &zero, b_desc_, db));
      };
    }
    if (!error_.empty()) return unavailable("cuDNN peer workspace: " + error_);
    return run;
  }

  size_t allocated_bytes() const override { return allocated_; }

  Status check() override {
    if (cudaError_t e = cudaStreamSynchronize(stream_); e != cudaSuccess && error_.empty())
      error_ = cudaGetErrorString(e);
    if (!error_.empty()) return internal_error("cuDNN peer: " + error_);
    return {};
  }

 private:
  // The fastest successful result at the requested precision (results come sorted by time).
  // The descriptor is then set to the math type the result was measured with (tf32), or kept
  // at CUDNN_FMA_MATH (fp32).
  template <class Perf>
  const Perf* choose(const Perf* perf, int count) {
    for (int i = 0; i < count; ++i) {
      if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
      if (perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
      if (math_ == MathMode::kFp32 && perf[i].mathType != CUDNN_FMA_MATH &&
          perf[i].mathType != CUDNN_DEFAULT_MATH)
        continue;
      cudnnSetConvolutionMathType(conv_,
                                  math_ == MathMode::kFp32 ? CUDNN_FMA_MATH : perf[i].mathType);
      return &perf[i];
    }
    return nullptr;
  }

  template <class Perf>
  std::string describe(const char* kind, int algo, const Perf& perf) const {
    return std::string("cuDNN ") + kind + " " + std::to_string(algo) + ", " +
           math_name(perf.mathType) +
           (perf.determinism == CUDNN_DETERMINISTIC ? ", deterministic" : ", nondeterministic");
  }

  bool ok(cudnnStatus_t s) {
    if (s == CUDNN_STATUS_SUCCESS) return true;
    if (error_.empty()) error_ = cudnnGetErrorString(s);
    return false;
  }

  float* alloc(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 4)) != cudaSuccess) {
      cudaGetLastError();
      if (error_.empty()) error_ = "out of device memory (" + std::to_string(bytes >> 20) + " MiB)";
      return nullptr;
    }
    owned_.push_back(p);
    allocated_ += bytes;
    return static_cast<float*>(p);
  }

  void* workspace(size_t bytes) { return bytes ? alloc(bytes) : nullptr; }

  // Uniform values in [-1, 1) from a splitmix64 stream.
  float* random(size_t count, uint64_t seed) {
    float* p = alloc(count * sizeof(float));
    if (!p) return nullptr;
    std::vector<float> host(count);
    uint64_t state = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (float& v : host) {
      state += 0x9e3779b97f4a7c15ull;
      uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      v = static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
    if (cudaMemcpy(p, host.data(), count * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess &&
        error_.empty())
      error_ = "cudaMemcpy of the peer's inputs failed";
    return p;
  }

  void free_buffers() {
    if (!owned_.empty()) cudaStreamSynchronize(stream_);
    for (void* p : owned_) cudaFree(p);
    owned_.clear();
    allocated_ = 0;
  }

  cudaStream_t stream_;
  MathMode math_;
  cudnnHandle_t handle_ = nullptr;
  cudnnTensorDescriptor_t x_desc_ = nullptr, y_desc_ = nullptr, b_desc_ = nullptr;
  cudnnFilterDescriptor_t w_desc_ = nullptr;
  cudnnConvolutionDescriptor_t conv_ = nullptr;
  std::vector<void*> owned_;
  size_t allocated_ = 0;
  std::string error_;
};

}  // namespace

Expected<std::unique_ptr<ConvPeer>> make_cudnn_peer(void* stream, MathMode math) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return unavailable("no GPU");
  }
  auto peer = std::make_unique<CudnnPeer>(static_cast<cudaStream_t>(stream), math);
  if (Status s = peer->init(); !s.ok()) return s.error();
  return std::unique_ptr<ConvPeer>(std::move(peer));
}

#else

Expected<std::unique_ptr<ConvPeer>> make_cudnn_peer(void* /*stream*/, MathMode /*math*/) {
#if defined(WREN_HAVE_CUDA)
  return unavailable("cuDNN not found");
#else
  return unavailable("no CUDA in this build");
#endif
}

#endif

}  // namespace wren::bench
