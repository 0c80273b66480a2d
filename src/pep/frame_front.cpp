#include "pep/frame_front.hpp"

#include "pep/frame_codec.hpp"

namespace pexi::pep {

std::string answer_frame(const Pipeline& pipeline, const std::optional<std::string>& sandbox,
                         std::string_view payload) {
  const std::uint64_t max_body = pipeline.decider().guardrails().max_request_bytes();
  auto parsed = frame::parse_request(payload, max_body);
  if (!parsed) {
    const Error sent = pipeline.reject(Front::frame, sandbox, parsed.error());
    return frame::error_json(sent.code, sent.message);
  }
  InboundRequest request{std::move(parsed->method),
                         std::move(parsed->url),
                         std::move(parsed->headers),
                         std::move(parsed->body),
                         sandbox,
                         Front::frame};
  auto response = pipeline.handle(request);
  if (!response) return frame::error_json(response.error().code, response.error().message);
  return frame::response_json(response->status, response->headers, response->body);
}

}  // namespace pexi::pep
