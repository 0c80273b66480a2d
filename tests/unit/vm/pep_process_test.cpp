// The supervisor's side of the sandbox's PEP process, with real child processes (bash scripts
// standing in for `pexi __pep`: they speak its ready/error line and listen on nothing): the
// ready handshake, start failures in the PEP's own words, restarts with backoff after a crash,
// an asked-for restart, and refusing streams while the PEP is down. Also the Unix socket helpers.
#include "vm/pep_process.hpp"

#include "vm/unix_socket.hpp"

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

namespace pexi::vm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// `script` runs under bash with "$@" = the arguments PepProcess adds: `--notify-fd N` on the
// first start only ("$2" is then the fd).
class PepProcessTest : public ::testing::Test {
 protected:
  PepProcess::Options options(const std::string& script) {
    PepProcess::Options o;
    o.argv = {"bash", "-c", script, "fake-pep"};
    o.proxy_socket = dir.path() / "proxy.sock";
    o.frame_socket = dir.path() / "frame.sock";
    o.log = dir.path() / "pep.log";
    o.ready_timeout = 10s;
    o.diag = [this](const std::string& line) { diags.push_back(line); };
    o.changed = [this](const std::optional<ProcessRef>& p, unsigned restarts) {
      current = p;
      last_restarts = restarts;
    };
    return o;
  }

  // Runs the loop until `done` holds (at most `limit`).
  template <typename Done>
  bool run_until(Done done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < deadline) loop.run_once(20ms);
    return done();
  }

  test::TempDir dir{"pexi-pep-process"};
  EventLoop loop;
  std::vector<std::string> diags;
  std::optional<ProcessRef> current;
  unsigned last_restarts = 0;
};

constexpr const char* kReadyThenSleep = R"([ -n "$2" ] && echo ready >&"$2"; exec sleep 100)";

TEST_F(PepProcessTest, StartReturnsOnceThePepSaysReadyAndStopEndsIt) {
  auto pep = PepProcess::start(loop, options(kReadyThenSleep));
  ASSERT_TRUE(pep) << pep.error().message;
  ASSERT_TRUE(current);
  const ProcessRef first = *current;
  EXPECT_TRUE(first.alive());
  (*pep)->stop();
  EXPECT_FALSE(first.alive());
  EXPECT_FALSE(current);
  EXPECT_EQ(last_restarts, 0u);
}

TEST_F(PepProcessTest, AnErrorLineBecomesTheErrorAndNothingIsLeftRunning) {
  auto pep = PepProcess::start(
      loop, options(R"(echo "error audit log /x cannot be opened" >&"$2"; exec sleep 100)"));
  ASSERT_FALSE(pep);
  EXPECT_EQ(pep.error().message, "audit log /x cannot be opened");
  EXPECT_FALSE(current && current->alive());
}

TEST_F(PepProcessTest, EndingWithoutAWordIsAnErrorWithItsLastLogLine) {
  auto pep = PepProcess::start(loop, options("echo 'bad config: line 3' >&2; exit 2"));
  ASSERT_FALSE(pep);
  EXPECT_EQ(pep.error().message, "the sandbox's PEP ended while starting");
  EXPECT_EQ(pep.error().detail, "bad config: line 3");
}

TEST_F(PepProcessTest, APepThatNeverAnswersTimesOutAndIsKilled) {
  auto o = options("exec sleep 100");
  o.ready_timeout = 300ms;
  auto pep = PepProcess::start(loop, std::move(o));
  ASSERT_FALSE(pep);
  EXPECT_EQ(pep.error().message, "the sandbox's PEP did not start within 300 ms");
  EXPECT_FALSE(current && current->alive());
}

