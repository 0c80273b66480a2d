#pragma once
// The seed frame front without sockets: one frame payload in, one answer payload out.
// The server (frame_server.hpp) wraps this in Asio; tests and the fuzzer call it directly.

#include "pep/pipeline.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace pexi::pep {

// Parses the payload, runs it through the pipeline (which audits it exactly once) and returns
// the response payload: the seed response, or the seed error shape.
std::string answer_frame(const Pipeline& pipeline, const std::optional<std::string>& sandbox,
                         std::string_view payload);

}  // namespace pexi::pep
