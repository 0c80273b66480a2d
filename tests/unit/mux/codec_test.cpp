// The preface and frame codec: round trips, byte-at-a-time decoding, and one table row per
// malformed-input rule of docs/channel-protocol.md §2–§3.
#include "helpers.hpp"

#include <gtest/gtest.h>

namespace pexi::mux {
namespace {

using testing::encoded;
using testing::OwnedFrame;
using testing::raw_frame;

constexpr std::uint32_t kTestMax = kMinMaxFramePayload;

std::string preface_bytes(std::uint16_t version, std::uint8_t role, std::uint8_t reserved,
                          std::uint32_t max_frame, std::uint32_t window, std::uint32_t streams) {
  std::string out(kMagic);
  wire::put_u16(out, version);
  wire::put_u8(out, role);
  wire::put_u8(out, reserved);
  wire::put_u32(out, max_frame);
  wire::put_u32(out, window);
  wire::put_u32(out, streams);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Preface

TEST(MuxPreface, LayoutIsTheDocumentedTwentyFourBytes) {
  const std::string bytes = encode_preface(Role::guest, Settings{65536, 262144, 256});
  const std::string expected(
      "\x89PXMUX\r\n"
      "\x00\x01"           // version 1
      "\x02\x00"           // guest, reserved
      "\x00\x01\x00\x00"   // max_frame_payload 65536
      "\x00\x04\x00\x00"   // initial_window 262144
      "\x00\x00\x01\x00",  // max_streams 256
      24);
  EXPECT_EQ(bytes, expected);
}

TEST(MuxPreface, RoundTripsFedOneByteAtATime) {
  const Settings settings{kMaxMaxFramePayload, kMaxWindow, 7};
  const std::string bytes = encode_preface(Role::guest, settings) + "tail";
  PrefaceReader reader(Role::host);
  std::optional<Preface> preface;
  std::size_t fed = 0;
  for (; fed < bytes.size() && !preface; ++fed) {
    std::string_view one(bytes.data() + fed, 1);
    auto r = reader.feed(one);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(one.empty());
    preface = *r;
  }
  ASSERT_TRUE(preface);
  EXPECT_EQ(fed, kPrefaceSize);  // stops exactly at the end of the preface
  EXPECT_EQ(preface->role, Role::guest);
  EXPECT_EQ(preface->settings, settings);
}

TEST(MuxPreface, LeavesFollowingBytesInTheInput) {
  const std::string bytes = encode_preface(Role::host, Settings{}) + "frames";
  PrefaceReader reader(Role::guest);
  std::string_view input = bytes;
  auto r = reader.feed(input);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ(input, "frames");
}

TEST(MuxPreface, RejectsGarbageAtTheFirstWrongByte) {
  PrefaceReader reader(Role::host);
  std::string_view input = "G";  // "GET / HTTP/1.1": not even the first byte matches
  auto r = reader.feed(input);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "not a pexi channel: preface byte 0 is 0x47, expected 0x89");
}

struct BadPreface {
  const char* name;
  std::string bytes;
  const char* message;
};

class MuxPrefaceRejects : public ::testing::TestWithParam<BadPreface> {};

TEST_P(MuxPrefaceRejects, WithAPreciseMessage) {
  PrefaceReader reader(Role::host);
  std::string_view input = GetParam().bytes;
  auto r = reader.feed(input);
  ASSERT_FALSE(r) << "accepted";
  EXPECT_EQ(r.error().code, Code::invalid_request);
  EXPECT_NE(r.error().message.find(GetParam().message), std::string::npos) << r.error().message;
}

std::string with_byte(std::string s, std::size_t at, char c) {
  s[at] = c;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Table, MuxPrefaceRejects,
    ::testing::Values(
        BadPreface{"http", "GET / HTTP/1.1\r\n\r\n", "preface byte 0 is 0x47"},
        BadPreface{"magic5", with_byte(preface_bytes(1, 2, 0, 65536, 1, 1), 5, 'Y'),
                   "preface byte 5 is 0x59, expected 0x58"},
        BadPreface{"version2", preface_bytes(2, 2, 0, 65536, 1, 1),
                   "version mismatch: the guest speaks version 2, this side speaks version 1"},
        BadPreface{"version0", preface_bytes(0, 2, 0, 65536, 1, 1), "speaks version 0"},
        BadPreface{"same_role", preface_bytes(1, 1, 0, 65536, 1, 1),
                   "both ends of the channel claim to be the host"},
        BadPreface{"role3", preface_bytes(1, 3, 0, 65536, 1, 1),
                   "preface role 3 is unknown (expected 2, guest)"},
        BadPreface{"role0", preface_bytes(1, 0, 0, 65536, 1, 1), "preface role 0 is unknown"},
        BadPreface{"reserved", preface_bytes(1, 2, 1, 65536, 1, 1),
                   "reserved byte is 0x01 (must be 0x00)"},
        BadPreface{"frame_small", preface_bytes(1, 2, 0, 16383, 1, 1),
                   "max_frame_payload 16383 is outside 16384…16777215"},
        BadPreface{"frame_big", preface_bytes(1, 2, 0, 1u << 24, 1, 1),
                   "max_frame_payload 16777216 is outside"},
        BadPreface{"window0", preface_bytes(1, 2, 0, 65536, 0, 1),
                   "initial_window 0 is outside 1…2147483647"},
        BadPreface{"window_big", preface_bytes(1, 2, 0, 65536, 0x80000000u, 1),
                   "initial_window 2147483648 is outside"},
        BadPreface{"streams0", preface_bytes(1, 2, 0, 65536, 1, 0),
                   "max_streams 0 is outside 1…2147483647"},
        BadPreface{"streams_big", preface_bytes(1, 2, 0, 65536, 1, 0x80000000u),
                   "max_streams 2147483648 is outside"}),
    [](const auto& row) { return std::string(row.param.name); });

TEST(MuxPreface, VersionMismatchIsReportedAfterTenBytes) {
  // The mismatch is named as soon as the version field is complete, whatever follows.
  const std::string bytes = preface_bytes(9, 1, 0, 0, 0, 0).substr(0, 10);
  PrefaceReader reader(Role::guest);
  std::string_view input = bytes;
  auto r = reader.feed(input);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the host speaks version 9"), std::string::npos);
}

TEST(MuxSettings, OwnSettingsAreCheckedToo) {
  EXPECT_TRUE(check_settings(Settings{}));
  EXPECT_FALSE(check_settings(Settings{1024, 1, 1}));
  EXPECT_FALSE(Session::create(Role::host, Options{Settings{65536, 0, 1}}));
  Options threshold_too_big;
  threshold_too_big.settings.initial_window = 100;
  threshold_too_big.window_update_threshold = 101;
  auto bad = Session::create(Role::host, threshold_too_big);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::config_error);
}

// ---------------------------------------------------------------------------------------------
// Frames: round trips

std::vector<Frame> sample_frames() {
  static const std::string big_data(kTestMax, 'z');
  static const std::string long_reason(kMaxReason, 'r');
  static const std::string long_service(kMaxServiceName, 'a');
  Metadata full_meta;
  for (std::size_t i = 0; i < kMaxMetaEntries; ++i)
    full_meta.emplace_back("k" + std::to_string(i), std::string(i * 3, 'v'));
  return {
      open_frame(1, "exec"),
      open_frame(2, "http-proxy", {{"peer", "127.0.0.1:43512"}, {"x.y_z-0", ""}}),
      open_frame(0xfffffffe, "frame", full_meta),
      open_frame(3, long_service, {{"bin", std::string("\0\xff\n", 3)}}),
      open_ok_frame(7),
      open_fail_frame(9, ErrorCode::unknown_service, "no such service: 'foo'"),
      open_fail_frame(9, static_cast<ErrorCode>(4242), ""),
      data_frame(1, "x"),
      data_frame(0xffffffff, big_data),
      window_frame(5, 1),
      window_frame(5, kMaxWindow),
      fin_frame(11),
      rst_frame(13, ErrorCode::cancel, "client went away — ünïcode ok"),
      rst_frame(13, ErrorCode::no_error, long_reason),
      ping_frame(0),
      ping_frame(0x0123456789abcdefull),
      pong_frame(~0ull),
      goaway_frame(ErrorCode::no_error, ""),
      goaway_frame(ErrorCode::protocol_error, "DATA on stream 5 exceeds its credit"),
  };
}

void expect_same(const OwnedFrame& got, const Frame& want) {
  EXPECT_EQ(got.type, want.type);
  EXPECT_EQ(got.stream, want.stream);
  EXPECT_EQ(got.data, want.data);
  EXPECT_EQ(got.service, want.service);
  EXPECT_EQ(got.meta, want.meta);
  EXPECT_EQ(got.code, want.code);
  EXPECT_EQ(got.reason, want.reason);
  EXPECT_EQ(got.increment, want.increment);
  EXPECT_EQ(got.opaque, want.opaque);
}

TEST(MuxFrameCodec, EveryTypeRoundTripsAtOnceAndByteByByte) {
  const auto frames = sample_frames();
  std::string stream;
  for (const auto& f : frames) {
    const std::size_t before = stream.size();
    encode(f, stream);
    EXPECT_EQ(stream.size() - before, encoded_size(f)) << frame_type_name(f.type);
  }

  // All at once: the fast path decodes in place.
  {
    FrameDecoder decoder(kTestMax);
    std::string_view input = stream;
    for (const auto& want : frames) {
      auto got = decoder.next(input);
      ASSERT_TRUE(got) << got.error().message;
      ASSERT_TRUE(*got);
      expect_same(testing::own(**got), want);
    }
    auto end = decoder.next(input);
    ASSERT_TRUE(end);
    EXPECT_FALSE(*end);
  }
  // One byte at a time: the buffered path, which never holds more than one frame.
  {
    FrameDecoder decoder(kTestMax);
    std::vector<OwnedFrame> got;
    for (char c : stream) {
      std::string_view one(&c, 1);
      for (;;) {
        auto f = decoder.next(one);
        ASSERT_TRUE(f) << f.error().message;
        if (!*f) break;
        got.push_back(testing::own(**f));
      }
      EXPECT_LE(decoder.buffered(), kFrameHeaderSize + kTestMax);
    }
    ASSERT_EQ(got.size(), frames.size());
    for (std::size_t i = 0; i < frames.size(); ++i) expect_same(got[i], frames[i]);
    EXPECT_EQ(decoder.buffered(), 0u);
  }
}

TEST(MuxFrameCodec, HeaderLayoutIsBigEndianLengthTypeFlagsStream) {
  EXPECT_EQ(encoded(data_frame(0x01020304, "ab")), std::string("\x00\x00\x00\x02"
                                                               "\x04\x00"
                                                               "\x01\x02\x03\x04"
                                                               "ab",
                                                               12));
  EXPECT_EQ(encoded(window_frame(3, 0x10000)),
            std::string("\x00\x00\x00\x04\x05\x00\x00\x00\x00\x03\x00\x01\x00\x00", 14));
  EXPECT_EQ(encoded(open_frame(1, "exec", {{"k", "v"}})),
            std::string("\x00\x00\x00\x0c\x01\x00\x00\x00\x00\x01"
                        "\x04"
                        "exec"
                        "\x00\x01"
                        "\x01k\x00\x01v",
                        22));
}

TEST(MuxFrameCodec, MixesInPlaceAndBufferedFramesAcrossCalls) {
  const std::string a = encoded(data_frame(1, "first"));
  const std::string b = encoded(data_frame(3, "second"));
  const std::string c = encoded(fin_frame(1));
  // First call: a whole frame and half of the next; second call: the rest and a whole frame.
  const std::string part1 = a + b.substr(0, 7);
  const std::string part2 = b.substr(7) + c;
  FrameDecoder decoder(kTestMax);
  std::string_view in1 = part1;
  auto f1 = decoder.next(in1);
  ASSERT_TRUE(f1 && *f1);
  EXPECT_EQ((*f1)->data, "first");
  auto f2 = decoder.next(in1);
  ASSERT_TRUE(f2);
  EXPECT_FALSE(*f2);
  EXPECT_EQ(decoder.buffered(), 7u);
  std::string_view in2 = part2;
  auto f3 = decoder.next(in2);
  ASSERT_TRUE(f3 && *f3);
  EXPECT_EQ((*f3)->stream, 3u);
  EXPECT_EQ((*f3)->data, "second");
  auto f4 = decoder.next(in2);
  ASSERT_TRUE(f4 && *f4);
  EXPECT_EQ((*f4)->type, FrameType::fin);
  EXPECT_TRUE(in2.empty());
}

TEST(MuxFrameCodec, RefusesAnOversizedFrameOnItsHeaderWithoutBufferingThePayload) {
  FrameDecoder decoder(kTestMax);
  const std::string header = raw_frame(kTestMax + 1, 0x04, 0, 1, "");
  std::string_view input = header;
  auto r = decoder.next(input);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::constraint_violation);
  EXPECT_EQ(decoder.buffered(), 0u);
  // Broken for good: the stream cannot be resynchronised.
  const std::string fine = encoded(fin_frame(1));
  std::string_view later = fine;
  EXPECT_FALSE(decoder.next(later));
}

