// The segment table of a graph's parameters (include/wren/optimizer.h).
#include <algorithm>

#include "wren/optimizer.h"

namespace wren {

std::vector<ParamSegment> param_segments(const Graph& graph) {
  // The graph hands out offsets in creation order; sorting makes the table's order a property
  // of the offsets rather than of that habit.
  std::vector<const ParamInfo*> by_offset;
  for (const ParamInfo& p : graph.params()) by_offset.push_back(&p);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const ParamInfo* a, const ParamInfo* b) { return a->offset < b->offset; });

  std::vector<ParamSegment> segments;
  for (const ParamInfo* p : by_offset) {
    const int64_t count = p->shape.numel();
    if (count == 0) continue;
    if (!segments.empty()) {
      ParamSegment& last = segments.back();
      if (last.offset + last.count == p->offset && last.lr_mult == p->lr_mult &&
          last.wd_mult == p->wd_mult) {
        last.count += count;
        continue;
      }
    }
    segments.push_back(
        {.offset = p->offset, .count = count, .lr_mult = p->lr_mult, .wd_mult = p->wd_mult});
  }
  return segments;
}

}  // namespace wren
