// The optimizer of a graph: the segment table of its parameters. The optimizer itself (the
// CPU reference Optimizer<T>, its configuration and the fused kernel) is the optimizer family,
// kernels/optimizer/optimizer.h.
#pragma once

#include <vector>

#include "optimizer/optimizer.h"
#include "wren/graph.h"

namespace wren {

// The segment table of a graph's parameters (ParamInfo::lr_mult, wd_mult, offset), adjacent
// parameters with equal multipliers merged into one segment; parameters with no elements are
// left out. For ref-cnn: 8 segments, weights wd_mult 1 and biases wd_mult 0, alternating.
std::vector<ParamSegment> param_segments(const Graph& graph);

}  // namespace wren
