#include "cli/agent_setup.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <vector>

namespace pexi::cli::agent {
namespace json = boost::json;

std::string_view openclaw_api(std::string_view api) noexcept {
  return api == "openai" ? "openai-completions" : "anthropic-messages";
}

std::string openclaw_config(const config::AgentConfig& agent, std::string_view model) {
  const json::object model_entry{
      {"id", model},
      {"name", model},
      {"reasoning", false},
      {"input", json::array{"text"}},
      {"cost", json::object{{"input", 0}, {"output", 0}, {"cacheRead", 0}, {"cacheWrite", 0}}},
      {"contextWindow", 200000},
      {"maxTokens", 8192},
  };
  const json::object provider{
      {"baseUrl", agent.base_url},
      {"apiKey", kPlaceholderKey},
      {"api", openclaw_api(agent.api)},
      {"models", json::array{model_entry}},
  };
  const json::object root{
      {"models",
       json::object{
           {"mode", "replace"},
           {"catalogRefresh", json::object{{"enabled", false}}},
           {"providers", json::object{{kProviderId, provider}}},
       }},
      {"agents",
       json::object{
           {"defaults",
            json::object{{"model", json::object{{"primary", std::string(kProviderId) + "/" +
                                                                std::string(model)}}}}}}},
      {"update", json::object{{"checkOnStart", false}}},
      {"telemetry", json::object{{"enabled", false}}},
      {"proxy", json::object{{"proxyUrl", kGuestProxyUrl}}},
      // No plugin discovery: the provider adapters are OpenClaw's own, and loading its ~60
      // bundled plugins costs minutes of CPU under TCG.
      {"plugins", json::object{{"enabled", false}}},
  };
  return json::serialize(root) + "\n";
}

std::string provider_request_url(const config::AgentConfig& agent) {
  std::string base = agent.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + (agent.api == "openai" ? "/chat/completions" : "/v1/messages");
}

namespace {

std::string string_at(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->get_string()) : std::string();
}

std::optional<json::object> parse_object(std::string_view text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.get_object());
}

}  // namespace

Outcome parse_envelope(std::string_view stdout_text) {
  Outcome out;
  std::optional<json::object> envelope = parse_object(stdout_text);
  // Bounded: each pass moves `end` back by at least one character.
  for (std::size_t end = stdout_text.size(); !envelope && end > 0;) {
    const std::size_t newline = stdout_text.rfind('\n', end - 1);
    const std::size_t begin = newline == std::string_view::npos ? 0 : newline + 1;
    const std::string_view line = stdout_text.substr(begin, end - begin);
    if (line.find('{') != std::string_view::npos) envelope = parse_object(line);
    if (begin == 0) break;
    end = begin - 1;
  }
  if (!envelope) {
    out.error = stdout_text.empty() ? "OpenClaw printed nothing"
                                    : "OpenClaw's output is not its JSON result";
    return out;
  }
  out.status = string_at(*envelope, "status");
  out.final_text = string_at(*envelope, "final");
  const json::value* ok = envelope->if_contains("ok");
  out.ok = ok != nullptr && ok->is_bool() && ok->get_bool() && out.status == "ok";
  if (const json::value* error = envelope->if_contains("error")) {
    if (error->is_object()) {
      out.error = string_at(error->get_object(), "message");
      const std::string kind = string_at(error->get_object(), "kind");
      if (!kind.empty()) out.error += (out.error.empty() ? "" : " ") + ("(" + kind + ")");
    } else if (error->is_string()) {
      out.error = std::string(error->get_string());
    }
  }
  if (!out.ok && out.error.empty()) {
    out.error = out.status.empty() ? "OpenClaw reported a failure" : "status " + out.status;
  }
  return out;
}

std::string tail_lines(std::string_view text, std::size_t max_lines) {
  constexpr std::size_t kMaxLineBytes = 300;
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line;
    for (char c : text.substr(start, end - start)) {
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 && u != 0x7f) line += c;
      if (line.size() >= kMaxLineBytes) break;
    }
    if (line.find_first_not_of(' ') != std::string::npos) {
      lines.push_back(std::move(line));
      if (lines.size() > max_lines) lines.erase(lines.begin());
    }
    start = end + 1;
  }
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

}  // namespace pexi::cli::agent
