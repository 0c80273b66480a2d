// The state directory: names, status files (round trip, atomic replace, garbage), what `status`
// shows after a crash, and the lock that keeps one supervisor per sandbox.
#include "vm/state.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace pexi::vm {
namespace {

namespace fs = std::filesystem;

TEST(SandboxName, Rules) {
  for (const char* good : {"default", "a", "run-1234", "0day", "abcdefghijklmnopqrstuvwxyz012345"})
    EXPECT_TRUE(check_sandbox_name(good)) << good;
  for (const char* bad :
       {"", "-x", "Default", "a_b", "a/b", "..", "a b", "é", "abcdefghijklmnopqrstuvwxyz0123456"}) {
    auto ok = check_sandbox_name(bad);
    EXPECT_FALSE(ok) << bad;
    if (!ok) {
      EXPECT_EQ(ok.error().code, Code::usage_error);
    }
  }
}

TEST(SandboxPaths, LayoutUnderHome) {
  const auto p = sandbox_paths("/h", "web");
  EXPECT_EQ(p.dir, fs::path("/h/sandboxes/web"));
  EXPECT_EQ(p.status, fs::path("/h/sandboxes/web/status.json"));
  EXPECT_EQ(p.control, fs::path("/h/sandboxes/web/control.sock"));
  EXPECT_EQ(p.channel, fs::path("/h/sandboxes/web/channel.sock"));
  EXPECT_EQ(p.console, fs::path("/h/sandboxes/web/console.log"));
}

Status sample() {
  Status s;
  s.name = "web";
  s.state = State::running;
  s.supervisor = ProcessRef{1234, 99887766};
  s.qemu = ProcessRef{1240, 99887800};
  s.pep = ProcessRef{1239, 99887700};
  s.pep_restarts = 3;
  s.accel = "tcg";
  s.accel_reason = "no /dev/kvm";
  s.cpus = 2;
  s.memory_mib = 2048;
  s.workspace = "/home/u/p";
  s.image_key = std::string(64, 'a');
  s.started_at = "2026-11-23T10:00:00Z";
  s.started_unix = 1795428000;
  s.boot_ms = 5123;
  s.audit_log = "/home/u/audit.jsonl";
  return s;
}

TEST(StatusFile, RoundTrip) {
  test::TempDir dir{"pexi-vm-state"};
  const auto file = dir.path() / "status.json";
  ASSERT_TRUE(write_status(file, sample()));
  auto back = read_status(file);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->name, "web");
  EXPECT_EQ(back->state, State::running);
  ASSERT_TRUE(back->supervisor && back->qemu);
  EXPECT_EQ(*back->supervisor, (ProcessRef{1234, 99887766}));
  EXPECT_EQ(*back->qemu, (ProcessRef{1240, 99887800}));
  EXPECT_EQ(back->pep, (ProcessRef{1239, 99887700}));
  EXPECT_EQ(back->pep_restarts, 3u);
  EXPECT_EQ(back->accel, "tcg");
  EXPECT_EQ(back->cpus, 2u);
  EXPECT_EQ(back->memory_mib, 2048u);
  EXPECT_EQ(back->boot_ms, 5123);
  EXPECT_EQ(back->workspace, "/home/u/p");
  EXPECT_FALSE(fs::exists(dir.path() / "status.json.tmp")) << "replaced by rename";
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST(StatusFile, GarbageIsAnErrorNotACrash) {
  test::TempDir dir{"pexi-vm-state"};
  for (const char* text : {"", "{", "[]", "{\"state\":\"dancing\"}", "{\"state\":7}",
                           "{\"state\":\"running\",\"supervisor\":{\"pid\":\"x\"}}"}) {
    std::ofstream(dir.path() / "status.json") << text;
    auto s = read_status(dir.path() / "status.json");
    if (std::string(text).find("supervisor") != std::string::npos) {
      ASSERT_TRUE(s) << text;
      EXPECT_FALSE(s->supervisor) << "a malformed process entry is no process";
    } else {
      EXPECT_FALSE(s) << text;
    }
  }
  EXPECT_FALSE(read_status(dir.path() / "missing.json"));
}

TEST(Observe, LiveStatesNeedTheirSupervisor) {
  const auto alive = [](const ProcessRef&) { return true; };
  const auto dead = [](const ProcessRef&) { return false; };
  struct Case {
    State recorded;
    bool supervisor_alive;
    State shown;
  };
  const Case cases[] = {
      {State::booting, true, State::booting},   {State::booting, false, State::crashed},
      {State::running, true, State::running},   {State::running, false, State::crashed},
      {State::stopping, true, State::stopping}, {State::stopping, false, State::crashed},
      {State::stopped, false, State::stopped},  {State::stopped, true, State::stopped},
      {State::crashed, false, State::crashed},  {State::crashed, true, State::crashed},
  };
  for (const auto& c : cases) {
    Status s = sample();
    s.state = c.recorded;
    s.reason = "recorded reason";
    const auto o = observe(s, c.supervisor_alive ? std::function<bool(const ProcessRef&)>(alive)
                                                 : std::function<bool(const ProcessRef&)>(dead));
    EXPECT_EQ(o.state, c.shown) << state_name(c.recorded) << " alive=" << c.supervisor_alive;
    if (c.shown == State::crashed && c.recorded != State::crashed) {
      EXPECT_THAT(o.reason, ::testing::HasSubstr("supervisor (pid 1234) is gone"));
    }
  }
  Status none = sample();
  none.supervisor.reset();
  EXPECT_EQ(observe(none, alive).state, State::crashed) << "running without a supervisor";
}

TEST(ProcessRefTest, ReusedPidIsNotTheSameProcess) {
  auto self = ProcessRef::of(::getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(self->alive());
  ProcessRef other = *self;
  other.start_time += 1;  // same pid, different start: a reused pid
  EXPECT_FALSE(other.alive());
  EXPECT_FALSE(ProcessRef{}.alive());
  // A child that exited is not alive, whether reaped or a zombie.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  auto ref = ProcessRef::of(child);
  ::usleep(100000);
  if (ref) {
    EXPECT_FALSE(ref->alive()) << "zombie";
  }
  ::waitpid(child, nullptr, 0);
  if (ref) {
    EXPECT_FALSE(ref->alive()) << "reaped";
  }
}

TEST(ProcStat, ParsesAroundHostileCommandNames) {
  // The command name may hold spaces and ')': fields count from the last ')'.
  const std::string line =
      "4242 (evil) name ) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 "
      "1000 10 18446744073709551615";
  auto s = parse_proc_stat(line);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->start_time, 123456u);
  EXPECT_FALSE(parse_proc_stat("4242 (x) S 1 2"));
  EXPECT_FALSE(parse_proc_stat("garbage"));
  EXPECT_FALSE(parse_proc_stat(""));
}

TEST(StateLockTest, OneHolderAtATime) {
  test::TempDir dir{"pexi-vm-state"};
  const auto paths = sandbox_paths(dir.path(), "x");
  fs::create_directories(paths.dir);
  EXPECT_FALSE(StateLock::held(paths));
  {
    auto first = StateLock::acquire(paths, "x");
    ASSERT_TRUE(first);
    EXPECT_TRUE(StateLock::held(paths));
    auto second = StateLock::acquire(paths, "x");
    ASSERT_FALSE(second);
    EXPECT_THAT(second.error().message, ::testing::HasSubstr("sandbox x is already running"));
  }
  EXPECT_FALSE(StateLock::held(paths)) << "released with its holder";
  EXPECT_TRUE(StateLock::acquire(paths, "x"));
}

TEST(ListSandboxes, EveryDirectoryWithAStatus) {
  test::TempDir dir{"pexi-vm-state"};
  for (const char* name : {"b", "a"}) {
    const auto p = sandbox_paths(dir.path(), name);
    fs::create_directories(p.dir);
    Status s = sample();
    s.name = "ignored";  // the directory name wins
    ASSERT_TRUE(write_status(p.status, s));
  }
  fs::create_directories(sandbox_paths(dir.path(), "empty").dir);
  const auto all = list_sandboxes(dir.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a");
  EXPECT_EQ(all[1].name, "b");
  EXPECT_TRUE(list_sandboxes(dir.path() / "nowhere").empty());
}

}  // namespace
}  // namespace pexi::vm
