// The exec and control protocols carried inside streams (docs/channel-protocol.md §9): round
// trips, the documented layout, one table row per malformed or out-of-sequence message, and an
// exec conversation over a real session pair.
#include "mux/exec.hpp"
#include "helpers.hpp"
#include "mux/control.hpp"

#include <gtest/gtest.h>

namespace pexi::mux {
namespace {

using testing::only;
using testing::Pair;

std::string message(std::uint8_t type, std::string_view payload) {
  std::string out;
  put_message_header(out, type, payload.size());
  out.append(payload);
  return out;
}

template <class M, class Decoder>
std::vector<M> decode_all(Decoder& decoder, std::string_view bytes, bool byte_by_byte) {
  std::vector<M> out;
  auto drain = [&](std::string_view input) {
    for (;;) {
      auto m = decoder.next(input);
      if (!m) {
        ADD_FAILURE() << m.error().message;
        return;
      }
      if (!*m) return;
      out.push_back(std::move(**m));
    }
  };
  if (byte_by_byte) {
    for (char c : bytes) drain(std::string_view(&c, 1));
  } else {
    drain(bytes);
  }
  return out;
}

exec::Request pty_request() {
  exec::Request r;
  r.argv = {"/bin/bash", "-l", std::string("arg with \xff bytes")};
  r.env = {"TERM=xterm-256color", "EMPTY=", "A==b"};
  r.cwd = "/workspace";
  r.pty = true;
  r.rows = 50;
  r.cols = 132;
  return r;
}

std::vector<exec::Message> to_guest_conversation() {
  return {pty_request(),
          exec::StdinData{"ls\n"},
          exec::Resize{24, 80},
          exec::Signal{2},
          exec::StdinData{std::string(exec::kMaxData, 'x')},
          exec::StdinEof{},
          exec::Signal{15}};
}
std::vector<exec::Message> to_host_conversation() {
  return {exec::Started{4242}, exec::StdoutData{"total 0\n"}, exec::StderrData{"warning\n"},
          exec::StdoutData{std::string(exec::kMaxData, 'y')},
          exec::Exit{exec::ExitKind::signaled, 9, ""}};
}

class ExecRoundTrip : public ::testing::TestWithParam<bool> {};

TEST_P(ExecRoundTrip, BothDirections) {
  const bool byte_by_byte = GetParam();
  for (const auto& [direction, conversation] :
       {std::pair{Direction::to_guest, to_guest_conversation()},
        std::pair{Direction::to_host, to_host_conversation()}}) {
    std::string bytes;
    for (const auto& m : conversation) {
      ASSERT_TRUE(exec::check(m));
      EXPECT_EQ(exec::direction_of(exec::type_of(m)), direction);
      exec::encode(m, bytes);
    }
    exec::Decoder decoder(direction);
    const auto got = decode_all<exec::Message>(decoder, bytes, byte_by_byte);
    EXPECT_EQ(got, conversation);
    EXPECT_EQ(decoder.buffered(), 0u);
    EXPECT_EQ(decoder.exited(), direction == Direction::to_host);
  }
}

INSTANTIATE_TEST_SUITE_P(Feeding, ExecRoundTrip, ::testing::Values(false, true),
                         [](const auto& row) { return row.param ? "ByteByByte" : "AtOnce"; });

TEST(ExecCodec, RequestLayoutIsTheDocumentedOne) {
  exec::Request r;
  r.argv = {"id"};
  r.env = {"A=1"};
  r.cwd = "/";
  r.stdin_closed = true;
  std::string bytes;
  exec::encode(r, bytes);
  const std::string expected(
      "\x01\x00\x00\x00\x19"  // REQUEST, 25-byte payload
      "\x02"                  // flags: stdin_closed
      "\x00\x00\x00\x00"      // rows, cols
      "\x00\x01"              // argc
      "\x00\x00\x00\x02"
      "id"
      "\x00\x01"  // envc
      "\x00\x00\x00\x03"
      "A=1"
      "\x00\x01"
      "/",
      30);
  EXPECT_EQ(bytes, expected);
}

TEST(ExecCodec, NotStartedExitMayComeFirstAndDataIsSplitAt64KiB) {
  std::string bytes;
  exec::encode(exec::Exit{exec::ExitKind::not_started, 127, "nope: command not found"}, bytes);
  exec::Decoder decoder(Direction::to_host);
  auto got = decode_all<exec::Message>(decoder, bytes, false);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(exec::exit_status(std::get<exec::Exit>(got[0])), 127);

  std::string data;
  exec::encode_data(exec::MessageType::stdout_data, std::string(150000, 'd'), data);
  EXPECT_EQ(data.size(), 150000u + 3 * kMessageHeaderSize);
  exec::encode_data(exec::MessageType::stdout_data, "", data);  // nothing for nothing
  EXPECT_EQ(data.size(), 150000u + 3 * kMessageHeaderSize);
}

TEST(ExecCodec, ExitStatusFollowsShellConventions) {
  EXPECT_EQ(exec::exit_status({exec::ExitKind::exited, 0, ""}), 0);
  EXPECT_EQ(exec::exit_status({exec::ExitKind::exited, 3, ""}), 3);
  EXPECT_EQ(exec::exit_status({exec::ExitKind::signaled, 9, ""}), 137);
  EXPECT_EQ(exec::exit_status({exec::ExitKind::not_started, 126, ""}), 126);
}

TEST(ExecCodec, SendersCheckWhatTheDecoderChecks) {
  exec::Request r = pty_request();
  EXPECT_TRUE(exec::check(r));
  r.argv.clear();
  EXPECT_FALSE(exec::check(r));
  r = pty_request();
  r.env.push_back("NOEQUALS");
  EXPECT_FALSE(exec::check(r));
  r = pty_request();
  r.cwd = "relative";
  EXPECT_FALSE(exec::check(r));
  r = pty_request();
  r.argv.push_back(std::string(exec::kMaxRequest, 'a'));
  auto big = exec::check(r);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message.find("exceeds 1048576"), std::string::npos);
  EXPECT_FALSE(exec::check(exec::StdoutData{""}));
  EXPECT_FALSE(exec::check(exec::StdinData{std::string(exec::kMaxData + 1, 'x')}));
  EXPECT_FALSE(exec::check(exec::Signal{0}));
  EXPECT_FALSE(exec::check(exec::Resize{0, 10}));
  EXPECT_FALSE(exec::check(exec::Started{0}));
  EXPECT_FALSE(exec::check(exec::Exit{exec::ExitKind::signaled, 65, ""}));
  EXPECT_FALSE(exec::check(exec::Exit{exec::ExitKind::exited, 1, "\xff"}));
  EXPECT_FALSE(exec::check(exec::Exit{static_cast<exec::ExitKind>(3), 1, ""}));
}

// ---------------------------------------------------------------------------------------------
// Rejections

struct BadExec {
  const char* name;
  Direction direction;
  std::string bytes;
  const char* message;
};

class ExecRejects : public ::testing::TestWithParam<BadExec> {};

TEST_P(ExecRejects, WithAPreciseMessageAndStayBroken) {
  const auto& row = GetParam();
  exec::Decoder decoder(row.direction);
  std::string_view input = row.bytes;
  std::optional<Error> error;
  for (int i = 0; i < 20 && !error; ++i) {
    auto m = decoder.next(input);
    if (!m)
      error = m.error();
    else if (!*m)
      break;
  }
  ASSERT_TRUE(error) << "accepted";
  EXPECT_EQ(error->code, Code::invalid_request);
  EXPECT_EQ(error->message.rfind("exec: ", 0), 0u) << error->message;
  EXPECT_NE(error->message.find(row.message), std::string::npos) << error->message;
  std::string_view more = "\x03\x00\x00\x00\x00";
  EXPECT_FALSE(decoder.next(more));
}

std::string request_bytes(const exec::Request& r) {
  std::string out;
  exec::encode(r, out);
  return out;
}
exec::Request simple_request() {
  exec::Request r;
  r.argv = {"true"};
  return r;
}
// A REQUEST payload assembled field by field, for malformed variants.
std::string request_payload(std::uint8_t flags, std::uint16_t rows, std::uint16_t cols,
                            std::vector<std::string> argv, std::vector<std::string> env,
                            std::string_view cwd, std::string_view trailing = "") {
  std::string p;
  wire::put_u8(p, flags);
  wire::put_u16(p, rows);
  wire::put_u16(p, cols);
  wire::put_u16(p, static_cast<std::uint16_t>(argv.size()));
  for (const auto& a : argv) {
    wire::put_u32(p, static_cast<std::uint32_t>(a.size()));
    p += a;
  }
  wire::put_u16(p, static_cast<std::uint16_t>(env.size()));
  for (const auto& e : env) {
    wire::put_u32(p, static_cast<std::uint32_t>(e.size()));
    p += e;
  }
  wire::put_u16(p, static_cast<std::uint16_t>(cwd.size()));
  p += cwd;
  p += trailing;
  return p;
}
std::string req(std::string payload) { return message(0x01, payload); }
std::string started() { return message(0x10, std::string("\x00\x00\x00\x07", 4)); }

const auto G = Direction::to_guest;
const auto H = Direction::to_host;

INSTANTIATE_TEST_SUITE_P(
    Table, ExecRejects,
    ::testing::Values(
        // Framing.
        BadExec{"type_unknown", G, message(0x06, ""),
                "message type 0x06 is not valid toward the guest"},
        BadExec{"host_type_to_guest", G, message(0x11, "x"),
                "message type 0x11 is not valid toward the guest"},
        BadExec{"guest_type_to_host", H, message(0x01, ""),
                "message type 0x01 is not valid toward the host"},
        BadExec{"stdin_too_long", G,
                request_bytes(simple_request()) + message(0x02, std::string(65537, 'a')),
                "message type 2 has a 65537-byte payload (limit 65536)"},
        BadExec{"request_too_long_on_header", G, std::string("\x01\x00\x10\x00\x01", 5),
                "message type 1 has a 1048577-byte payload (limit 1048576)"},
        BadExec{"eof_with_payload", G, request_bytes(simple_request()) + message(0x03, "x"),
                "message type 3 has a 1-byte payload (limit 0)"},
        BadExec{"resize_too_long", G, message(0x04, "12345"), "has a 5-byte payload (limit 4)"},
        // REQUEST fields.
        BadExec{"request_truncated", G, req("\x00\x00"), "REQUEST is truncated before argv"},
        BadExec{"request_flags", G, req(request_payload(0x08, 0, 0, {"a"}, {}, "")),
                "REQUEST flags 8 have unknown bits"},
        BadExec{"argc_zero", G, req(request_payload(0, 0, 0, {}, {}, "")),
                "REQUEST has 0 arguments (must be 1…4096)"},
        BadExec{"argc_big", G,
                req(request_payload(0, 0, 0, std::vector<std::string>(4097, "a"), {}, "")),
                "REQUEST has 4097 arguments"},
        BadExec{"argv_truncated", G, req(request_payload(0, 0, 0, {"abc"}, {}, "").substr(0, 12)),
                "REQUEST argv[0] is truncated"},
        BadExec{"argv0_empty", G, req(request_payload(0, 0, 0, {""}, {}, "")),
                "REQUEST argv[0] is empty"},
        BadExec{"argv_nul", G, req(request_payload(0, 0, 0, {"a", std::string("b\0c", 3)}, {}, "")),
                "REQUEST argv[1] contains NUL"},
        BadExec{"env_truncated", G, req(request_payload(0, 0, 0, {"a"}, {"A=1"}, "").substr(0, 20)),
                "REQUEST env[0] is truncated"},
        BadExec{"env_count", G,
                req(request_payload(0, 0, 0, {"a"}, std::vector<std::string>(4097, "A=1"), "")),
                "REQUEST has 4097 environment entries (limit 4096)"},
        BadExec{"env_no_equals", G, req(request_payload(0, 0, 0, {"a"}, {"PATH"}, "")),
                "REQUEST env[0] is not NAME=value"},
        BadExec{"env_empty_name", G, req(request_payload(0, 0, 0, {"a"}, {"A=1", "=x"}, "")),
                "REQUEST env[1] is not NAME=value with a non-empty NAME"},
        BadExec{"env_nul", G, req(request_payload(0, 0, 0, {"a"}, {std::string("A=\0", 3)}, "")),
                "REQUEST env[0] contains NUL"},
        BadExec{"cwd_relative", G, req(request_payload(0, 0, 0, {"a"}, {}, "tmp")),
                "REQUEST cwd is not absolute"},
        BadExec{"cwd_nul", G, req(request_payload(0, 0, 0, {"a"}, {}, std::string("/t\0", 3))),
                "REQUEST cwd contains NUL"},
        BadExec{"cwd_long", G,
                req(request_payload(0, 0, 0, {"a"}, {}, "/" + std::string(4096, 'd'))),
                "REQUEST cwd of 4097 bytes exceeds 4096"},
        BadExec{"cwd_truncated", G, req(request_payload(0, 0, 0, {"a"}, {}, "/tmp").substr(0, 17)),
                "REQUEST cwd is truncated"},
        BadExec{"trailing", G, req(request_payload(0, 0, 0, {"a"}, {}, "", "zz")),
                "REQUEST has 2 trailing bytes"},
        BadExec{"pty_without_size", G, req(request_payload(1, 0, 80, {"a"}, {}, "")),
                "REQUEST with a pty needs rows and cols ≥ 1 (got 0x80)"},
        BadExec{"size_without_pty", G, req(request_payload(0, 24, 80, {"a"}, {}, "")),
                "REQUEST without a pty must have rows and cols 0"},
        // Other payloads.
        BadExec{"stdin_empty", G, request_bytes(simple_request()) + message(0x02, ""),
                "STDIN is empty"},
        BadExec{"resize_short", G, message(0x04, "123"), "RESIZE payload is 3 bytes (must be 4)"},
        BadExec{"resize_zero", G, message(0x04, std::string("\x00\x00\x00\x50", 4)),
                "RESIZE to 0x80"},
        BadExec{"signal_zero", G, message(0x05, std::string(1, '\0')), "SIGNAL 0 (must be 1…64)"},
        BadExec{"signal_65", G, message(0x05, "\x41"), "SIGNAL 65"},
        BadExec{"started_pid0", H, message(0x10, std::string(4, '\0')), "STARTED with pid 0"},
        BadExec{"started_short", H, message(0x10, "abc"), "STARTED payload is 3 bytes (must be 4)"},
        BadExec{"stdout_empty", H, started() + message(0x11, ""), "STDOUT is empty"},
        BadExec{"exit_short", H, message(0x13, "\x02"), "EXIT payload is 1 bytes (at least 2)"},
        BadExec{"exit_kind", H, message(0x13, "\x03\x01"), "EXIT kind 3 is unknown"},
        BadExec{"exit_signal0", H, started() + message(0x13, std::string("\x01\x00", 2)),
                "EXIT by signal 0"},
        BadExec{"exit_utf8", H, message(0x13, "\x02\x7f\xff"), "EXIT message is not valid UTF-8"},
        BadExec{"exit_long", H, message(0x13, std::string("\x02\x7f", 2) + std::string(1025, 'm')),
                "has a 1027-byte payload (limit 1026)"},
        // Sequence toward the guest.
        BadExec{"stdin_before_request", G, message(0x02, "x"), "STDIN before REQUEST"},
        BadExec{"signal_before_request", G, message(0x05, "\x09"), "SIGNAL before REQUEST"},
        BadExec{"second_request", G,
                request_bytes(simple_request()) + request_bytes(simple_request()),
                "second REQUEST"},
        BadExec{"stdin_after_eof", G,
                request_bytes(simple_request()) + message(0x03, "") + message(0x02, "x"),
                "STDIN after STDIN_EOF"},
        BadExec{"second_eof", G,
                request_bytes(simple_request()) + message(0x03, "") + message(0x03, ""),
                "STDIN_EOF after STDIN_EOF"},
        BadExec{"stdin_when_closed", G,
                req(request_payload(2, 0, 0, {"a"}, {}, "")) + message(0x02, "x"),
                "STDIN although the REQUEST closed stdin"},
        BadExec{"eof_when_closed", G,
                req(request_payload(2, 0, 0, {"a"}, {}, "")) + message(0x03, ""),
                "STDIN_EOF although the REQUEST closed stdin"},
        BadExec{"resize_without_pty", G,
                request_bytes(simple_request()) + message(0x04, std::string("\x00\x18\x00\x50", 4)),
                "RESIZE without a pty"},
        // Sequence toward the host.
        BadExec{"stdout_before_started", H, message(0x11, "x"), "STDOUT before STARTED"},
        BadExec{"exit_before_started", H, message(0x13, std::string("\x00\x00", 2)),
                "EXIT before STARTED (only a not-started EXIT may come first)"},
        BadExec{"second_started", H, started() + started(), "second STARTED"},
        BadExec{"not_started_after_started", H, started() + message(0x13, "\x02\x01"),
                "not-started EXIT after STARTED"},
        BadExec{"after_exit", H,
                started() + message(0x13, std::string("\x00\x00", 2)) + message(0x12, "late"),
                "STDERR after EXIT"}),
    [](const auto& row) { return std::string(row.param.name); });

// ---------------------------------------------------------------------------------------------
// Control

TEST(ControlCodec, ReadyAndShutdownRoundTrip) {
  const control::Ready ready{
      {{"guest-version", "0.1.0"}, {"kernel", "6.1.0-cloud-amd64"}, {"boot-ms", "1834"}}};
  ASSERT_TRUE(control::check(ready));
  std::string to_host;
  control::encode(ready, to_host);
  control::Decoder host_side(Direction::to_host);
  auto got = decode_all<control::Message>(host_side, to_host, true);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<control::Ready>(got[0]), ready);