TEST(MuxFrameCodec, AcceptsAPayloadOfExactlyTheAnnouncedMaximum) {
  const std::string frame = encoded(data_frame(1, std::string(kTestMax, 'm')));
  FrameDecoder decoder(kTestMax);
  std::string_view input = frame;
  auto r = decoder.next(input);
  ASSERT_TRUE(r && *r) << (r ? "" : r.error().message);
  EXPECT_EQ((*r)->data.size(), kTestMax);
}

// ---------------------------------------------------------------------------------------------
// Frames: one row per rejection rule

struct BadFrame {
  const char* name;
  std::string bytes;
  Code code;
  const char* message;
};

class MuxFrameRejects : public ::testing::TestWithParam<BadFrame> {};

TEST_P(MuxFrameRejects, AtOnceAndByteByByte) {
  const auto& param = GetParam();
  {
    FrameDecoder decoder(kTestMax);
    std::string_view input = param.bytes;
    Result<std::optional<Frame>> r = decoder.next(input);
    for (int i = 0; i < 10 && r && *r; ++i) r = decoder.next(input);
    ASSERT_FALSE(r) << "accepted";
    EXPECT_EQ(r.error().code, param.code) << r.error().message;
    EXPECT_NE(r.error().message.find(param.message), std::string::npos) << r.error().message;
  }
  {
    FrameDecoder decoder(kTestMax);
    std::optional<Error> error;
    for (char c : param.bytes) {
      std::string_view one(&c, 1);
      auto r = decoder.next(one);
      if (!r) {
        error = r.error();
        break;
      }
    }
    ASSERT_TRUE(error) << "accepted byte by byte";
    EXPECT_NE(error->message.find(param.message), std::string::npos) << error->message;
  }
}

