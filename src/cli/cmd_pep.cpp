// pexi pep serve / request: the seed frame front and a small client for it.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "config/config.hpp"
#include "pep/frame_codec.hpp"
#include "pep/frame_server.hpp"
#include "pep/runtime.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

namespace pexi::cli {
namespace asio = boost::asio;
namespace {

inline constexpr std::string_view kDefaultFrameListen = "tcp:127.0.0.1:4040";

struct ServeOptions {
  ConfigOptions config;
  std::optional<std::uint16_t> port;
  std::vector<std::string> listen;
  std::optional<std::string> sandbox;
  unsigned workers = 64;
};

int run_serve(const ServeOptions& options) {
  std::vector<pep::ListenSpec> specs;
  if (options.port) specs.push_back({pep::ListenSpec::Kind::tcp, "127.0.0.1", *options.port, {}});
  for (const auto& text : options.listen) {
    auto spec = pep::parse_listen(text);
    if (!spec) return report(spec.error());
    specs.push_back(*spec);
  }
  if (specs.empty()) specs.push_back(*pep::parse_listen(kDefaultFrameListen));

  auto config = config::load(options.config.config_path);
  if (!config) return report(config.error());
  auto overrides = pep::parse_resolve_overrides(options.config.resolve);
  if (!overrides) return report(overrides.error());
  auto runtime = pep::make_runtime(*config, *overrides);
  if (!runtime) return report(runtime.error());
  for (const auto& name : runtime->secrets->missing())
    std::cerr << "pexi pep: warning: $" << name
              << " is not set; requests to rules that inject it will be denied\n";

  asio::io_context io(1);
  asio::thread_pool workers(options.workers == 0 ? 1 : options.workers);
  pep::FrameServer::Options server_options;
  server_options.sandbox = options.sandbox;
  pep::FrameServer server(io, workers, runtime->pipeline, server_options);
  for (const auto& spec : specs) {
    auto bound = server.listen(spec);
    if (!bound) return report(bound.error());
    if (!bound->is_loopback())
      std::cerr << "pexi pep: warning: " << bound->to_string()
                << " is not a loopback address; anyone who can reach it can use this PEP\n";
    std::cerr << "pexi pep: frame front listening on " << bound->to_string() << '\n';
  }
  std::cerr << "pexi pep: policy " << config->policy.engine << ", audit log "
            << std::filesystem::absolute(config->audit.path).string() << '\n';

  // Ctrl-C / SIGTERM: stop accepting and let requests in flight finish. After a grace
  // period the rest are cancelled (answered and audited as http_error within about a second).
  // A second signal exits at once.
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer grace(io);
  bool interrupted = false;
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        if (interrupted) {
          std::cerr << "pexi pep: second signal, exiting now\n";
          std::_Exit(kInterrupted);
        }
        interrupted = true;
        std::cerr << "pexi pep: shutting down\n";
        server.stop([&] {
          signals.cancel();
          grace.cancel();
        });
        grace.expires_after(std::chrono::seconds(10));
        grace.async_wait([&](const boost::system::error_code& e) {
          if (e) return;
          std::cerr << "pexi pep: cancelling requests still in flight\n";
          runtime->pipeline->cancel_all();
        });
        signals.async_wait(on_signal);
      };
  signals.async_wait(on_signal);
  io.run();
  workers.join();
  return interrupted ? kOk : kFailure;
}

struct RequestOptions {
  std::string to{kDefaultFrameListen};
  std::vector<std::string> headers;
  std::optional<std::string> data;
  bool body_only = false;
  std::string method;
  std::string url;
};

Result<std::string> read_data(const std::string& data) {
  if (!data.starts_with("@")) return data;
  std::ifstream in(data.substr(1), std::ios::binary);
  if (!in) return fail(Code::usage_error, "cannot read " + data.substr(1));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class Socket>
Result<std::string> exchange(Socket& socket, const std::string& frame) {
  boost::system::error_code ec;
  asio::write(socket, asio::buffer(frame), ec);
  if (ec) return fail(Code::io_error, "cannot send the request: " + ec.message());
  unsigned char prefix[4];
  asio::read(socket, asio::buffer(prefix), ec);
  if (ec) return fail(Code::io_error, "no answer from the PEP: " + ec.message());
  const std::uint32_t length = (std::uint32_t{prefix[0]} << 24) | (std::uint32_t{prefix[1]} << 16) |
                               (std::uint32_t{prefix[2]} << 8) | prefix[3];
  if (length > pep::frame::kMaxFrameBytes) return fail(Code::io_error, "oversized answer");
  std::string payload(length, '\0');
  asio::read(socket, asio::buffer(payload), ec);
  if (ec) return fail(Code::io_error, "truncated answer: " + ec.message());
  return payload;
}

int run_request(const RequestOptions& options) {
  auto spec = pep::parse_listen(options.to);
  if (!spec) return report(spec.error());
  boost::json::object request;
  request["method"] = options.method;
  request["url"] = options.url;
  boost::json::array headers;
  for (const auto& h : options.headers) {
    const auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0)
      return report(Error{Code::usage_error, "header '" + h + "' is not NAME: VALUE"});
    std::string value = h.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    headers.push_back(boost::json::array{h.substr(0, colon), value});
  }
  request["headers"] = std::move(headers);
  if (options.data) {
    auto body = read_data(*options.data);
    if (!body) return report(body.error());
    request["body_base64"] = pep::frame::base64_encode(*body);
  } else {
    request["body_base64"] = nullptr;
  }
  const std::string frame = pep::frame::encode(boost::json::serialize(request));

  asio::io_context io;
  Result<std::string> answer = fail(Code::io_error, "not connected");
  boost::system::error_code ec;
  if (spec->kind == pep::ListenSpec::Kind::tcp) {
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address(spec->address), spec->port}, ec);
    if (!ec) answer = exchange(socket, frame);
  } else {
    asio::local::stream_protocol::socket socket(io);
    socket.connect(asio::local::stream_protocol::endpoint(spec->path), ec);
    if (!ec) answer = exchange(socket, frame);
  }
  if (ec)
    return report(
        Error{Code::io_error, "cannot connect to " + spec->to_string() + ": " + ec.message()});
  if (!answer) return report(answer.error());

  boost::system::error_code parse_ec;
  auto doc = boost::json::parse(*answer, parse_ec);
  if (parse_ec || !doc.is_object())
    return report(Error{Code::io_error, "the PEP answered something that is not JSON"});
  const auto& obj = doc.as_object();
  const bool failed = obj.contains("error") && !obj.at("error").is_null();
  if (options.body_only && !failed) {
    const auto* body = obj.if_contains("body_base64");
    if (body && body->is_string())
      std::cout << pep::frame::base64_decode(body->as_string()).value_or("");
  } else {
    std::cout << *answer << '\n';
  }
  return failed ? kFailure : kOk;
}

}  // namespace

