#pragma once
// One audit record (DESIGN §6, docs/audit.md). The writer fills `ts`, `seq`, `prev`, `hash`.

#include "common/error.hpp"
#include "common/http.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace pexi::audit {

struct Record {
  std::string id;                    // one per request (both phases share it)
  std::optional<std::string> phase;  // nullopt: complete record; "start"/"end" for streams
  std::optional<std::string> vm;     // sandbox name
  Front front = Front::frame;
  std::string method;  // may be "" for an unparseable frame
  std::string url;     // canonical when it parsed, else the raw text
  std::string host;
  bool allow = false;
  std::optional<Code> code;  // null when allowed and served
  std::string rule;
  std::string reason;
  int status = 0;  // upstream status, 0 when none
  std::uint64_t req_bytes = 0;
  std::uint64_t resp_bytes = 0;
  double duration_ms = 0;
  std::uint32_t redirects = 0;  // hops followed by the PEP
  Headers req_headers;          // as sent upstream (or by the sandbox when denied)
};

// A fresh request id: 128 random bits as 32 lower-case hex characters.
std::string new_request_id();

}  // namespace pexi::audit
