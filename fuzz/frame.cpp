// Fuzzes the seed frame front without sockets: the byte stream is split into frames by the
// Decoder (in fuzzer-chosen chunk sizes), and each frame is answered through a real Pipeline
// (builtin engine, guardrails, address guard) whose upstream and audit disk are fakes.
// Invariants: no crash; every answer is a JSON object of the seed shape; exactly one audit
// record per answered frame.
#include "fakes/fakes.hpp"
#include "pep/frame_codec.hpp"
#include "pep/frame_front.hpp"
#include "policy/builtin_engine.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>

using namespace pexi;

namespace {

struct World {
  std::shared_ptr<fakes::ScriptedFetcher> fetcher = std::make_shared<fakes::ScriptedFetcher>();
  std::shared_ptr<fakes::MemoryAuditSink> audit = std::make_shared<fakes::MemoryAuditSink>();
  std::shared_ptr<fakes::ScriptedResolver> resolver = std::make_shared<fakes::ScriptedResolver>();
  std::unique_ptr<pep::Pipeline> pipeline;

  World() {
    config::Config config;
    config.policy.allow = {"example.com", "*.example.com"};
    config.guardrails.max_request_bytes = 4096;
    config.guardrails.max_response_bytes = 4096;
    resolver->answer("example.com", {{boost::asio::ip::make_address("93.184.216.34")}});
    fetcher->on("https://example.com/r", {302, {{"location", "/"}}, "", std::nullopt});
    fetcher->on("https://example.com/",
                {200, {{"content-type", "text/plain"}}, "ok", std::nullopt});
    auto engine = policy::BuiltinEngine::create(config.policy);
    if (!engine) std::abort();
    auto decider = std::make_shared<const pep::Decider>(
        std::shared_ptr<policy::Engine>(std::move(*engine)), policy::Guardrails(config.guardrails),
        net::AddressGuard{},
        std::make_shared<net::OverrideResolver>(std::map<std::string, std::vector<net::Address>>{},
                                                resolver));
    pipeline = std::make_unique<pep::Pipeline>(decider, fetcher, audit,
                                               std::make_shared<const pep::Secrets>());
  }
};

void check_answer(const std::string& answer) {
  boost::system::error_code ec;
  auto doc = boost::json::parse(answer, ec);
  if (ec || !doc.is_object()) {
    std::fprintf(stderr, "answer is not a JSON object: %s\n", answer.c_str());
    std::abort();
  }
  const auto& obj = doc.as_object();
  if (obj.size() != 4 || !obj.contains("status") || !obj.contains("headers") ||
      !obj.contains("body_base64") || !obj.contains("error"))
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  // The first byte picks the chunk size the stream is fed in.
  const std::size_t chunk = size == 0 ? 1 : 1 + data[0] % 64;
  std::string_view stream(reinterpret_cast<const char*>(data), size);
  if (!stream.empty()) stream.remove_prefix(1);

  pep::frame::Decoder decoder;
  world.audit->clear();
  std::size_t answered = 0;
  std::string payload;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    decoder.feed(stream.substr(at, chunk));
    pep::frame::Decoder::Status status;
    while ((status = decoder.next(payload)) == pep::frame::Decoder::Status::frame) {
      check_answer(pep::answer_frame(*world.pipeline, std::nullopt, payload));
      ++answered;
    }
    if (status == pep::frame::Decoder::Status::oversized) break;
  }
  if (world.audit->size() != answered) std::abort();
  return 0;
}
