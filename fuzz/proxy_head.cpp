// Fuzzes the proxy front's request-head parser and chunked-body decoder: arbitrary bytes must
// give a checked head or a clean invalid_request, never a crash, and an accepted head must keep
// its invariants (no Content-Length together with chunked, a known target form).
#include "proxy/chunked.hpp"
#include "proxy/head.hpp"

#include <cstdlib>

using namespace pexi;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto end = proxy::find_head_end(input);
  if (end && *end) {
    auto head = proxy::parse_request_head(input.substr(0, **end));
    if (head) {
      if (head->content_length && head->chunked) std::abort();
      if (head->version != 10 && head->version != 11) std::abort();
      (void)proxy::request_url(*head, "https", "example.com");
    }
  }
  // The same bytes as a chunked body, fed in two pieces.
  proxy::ChunkedDecoder decoder;
  std::string out;
  const std::size_t half = size / 2;
  auto first = decoder.feed(input.substr(0, half), out);
  if (first && !decoder.done()) (void)decoder.feed(input.substr(half), out);
  if (out.size() > size) std::abort();
  return 0;
}
