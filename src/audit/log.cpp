#include "audit/log.hpp"

#include "audit/line.hpp"

#include <openssl/evp.h>
#include <boost/json/parse.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>

namespace pexi::audit {
namespace {

constexpr std::string_view kHashMarker = R"(,"hash":")";
constexpr std::string_view kUnavailable = "audit log cannot be written";

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

Error unavailable(const std::filesystem::path& path, std::string_view what, int err) {
  return Error{Code::audit_unavailable, std::string(kUnavailable),
               path.string() + ": " + std::string(what) + ": " + errno_text(err)};
}

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not one (overlong
// forms, surrogates and code points past U+10FFFF are invalid, as in RFC 3629).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const std::size_t left = s.size() - i;
  if (c >= 0xC2 && c <= 0xDF) return left >= 2 && is_continuation(at(1)) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !is_continuation(at(1)) || !is_continuation(at(2))) return 0;
    if (c == 0xE0 && at(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && at(1) > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !is_continuation(at(1)) || !is_continuation(at(2)) || !is_continuation(at(3)))
      return 0;
    if (c == 0xF0 && at(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && at(1) > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

void append_uint(std::string& out, std::uint64_t v) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), end);
}

void append_int(std::string& out, std::int64_t v) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), end);
}

// Milliseconds with three decimals; NaN, infinities and negatives (a clock step) become 0 so
// the line stays valid JSON, and absurd values are capped to keep the line short.
void append_duration(std::string& out, double ms) {
  if (!std::isfinite(ms) || ms < 0) ms = 0;
  if (ms > 1e12) ms = 1e12;
  std::array<char, 64> buf{};
  auto [end, ec] =
      std::to_chars(buf.data(), buf.data() + buf.size(), ms, std::chars_format::fixed, 3);
  out.append(buf.data(), end);
}

void append_field(std::string& out, std::string_view name) {
  out.push_back(',');
  out.push_back('"');
  out.append(name);
  out.append("\":");
}

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kHex[data[i] >> 4];
    out[2 * i + 1] = kHex[data[i] & 0x0f];
  }
  return out;
}

std::string serialize_line(const Record& r, std::string_view ts, std::uint64_t seq,
                           std::string_view prev, std::string* hash_out) {
  std::string out;
  out.reserve(512 + r.url.size() + r.reason.size());
  out.append("{\"ts\":");
  append_json_string(out, ts);
  append_field(out, "id");
  append_json_string(out, r.id);
  append_field(out, "seq");
  append_uint(out, seq);
  append_field(out, "vm");
  if (r.vm)
    append_json_string(out, *r.vm);
  else
    out.append("null");
  append_field(out, "front");
  append_json_string(out, front_name(r.front));
  if (r.phase) {
    append_field(out, "phase");
    append_json_string(out, *r.phase);
  }
  append_field(out, "method");
  append_json_string(out, r.method);
  append_field(out, "url");
  append_json_string(out, r.url);
  append_field(out, "host");
  append_json_string(out, r.host);
  append_field(out, "decision");
  append_json_string(out, r.allow ? "allow" : "deny");
  append_field(out, "code");
  if (r.code)
    append_json_string(out, code_name(*r.code));
  else
    out.append("null");
  append_field(out, "rule");
  append_json_string(out, r.rule);
  append_field(out, "reason");
  append_json_string(out, r.reason);
  append_field(out, "status");
  append_int(out, r.status);
  append_field(out, "req_bytes");
  append_uint(out, r.req_bytes);
  append_field(out, "resp_bytes");
  append_uint(out, r.resp_bytes);
  append_field(out, "duration_ms");
  append_duration(out, r.duration_ms);
  append_field(out, "redirects");
  append_uint(out, r.redirects);
  append_field(out, "req_headers");
  out.push_back('[');
  for (std::size_t i = 0; i < r.req_headers.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('[');
    append_json_string(out, r.req_headers[i].first);
    out.push_back(',');
    append_json_string(out, r.req_headers[i].second);
    out.push_back(']');
  }
  out.push_back(']');
  append_field(out, "prev");
  append_json_string(out, prev);
  std::string hash = chain_hash(prev, out);
  out.append(kHashMarker);
  out.append(hash);
  out.append("\"}\n");
  if (hash_out) *hash_out = std::move(hash);
  return out;
}

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Removes the exclusive flock when the append (or the tail read) is over.
class FlockGuard {
 public:
  explicit FlockGuard(int fd) : fd_(fd) {}
  ~FlockGuard() { ::flock(fd_, LOCK_UN); }
  FlockGuard(const FlockGuard&) = delete;
  FlockGuard& operator=(const FlockGuard&) = delete;

