// cuDNN as the peer of Wren's convolutions in wren-bench (CUDA builds with libcudnn only; see
// docs/BENCHMARKS.md). For each shape and pass it picks cuDNN's fastest algorithm with
// cudnnFind*Algorithm at the same precision as Wren's run:
//   --math fp32: the descriptor's math type CUDNN_FMA_MATH (FMA kernels only, no tensor cores)
//   --math tf32: CUDNN_DEFAULT_MATH (TF32 tensor cores permitted for float data on sm_80+);
//                algorithms that would convert the data down (..._ALLOW_CONVERSION) are skipped
// and then runs that algorithm on the stream Wren's ops use, so one timer times both. A
// convolution with a bias adds it as Wren's forward does (cudnnAddTensor), and its weight
// gradient also computes the bias gradient (cudnnConvolutionBackwardBias).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "wren/error.h"
#include "wren/math_mode.h"
#include "conv/conv.h"

namespace wren::bench {

enum class ConvPass { kForward, kBackwardData, kBackwardWeights };

// One prepared peer run: `run(rep)` enqueues it on the stream given at creation, using input
// set rep % sets. `algo` names the algorithm cuDNN chose (and whether it is deterministic).
struct PeerRun {
  std::function<void(int rep)> run;
  std::string algo;
};

class ConvPeer {
 public:
  virtual ~ConvPeer() = default;
  // Buffers (random inputs, `sets` input sets) and the algorithm for one shape and pass; the
  // previous preparation's buffers are freed. Bytes of device memory held: allocated_bytes().
  virtual Expected<PeerRun> prepare(const Conv2dDims& d, bool bias, ConvPass pass, int sets) = 0;
  virtual size_t allocated_bytes() const = 0;
  // The first cuDNN error of the runs since prepare(), if any.
  virtual Status check() = 0;
};

// cuDNN on `stream` (a cudaStream_t; nullptr for the legacy stream), or the reason there is
// none ("cuDNN not found at build time", "no GPU").
Expected<std::unique_ptr<ConvPeer>> make_cudnn_peer(void* stream, MathMode math);

}  // namespace wren::bench