std::string open_payload(std::string_view service, std::string_view meta_bytes) {
  std::string p;
  wire::put_u8(p, static_cast<std::uint8_t>(service.size()));
  p.append(service);
  p.append(meta_bytes);
  return p;
}
std::string raw_open(std::string_view service, std::string_view meta_bytes) {
  const std::string p = open_payload(service, meta_bytes);
  return raw_frame(static_cast<std::uint32_t>(p.size()), 0x01, 0, 2, p);
}
std::string meta_entry(std::string_view key, std::string_view value) {
  std::string e;
  wire::put_u8(e, static_cast<std::uint8_t>(key.size()));
  e.append(key);
  wire::put_u16(e, static_cast<std::uint16_t>(value.size()));
  e.append(value);
  return e;
}
std::string meta_list(std::uint16_t count, std::string_view entries) {
  std::string m;
  wire::put_u16(m, count);
  m.append(entries);
  return m;
}
std::string with_code(std::uint8_t type, std::uint32_t stream, std::string_view reason) {
  std::string p("\x00\x05", 2);
  p.append(reason);
  return raw_frame(static_cast<std::uint32_t>(p.size()), type, 0, stream, p);
}
std::string u32_payload(std::uint8_t type, std::uint32_t stream, std::uint32_t v) {
  std::string p;
  wire::put_u32(p, v);
  return raw_frame(4, type, 0, stream, p);
}

