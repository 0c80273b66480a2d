#include "audit/log.hpp"
#include "audit/line.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace pexi::audit {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& path, const std::string& data) {
  // Remove first: ext4 flushes a truncated-then-rewritten file on close, which is slow.
  std::error_code ec;
  fs::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> lines_of(const std::string& data) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    lines.push_back(data.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// Every append failure is audit_unavailable with the same guest-safe message.
void expect_unavailable(const Result<void>& result) {
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::audit_unavailable);
  EXPECT_EQ(result.error().message, "audit log cannot be written");
  EXPECT_FALSE(result.error().detail.empty());
}

Record sample(int n = 0) {
  Record r;
  r.id = "0123456789abcdef0123456789abcdef";
  r.front = Front::frame;
  r.method = "GET";
  r.url = "https://example.com/p/" + std::to_string(n);
  r.host = "example.com";
  r.allow = true;
  r.rule = "allow[0]";
  r.reason = "allowed by allow[0]";
  r.status = 200;
  r.req_bytes = 0;
  r.resp_bytes = 1234;
  r.duration_ms = 12.5;
  r.req_headers = {{"accept", "text/html"}};
  return r;
}

std::shared_ptr<const Redactor> default_redactor(std::vector<std::string> secrets = {}) {
  return std::make_shared<const Redactor>(config::AuditConfig{}, std::move(secrets));
}

Clock fixed_clock() {
  // 2026-11-23T12:34:56.789Z
  return [] { return std::chrono::system_clock::time_point(1795437296789ms); };
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "pexi-audit-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "audit.jsonl";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::unique_ptr<AuditLog> open_log(AuditLogOptions options = {}) {
    if (!options.clock) options.clock = fixed_clock();
    auto log =
        AuditLog::open(path_, std::move(options), default_redactor({"injected-secret-value"}));
    EXPECT_TRUE(log) << (log ? "" : log.error().message + " / " + log.error().detail);
    return log ? std::move(*log) : nullptr;
  }

  // A small valid log of `n` lines.
  void make_log(int n) {
    AuditLogOptions options;
    options.fsync = false;
    auto log = open_log(std::move(options));
    ASSERT_TRUE(log);
    for (int i = 0; i < n; ++i) ASSERT_TRUE(log->append(sample(i)));
  }

  VerifyReport verify_ok_or_report() {
    auto report = verify(path_);
    EXPECT_TRUE(report);
    return report ? *report : VerifyReport{};
  }

  fs::path dir_;
  fs::path path_;
};

// ---- line format -----------------------------------------------------------------------------