 private:
  int fd_;
};

int lock_exclusive(int fd) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (::flock(fd, LOCK_EX) == 0) return 0;
    if (errno != EINTR) return errno;
  }
  return EINTR;
}

}  // namespace

// ---- line format ---------------------------------------------------------------------------

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out.append("\\\"");
          break;
        case '\\':
          out.append("\\\\");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        case '\b':
          out.append("\\b");
          break;
        case '\f':
          out.append("\\f");
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out.append("\\u00");
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0x0f]);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");  // U+FFFD: the line must stay valid UTF-8 JSON
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  out.push_back('"');
}

Result<LineInfo> parse_line(std::string_view line) {
  LineInfo info;
  const std::size_t marker = line.rfind(kHashMarker);
  if (marker == std::string_view::npos)
    return fail(Code::io_error, "no \"hash\" field at the end of the line");
  const std::string_view tail = line.substr(marker + kHashMarker.size());
  if (tail.size() != 66 || !is_hex64(tail.substr(0, 64)) || tail.substr(64) != "\"}")
    return fail(Code::io_error,
                "\"hash\" is not the last field or is not 64 lower-case hex digits");
  info.body = line.substr(0, marker);
  info.hash = std::string(tail.substr(0, 64));

  boost::system::error_code ec;
  boost::json::value value =
      boost::json::parse(boost::json::string_view(line.data(), line.size()), ec);
  if (ec) return fail(Code::io_error, "bad JSON: " + ec.message());
  if (!value.is_object()) return fail(Code::io_error, "bad JSON: not an object");
  const auto& object = value.get_object();

  const auto* seq = object.if_contains("seq");
  if (!seq) return fail(Code::io_error, "missing \"seq\"");
  if (seq->is_uint64()) {
    info.seq = seq->get_uint64();
  } else if (seq->is_int64() && seq->get_int64() >= 0) {
    info.seq = static_cast<std::uint64_t>(seq->get_int64());
  } else {
    return fail(Code::io_error, "\"seq\" is not a non-negative integer");
  }
  const auto* prev = object.if_contains("prev");
  if (!prev || !prev->is_string() || !is_hex64(std::string_view(prev->get_string())))
    return fail(Code::io_error, "\"prev\" is missing or not 64 lower-case hex digits");
  info.prev = std::string(prev->get_string());
  const auto* hash = object.if_contains("hash");
  if (!hash || !hash->is_string() || std::string_view(hash->get_string()) != info.hash)
    return fail(Code::io_error, "\"hash\" appears twice or is not the last field");
  info.record = std::move(value);
  return info;
}

std::string chain_hash(std::string_view prev_hash, std::string_view body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(ctx, prev_hash.data(), prev_hash.size()) == 1 &&
            EVP_DigestUpdate(ctx, body.data(), body.size()) == 1 &&
            EVP_DigestFinal_ex(ctx, digest.data(), &size) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    // Only on allocation failure inside OpenSSL; a wrong hash would silently break the chain.
    std::fputs("pexi: SHA-256 failed\n", stderr);
    std::abort();
  }
  return hex(digest.data(), size);
}

