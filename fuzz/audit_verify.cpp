// Fuzzes the audit log's reader and redactor with hostile bytes:
//  - the input as a log file must verify or be rejected with a line number, never crash;
//  - the input as URL, header and free text through the Redactor: never crash, and an
//    injected secret never survives;
//  - the input inside every string field of a record must serialise to a line that parses
//    and chains (the writer's escaping holds for any bytes).

#include "audit/line.hpp"
#include "audit/log.hpp"
#include "audit/redactor.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using namespace pexi;
using namespace pexi::audit;

constexpr std::string_view kInjected = "inj3cted-S3CRET";

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "audit_verify fuzz: %s\n", what);
    std::abort();
  }
}

// A per-process scratch file, removed when the fuzzer exits.
struct ScratchFile {
  std::string path = "/tmp/pexi-fuzz-audit-" + std::to_string(::getpid()) + ".jsonl";
  ~ScratchFile() { ::unlink(path.c_str()); }
};

const std::string& scratch_path() {
  static const ScratchFile file;
  return file.path;
}

void write_scratch(std::string_view data) {
  ::unlink(scratch_path().c_str());  // a fresh file: rewriting a truncated one is slow on ext4
  const int fd = ::open(scratch_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  check(fd >= 0, "cannot create scratch file");
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    check(n > 0, "cannot write scratch file");
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Redactor redactor(config::AuditConfig{}, {std::string(kInjected)});
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // 1. The input as a whole log file.
  write_scratch(input);
  auto report = verify(scratch_path());
  check(static_cast<bool>(report), "verify failed to read the file");
  if (!report->ok) {
    check(report->bad_line >= 1 && report->bad_line <= report->lines + 1, "bad_line out of range");
    check(!report->problem.empty(), "no problem text");
  } else {
    check(size == 0 || input.back() == '\n', "a log without final newline verified");
  }

  // 2. The Redactor.
  const std::string url = redactor.url(input);
  const std::string text = redactor.text(input);
  const Headers headers =
      redactor.headers({{"x-data", std::string(input)}, {std::string(input), "v"}});
  check(!contains(url, kInjected), "injected secret left in url()");
  check(!contains(text, kInjected), "injected secret left in text()");
  check(!contains(headers[0].second, kInjected), "injected secret left in headers()");

  // 3. Any bytes in any string field still make a valid, chained line.
  Record record;
  record.id = std::string(input.substr(0, 40));
  record.vm = std::string(input.substr(0, 8));
  record.phase = std::string(input.substr(size / 2));
  record.method = std::string(input.substr(0, 16));
  record.url = std::string(input);
  record.host = std::string(input.substr(size / 3));
  record.rule = std::string(input.substr(0, 3));
  record.reason = std::string(input);
  record.req_headers = {{std::string(input), std::string(input)}};
  const std::string line = serialize(record, "2026-11-23T12:34:56.789Z", 1, kGenesisHash);
  check(!line.empty() && line.back() == '\n', "line without newline");
  check(line.find('\n') == line.size() - 1, "newline inside a line");
  auto parsed = parse_line(std::string_view(line).substr(0, line.size() - 1));
  check(static_cast<bool>(parsed), "serialised line does not parse");
  check(parsed->hash == chain_hash(kGenesisHash, parsed->body), "serialised line does not chain");
  write_scratch(line);
  auto one = verify(scratch_path());
  check(one && one->ok && one->lines == 1, "serialised line does not verify");
  return 0;
}