void add_pep_commands(CLI::App& app, Action& action) {
  auto* pep = app.add_subcommand("pep", "The host Policy Enforcement Point");
  pep->require_subcommand(1);

  auto serve_options = std::make_shared<ServeOptions>();
  auto* serve = pep->add_subcommand(
      "serve",
      "Serve the seed frame protocol (4-byte big-endian length + JSON) on TCP or Unix "
      "sockets; default " +
          std::string(kDefaultFrameListen));
  add_config_options(*serve, serve_options->config);
  serve->add_option("--port", serve_options->port, "Listen on tcp:127.0.0.1:PORT");
  serve->add_option("--listen", serve_options->listen, "tcp:ADDR:PORT or unix:PATH (repeatable)");
  serve->add_option("--sandbox", serve_options->sandbox,
                    "Sandbox name recorded as `vm` in the audit log");
  serve
      ->add_option("--workers", serve_options->workers,
                   "Requests performed at once (further ones wait)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 4096u));
  serve->callback(
      [&action, serve_options] { action = [serve_options] { return run_serve(*serve_options); }; });

  auto request_options = std::make_shared<RequestOptions>();
  auto* request = pep->add_subcommand(
      "request",
      "Send one request to a PEP's frame front and print the response frame (JSON); "
      "exit 0 when it carries no error");
  request->add_option("--to", request_options->to, "Where the PEP listens")->capture_default_str();
  request->add_option("-H,--header", request_options->headers, "NAME: VALUE (repeatable)");
  request->add_option("-d,--data", request_options->data, "Request body, or @FILE");
  request->add_flag("--body", request_options->body_only, "Print only the decoded body");
  request->add_option("METHOD", request_options->method, "HTTP method")->required();
  request->add_option("URL", request_options->url, "Absolute http(s) URL")->required();
  request->callback([&action, request_options] {
    action = [request_options] { return run_request(*request_options); };
  });
}

}  // namespace pexi::cli