std::string format_timestamp(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(tp).time_since_epoch().count();
  const auto secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const auto millis = static_cast<int>(ms - static_cast<std::int64_t>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::array<char, 64> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, millis);
  return std::string(buf.data(), n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string serialize(const Record& record, std::string_view ts, std::uint64_t seq,
                      std::string_view prev_hash) {
  return serialize_line(record, ts, seq, prev_hash, nullptr);
}

// ---- verify ----------------------------------------------------------------------------------

Result<VerifyReport> verify(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::io_error, "cannot read " + path.string(), errno_text(errno));
  VerifyReport report;
  report.last_hash = std::string(kGenesisHash);
  std::string line;
  std::uint64_t number = 0;
  auto bad = [&](std::string problem) {
    report.ok = false;
    report.bad_line = number;
    report.problem = std::move(problem);
    return report;
  };
  while (std::getline(in, line)) {
    ++number;
    if (in.eof()) return bad("missing final newline (a torn write?)");
    if (line.empty()) return bad("empty line");
    auto parsed = parse_line(line);
    if (!parsed) return bad(parsed.error().message);
    if (parsed->prev != report.last_hash)
      return bad(number == 1 ? "\"prev\" of the first line is not 64 zeros"
                             : "\"prev\" does not match the hash of line " +
                                   std::to_string(number - 1) + " (a line deleted or reordered?)");
    if (parsed->seq != number)
      return bad("\"seq\" is " + std::to_string(parsed->seq) + ", expected " +
                 std::to_string(number));
    if (chain_hash(report.last_hash, parsed->body) != parsed->hash)
      return bad("\"hash\" does not match the line's content (edited?)");
    report.last_hash = parsed->hash;
    report.lines = number;
  }
  if (in.bad()) return fail(Code::io_error, "cannot read " + path.string(), errno_text(errno));
  return report;
}

// ---- writer ----------------------------------------------------------------------------------

ssize_t FileIo::write(int fd, const void* data, std::size_t size) {
  return ::write(fd, data, size);
}
int FileIo::fdatasync(int fd) { return ::fdatasync(fd); }
int FileIo::ftruncate(int fd, off_t size) { return ::ftruncate(fd, size); }

struct AuditLog::Impl {
  std::filesystem::path path;
  int fd = -1;
  bool fsync = true;
  Clock clock;
  std::shared_ptr<FileIo> io;
  std::shared_ptr<const Redactor> redactor;
  dev_t dev = 0;
  ino_t ino = 0;

  // Writers, one at a time (with the flock for other processes). Guards the fields below.
  std::mutex write_mu;
  off_t known_size = 0;   // file size after this process's last append
  std::uint64_t seq = 0;  // of the last line
  std::string prev = std::string(kGenesisHash);
  bool failed = false;  // sticky, after a partly written line could not be truncated away
  std::atomic<bool> last_append_failed{false};  // for healthy(); no lock needed
  std::string failed_detail;

  // Group commit: tickets count lines written by this process; `synced` is the highest ticket
  // known durable. One thread at a time (the leader) runs fdatasync for everyone waiting.
  std::mutex sync_mu;
  std::condition_variable sync_cv;
  std::uint64_t written = 0;
  std::uint64_t synced = 0;
  bool syncing = false;
  bool sync_failed = false;
  std::string sync_detail;

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  // Reads the last line of a file of `size` bytes and continues the chain from it.
  Result<void> load_tail(off_t size) {
    if (size == 0) {
      seq = 0;
      prev = std::string(kGenesisHash);
      known_size = 0;
      return {};
    }
    auto damaged = [&](std::string why) {
      return Error{Code::audit_unavailable,
                   "audit log " + path.string() +
                       " ends with a damaged record; run `pexi audit verify " + path.string() + "`",
                   std::move(why)};
    };
    // Read backwards in growing chunks until the line before the last newline starts.
    std::string buf;
    off_t start = size;
    std::size_t chunk = 4096;
    std::size_t line_start = std::string::npos;
    while (true) {
      const off_t want = std::min<off_t>(start, static_cast<off_t>(chunk));
      start -= want;
      std::string piece(static_cast<std::size_t>(want), '\0');
      std::size_t got = 0;
      while (got < piece.size()) {
        const ssize_t n =
            ::pread(fd, piece.data() + got, piece.size() - got, start + static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return unavailable(path, "read", errno);
        if (n == 0) return damaged("file shrank while reading its tail");
        got += static_cast<std::size_t>(n);
      }
      buf.insert(0, piece);
      if (buf.back() != '\n') return damaged("the last line has no final newline (a torn write?)");
      if (buf.size() >= 2) {
        const std::size_t nl = buf.rfind('\n', buf.size() - 2);
        if (nl != std::string::npos) {
          line_start = nl + 1;
          break;
        }
      }
      if (start == 0) {
        line_start = 0;
        break;
      }
      chunk *= 2;
    }
    const std::string_view line(buf.data() + line_start, buf.size() - 1 - line_start);
    auto parsed = parse_line(line);
    if (!parsed) return damaged("last line: " + parsed.error().message);
    if (chain_hash(parsed->prev, parsed->body) != parsed->hash)
      return damaged("last line: \"hash\" does not match its content");
    seq = parsed->seq;
    prev = parsed->hash;
    known_size = size;
    return {};
  }

  // The file must still be the one we opened: appending to a deleted or replaced inode would
  // lose every record silently.
  Result<void> check_identity() {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return unavailable(path, "stat (moved or deleted?)", errno);
    if (st.st_dev != dev || st.st_ino != ino)
      return Error{Code::audit_unavailable, std::string(kUnavailable),
                   path.string() + ": the file was replaced since pexi opened it"};
    return {};
  }

  // Writes the line at the end, under the flock. On failure nothing of it remains.
  Result<void> write_line(const std::string& line, off_t size_before) {
    std::size_t done = 0;
    int err = 0;
    for (int attempt = 0; done < line.size() && attempt < 1000; ++attempt) {
      const ssize_t n = io->write(fd, line.data() + done, line.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      if (n == 0) {
        err = EIO;
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    if (done == line.size()) return {};
    if (err == 0) err = EIO;
    if (done > 0 && io->ftruncate(fd, size_before) != 0) {
      // The torn line stays; refuse everything from now on rather than chain onto it.
      failed = true;
      failed_detail = path.string() + ": cannot remove a partly written line: " + errno_text(errno);
      return Error{Code::audit_unavailable, std::string(kUnavailable), failed_detail};
    }
    return unavailable(path, done > 0 ? "short write (truncated back)" : "write", err);
  }

  Result<void> wait_synced(std::uint64_t ticket) {
    std::unique_lock lock(sync_mu);
    // Bounded: every round either syncs (advancing `synced`) or waits for the one that does.
    while (synced < ticket) {
      if (sync_failed)
        return Error{Code::audit_unavailable, std::string(kUnavailable), sync_detail};
      if (syncing) {
        sync_cv.wait(lock);
        continue;
      }
      syncing = true;
      const std::uint64_t target = written;
      lock.unlock();
      int rc = 0;
      int err = 0;
      do {
        rc = io->fdatasync(fd);
        err = rc == 0 ? 0 : errno;
      } while (rc != 0 && err == EINTR);
      lock.lock();
      syncing = false;
      if (rc == 0) {
        synced = std::max(synced, target);
      } else {
        sync_failed = true;
        sync_detail = path.string() + ": fdatasync: " + errno_text(err);
      }
      sync_cv.notify_all();
    }
    return {};
  }

  Result<void> append(const Record& original) {
    // Redaction is the expensive part and needs no lock.
    Record record = original;
    record.url = redactor->url(original.url);
    record.req_headers = redactor->headers(original.req_headers);
    record.reason = redactor->text(original.reason);

    std::uint64_t ticket = 0;
    {
      std::lock_guard lock(write_mu);
      if (failed) return Error{Code::audit_unavailable, std::string(kUnavailable), failed_detail};
      if (fsync) {
        std::lock_guard sync_lock(sync_mu);
        if (sync_failed)
          return Error{Code::audit_unavailable, std::string(kUnavailable), sync_detail};
      }
      if (int err = lock_exclusive(fd); err != 0) return unavailable(path, "flock", err);
      FlockGuard unlock(fd);
      PEXI_TRY(check_identity());
      struct stat st {};
      if (::fstat(fd, &st) != 0) return unavailable(path, "fstat", errno);
      if (st.st_size < known_size) {
        // Records this process wrote are gone: tampering, or a rotation done the wrong way.
        return Error{Code::audit_unavailable, std::string(kUnavailable),
                     path.string() + ": the file shrank since the last append (truncated?)"};
      }
      if (st.st_size != known_size) {
        // Another process appended (or someone else wrote): continue from the real last line.
        if (auto loaded = load_tail(st.st_size); !loaded) {
          // The guest sees `message`: keep the path and the advice in the host-only detail.
          return Error{Code::audit_unavailable, std::string(kUnavailable),
                       loaded.error().message + ": " + loaded.error().detail};
        }
      }
      const std::string ts = format_timestamp(clock ? clock() : std::chrono::system_clock::now());
      std::string hash;
      const std::string line = serialize_line(record, ts, seq + 1, prev, &hash);
      PEXI_TRY(write_line(line, st.st_size));
      known_size = st.st_size + static_cast<off_t>(line.size());
      seq += 1;
      prev = std::move(hash);
      if (fsync) {
        std::lock_guard sync_lock(sync_mu);
        ticket = ++written;
      }
    }
    if (fsync) return wait_synced(ticket);
    return {};
  }
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AuditLog::~AuditLog() = default;

const std::filesystem::path& AuditLog::path() const noexcept { return impl_->path; }

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& path, bool fsync,
                                                 std::shared_ptr<const Redactor> redactor) {
  AuditLogOptions options;
  options.fsync = fsync;
  return open(path, std::move(options), std::move(redactor));
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::filesystem::path& path,
                                                 AuditLogOptions options,
                                                 std::shared_ptr<const Redactor> redactor) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->fsync = options.fsync;
  impl->clock = std::move(options.clock);
  impl->io = options.io ? std::move(options.io) : std::make_shared<FileIo>();
  impl->redactor = redactor ? std::move(redactor)
                            : std::make_shared<const Redactor>(config::AuditConfig{},
                                                               std::vector<std::string>{});
  impl->fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (impl->fd < 0)
    return fail(Code::io_error, "cannot open audit log " + path.string(), errno_text(errno));
  struct stat st {};
  if (::fstat(impl->fd, &st) != 0)
    return fail(Code::io_error, "cannot open audit log " + path.string(), errno_text(errno));
  impl->dev = st.st_dev;
  impl->ino = st.st_ino;
  {
    if (int err = lock_exclusive(impl->fd); err != 0)
      return fail(Code::io_error, "cannot lock audit log " + path.string(), errno_text(err));
    FlockGuard unlock(impl->fd);
    if (::fstat(impl->fd, &st) != 0)
      return fail(Code::io_error, "cannot open audit log " + path.string(), errno_text(errno));
    PEXI_TRY(impl->load_tail(st.st_size));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

Result<void> AuditLog::append(const Record& record) {
  auto result = impl_->append(record);
  impl_->last_append_failed.store(!result, std::memory_order_relaxed);
  return result;
}

bool AuditLog::healthy() const noexcept {
  return !impl_->last_append_failed.load(std::memory_order_relaxed);
}

}  // namespace pexi::audit
