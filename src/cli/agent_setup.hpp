#pragma once
// The pure parts of `pexi agent` (docs/agent.md), kept apart from the command so that they are
// unit-tested: the OpenClaw configuration written into the guest, the provider URL decided on
// the host before OpenClaw starts, and the reading of OpenClaw's `agent exec --json` envelope.
//
// Thread-safety: pure functions.

#include "common/error.hpp"
#include "config/config.hpp"

#include <string>
#include <string_view>

namespace pexi::cli::agent {

// The API key OpenClaw holds in the guest: a placeholder the PEP replaces (the agent-provider
// rule's inject_headers) on the way out. The real key never enters the VM.
inline constexpr std::string_view kPlaceholderKey = "pexi-injected-on-the-host";
// The provider id in the guest's OpenClaw configuration ("pexi/<model>").
inline constexpr std::string_view kProviderId = "pexi";
// Where the guest's proxy relay listens (docs/vm.md).
inline constexpr std::string_view kGuestProxyUrl = "http://127.0.0.1:3128";

// OpenClaw's request adapter for `[agent] api`: "anthropic-messages" or "openai-completions".
std::string_view openclaw_api(std::string_view api) noexcept;

// The OpenClaw configuration (JSON) for one run: the provider `pexi` at agent.base_url with
// the placeholder key and the model `model`; the primary model "pexi/<model>"; update checks,
// telemetry and hosted catalog refreshes turned off; every connection through the guest's
// proxy relay (proxy.proxyUrl, besides OPENCLAW_PROXY_URL in the environment); plugins off.
std::string openclaw_config(const config::AgentConfig& agent, std::string_view model);

// The URL OpenClaw's model client posts to: base_url + "/v1/messages" (anthropic, whose base
// URL is the API's root) or base_url + "/chat/completions" (openai, whose base URL ends in
// the version, e.g. ".../v1"). Decided on the host before OpenClaw starts.
std::string provider_request_url(const config::AgentConfig& agent);

// What `openclaw agent exec --json` said. Its stdout holds one JSON envelope
// {"ok", "status": "ok"|"error"|"timeout", "final", "error": {"message", "kind"}, ...}.
struct Outcome {
  bool ok = false;
  std::string status;  // "ok", "error", "timeout"; "" when there was no envelope
  std::string final_text;
  std::string error;  // error.message (failures), or why the output could not be read
};
// Reads the envelope: the whole output, else its last line that parses as a JSON object.
Outcome parse_envelope(std::string_view stdout_text);

// The last `max_lines` non-empty lines of `text`, each cut to 300 bytes, control characters
// dropped: a failing run's diagnostics, small enough to show.
std::string tail_lines(std::string_view text, std::size_t max_lines);

}  // namespace pexi::cli::agent