  std::string to_guest;
  control::encode(control::Shutdown{control::ShutdownMode::reboot}, to_guest);
  EXPECT_EQ(to_guest, std::string("\x02\x00\x00\x00\x01\x01", 6));
  control::Decoder guest_side(Direction::to_guest);
  auto shutdown = decode_all<control::Message>(guest_side, to_guest, false);
  ASSERT_EQ(shutdown.size(), 1u);
  EXPECT_EQ(std::get<control::Shutdown>(shutdown[0]).mode, control::ShutdownMode::reboot);
}

struct BadControl {
  const char* name;
  Direction direction;
  std::string bytes;
  const char* message;
};

class ControlRejects : public ::testing::TestWithParam<BadControl> {};

TEST_P(ControlRejects, WithAPreciseMessage) {
  control::Decoder decoder(GetParam().direction);
  std::string_view input = GetParam().bytes;
  std::optional<Error> error;
  for (int i = 0; i < 5 && !error; ++i) {
    auto m = decoder.next(input);
    if (!m)
      error = m.error();
    else if (!*m)
      break;
  }
  ASSERT_TRUE(error) << "accepted";
  EXPECT_NE(error->message.find(GetParam().message), std::string::npos) << error->message;
}

std::string ready_bytes() {
  std::string out;
  control::encode(control::Ready{}, out);
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ControlRejects,
    ::testing::Values(
        BadControl{"shutdown_to_host", H, message(0x02, std::string(1, '\0')),
                   "control: message type 0x02 is not valid toward the host"},
        BadControl{"ready_to_guest", G, message(0x01, std::string(2, '\0')),
                   "message type 0x01 is not valid toward the guest"},
        BadControl{"unknown", H, message(0x09, ""), "message type 0x09 is not valid"},
        BadControl{"second_ready", H, ready_bytes() + ready_bytes(), "control: second READY"},
        BadControl{"ready_dup_key", H,
                   message(0x01, std::string("\x00\x02\x01k\x00\x00\x01k\x00\x00", 10)),
                   "READY metadata key 'k' appears twice"},
        BadControl{"ready_truncated", H, message(0x01, std::string("\x00\x01\x05", 3)),
                   "READY metadata entry 0 overruns"},
        BadControl{"ready_too_long", H, message(0x01, std::string(4097, '\0')),
                   "has a 4097-byte payload (limit 4096)"},
        BadControl{"shutdown_mode", G, message(0x02, "\x02"), "SHUTDOWN mode 2 is unknown"},
        BadControl{"shutdown_empty", G, message(0x02, ""),
                   "SHUTDOWN payload is 0 bytes (must be 1)"},
        BadControl{"second_shutdown", G,
                   message(0x02, std::string(1, '\0')) + message(0x02, std::string(1, '\0')),
                   "second SHUTDOWN"}),
    [](const auto& row) { return std::string(row.param.name); });