TEST_F(PepProcessTest, ACrashedPepIsStartedAgainAndStreamsAreRefusedMeanwhile) {
  auto pep = PepProcess::start(loop, options(kReadyThenSleep));
  ASSERT_TRUE(pep) << pep.error().message;
  const ProcessRef first = *current;
  ::kill(first.pid, SIGKILL);
  ASSERT_TRUE(run_until([&] { return !current.has_value(); }));
  auto refused = (*pep)->connect(true);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "the sandbox's PEP is restarting");
  ASSERT_TRUE(run_until([&] { return current.has_value(); }));
  EXPECT_NE(current->pid, first.pid);
  EXPECT_TRUE(current->alive());
  EXPECT_EQ((*pep)->restarts(), 1u);
  EXPECT_EQ(last_restarts, 1u);
  ASSERT_FALSE(diags.empty());
  EXPECT_NE(diags[0].find("the sandbox's PEP killed by signal 9"), std::string::npos) << diags[0];
  EXPECT_NE(diags[0].find("starting it again in 200 ms"), std::string::npos) << diags[0];
  const ProcessRef second = *current;
  (*pep)->stop();
  EXPECT_FALSE(second.alive());
}

TEST_F(PepProcessTest, RepeatedFailuresBackOff) {
  // Ready once, then every restarted one dies at once.
  auto pep =
      PepProcess::start(loop, options(R"([ -n "$2" ] || exit 1; echo ready >&"$2"; exit 0)"));
  ASSERT_TRUE(pep) << pep.error().message;
  ASSERT_TRUE(run_until([&] { return diags.size() >= 3; }, 15s));
  EXPECT_NE(diags[0].find("in 200 ms"), std::string::npos) << diags[0];
  EXPECT_NE(diags[1].find("in 400 ms"), std::string::npos) << diags[1];
  EXPECT_NE(diags[2].find("in 800 ms"), std::string::npos) << diags[2];
  (*pep)->stop();
}

TEST_F(PepProcessTest, AnAskedRestartStartsTheNextOneAtOnce) {
  auto pep = PepProcess::start(loop, options(kReadyThenSleep));
  ASSERT_TRUE(pep) << pep.error().message;
  const ProcessRef first = *current;
  (*pep)->restart();
  ASSERT_TRUE(run_until([&] { return current && current->pid != first.pid; }));
  EXPECT_FALSE(first.alive());
  ASSERT_FALSE(diags.empty());
  EXPECT_NE(diags[0].find("(restart asked); starting it again in 0 ms"), std::string::npos)
      << diags[0];
  (*pep)->stop();
}

TEST_F(PepProcessTest, ConnectReachesTheFrontSocketsWhileThePepRuns) {
  auto pep = PepProcess::start(loop, options(kReadyThenSleep));
  ASSERT_TRUE(pep) << pep.error().message;
  auto none = (*pep)->connect(false);
  ASSERT_FALSE(none);  // nothing listens: the fake PEP has no fronts
  EXPECT_NE(none.error().message.find("not accepting"), std::string::npos);
  auto listener = listen_unix(dir.path() / "frame.sock");
  ASSERT_TRUE(listener) << listener.error().message;
  EXPECT_TRUE((*pep)->connect(false));
  (*pep)->stop();
  auto after = (*pep)->connect(false);
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().message, "the sandbox's PEP has stopped");
}

TEST(UnixSocket, ListenIsPrivateAndConnectFindsIt) {
  test::TempDir dir{"pexi-pep-process"};
  const fs::path path = dir.path() / "s.sock";
  { std::ofstream(path) << "stale"; }  // a leftover file is replaced
  auto listener = listen_unix(path);
  ASSERT_TRUE(listener) << listener.error().message;
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(connect_unix(path));
  EXPECT_TRUE(connect_unix(path, /*nonblocking=*/true));
  listener->reset();
  auto gone = connect_unix(path);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().detail, path.string());
}

TEST(UnixSocket, TooLongAPathIsRefusedWithAHint) {
  const fs::path path = "/tmp/" + std::string(120, 'x');
  auto listener = listen_unix(path);
  ASSERT_FALSE(listener);
  EXPECT_NE(listener.error().message.find("socket path too long"), std::string::npos);
  EXPECT_FALSE(connect_unix(path));
}

}  // namespace
}  // namespace pexi::vm
