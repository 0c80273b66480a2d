#include "audit/tail.hpp"
#include "audit/log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace pexi::audit {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

Record allowed() {
  Record r;
  r.id = "abcd1234ffff0000abcd1234ffff0000";
  r.method = "GET";
  r.url = "https://example.com/";
  r.host = "example.com";
  r.allow = true;
  r.rule = "allow[0]";
  r.status = 200;
  r.duration_ms = 12.4;
  return r;
}

Record denied() {
  Record r;
  r.id = "0f3a9c21aaaabbbbccccddddeeeeffff";
  r.vm = "dev";
  r.front = Front::proxy;
  r.method = "POST";
  r.url = "https://evil.test/";
  r.host = "evil.test";
  r.allow = false;
  r.code = Code::denied_by_policy;
  r.reason = "no rule allows POST https://evil.test/";
  return r;
}

std::string line_of(const Record& r) {
  std::string line = serialize(r, "2026-11-23T12:34:56.789Z", 1, kGenesisHash);
  line.pop_back();
  return line;
}

TEST(AuditTailFormat, RecordsForPeople) {
  EXPECT_EQ(format_for_people(line_of(allowed())),
            "2026-11-23T12:34:56.789Z allow GET https://example.com/ 200 12ms rule=allow[0] vm=- "
            "id=abcd1234");
  EXPECT_EQ(
      format_for_people(line_of(denied())),
      "2026-11-23T12:34:56.789Z deny POST https://evil.test/ denied_by_policy: no rule allows "
      "POST https://evil.test/ vm=dev id=0f3a9c21");
  Record failed = allowed();
  failed.status = 0;
  failed.duration_ms = 3.25;
  failed.code = Code::http_error;
  failed.reason = "connection refused";
  failed.phase = "end";
  EXPECT_EQ(
      format_for_people(line_of(failed)),
      "2026-11-23T12:34:56.789Z allow GET https://example.com/ 0 3.2ms http_error: connection "
      "refused rule=allow[0] phase=end vm=- id=abcd1234");
}

TEST(AuditTailFormat, ControlCharactersCannotReachTheTerminal) {
  Record r = denied();
  r.url = "https://x.test/\x1b[2J\x07";
  r.reason =
      "evil \x1b]0;title\x07 \xC2\x9B"
      "31m done";
  const std::string out = format_for_people(line_of(r));
  for (char c : out) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << out;
  EXPECT_EQ(out.find("\xC2\x9B"), std::string::npos) << out;
  EXPECT_NE(out.find("https://x.test/?[2J?"), std::string::npos) << out;
}

TEST(AuditTailFormat, UnreadableLinesAreMarked) {
  EXPECT_EQ(format_for_people("not json"), "? unreadable line: not json");
  EXPECT_EQ(format_for_people("[1,2]"), "? unreadable line: [1,2]");
}

class AuditTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "pexi-tail-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ / "audit.jsonl";
    auto log = AuditLog::open(path_, false, nullptr);
    ASSERT_TRUE(log);
    log_ = std::move(*log);
  }
  void TearDown() override {
    log_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void append_numbered(int from, int to) {
    for (int i = from; i < to; ++i) {
      Record r = allowed();
      r.url = "https://example.com/" + std::to_string(i);
      ASSERT_TRUE(log_->append(r));
    }
  }

  fs::path dir_;
  fs::path path_;
  std::unique_ptr<AuditLog> log_;
};

int count_lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST_F(AuditTailTest, PrintsTheLastLines) {
  append_numbered(0, 30);
  std::ostringstream out;
  ASSERT_TRUE(print_tail(path_, 3, false, out));
  EXPECT_EQ(count_lines(out.str()), 3);
  EXPECT_NE(out.str().find("https://example.com/27 "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("https://example.com/29 "), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find("https://example.com/26 "), std::string::npos) << out.str();

  std::ostringstream all;
  ASSERT_TRUE(print_tail(path_, 1000, false, all));
  EXPECT_EQ(count_lines(all.str()), 30);
  std::ostringstream none;
  ASSERT_TRUE(print_tail(path_, 0, false, none));
  EXPECT_EQ(none.str(), "");
}

TEST_F(AuditTailTest, SkipsALineStillBeingWritten) {
  append_numbered(0, 2);
  {
    std::ofstream raw(path_, std::ios::binary | std::ios::app);
    raw << "{\"partial\":";
  }
  std::ostringstream out;
  ASSERT_TRUE(print_tail(path_, 10, false, out));
  EXPECT_EQ(count_lines(out.str()), 2);
  EXPECT_EQ(out.str().find("partial"), std::string::npos);
}

TEST_F(AuditTailTest, MissingFileIsAnIoError) {
  std::ostringstream out;
  auto result = print_tail(dir_ / "nope", 10, false, out);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::io_error);
}

// A stream the follower writes to while the test thread reads it.
class LockedBuf : public std::stringbuf {
 public:
  std::string snapshot() {
    std::lock_guard lock(mu_);
    return str();
  }

 protected:
  int sync() override { return 0; }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    return std::stringbuf::xsputn(s, n);
  }
  int_type overflow(int_type c) override {
    std::lock_guard lock(mu_);
    return std::stringbuf::overflow(c);
  }

 private:
  std::recursive_mutex mu_;  // xsputn may call overflow
};

TEST_F(AuditTailTest, FollowPrintsNewLinesUntilStopped) {
  append_numbered(0, 5);
  LockedBuf buf;
  std::ostream out(&buf);
  std::atomic<bool> stop{false};
  Result<void> result;
  std::thread follower([&] { result = print_tail(path_, 2, true, out, &stop, 5ms); });

  auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 400; ++i) {
      if (buf.snapshot().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  };
  EXPECT_TRUE(wait_for("https://example.com/4 ")) << buf.snapshot();  // the initial tail

  // New lines show up while following, without stopping it.
  append_numbered(5, 8);
  EXPECT_TRUE(wait_for("https://example.com/7 ")) << buf.snapshot();

  // Lines written before the stop flag are still printed.
  append_numbered(8, 10);
  stop = true;
  follower.join();
  EXPECT_TRUE(result);
  const std::string text = buf.snapshot();
  EXPECT_EQ(count_lines(text), 2 + 5) << text;
  EXPECT_NE(text.find("https://example.com/9 "), std::string::npos) << text;
  EXPECT_EQ(text.find("https://example.com/2 "), std::string::npos) << text;
}

TEST_F(AuditTailTest, FollowEndsWhenTheStreamFails) {
  append_numbered(0, 1);
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  std::atomic<bool> stop{false};
  EXPECT_TRUE(print_tail(path_, 1, true, out, &stop, 1ms));  // returns instead of polling forever
}

}  // namespace
}  // namespace pexi::audit
