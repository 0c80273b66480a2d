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
// Thread-safety: AuditLog is safe to use from many threads. Open it in each process that
// writes (after fork): a descriptor shared across fork would share its flock too.

#include "audit/record.hpp"
#include "audit/redactor.hpp"
#include "common/error.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace pexi::audit {

class Sink {
 public:
  virtual ~Sink() = default;
  // Redacts, stamps (ts, seq, prev, hash) and durably appends one record.
  virtual Result<void> append(const Record& record) = 0;
  // False while the last append failed: callers refuse new work (fail closed) instead of
  // performing a request whose record may never be written.
  virtual bool healthy() const noexcept = 0;
};

// The system calls AuditLog makes on its descriptor once open. The defaults are the real
// calls; tests override one to inject a failure or to count group-commit syncs. Called from
// appending threads: write and ftruncate one at a time, fdatasync concurrently with them.
class FileIo {
 public:
  virtual ~FileIo() = default;
  virtual ssize_t write(int fd, const void* data, std::size_t size);
  virtual int fdatasync(int fd);
  virtual int ftruncate(int fd, off_t size);
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

struct AuditLogOptions {
  bool fsync = true;           // fdatasync before append returns (group commit)
  Clock clock;                 // empty: std::chrono::system_clock::now
  std::shared_ptr<FileIo> io;  // empty: the real system calls
};

class AuditLog final : public Sink {
 public:
  // Opens (creating with mode 0600 if needed) and reads the chain's tail. Code::io_error when
  // the file cannot be opened, Code::audit_unavailable when its last line is not a valid record
  // (a torn write: run `pexi audit verify`). A null redactor means the default rules.
  static Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& path, bool fsync,
                                                std::shared_ptr<const Redactor> redactor);
  static Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& path,
                                                AuditLogOptions options,
                                                std::shared_ptr<const Redactor> redactor);
  ~AuditLog() override;
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Fails with Code::audit_unavailable ("audit log cannot be written", errno in the detail)
  // when the line cannot be written or synced; a partly written line is truncated away first.
  // After a failed fdatasync every later append fails too: the kernel may have dropped the
  // unsynced pages, so nothing after them can be trusted (restart pexi, run verify).
  Result<void> append(const Record& record) override;
  bool healthy() const noexcept override;

  const std::filesystem::path& path() const noexcept;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// RFC 3339 UTC with milliseconds, e.g. "2026-11-23T12:34:56.789Z".
std::string format_timestamp(std::chrono::system_clock::time_point tp);

// The line for a record with the given stamps, exactly as appended: fields in schema order,
// `hash` last, a trailing '\n'. Does not redact (append() does that first).
std::string serialize(const Record& record, std::string_view ts, std::uint64_t seq,
                      std::string_view prev_hash);

// The `hash` of a line whose bytes before `,"hash":"` are `body`: hex SHA-256(prev || body).
std::string chain_hash(std::string_view prev_hash, std::string_view body);

inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct VerifyReport {
  bool ok = true;
  std::uint64_t lines = 0;     // lines checked
  std::uint64_t bad_line = 0;  // 1-based, when !ok
  std::string problem;         // what is wrong with bad_line
  std::string last_hash;       // hash of the last good line (kGenesisHash when none)
};

// Checks every line: valid JSON object, `prev` equal to the previous hash, `seq` consecutive,
// `hash` correct and the last field, and a final newline. An empty file verifies.
// Code::io_error when the file cannot be read.
Result<VerifyReport> verify(const std::filesystem::path& path);

}  // namespace pexi::audit