const Code kMalformed = Code::invalid_request;
const Code kTooLarge = Code::constraint_violation;

INSTANTIATE_TEST_SUITE_P(
    Table, MuxFrameRejects,
    ::testing::Values(
        // Header rules.
        BadFrame{"type_unknown", raw_frame(0, 0x0b, 0, 1, ""), kMalformed,
                 "frame type 0x0b is unknown (stream 1)"},
        BadFrame{"type_zero", raw_frame(0, 0x00, 0, 0, ""), kMalformed,
                 "frame type 0x00 is unknown"},
        BadFrame{"type_ff", raw_frame(0, 0xff, 0, 0, ""), kMalformed, "frame type 0xff is unknown"},
        BadFrame{"flags", raw_frame(1, 0x04, 0x01, 1, "x"), kMalformed,
                 "DATA frame on stream 1 has flags 0x01 (must be 0x00)"},
        BadFrame{"data_stream0", raw_frame(1, 0x04, 0, 0, "x"), kMalformed,
                 "DATA frame on stream 0 (it needs a stream)"},
        BadFrame{"open_stream0", raw_open("exec", "\0\0").replace(6, 4, std::string(4, '\0')),
                 kMalformed, "OPEN frame on stream 0"},
        BadFrame{"ping_on_stream", raw_frame(8, 0x08, 0, 3, "12345678"), kMalformed,
                 "PING frame on stream 3: PING belongs to the connection (stream 0)"},
        BadFrame{"goaway_on_stream", with_code(0x0a, 2, ""), kMalformed,
                 "GOAWAY belongs to the connection"},
        BadFrame{"over_announced", raw_frame(kTestMax + 1, 0x04, 0, 1, ""), kTooLarge,
                 "DATA frame on stream 1 has a 16385-byte payload, over the 16384-byte limit"},
        BadFrame{"huge_length", raw_frame(0xffffffffu, 0x04, 0, 1, ""), kTooLarge,
                 "4294967295-byte payload"},
        BadFrame{"data_empty", raw_frame(0, 0x04, 0, 1, ""), kMalformed,
                 "DATA frame on stream 1 has a 0-byte payload (at least 1)"},
        BadFrame{"open_ok_payload", raw_frame(1, 0x02, 0, 1, "x"), kMalformed,
                 "OPEN_OK frame on stream 1 has a 1-byte payload (must be 0)"},
        BadFrame{"fin_payload", raw_frame(2, 0x06, 0, 1, "xy"), kMalformed,
                 "FIN frame on stream 1 has a 2-byte payload (must be 0)"},
        BadFrame{"window_short", raw_frame(3, 0x05, 0, 1, "abc"), kMalformed,
                 "WINDOW frame on stream 1 has a 3-byte payload (must be 4)"},
        BadFrame{"ping_long", raw_frame(9, 0x08, 0, 0, "123456789"), kMalformed,
                 "PING frame has a 9-byte payload (must be 8)"},
        BadFrame{"pong_short", raw_frame(7, 0x09, 0, 0, "1234567"), kMalformed,
                 "PONG frame has a 7-byte payload (must be 8)"},
        BadFrame{"rst_short", raw_frame(1, 0x07, 0, 1, "x"), kMalformed,
                 "RST frame on stream 1 has a 1-byte payload (at least 2)"},
        BadFrame{"open_fail_long", raw_frame(1027, 0x03, 0, 1, std::string(1027, 'a')), kTooLarge,
                 "OPEN_FAIL frame on stream 1 has a 1027-byte payload (limit 1026)"},
        BadFrame{"open_long", raw_frame(4097, 0x01, 0, 2, std::string(4097, 'a')), kTooLarge,
                 "OPEN frame on stream 2 has a 4097-byte payload (limit 4096)"},
        BadFrame{"open_short", raw_frame(3, 0x01, 0, 2, "\x01x\x00"), kMalformed,
                 "OPEN frame on stream 2 has a 3-byte payload (at least 4)"},
        // OPEN payload rules.
        BadFrame{"service_overrun",
                 raw_frame(4, 0x01, 0, 2,
                           "\x09"
                           "abc"),
                 kMalformed, "OPEN frame on stream 2: service name overruns the payload"},
        BadFrame{"service_empty", raw_open("", std::string("\0\0\0", 3)), kMalformed,
                 "OPEN frame on stream 2: service name is empty"},
        BadFrame{"service_upper", raw_open("Exec", meta_list(0, "")), kMalformed,
                 "service name contains 0x45 (allowed: a-z 0-9 -)"},
        BadFrame{"service_slash", raw_open("a/b", meta_list(0, "")), kMalformed,
                 "service name contains 0x2f"},
        BadFrame{"service_long", raw_open(std::string(33, 'a'), meta_list(0, "")), kMalformed,
                 "service name of 33 bytes exceeds 32"},
        BadFrame{"meta_missing", raw_open("exec", std::string(1, '\0')), kMalformed,
                 "metadata count is missing"},
        BadFrame{"meta_count", raw_open("exec", meta_list(33, "")), kMalformed,
                 "metadata has 33 entries (limit 32)"},
        BadFrame{"meta_truncated", raw_open("exec", meta_list(2, meta_entry("a", "1"))), kMalformed,
                 "metadata entry 1 overruns the payload"},
        BadFrame{"meta_value_overrun",
                 raw_open("exec", meta_list(1, meta_entry("a", "1234").substr(0, 6))), kMalformed,
                 "metadata entry 0 overruns"},
        BadFrame{"meta_trailing", raw_open("exec", meta_list(1, meta_entry("a", "1") + "zz")),
                 kMalformed, "2 trailing bytes after the metadata"},
        BadFrame{"meta_key_empty", raw_open("exec", meta_list(1, meta_entry("", "1"))), kMalformed,
                 "metadata key is empty"},
        BadFrame{"meta_key_char", raw_open("exec", meta_list(1, meta_entry("Peer", "1"))),
                 kMalformed, "metadata key contains 0x50"},
        BadFrame{"meta_key_long",
                 raw_open("exec", meta_list(1, meta_entry(std::string(65, 'k'), ""))), kMalformed,
                 "metadata key of 65 bytes exceeds 64"},
        BadFrame{"meta_dup",
                 raw_open("exec", meta_list(2, meta_entry("peer", "a") + meta_entry("peer", "b"))),
                 kMalformed, "metadata key 'peer' appears twice"},
        BadFrame{"meta_value_long",
                 raw_open("exec", meta_list(1, meta_entry("v", std::string(1025, 'x')))),
                 kMalformed, "metadata value of 'v' has 1025 bytes (limit 1024)"},
        // Code + reason frames.
        BadFrame{"rst_utf8", with_code(0x07, 1, "bad \xff byte"), kMalformed,
                 "RST frame on stream 1: reason is not valid UTF-8"},
        BadFrame{"open_fail_utf8", with_code(0x03, 1, "\xc0\x80"), kMalformed,
                 "OPEN_FAIL frame on stream 1: reason is not valid UTF-8"},
        BadFrame{"goaway_utf8", with_code(0x0a, 0, "\xed\xa0\x80"), kMalformed,
                 "GOAWAY frame: reason is not valid UTF-8"},
        // WINDOW increments.
        BadFrame{"window_zero", u32_payload(0x05, 1, 0), kMalformed,
                 "WINDOW frame on stream 1: increment 0 is outside 1…2147483647"},
        BadFrame{"window_big", u32_payload(0x05, 1, 0x80000000u), kMalformed,
                 "increment 2147483648 is outside"},
        // A valid frame first does not hide a bad one after it.
        BadFrame{"after_valid", encoded(fin_frame(1)) + raw_frame(0, 0x0c, 0, 1, ""), kMalformed,
                 "frame type 0x0c is unknown"}),
    [](const auto& row) { return std::string(row.param.name); });

