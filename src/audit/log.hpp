#pragma once
// The append-only, hash-chained JSONL audit log (docs/audit.md).
//
// Each line is one JSON object. Its `hash` is SHA-256 (hex) over the previous line's hash
// (hex; 64 zeros for the first line) followed by the exact bytes of the line up to, not
// including, `,"hash":"…"}`. `prev` repeats the previous hash; `seq` counts lines from 1.
// Several pexi processes may append to one file: each append takes an exclusive flock and
// continues the chain from the file's actual last line.
//
// Durability: `append` returns only after the line is written (and, with fsync on, after
// fdatasync; concurrent appends share one fdatasync: group commit). When the line cannot be
// written the result is Code::audit_unavailable and the caller must fail closed.
//
// Thread-safety: AuditLog is safe to use from many threads.

#include "audit/record.hpp"
#include "audit/redactor.hpp"
#include "common/error.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace pexi::audit {

class Sink {
 public:
  virtual ~Sink() = default;
  // Redacts, stamps (ts, seq, prev, hash) and durably appends one record.
  virtual Result<void> append(const Record& record) = 0;
};

class AuditLog final : public Sink {
 public:
  // Opens (creating with mode 0600 if needed) and reads the chain's tail. Code::io_error when
  // the file cannot be opened, Code::audit_unavailable when its last line is not a valid record
  // (a torn write: run `pexi audit verify`).
  static Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& path, bool fsync,
                                                std::shared_ptr<const Redactor> redactor);
  ~AuditLog() override;

  Result<void> append(const Record& record) override;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The serialised line for a record with the given stamps (exposed for tests and tools).
std::string serialize(const Record& record, std::string_view ts, std::uint64_t seq,
                      std::string_view prev_hash);

struct VerifyReport {
  bool ok = true;
  std::uint64_t lines = 0;        // lines checked
  std::uint64_t bad_line = 0;     // 1-based, when !ok
  std::string problem;            // what is wrong with bad_line
};

// Checks every line: valid JSON object, `prev` equal to the previous hash, `seq` consecutive,
// `hash` correct. An empty file verifies. Code::io_error when the file cannot be read.
Result<VerifyReport> verify(const std::filesystem::path& path);

}  // namespace pexi::audit