TEST(ControlCodec, SendersCheckMetadataAndModes) {
  EXPECT_FALSE(control::check(control::Ready{{{"Bad Key", "x"}}}));
  EXPECT_FALSE(control::check(control::Shutdown{static_cast<control::ShutdownMode>(7)}));
  EXPECT_TRUE(control::check(control::Shutdown{}));
}

// ---------------------------------------------------------------------------------------------
// An exec conversation over a real session pair, as the host driver and pexi-guest will run it.

TEST(ExecOverSession, RequestStdinOutputAndExit) {
  Options small;
  small.settings.initial_window = 4096;  // the request and stdin need several grants
  Pair p(small, small);
  p.connect();
  const StreamId id = p.host.open(service::exec).value();
  exec::Request request;
  request.argv = {"cat"};
  request.env = {"BIG=" + std::string(10000, 'e')};
  std::string to_guest;
  exec::encode(request, to_guest);
  exec::encode_data(exec::MessageType::stdin_data, std::string(20000, 'i'), to_guest);
  exec::encode(exec::StdinEof{}, to_guest);

  exec::Decoder guest_decoder(Direction::to_guest);
  exec::Decoder host_decoder(Direction::to_host);
  std::size_t host_sent = 0;
  std::size_t stdin_bytes = 0;
  bool eof = false, exited = false;
  std::string stdout_bytes;
  for (int round = 0; round < 1000 && !exited; ++round) {
    host_sent += p.host.send(id, std::string_view(to_guest).substr(host_sent)).value();
    ASSERT_TRUE(p.pump());
    for (const auto& e : p.guest_events) {
      if (const auto* o = std::get_if<StreamOpened>(&e)) {
        EXPECT_EQ(o->service, "exec");
        ASSERT_TRUE(p.guest.accept(o->stream));
      }
      if (const auto* d = std::get_if<StreamData>(&e)) {
        std::string_view input = d->bytes;
        for (;;) {
          auto m = guest_decoder.next(input);
          ASSERT_TRUE(m) << m.error().message;
          if (!*m) break;
          std::string reply;
          if (std::holds_alternative<exec::Request>(**m)) {
            EXPECT_EQ(std::get<exec::Request>(**m), request);
            exec::encode(exec::Started{100}, reply);
          } else if (const auto* in = std::get_if<exec::StdinData>(&**m)) {
            stdin_bytes += in->bytes.size();
            exec::encode(exec::StdoutData{in->bytes.substr(0, 10)}, reply);  // "cat", abridged
          } else if (std::holds_alternative<exec::StdinEof>(**m)) {
            eof = true;
            exec::encode(exec::Exit{exec::ExitKind::exited, 0, ""}, reply);
          }
          EXPECT_EQ(p.guest.send(id, reply).value(), reply.size());
        }
        // Everything handed to the decoder counts as consumed: it buffers at most a message.
        ASSERT_TRUE(p.guest.consume(id, d->bytes.size()));
      }
    }
    for (const auto& e : p.host_events) {
      if (const auto* d = std::get_if<StreamData>(&e)) {
        std::string_view input = d->bytes;
        for (;;) {
          auto m = host_decoder.next(input);
          ASSERT_TRUE(m) << m.error().message;
          if (!*m) break;
          if (const auto* out = std::get_if<exec::StdoutData>(&**m)) stdout_bytes += out->bytes;
          if (const auto* x = std::get_if<exec::Exit>(&**m)) exited = exec::exit_status(*x) == 0;
        }
        ASSERT_TRUE(p.host.consume(id, d->bytes.size()));
      }
    }
    p.clear();
  }
  EXPECT_TRUE(exited);
  EXPECT_TRUE(eof);
  EXPECT_EQ(stdin_bytes, 20000u);
  EXPECT_EQ(host_sent, to_guest.size());
  EXPECT_EQ(stdout_bytes, std::string(10, 'i'));
}

}  // namespace
}  // namespace pexi::mux
