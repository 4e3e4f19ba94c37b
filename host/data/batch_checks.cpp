// check_batch_inputs (include/wren/data.h): what make_batch needs of its arguments.
#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include "wren/data.h"

namespace wren {

Status check_batch_inputs(const Dataset& dataset, std::span<const int64_t> sample_indices,
                          const Normalization& normalization, const AugmentConfig& augment) {
  const size_t channels = static_cast<size_t>(std::max(dataset.channels, 0));
  if (dataset.channels <= 0 || dataset.height <= 0 || dataset.width <= 0 ||
      dataset.pixels.size() != static_cast<size_t>(dataset.count * dataset.image_size()) ||
      dataset.labels.size() != static_cast<size_t>(dataset.count)) {
    return invalid_argument("make_batch: dataset " + dataset.source + " is inconsistent (" +
                            std::to_string(dataset.count) + " images of " +
                            std::to_string(dataset.channels) + "×" +
                            std::to_string(dataset.height) + "×" + std::to_string(dataset.width) +
                            ", " + std::to_string(dataset.pixels.size()) + " pixel bytes, " +
                            std::to_string(dataset.labels.size()) + " labels)");
  }
  for (size_t b = 0; b < sample_indices.size(); ++b) {
    if (sample_indices[b] < 0 || sample_indices[b] >= dataset.count) {
      return invalid_argument("make_batch: sample index " + std::to_string(sample_indices[b]) +
                              " at batch position " + std::to_string(b) + " is out of range [0, " +
                              std::to_string(dataset.count) + ")");
    }
  }
  if (normalization.mean.size() != channels || normalization.std.size() != channels) {
    return invalid_argument("make_batch: normalization has " +
                            std::to_string(normalization.mean.size()) + " means and " +
                            std::to_string(normalization.std.size()) + " stds for " +
                            std::to_string(channels) + " channels");
  }
  for (size_t c = 0; c < channels; ++c) {
    if (!std::isfinite(normalization.mean[c]) || !std::isfinite(normalization.std[c]) ||
        !(normalization.std[c] > 0)) {
      return invalid_argument("make_batch: channel " + std::to_string(c) + " has mean " +
                              std::to_string(normalization.mean[c]) + " and std " +
                              std::to_string(normalization.std[c]) +
                              " (need finite values and std > 0)");
    }
  }
  if (augment.crop_padding < 0 || augment.cutout < 0) {
    return invalid_argument("make_batch: crop padding " + std::to_string(augment.crop_padding) +
                            " and cutout " + std::to_string(augment.cutout) + " must be >= 0");
  }
  return Status::ok_status();
}

}  // namespace wren