TEST(AuditFormat, TimestampIsRfc3339UtcWithMilliseconds) {
  EXPECT_EQ(format_timestamp(fixed_clock()()), "2026-11-23T12:34:56.789Z");
  EXPECT_EQ(format_timestamp(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_timestamp(std::chrono::system_clock::time_point(1ms)),
            "1970-01-01T00:00:00.001Z");
}

TEST(AuditFormat, SerializeWritesEveryFieldInSchemaOrder) {
  Record r = sample(7);
  r.vm = "dev";
  r.code = Code::http_error;
  r.redirects = 2;
  r.req_headers = {{"accept", "*/*"}, {"x-a", "b"}};
  const std::string line = serialize(r, "2026-11-23T12:34:56.789Z", 3, kGenesisHash);
  const std::string body =
      R"({"ts":"2026-11-23T12:34:56.789Z","id":"0123456789abcdef0123456789abcdef","seq":3,"vm":"dev",)"
      R"("front":"frame","method":"GET","url":"https://example.com/p/7","host":"example.com",)"
      R"("decision":"allow","code":"http_error","rule":"allow[0]","reason":"allowed by allow[0]",)"
      R"("status":200,"req_bytes":0,"resp_bytes":1234,"duration_ms":12.500,"redirects":2,)"
      R"("req_headers":[["accept","*/*"],["x-a","b"]],"prev":")" +
      std::string(kGenesisHash) + "\"";
  EXPECT_EQ(line, body + R"(,"hash":")" + chain_hash(kGenesisHash, body) + "\"}\n");
}

TEST(AuditFormat, PhaseIsWrittenOnlyWhenSetAndNullsAreNull) {
  Record r = sample();
  r.allow = false;
  r.code = Code::denied_by_policy;
  r.front = Front::proxy;
  const std::string without = serialize(r, "t", 1, kGenesisHash);
  EXPECT_EQ(without.find("\"phase\""), std::string::npos);
  EXPECT_NE(without.find(R"("vm":null,"front":"proxy","method")"), std::string::npos);
  EXPECT_NE(without.find(R"("decision":"deny","code":"denied_by_policy")"), std::string::npos);
  r.phase = "start";
  r.allow = true;
  r.code.reset();
  const std::string with = serialize(r, "t", 1, kGenesisHash);
  EXPECT_NE(with.find(R"("front":"proxy","phase":"start","method":"GET")"), std::string::npos);
  EXPECT_NE(with.find(R"("code":null)"), std::string::npos);
}

TEST(AuditFormat, SameInputSameBytes) {
  EXPECT_EQ(serialize(sample(1), "t", 9, kGenesisHash), serialize(sample(1), "t", 9, kGenesisHash));
}

TEST(AuditFormat, DurationIsAlwaysAValidNumber) {
  for (double d : {0.0, -5.0, 1e300, std::nan(""), 0.0004, 123456.789}) {
    Record r = sample();
    r.duration_ms = d;
    const std::string line = serialize(r, "t", 1, kGenesisHash);
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
    EXPECT_TRUE(v.at("duration_ms").is_double()) << line;
  }
}

struct EscapeCase {
  std::string raw;
  std::string decoded;  // what a JSON parser must read back
};

TEST(AuditFormat, StringsAreEscapedIntoValidUtf8Json) {
  const std::vector<EscapeCase> cases = {
      {"plain", "plain"},
      {"quote \" backslash \\ slash /", "quote \" backslash \\ slash /"},
      {"nl\ncr\rtab\tbs\bff\f", "nl\ncr\rtab\tbs\bff\f"},
      {std::string("nul\0esc\x1b del\x7f", 13), std::string("nul\0esc\x1b del\x7f", 13)},
      {"utf8 caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80",
       "utf8 caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80"},
      {"lone \xFF byte", "lone \xEF\xBF\xBD byte"},
      {"overlong \xC0\xAF", "overlong \xEF\xBF\xBD\xEF\xBF\xBD"},
      {"surrogate \xED\xA0\x80", "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"truncated \xE2\x9C", "truncated \xEF\xBF\xBD\xEF\xBF\xBD"},
      {"past max \xF4\x90\x80\x80", "past max \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {"\xE2\x80\xA8 line separator", "\xE2\x80\xA8 line separator"},
  };
  for (const auto& c : cases) {
    std::string out;
    append_json_string(out, c.raw);
    boost::system::error_code ec;
    const auto v = boost::json::parse(out, ec);  // Boost.JSON rejects invalid UTF-8
    ASSERT_FALSE(ec) << out;
    ASSERT_TRUE(v.is_string());
    EXPECT_EQ(std::string(v.get_string()), c.decoded) << out;
    for (char ch : out) EXPECT_FALSE(static_cast<unsigned char>(ch) < 0x20) << out;
  }
}

TEST(AuditFormat, HostileFieldsCannotForgeTheHashField) {
  Record r = sample();
  r.url =
      R"(https://x.test/","hash":"0000000000000000000000000000000000000000000000000000000000000000"})";
  r.reason = "\n{\"fake\":1}\n";
  r.req_headers = {{"x\",\"hash\":\"", "\"}\n"}};
  const std::string line = serialize(r, "t", 1, kGenesisHash);
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1);
  auto parsed = parse_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(std::string(parsed->record.at("url").as_string()), r.url);
  EXPECT_EQ(parsed->hash, chain_hash(kGenesisHash, parsed->body));
}

// ---- chain and verify -----------------------------------------------------------------------

TEST_F(AuditLogTest, EachLineChainsToThePreviousOne) {
  make_log(5);
  const auto lines = lines_of(read_file(path_));
  ASSERT_EQ(lines.size(), 5u);
  std::string prev(kGenesisHash);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto parsed = parse_line(lines[i]);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->seq, i + 1);
    EXPECT_EQ(parsed->prev, prev);
    EXPECT_EQ(parsed->hash, chain_hash(prev, parsed->body));
    EXPECT_EQ(std::string(parsed->record.at("ts").as_string()), "2026-11-23T12:34:56.789Z");
    prev = parsed->hash;
  }
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 5u);
  EXPECT_EQ(report.last_hash, prev);
}

TEST_F(AuditLogTest, EmptyFileVerifiesAndMissingFileIsAnIoError) {
  write_file(path_, "");
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.lines, 0u);
  auto missing = verify(dir_ / "nope.jsonl");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::io_error);
}

TEST_F(AuditLogTest, VerifyCatchesEverySingleByteEditOnItsLine) {
  make_log(3);
  const std::string good = read_file(path_);
  // Which line each byte belongs to (its newline included).
  std::vector<std::uint64_t> line_of(good.size());
  std::uint64_t line = 1;
  for (std::size_t i = 0; i < good.size(); ++i) {
    line_of[i] = line;
    if (good[i] == '\n') ++line;
  }
  for (unsigned char flip : {0x01, 0x20, 0x80}) {
    for (std::size_t i = 0; i < good.size(); ++i) {
      std::string bad = good;
      bad[i] = static_cast<char>(static_cast<unsigned char>(bad[i]) ^ flip);
      write_file(path_, bad);
      auto report = verify(path_);
      ASSERT_TRUE(report);
      EXPECT_FALSE(report->ok) << "byte " << i << " ^ " << int(flip);
      EXPECT_EQ(report->bad_line, line_of[i]) << "byte " << i << ": " << report->problem;
    }
  }
}

TEST_F(AuditLogTest, VerifyCatchesDeletedSwappedTruncatedAndAppended) {
  make_log(4);
  const std::string good = read_file(path_);
  const auto lines = lines_of(good);
  auto join = [](const std::vector<std::string>& ls) {
    std::string out;
    for (const auto& l : ls) out += l + "\n";
    return out;
  };
  struct Case {
    const char* name;
    std::string data;
    std::uint64_t bad_line;
    std::string problem_part;
  };
  const std::vector<Case> cases = {
      {"deleted line 2", join({lines[0], lines[2], lines[3]}), 2, "prev"},
      {"deleted first line", join({lines[1], lines[2], lines[3]}), 1, "prev"},
      {"swapped 2 and 3", join({lines[0], lines[2], lines[1], lines[3]}), 2, "prev"},
      {"duplicated line", join({lines[0], lines[1], lines[1], lines[2]}), 3, "prev"},
      {"torn last line", good.substr(0, good.size() - 10), 4, "newline"},
      {"missing final newline", good.substr(0, good.size() - 1), 4, "newline"},
      {"garbage line appended", good + "garbage\n", 5, "hash"},
      {"json line appended", good + "{\"seq\":5}\n", 5, "hash"},
      {"garbage without newline", good + "xyz", 5, "newline"},
      {"empty line appended", good + "\n", 5, "empty"},
      {"empty line inside", join({lines[0], ""}) + join({lines[1]}), 2, "empty"},
  };
  for (const auto& c : cases) {
    write_file(path_, c.data);
    auto report = verify(path_);
    ASSERT_TRUE(report);
    EXPECT_FALSE(report->ok) << c.name;
    EXPECT_EQ(report->bad_line, c.bad_line) << c.name << ": " << report->problem;
    EXPECT_NE(report->problem.find(c.problem_part), std::string::npos)
        << c.name << ": " << report->problem;
  }
}

TEST_F(AuditLogTest, VerifyReportsSeqGapsEvenWithARecomputedHash) {
  // A forger who recomputes hashes but skips a seq number is still caught.
  std::string prev(kGenesisHash);
  std::string data;
  for (std::uint64_t seq : {1, 2, 4}) {
    std::string hash;
    const std::string line = serialize(sample(), "t", seq, prev);
    auto parsed = parse_line(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(parsed);
    prev = parsed->hash;
    data += line;
  }
  write_file(path_, data);
  auto report = verify(path_);
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->ok);
  EXPECT_EQ(report->bad_line, 3u);
  EXPECT_NE(report->problem.find("seq"), std::string::npos) << report->problem;
}

// ---- writer ----------------------------------------------------------------------------------

TEST_F(AuditLogTest, CreatesTheFileWithMode0600) {
  const mode_t old = ::umask(0);
  auto log = open_log();
  ::umask(old);
  ASSERT_TRUE(log);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuditLogTest, RedactsUrlHeadersAndReasonInsideAppend) {
  auto log = open_log();
  ASSERT_TRUE(log);
  Record r = sample();
  r.url = "https://api.example.com/x?token=tok123&page=2";
  r.req_headers = {{"Authorization", "Bearer abcdef"},
                   {"x-api-key", "injected-secret-value"},
                   {"x-echo", "has injected-secret-value inside"},
                   {"accept", "text/html"}};
  r.reason = "upstream rejected ghp_0123456789abcdefghijklmnopqrstuvwxyz and injected-secret-value";
  ASSERT_TRUE(log->append(r));
  const std::string data = read_file(path_);
  for (const char* secret : {"tok123", "Bearer abcdef", "injected-secret-value", "ghp_0123456789"})
    EXPECT_EQ(data.find(secret), std::string::npos) << secret << " in " << data;
  auto parsed = parse_line(lines_of(data).at(0));
  ASSERT_TRUE(parsed);
  const auto& rec = parsed->record.as_object();
  EXPECT_EQ(rec.at("url").as_string(), "https://api.example.com/x?token=[REDACTED]&page=2");
  EXPECT_EQ(boost::json::serialize(rec.at("req_headers")),
            R"([["Authorization","[REDACTED]"],["x-api-key","[REDACTED]"],)"
            R"(["x-echo","has [REDACTED] inside"],["accept","text/html"]])");
  EXPECT_EQ(rec.at("reason").as_string(), "upstream rejected [REDACTED] and [REDACTED]");
}

TEST_F(AuditLogTest, ReopenContinuesTheChain) {
  {
    auto log = open_log();
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append(sample(1)));
    ASSERT_TRUE(log->append(sample(2)));
  }
  {
    auto log = open_log();
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append(sample(3)));
  }
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 3u);
}

TEST_F(AuditLogTest, OpenRefusesADamagedTail) {
  make_log(2);
  const std::string good = read_file(path_);
  for (const std::string& bad :
       {good.substr(0, good.size() - 5), good + "not json\n", good + "\n"}) {
    write_file(path_, bad);
    auto log = AuditLog::open(path_, false, default_redactor());
    ASSERT_FALSE(log);
    EXPECT_EQ(log.error().code, Code::audit_unavailable);
    EXPECT_NE(log.error().message.find(path_.string()), std::string::npos) << log.error().message;
    EXPECT_NE(log.error().message.find("pexi audit verify"), std::string::npos)
        << log.error().message;
  }
}

TEST_F(AuditLogTest, OpenReadsALastLineLongerThanOneReadChunk) {
  {
    auto log = open_log();
    ASSERT_TRUE(log);
    Record r = sample();
    r.reason = std::string(20000, 'r');
    ASSERT_TRUE(log->append(r));
    ASSERT_TRUE(log->append(r));
  }
  auto log = open_log();
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample()));
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 3u);
}

TEST_F(AuditLogTest, OpenFailsWithIoErrorWhenTheFileCannotBeOpened) {
  auto log = AuditLog::open(dir_ / "no-such-dir" / "audit.jsonl", false, default_redactor());
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, Code::io_error);
}

TEST_F(AuditLogTest, ConcurrentAppendsFromEightThreadsVerify) {
  AuditLogOptions options;
  options.fsync = false;
  auto log = open_log(std::move(options));
  ASSERT_TRUE(log);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i)
        if (!log->append(sample(t * 1000 + i))) ++failures;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 1600u);
}

TEST_F(AuditLogTest, TwoInstancesInOneProcessShareTheChain) {
  AuditLogOptions a_options;
  a_options.fsync = false;
  auto a = open_log(a_options);
  auto b = open_log(a_options);
  ASSERT_TRUE(a && b);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((i % 3 ? a : b)->append(sample(i)));
  }
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 10u);
}

TEST_F(AuditLogTest, TwoProcessesAppendingToOneFileVerify) {
  make_log(1);
  constexpr int kPerProcess = 300;
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: its own AuditLog (a descriptor inherited across fork would share the flock).
      auto log = AuditLog::open(path_, false, default_redactor());
      if (!log) ::_exit(2);
      for (int i = 0; i < kPerProcess; ++i)
        if (!(*log)->append(sample(p * 1000 + i))) ::_exit(3);
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem << " at line " << report.bad_line;
  EXPECT_EQ(report.lines, 1u + 2 * kPerProcess);
}

// Counts syncs and remembers how much of the file each completed sync covered.
class CountingIo : public FileIo {
 public:
  ssize_t write(int fd, const void* data, std::size_t size) override {
    const ssize_t n = FileIo::write(fd, data, size);
    struct stat st {};
    ::fstat(fd, &st);
    last_written_end = st.st_size;  // the appending thread reads this right after append
    return n;
  }
  int fdatasync(int fd) override {
    struct stat st {};
    ::fstat(fd, &st);  // everything up to here is covered by this sync
    const off_t covered = st.st_size;
    const int active = ++in_sync_;
    if (active > 1) overlapping_syncs = true;
    std::this_thread::sleep_for(2ms);  // a slow disk, so that appends pile up
    const int rc = FileIo::fdatasync(fd);
    --in_sync_;
    ++syncs;
    off_t seen = durable.load();
    while (covered > seen && !durable.compare_exchange_weak(seen, covered)) {
    }
    return rc;
  }
  static thread_local off_t last_written_end;
  std::atomic<int> syncs{0};
  std::atomic<off_t> durable{0};
  std::atomic<bool> overlapping_syncs{false};

 private:
  std::atomic<int> in_sync_{0};
};
thread_local off_t CountingIo::last_written_end = 0;

TEST_F(AuditLogTest, GroupCommitSharesSyncsAndReturnsOnlyWhenDurable) {
  auto io = std::make_shared<CountingIo>();
  AuditLogOptions options;
  options.fsync = true;
  options.io = io;
  auto log = open_log(options);
  ASSERT_TRUE(log);
  constexpr int kThreads = 8;
  constexpr int kEach = 40;
  std::atomic<int> failures{0};
  std::atomic<int> not_durable{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!log->append(sample(t * 100 + i))) ++failures;
        if (io->durable.load() < CountingIo::last_written_end) ++not_durable;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(not_durable.load(), 0);
  EXPECT_FALSE(io->overlapping_syncs.load());
  EXPECT_GT(io->syncs.load(), 0);
  EXPECT_LT(io->syncs.load(), kThreads * kEach / 2) << "appends did not share syncs";
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, static_cast<std::uint64_t>(kThreads * kEach));
}

TEST_F(AuditLogTest, FsyncOnARealFileSucceeds) {
  auto log = open_log();  // fsync on, real system calls
  ASSERT_TRUE(log);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(log->append(sample(i)));
  EXPECT_TRUE(verify_ok_or_report().ok);
}

// ---- failing closed --------------------------------------------------------------------------

TEST_F(AuditLogTest, DevFullFailsClosed) {
  auto log = AuditLog::open("/dev/full", false, default_redactor());
  ASSERT_TRUE(log) << log.error().detail;
  auto result = (*log)->append(sample());
  expect_unavailable(result);
  EXPECT_EQ(result.error().message, "audit log cannot be written");
  EXPECT_NE(result.error().detail.find("errno " + std::to_string(ENOSPC)), std::string::npos)
      << result.error().detail;
}

// Writes part of the line, then fails like a full disk.
class ShortWriteIo : public FileIo {
 public:
  ssize_t write(int fd, const void* data, std::size_t size) override {
    if (!fail) return FileIo::write(fd, data, size);
    if (!wrote_part) {
      wrote_part = true;
      return FileIo::write(fd, data, size / 2);
    }
    errno = ENOSPC;
    return -1;
  }
  int ftruncate(int fd, off_t size) override {
    if (fail_truncate) {
      errno = EIO;
      return -1;
    }
    return FileIo::ftruncate(fd, size);
  }
  bool fail = false;
  bool fail_truncate = false;
  bool wrote_part = false;
};

TEST_F(AuditLogTest, ShortWriteIsTruncatedBackAndTheLogStaysUsable) {
  auto io = std::make_shared<ShortWriteIo>();
  AuditLogOptions options;
  options.fsync = false;
  options.io = io;
  auto log = open_log(options);
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)));
  const auto size_before = fs::file_size(path_);
  io->fail = true;
  auto result = log->append(sample(2));
  expect_unavailable(result);
  EXPECT_TRUE(io->wrote_part);
  EXPECT_EQ(fs::file_size(path_), size_before);  // no torn line left behind
  EXPECT_TRUE(verify_ok_or_report().ok);
  io->fail = false;
  ASSERT_TRUE(log->append(sample(3)));  // the disk has room again
  const auto report = verify_ok_or_report();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.lines, 2u);
}

TEST_F(AuditLogTest, FailedTruncateAfterAShortWriteRefusesEveryLaterAppend) {
  auto io = std::make_shared<ShortWriteIo>();
  AuditLogOptions options;
  options.fsync = false;
  options.io = io;
  auto log = open_log(options);
  ASSERT_TRUE(log);
  io->fail = true;
  io->fail_truncate = true;
  ASSERT_FALSE(log->append(sample(1)));
  io->fail = false;
  auto again = log->append(sample(2));
  expect_unavailable(again);
}

class FailingSyncIo : public FileIo {
 public:
  int fdatasync(int) override {
    errno = EIO;
    return -1;
  }
};

TEST_F(AuditLogTest, FailedSyncFailsThisAndEveryLaterAppend) {
  AuditLogOptions options;
  options.fsync = true;
  options.io = std::make_shared<FailingSyncIo>();
  auto log = open_log(options);
  ASSERT_TRUE(log);
  auto first = log->append(sample(1));
  expect_unavailable(first);
  EXPECT_NE(first.error().detail.find("fdatasync"), std::string::npos) << first.error().detail;
  auto second = log->append(sample(2));
  expect_unavailable(second);
}

TEST_F(AuditLogTest, RealPartialWriteAtTheFileSizeLimitIsTruncatedBack) {
  make_log(1);
  const auto size_before = fs::file_size(path_);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A file size limit a few bytes past the end: the kernel writes part of the line, then
    // refuses (EFBIG). setrlimit only in this child, so the test process is unaffected.
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {};
    limit.rlim_cur = limit.rlim_max = size_before + 40;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(2);
    auto log = AuditLog::open(path_, false, default_redactor());
    if (!log) ::_exit(3);
    auto result = (*log)->append(sample(2));
    if (result) ::_exit(4);
    if (result.error().code != Code::audit_unavailable) ::_exit(5);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(fs::file_size(path_), size_before);
  EXPECT_TRUE(verify_ok_or_report().ok);
}

TEST_F(AuditLogTest, AppendRefusesWhenTheFileWasDeletedOrReplaced) {
  auto log = open_log();
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)));
  fs::rename(path_, dir_ / "moved.jsonl");
  auto moved = log->append(sample(2));
  expect_unavailable(moved);
  write_file(path_, "");
  auto replaced = log->append(sample(3));
  expect_unavailable(replaced);
}

TEST_F(AuditLogTest, AppendRefusesWhenTheFileShrank) {
  auto log = open_log();
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)));
  ASSERT_TRUE(log->append(sample(2)));
  const std::string first_line = lines_of(read_file(path_)).at(0) + "\n";
  fs::resize_file(path_, first_line.size());  // the newest record removed at a line boundary
  auto result = log->append(sample(3));
  expect_unavailable(result);
  EXPECT_NE(result.error().detail.find("shrank"), std::string::npos) << result.error().detail;
}

TEST_F(AuditLogTest, AppendRefusesToChainOntoForeignGarbage) {
  auto log = open_log();
  ASSERT_TRUE(log);
  ASSERT_TRUE(log->append(sample(1)));
  {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << "{\"half\":";
  }
  auto result = log->append(sample(2));
  expect_unavailable(result);
  EXPECT_EQ(result.error().message, "audit log cannot be written");  // no host path for the guest
  EXPECT_NE(result.error().detail.find("pexi audit verify"), std::string::npos);
}

// ---- the Python verifier in docs/audit.md ---------------------------------------------------

std::string python_verifier() {
  const std::string doc = read_file(fs::path(PEXI_SOURCE_DIR) / "docs" / "audit.md");
  const std::string open = "```python\n";
  const std::size_t start = doc.find(open);
  if (start == std::string::npos) return {};
  const std::size_t end = doc.find("```", start + open.size());
  return doc.substr(start + open.size(), end - start - open.size());
}

int run_python(const fs::path& script, const fs::path& log, std::string* output) {
  const std::string command = "python3 '" + script.string() + "' '" + log.string() + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return -1;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) *output += buf;
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(AuditLogTest, ThePythonVerifierFromTheDocsAgreesWithVerify) {
  const std::string script = python_verifier();
  ASSERT_FALSE(script.empty()) << "no ```python block in docs/audit.md";
  const auto script_lines = std::count(script.begin(), script.end(), '\n');
  EXPECT_LE(script_lines, 15) << "the verifier should stay short enough to read";
  const fs::path script_path = dir_ / "verify.py";
  write_file(script_path, script);

  // A log with hostile text in it: quotes, newlines, non-ASCII, invalid UTF-8.
  {
    auto log = open_log();
    ASSERT_TRUE(log);
    for (int i = 0; i < 5; ++i) {
      Record r = sample(i);
      r.reason = "quote \" nl \n caf\xC3\xA9 bad \xFF \",\"hash\":\"";
      r.vm = i % 2 ? std::optional<std::string>("vm-1") : std::nullopt;
      r.phase = i == 2 ? std::optional<std::string>("start") : std::nullopt;
      ASSERT_TRUE(log->append(r));
    }
  }
  std::string output;
  EXPECT_EQ(run_python(script_path, path_, &output), 0) << output;
  EXPECT_NE(output.find("ok"), std::string::npos) << output;

  const std::string good = read_file(path_);
  std::string edited = good;
  edited[good.find("example.com/p/3")] = 'E';
  write_file(path_, edited);
  output.clear();
  EXPECT_NE(run_python(script_path, path_, &output), 0) << output;
  EXPECT_NE(output.find("line 4"), std::string::npos) << output;

  const auto lines = lines_of(good);
  write_file(path_, lines[0] + "\n" + lines[2] + "\n");
  output.clear();
  EXPECT_NE(run_python(script_path, path_, &output), 0) << output;
  EXPECT_NE(output.find("line 2"), std::string::npos) << output;
}

}  // namespace
}  // namespace pexi::audit