// ---------------------------------------------------------------------------------------------
// Field rules used by senders

TEST(MuxFieldRules, OpenChecksEverythingTheDecoderChecks) {
  EXPECT_TRUE(check_open("http-proxy", {{"peer", "127.0.0.1:1"}}));
  EXPECT_FALSE(check_open("", {}));
  EXPECT_FALSE(check_open("HTTP", {}));
  EXPECT_FALSE(check_open("exec", {{"a", "1"}, {"a", "2"}}));
  EXPECT_FALSE(check_open("exec", {{"a b", "1"}}));
  // 32 entries of 64-byte keys and 62-byte values fit the field rules but not 4096 bytes.
  Metadata big;
  for (int i = 0; i < 32; ++i)
    big.emplace_back(std::string(62, 'k') + std::to_string(10 + i), std::string(62, 'v'));
  EXPECT_TRUE(check_metadata(big));
  auto r = check_open("exec", big);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("exceeds 4096"), std::string::npos) << r.error().message;
}

TEST(MuxFieldRules, MetadataLookupAndNames) {
  const Metadata meta{{"peer", "127.0.0.1:1"}, {"empty", ""}};
  EXPECT_EQ(find_meta(meta, "peer"), "127.0.0.1:1");
  EXPECT_EQ(find_meta(meta, "empty"), "");
  EXPECT_FALSE(find_meta(meta, "nope"));
  EXPECT_EQ(error_code_name(ErrorCode::flow_control_error), "flow_control_error");
  EXPECT_EQ(error_code_name(static_cast<ErrorCode>(77)), "code 77");
  EXPECT_EQ(frame_type_name(static_cast<FrameType>(0x42)), "type 0x42");
  EXPECT_TRUE(opened_by(Role::host, 1));
  EXPECT_TRUE(opened_by(Role::guest, 2));
  EXPECT_FALSE(opened_by(Role::guest, 0));
  EXPECT_FALSE(opened_by(Role::host, 0));
}

}  // namespace
}  // namespace pexi::mux
