// Model files: a network written as text, one op per line, so that a model can be trained
// without writing C++ (`wren train --model net.wren`). The format is specified in
// docs/MODEL_FORMAT.md; examples/models/ holds the zoo's models written in it.
//
//   # ref-cnn
//   input image auto             # C, H, W from the data
//   labels label
//   conv2d conv1 out=32 kernel=3 padding=1
//   relu
//   max_pool2d kernel=2
//   ...
//   linear fc2 out=classes       # the data's class count
//   softmax_cross_entropy loss
//
// The parser calls the Graph builder (wren/graph.h) line by line, in file order, so a file
// and the C++ that makes the same calls give the same graph: the same parameter names,
// order and offsets, hence the same initial weights for a seed.
//
// Every error names the source, the line and the column of the offending token, gcc-style:
//   net.wren:7:22: conv2d 'conv2': unknown key 'strid' (conv2d takes: from, out, kernel, ...)
// Errors found by the builder (shapes that do not fit) carry the same prefix.
#pragma once

#include <string>
#include <string_view>

#include "wren/error.h"
#include "wren/graph.h"
#include "wren/models.h"

namespace wren {

// Builds the graph written in `text`. `input` is the data the model will see: `input NAME
// auto` (or no input line) takes C, H, W from it, an explicit shape is checked against it, and
// the token `classes` stands for input.classes. `source_name` prefixes every error message.
Expected<Graph> parse_model_text(std::string_view text, const ModelInput& input,
                                 std::string_view source_name = "<text>");

// Reads `path` and parses it; errors are prefixed with the path. A file that cannot be read
// is kNotFound (missing) or kIoError (anything else), naming the path and the reason.
Expected<Graph> parse_model_file(const std::string& path, const ModelInput& input);

}  // namespace wren
