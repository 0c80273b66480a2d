#include "mux/exec.hpp"

#include "common/utf8.hpp"
#include "mux/wire.hpp"

#include <algorithm>

namespace pexi::mux::exec {
namespace {

constexpr std::uint8_t kFlagPty = 0x01;
constexpr std::uint8_t kFlagStdinClosed = 0x02;
constexpr std::uint8_t kFlagClearEnv = 0x04;
constexpr std::size_t kExitFixed = 2;

Error bad(std::string message) { return Error{Code::invalid_request, "exec: " + message}; }
std::string num(std::uint64_t v) { return std::to_string(v); }

std::string_view name_of(MessageType type) {
  switch (type) {
    case MessageType::request:
      return "REQUEST";
    case MessageType::stdin_data:
      return "STDIN";
    case MessageType::stdin_eof:
      return "STDIN_EOF";
    case MessageType::resize:
      return "RESIZE";
    case MessageType::signal:
      return "SIGNAL";
    case MessageType::started:
      return "STARTED";
    case MessageType::stdout_data:
      return "STDOUT";
    case MessageType::stderr_data:
      return "STDERR";
    case MessageType::exit:
      return "EXIT";
  }
  return "?";
}
std::string name(MessageType type) { return std::string(name_of(type)); }

std::optional<std::size_t> limit(Direction direction, std::uint8_t raw) {
  const auto type = static_cast<MessageType>(raw);
  std::optional<std::size_t> size;
  switch (type) {
    case MessageType::request:
      size = kMaxRequest;
      break;
    case MessageType::stdin_data:
    case MessageType::stdout_data:
    case MessageType::stderr_data:
      size = kMaxData;
      break;
    case MessageType::stdin_eof:
      size = 0;
      break;
    case MessageType::resize:
    case MessageType::started:
      size = 4;
      break;
    case MessageType::signal:
      size = 1;
      break;
    case MessageType::exit:
      size = kExitFixed + kMaxMessageText;
      break;
    default:
      return std::nullopt;
  }
  if (direction_of(type) != direction) return std::nullopt;
  return size;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::size_t request_size(const Request& r) {
  std::size_t size = 1 + 2 + 2 + 2 + 2 + 2 + r.cwd.size();
  for (const auto& a : r.argv) size += 4 + a.size();
  for (const auto& e : r.env) size += 4 + e.size();
  return size;
}

Result<void> check_request(const Request& r) {
  if (r.pty && (r.rows == 0 || r.cols == 0))
    return bad("REQUEST with a pty needs rows and cols ≥ 1 (got " + num(r.rows) + "x" +
               num(r.cols) + ")");
  if (!r.pty && (r.rows != 0 || r.cols != 0))
    return bad("REQUEST without a pty must have rows and cols 0");
  if (r.argv.empty() || r.argv.size() > kMaxArgs)
    return bad("REQUEST has " + num(r.argv.size()) + " arguments (must be 1…" + num(kMaxArgs) +
               ")");
  if (r.argv[0].empty()) return bad("REQUEST argv[0] is empty");
  for (std::size_t i = 0; i < r.argv.size(); ++i)
    if (has_nul(r.argv[i])) return bad("REQUEST argv[" + num(i) + "] contains NUL");
  if (r.env.size() > kMaxEnv)
    return bad("REQUEST has " + num(r.env.size()) + " environment entries (limit " + num(kMaxEnv) +
               ")");
  for (std::size_t i = 0; i < r.env.size(); ++i) {
    const std::string& e = r.env[i];
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0)
      return bad("REQUEST env[" + num(i) + "] is not NAME=value with a non-empty NAME");
    if (has_nul(e)) return bad("REQUEST env[" + num(i) + "] contains NUL");
  }
  if (r.cwd.size() > kMaxCwd)
    return bad("REQUEST cwd of " + num(r.cwd.size()) + " bytes exceeds " + num(kMaxCwd));
  if (has_nul(r.cwd)) return bad("REQUEST cwd contains NUL");
  if (!r.cwd.empty() && r.cwd.front() != '/') return bad("REQUEST cwd is not absolute");
  if (request_size(r) > kMaxRequest)
    return bad("REQUEST of " + num(request_size(r)) + " bytes exceeds " + num(kMaxRequest));
  return {};
}

Result<void> check_data(MessageType type, const std::string& bytes) {
  if (bytes.empty() || bytes.size() > kMaxData)
    return bad(name(type) + " of " + num(bytes.size()) + " bytes (must be 1…" + num(kMaxData) +
               ")");
  return {};
}

Result<void> check_exit(const Exit& e) {
  switch (e.kind) {
    case ExitKind::exited:
    case ExitKind::not_started:
      break;
    case ExitKind::signaled:
      if (e.value < 1 || e.value > kMaxSignal)
        return bad("EXIT by signal " + num(e.value) + " (must be 1…" + num(kMaxSignal) + ")");
      break;
    default:
      return bad("EXIT kind " + num(static_cast<std::uint8_t>(e.kind)) + " is unknown");
  }
  if (e.message.size() > kMaxMessageText)
    return bad("EXIT message of " + num(e.message.size()) + " bytes exceeds " +
               num(kMaxMessageText));
  if (!is_valid_utf8(e.message)) return bad("EXIT message is not valid UTF-8");
  return {};
}

Result<Request> parse_request(std::string_view payload) {
  wire::Reader r(payload);
  Request req;
  std::uint8_t flags = 0;
  std::uint16_t argc = 0;
  if (!r.u8(flags) || !r.u16(req.rows) || !r.u16(req.cols) || !r.u16(argc))
    return bad("REQUEST is truncated before argv");
  if ((flags & ~(kFlagPty | kFlagStdinClosed | kFlagClearEnv)) != 0)
    return bad("REQUEST flags " + num(flags) + " have unknown bits");
  req.pty = (flags & kFlagPty) != 0;
  req.stdin_closed = (flags & kFlagStdinClosed) != 0;
  req.clear_env = (flags & kFlagClearEnv) != 0;
  if (argc == 0 || argc > kMaxArgs)
    return bad("REQUEST has " + num(argc) + " arguments (must be 1…" + num(kMaxArgs) + ")");
  req.argv.reserve(std::min<std::size_t>(argc, r.remaining() / 4));  // each needs ≥ 4 bytes
  for (std::size_t i = 0; i < argc; ++i) {
    std::uint32_t len = 0;
    std::string_view arg;
    if (!r.u32(len) || !r.bytes(len, arg)) return bad("REQUEST argv[" + num(i) + "] is truncated");
    req.argv.emplace_back(arg);
  }
  std::uint16_t envc = 0;
  if (!r.u16(envc)) return bad("REQUEST is truncated before env");
  if (envc > kMaxEnv)
    return bad("REQUEST has " + num(envc) + " environment entries (limit " + num(kMaxEnv) + ")");
  req.env.reserve(std::min<std::size_t>(envc, r.remaining() / 4));
  for (std::size_t i = 0; i < envc; ++i) {
    std::uint32_t len = 0;
    std::string_view entry;
    if (!r.u32(len) || !r.bytes(len, entry)) return bad("REQUEST env[" + num(i) + "] is truncated");
    req.env.emplace_back(entry);
  }
  std::uint16_t cwd_len = 0;
  std::string_view cwd;
  if (!r.u16(cwd_len) || !r.bytes(cwd_len, cwd)) return bad("REQUEST cwd is truncated");
  req.cwd = std::string(cwd);
  if (r.remaining() != 0) return bad("REQUEST has " + num(r.remaining()) + " trailing bytes");
  PEXI_TRY(check_request(req));
  return req;
}

Result<Message> parse(std::uint8_t raw, std::string_view payload) {
  const auto type = static_cast<MessageType>(raw);
  auto exact = [&](std::size_t size) -> Result<void> {
    if (payload.size() != size)
      return bad(name(type) + " payload is " + num(payload.size()) + " bytes (must be " +
                 num(size) + ")");
    return {};
  };
  switch (type) {
    case MessageType::request: {
      PEXI_TRY_ASSIGN(auto request, parse_request(payload));
      return Message(std::move(request));
    }
    case MessageType::stdin_data:
    case MessageType::stdout_data:
    case MessageType::stderr_data: {
      if (payload.empty()) return bad(name(type) + " is empty");
      std::string bytes(payload);
      if (type == MessageType::stdin_data) return Message(StdinData{std::move(bytes)});
      if (type == MessageType::stdout_data) return Message(StdoutData{std::move(bytes)});
      return Message(StderrData{std::move(bytes)});
    }
    case MessageType::stdin_eof:
      PEXI_TRY(exact(0));
      return Message(StdinEof{});
    case MessageType::resize: {
      PEXI_TRY(exact(4));
      Resize resize{wire::get_u16(payload.data()), wire::get_u16(payload.data() + 2)};
      if (resize.rows == 0 || resize.cols == 0)
        return bad("RESIZE to " + num(resize.rows) + "x" + num(resize.cols) +
                   " (each must be ≥ 1)");
      return Message(resize);
    }
    case MessageType::signal: {
      PEXI_TRY(exact(1));
      const auto number = static_cast<std::uint8_t>(payload[0]);
      if (number < 1 || number > kMaxSignal)
        return bad("SIGNAL " + num(number) + " (must be 1…" + num(kMaxSignal) + ")");
      return Message(Signal{number});
    }
    case MessageType::started: {
      PEXI_TRY(exact(4));
      const std::uint32_t pid = wire::get_u32(payload.data());
      if (pid == 0) return bad("STARTED with pid 0");
      return Message(Started{pid});
    }
    case MessageType::exit: {
      if (payload.size() < kExitFixed)
        return bad("EXIT payload is " + num(payload.size()) + " bytes (at least 2)");
      Exit exit{static_cast<ExitKind>(payload[0]), static_cast<std::uint8_t>(payload[1]),
                std::string(payload.substr(kExitFixed))};
      PEXI_TRY(check_exit(exit));
      return Message(std::move(exit));
    }
  }
  return bad("message type " + num(raw) + " is unknown");  // the splitter refused it already
}

}  // namespace

MessageType type_of(const Message& message) noexcept {
  constexpr MessageType kTypes[] = {
      MessageType::request,     MessageType::stdin_data,  MessageType::stdin_eof,
      MessageType::resize,      MessageType::signal,      MessageType::started,
      MessageType::stdout_data, MessageType::stderr_data, MessageType::exit};
  return kTypes[message.index()];
}

Direction direction_of(MessageType type) noexcept {
  return static_cast<std::uint8_t>(type) < 0x10 ? Direction::to_guest : Direction::to_host;
}

Result<void> check(const Message& message) {
  if (const auto* r = std::get_if<Request>(&message)) return check_request(*r);
  if (const auto* d = std::get_if<StdinData>(&message))
    return check_data(MessageType::stdin_data, d->bytes);
  if (const auto* d = std::get_if<StdoutData>(&message))
    return check_data(MessageType::stdout_data, d->bytes);
  if (const auto* d = std::get_if<StderrData>(&message))
    return check_data(MessageType::stderr_data, d->bytes);
  if (const auto* r = std::get_if<Resize>(&message)) {
    if (r->rows == 0 || r->cols == 0) return bad("RESIZE rows and cols must be ≥ 1");
    return {};
  }
  if (const auto* s = std::get_if<Signal>(&message)) {
    if (s->number < 1 || s->number > kMaxSignal)
      return bad("SIGNAL " + num(s->number) + " (must be 1…" + num(kMaxSignal) + ")");
    return {};
  }
  if (const auto* s = std::get_if<Started>(&message)) {
    if (s->pid == 0) return bad("STARTED with pid 0");
    return {};
  }
  if (const auto* e = std::get_if<Exit>(&message)) return check_exit(*e);
  return {};  // StdinEof
}

void encode(const Message& message, std::string& out) {
  const auto type = static_cast<std::uint8_t>(type_of(message));
  if (const auto* r = std::get_if<Request>(&message)) {
    put_message_header(out, type, request_size(*r));
    wire::put_u8(out, static_cast<std::uint8_t>((r->pty ? kFlagPty : 0) |
                                                (r->stdin_closed ? kFlagStdinClosed : 0) |
                                                (r->clear_env ? kFlagClearEnv : 0)));
    wire::put_u16(out, r->rows);
    wire::put_u16(out, r->cols);
    wire::put_u16(out, static_cast<std::uint16_t>(r->argv.size()));
    for (const auto& a : r->argv) {
      wire::put_u32(out, static_cast<std::uint32_t>(a.size()));
      out.append(a);
    }
    wire::put_u16(out, static_cast<std::uint16_t>(r->env.size()));
    for (const auto& e : r->env) {
      wire::put_u32(out, static_cast<std::uint32_t>(e.size()));
      out.append(e);
    }
    wire::put_u16(out, static_cast<std::uint16_t>(r->cwd.size()));
    out.append(r->cwd);
  } else if (const auto* d = std::get_if<StdinData>(&message)) {
    put_message_header(out, type, d->bytes.size());
    out.append(d->bytes);
  } else if (const auto* o = std::get_if<StdoutData>(&message)) {
    put_message_header(out, type, o->bytes.size());
    out.append(o->bytes);
  } else if (const auto* e = std::get_if<StderrData>(&message)) {
    put_message_header(out, type, e->bytes.size());
    out.append(e->bytes);
  } else if (std::holds_alternative<StdinEof>(message)) {
    put_message_header(out, type, 0);
  } else if (const auto* z = std::get_if<Resize>(&message)) {
    put_message_header(out, type, 4);
    wire::put_u16(out, z->rows);
    wire::put_u16(out, z->cols);
  } else if (const auto* s = std::get_if<Signal>(&message)) {
    put_message_header(out, type, 1);
    wire::put_u8(out, s->number);
  } else if (const auto* st = std::get_if<Started>(&message)) {
    put_message_header(out, type, 4);
    wire::put_u32(out, st->pid);
  } else if (const auto* x = std::get_if<Exit>(&message)) {
    put_message_header(out, type, kExitFixed + x->message.size());
    wire::put_u8(out, static_cast<std::uint8_t>(x->kind));
    wire::put_u8(out, x->value);
    out.append(x->message);
  }
}

void encode_data(MessageType type, std::string_view bytes, std::string& out) {
  for (std::size_t at = 0; at < bytes.size(); at += kMaxData) {
    const std::string_view chunk = bytes.substr(at, kMaxData);
    put_message_header(out, static_cast<std::uint8_t>(type), chunk.size());
    out.append(chunk);
  }
}

int exit_status(const Exit& exit) noexcept {
  return exit.kind == ExitKind::signaled ? 128 + exit.value : exit.value;
}

Decoder::Decoder(Direction direction)
    : direction_(direction), splitter_("exec", direction, &limit) {}

Result<std::optional<Message>> Decoder::next(std::string_view& input) {
  if (broken_) return *broken_;
  auto raw = splitter_.next(input);
  if (!raw) {
    broken_ = raw.error();
    return *broken_;
  }
  if (!*raw) return std::optional<Message>{};
  auto message = parse((*raw)->type, (*raw)->payload);
  if (!message) {
    broken_ = message.error();
    return *broken_;
  }
  if (auto ok = check_sequence(*message); !ok) {
    broken_ = ok.error();
    return *broken_;
  }
  return std::optional<Message>(std::move(*message));
}

Result<void> Decoder::check_sequence(const Message& message) {
  const MessageType type = type_of(message);
  if (direction_ == Direction::to_guest) {
    if (!requested_) {
      if (type != MessageType::request) return bad(name(type) + " before REQUEST");
      const auto& r = std::get<Request>(message);
      requested_ = true;
      pty_ = r.pty;
      stdin_closed_ = r.stdin_closed;
      return {};
    }
    switch (type) {
      case MessageType::request:
        return bad("second REQUEST");
      case MessageType::stdin_data:
      case MessageType::stdin_eof:
        if (stdin_closed_) return bad(name(type) + " although the REQUEST closed stdin");
        if (stdin_eof_) return bad(name(type) + " after STDIN_EOF");
        stdin_eof_ = type == MessageType::stdin_eof;
        return {};
      case MessageType::resize:
        if (!pty_) return bad("RESIZE without a pty");
        return {};
      default:
        return {};
    }
  }
  if (exited_) return bad(name(type) + " after EXIT");
  if (type == MessageType::exit) {
    const auto& e = std::get<Exit>(message);
    if (!started_ && e.kind != ExitKind::not_started)
      return bad("EXIT before STARTED (only a not-started EXIT may come first)");
    if (started_ && e.kind == ExitKind::not_started) return bad("not-started EXIT after STARTED");
    exited_ = true;
    return {};
  }
  if (type == MessageType::started) {
    if (started_) return bad("second STARTED");
    started_ = true;
    return {};
  }
  if (!started_) return bad(name(type) + " before STARTED");
  return {};
}

}  // namespace pexi::mux::exec
