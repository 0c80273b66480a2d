// The OPA engine against a real OPA server, started by the test (user mode) or by the engine
// (managed mode) on a policy written to a temp dir: decisions as the policy says, the input it
// receives, every way an answer can be unusable (deny, naming OPA), timeouts, OPA down and
// restarted, reloads, and OPA never outliving its parent.
#include "unit/policy/opa_fixture.hpp"

#include <atomic>
#include <vector>

namespace pexi::policy::opa_test {
namespace {

// Allows exactly allowed.test (rule "hosts", injecting x-api-key on /inject); denies the rest.
constexpr std::string_view kHostPolicy = R"(package pexi

decision := {"allow": true, "reason": "allowed.test is fine", "rule": "hosts"} if {
	input.request.host == "allowed.test"
	input.request.path != "/inject"
} else := {"allow": true, "reason": "with key", "rule": "keyed", "inject_headers": {"x-api-key": {"env": "API_KEY"}}} if {
	input.request.host == "allowed.test"
} else := {"allow": false, "reason": sprintf("%s is not allowed", [input.request.host])}
)";

class OpaEngineTest : public ::testing::Test {
 protected:
  void write(const std::string& name, std::string_view text) {
    std::filesystem::create_directories((dir_.path() / name).parent_path());
    test::write_file(dir_.path() / name, text);
  }

  std::unique_ptr<OpaEngine> managed(std::uint32_t timeout_ms = 2000,
                                     std::chrono::milliseconds min_backoff = 200ms) {
    OpaEngine::Options options;
    options.opa.policy_dir = dir_.path().string();
    options.opa.timeout_ms = timeout_ms;
    options.managed.binary = opa_binary();
    options.managed.min_backoff = min_backoff;
    auto engine = OpaEngine::create(std::move(options), test_redactor());
    EXPECT_TRUE(engine) << engine.error().message << " | " << engine.error().detail;
    return engine ? std::move(*engine) : nullptr;
  }

  std::unique_ptr<OpaEngine> user(const std::string& url, std::uint32_t timeout_ms = 2000) {
    OpaEngine::Options options;
    options.opa.url = url;
    options.opa.timeout_ms = timeout_ms;
    auto engine = OpaEngine::create(std::move(options), test_redactor());
    EXPECT_TRUE(engine) << engine.error().message;
    return engine ? std::move(*engine) : nullptr;
  }

  test::TempDir dir_{"pexi-opa-policy"};
};

TEST_F(OpaEngineTest, ManagedModeDecidesAsThePolicySays) {
  write("policy.rego", kHostPolicy);
  auto engine = managed();
  ASSERT_TRUE(engine);
  ASSERT_NE(engine->managed(), nullptr);
  EXPECT_GT(engine->managed()->pid(), 0);
  EXPECT_TRUE(engine->managed()->healthy());

  const Decision allow = engine->decide(input_for("GET", "https://allowed.test/x"));
  EXPECT_TRUE(allow.allow);
  EXPECT_EQ(allow.rule, "hosts");
  EXPECT_EQ(allow.reason, "allowed.test is fine");
  EXPECT_TRUE(allow.inject.empty());

  const Decision keyed = engine->decide(input_for("POST", "https://allowed.test/inject"));
  EXPECT_TRUE(keyed.allow);
  EXPECT_EQ(keyed.rule, "keyed");
  ASSERT_EQ(keyed.inject.size(), 1u);
  EXPECT_EQ(keyed.inject[0].name, "x-api-key");
  EXPECT_EQ(keyed.inject[0].env, "API_KEY");

  const Decision deny = engine->decide(input_for("GET", "https://evil.test/"));
  EXPECT_FALSE(deny.allow);
  EXPECT_EQ(deny.code, Code::denied_by_policy);
  EXPECT_EQ(deny.reason, "evil.test is not allowed");
  EXPECT_EQ(deny.rule, "");
}

TEST_F(OpaEngineTest, UserModeQueriesAGivenServerAndDoesNotManageIt) {
  write("policy.rego", kHostPolicy);
  OpaProcess opa(dir_.path());
  auto engine = user(opa.url());
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->managed(), nullptr);
  EXPECT_TRUE(engine->decide(input_for("GET", "https://allowed.test/")).allow);
  EXPECT_FALSE(engine->decide(input_for("GET", "https://other.test/")).allow);

  opa.stop();  // a shared OPA going away: pexi cannot restart it, it denies
  const Decision down = engine->decide(input_for("GET", "https://allowed.test/"));
  EXPECT_FALSE(down.allow);
  EXPECT_EQ(down.code, Code::denied_by_policy);
  EXPECT_NE(down.reason.find("OPA is unreachable"), std::string::npos) << down.reason;
}

TEST_F(OpaEngineTest, UserModeWithNothingListeningDeniesNamingOpa) {
  auto engine = user("http://127.0.0.1:" + std::to_string(free_port()));
  ASSERT_TRUE(engine);  // not contacted at startup
  for (int i = 0; i < 3; ++i) {
    const Decision d = engine->decide(input_for("GET", "https://allowed.test/"));
    EXPECT_FALSE(d.allow);
    EXPECT_EQ(d.code, Code::denied_by_policy);
    EXPECT_NE(d.reason.find("OPA is unreachable"), std::string::npos) << d.reason;
  }
}

TEST_F(OpaEngineTest, UserModeIgnoresProxyEnvironment) {
  write("policy.rego", kHostPolicy);
  OpaProcess opa(dir_.path());
  Blackhole proxy;  // a "proxy" that would hang every request sent through it
  const std::string proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
  ::setenv("http_proxy", proxy_url.c_str(), 1);
  ::setenv("HTTP_PROXY", proxy_url.c_str(), 1);
  ::setenv("ALL_PROXY", proxy_url.c_str(), 1);
  auto engine = user(opa.url(), 1000);
  ASSERT_TRUE(engine);
  const Decision d = engine->decide(input_for("GET", "https://allowed.test/"));
  ::unsetenv("http_proxy");
  ::unsetenv("HTTP_PROXY");
  ::unsetenv("ALL_PROXY");
  EXPECT_TRUE(d.allow) << d.reason;
}

TEST_F(OpaEngineTest, PolicySeesTheDocumentedInput) {
  // The policy lists every expectation that does not hold; an empty list allows.
  write("policy.rego", R"(package pexi

problems contains "action" if input.action != "pep.http.request"
problems contains "method" if input.request.method != "PUT"
problems contains "url" if input.request.url != "https://api.example.com:8443/v1/a?b=1"
problems contains "scheme" if input.request.scheme != "https"
problems contains "host" if input.request.host != "api.example.com"
problems contains "port" if input.request.port != 8443
problems contains "path" if input.request.path != "/v1/a"
problems contains "query" if input.request.query != "b=1"
problems contains "authorization" if input.request.headers.authorization != "[REDACTED]"
problems contains "accept" if input.request.headers.accept != "a, b"
problems contains "body_bytes" if input.request.body_bytes != 12
problems contains "sandbox" if input.sandbox != "ci"
problems contains "front" if input.front != "proxy"
problems contains "hop" if input.hop != 1
problems contains "origin_url" if input.origin_url != "https://start.test/"

decision := {"allow": count(problems) == 0, "reason": concat(",", sort(problems))}
)");
  auto engine = managed();
  ASSERT_TRUE(engine);
  const Headers headers = {
      {"Authorization", "Bearer secret-value"}, {"Accept", "a"}, {"accept", "b"}};
  DecisionInput in = input_for("PUT", "https://API.example.com:8443/v1/x/../a?b=1");
  in.headers = &headers;
  in.body_bytes = 12;
  in.sandbox = "ci";
  in.front = Front::proxy;
  in.hop = 1;
  in.origin_url = "https://start.test/";
  const Decision d = engine->decide(in);
  EXPECT_TRUE(d.allow) << "wrong fields: " << d.reason;
  EXPECT_EQ(d.rule, "opa:pexi/decision");  // no rule in the result
}

TEST_F(OpaEngineTest, TunnelDecisionsAreConnectActions) {
  write("policy.rego", R"(package pexi

decision := {"allow": true, "reason": "tunnel", "rule": "t"} if {
	input.action == "pep.http.connect"
	input.request.method == "CONNECT"
	input.request.port == 443
} else := {"allow": false, "reason": "requests are not tunnels"}
)");
  auto engine = managed();
  ASSERT_TRUE(engine);
  DecisionInput tunnel = input_for("CONNECT", "https://example.com/");
  tunnel.tunnel = true;
  EXPECT_TRUE(engine->decide(tunnel).allow);
  EXPECT_FALSE(engine->decide(input_for("GET", "https://example.com/")).allow);
}

TEST_F(OpaEngineTest, EveryUnusableAnswerDeniesNamingOpa) {
  // One policy, one answer shape per path.
  write("policy.rego", R"(package pexi

shapes := {
	"/ok": {"allow": true, "reason": "fine"},
	"/string": "allow",
	"/array": [true],
	"/null": null,
	"/no-allow": {"reason": "x"},
	"/no-reason": {"allow": true},
	"/allow-string": {"allow": "true", "reason": "x"},
	"/allow-number": {"allow": 1, "reason": "x"},
	"/reason-number": {"allow": true, "reason": 1},
	"/extra-field": {"allow": true, "reason": "x", "status": 200},
	"/typo": {"alow": true, "allow": true, "reason": "x"},
	"/rule-number": {"allow": true, "reason": "x", "rule": 7},
	"/inject-string": {"allow": true, "reason": "x", "inject_headers": {"x-k": "ENV"}},
	"/inject-host": {"allow": true, "reason": "x", "inject_headers": {"host": {"env": "H"}}},
	"/inject-bad-env": {"allow": true, "reason": "x", "inject_headers": {"x-k": {"env": "A-B"}}},
	"/cap-negative": {"allow": true, "reason": "x", "max_response_bytes": -5},
	"/reason-newline": {"allow": false, "reason": "a\nb"},
}

decision := shapes[input.request.path]

decision := {"allow": true, "reason": concat("", [x | some _ in numbers.range(1, 70000); x := "a"])} if {
	input.request.path == "/huge"
}

decision := {"allow": true, "reason": "one"} if input.request.path == "/conflict"

decision := {"allow": true, "reason": "two"} if input.request.path == "/conflict"
)");
  auto engine = managed();
  ASSERT_TRUE(engine);
  ASSERT_TRUE(engine->decide(input_for("GET", "https://x.test/ok")).allow);

  struct Case {
    std::string_view path;
    std::string_view says;
  };
  const Case cases[] = {
      {"/string", "off-schema: the result must be an object"},
      {"/array", "off-schema: the result must be an object"},
      {"/null", "off-schema: the result must be an object"},
      {"/no-allow", "allow is missing"},
      {"/no-reason", "reason is missing"},
      {"/allow-string", "allow must be a boolean"},
      {"/allow-number", "allow must be a boolean"},
      {"/reason-number", "reason must be a string"},
      {"/extra-field", "unknown field \"status\""},
      {"/typo", "unknown field \"alow\""},
      {"/rule-number", "rule must be a string"},
      {"/inject-string", "must be {\"env\": \"VARIABLE\"}"},
      {"/inject-host", "cannot be injected"},
      {"/inject-bad-env", "environment variable name"},
      {"/cap-negative", "max_response_bytes"},
      {"/reason-newline", "control characters"},
      {"/undefined", "OPA policy has no decision at data.pexi/decision"},
      {"/huge", "OPA answered more than 65536 bytes"},
      {"/conflict", "OPA answered HTTP 500"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const Decision d = engine->decide(input_for("GET", "https://x.test" + std::string(c.path)));
    EXPECT_FALSE(d.allow);
    EXPECT_EQ(d.code, Code::denied_by_policy);
    EXPECT_NE(d.reason.find("OPA"), std::string::npos) << d.reason;
    EXPECT_NE(d.reason.find(c.says), std::string::npos) << d.reason;
  }
  // A usable answer right after all of those: nothing was left in a bad state.
  EXPECT_TRUE(engine->decide(input_for("GET", "https://x.test/ok")).allow);
}

TEST_F(OpaEngineTest, SlowOpaIsATimeoutDeny) {
  Blackhole upstream;  // the policy waits on it, so OPA answers late (after its own 5 s)
  write("policy.rego", R"(package pexi

decision := {"allow": true, "reason": "fast"} if input.request.path == "/fast"

decision := {"allow": true, "reason": "slow"} if {
	input.request.path == "/slow"
	http.send({"method": "GET", "url": "http://127.0.0.1:)" +
                           std::to_string(upstream.port()) +
                           R"(/", "timeout": "5s"})
}
)");
  auto engine = managed(/*timeout_ms=*/300);
  ASSERT_TRUE(engine);
  ASSERT_TRUE(engine->decide(input_for("GET", "https://x.test/fast")).allow);

  const auto started = std::chrono::steady_clock::now();
  const Decision d = engine->decide(input_for("GET", "https://x.test/slow"));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, Code::denied_by_policy);
  EXPECT_EQ(d.reason, "OPA did not answer within 300 ms");
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
  EXPECT_TRUE(engine->decide(input_for("GET", "https://x.test/fast")).allow);
}

TEST_F(OpaEngineTest, ManagedOpaKilledMidRunDeniesUntilItIsBack) {
  write("policy.rego", kHostPolicy);
  // A long first backoff leaves a window in which OPA is certainly down.
  auto engine = managed(2000, /*min_backoff=*/1500ms);
  ASSERT_TRUE(engine);
  const auto* server = engine->managed();
  ASSERT_TRUE(engine->decide(input_for("GET", "https://allowed.test/")).allow);

  const pid_t first = server->pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] { return process_dead(first); }, 5s));

  const Decision down = engine->decide(input_for("GET", "https://allowed.test/"));
  EXPECT_FALSE(down.allow);
  EXPECT_EQ(down.code, Code::denied_by_policy);
  EXPECT_NE(down.reason.find("OPA is unreachable"), std::string::npos) << down.reason;

  ASSERT_TRUE(
      eventually([&] { return engine->decide(input_for("GET", "https://allowed.test/")).allow; }));
  EXPECT_EQ(server->restarts(), 1u);
  EXPECT_NE(server->pid(), first);
  EXPECT_GT(server->pid(), 0);
  EXPECT_TRUE(eventually([&] { return server->healthy(); }, 5s));
  EXPECT_FALSE(engine->decide(input_for("GET", "https://evil.test/")).allow);  // same policy
}

TEST_F(OpaEngineTest, ManagedOpaReloadsPoliciesAndDataOnChange) {
  write("policy.rego", R"(package pexi

decision := {"allow": input.request.host in data.hosts.allow, "reason": "allowlist"}
)");
  write("hosts/data.json", R"({"allow": ["a.test"]})");
  auto engine = managed();
  ASSERT_TRUE(engine);
  ASSERT_TRUE(engine->decide(input_for("GET", "https://a.test/")).allow);
  ASSERT_FALSE(engine->decide(input_for("GET", "https://b.test/")).allow);

  write("hosts/data.json", R"({"allow": ["b.test"]})");
  EXPECT_TRUE(
      eventually([&] { return engine->decide(input_for("GET", "https://b.test/")).allow; }));
  EXPECT_FALSE(engine->decide(input_for("GET", "https://a.test/")).allow);
  EXPECT_EQ(engine->managed()->restarts(), 0u);  // reloaded, not restarted
}

TEST_F(OpaEngineTest, PolicyThatDoesNotCompileStopsStartup) {
  write("policy.rego", "package pexi\n\ndecision := {\"allow\": true,\n");
  OpaEngine::Options options;
  options.opa.policy_dir = dir_.path().string();
  options.managed.binary = opa_binary();
  auto engine = OpaEngine::create(std::move(options), test_redactor());
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().code, Code::config_error);
  EXPECT_NE(engine.error().message.find("OPA did not start"), std::string::npos)
      << engine.error().message;
  EXPECT_NE(engine.error().message.find("exited with status"), std::string::npos);
  EXPECT_NE(engine.error().detail.find("rego_parse_error"), std::string::npos)
      << engine.error().detail;
}

TEST_F(OpaEngineTest, MissingPolicyDirOrBinaryIsAConfigError) {
  OpaEngine::Options no_dir;
  no_dir.opa.policy_dir = (dir_.path() / "missing").string();
  no_dir.managed.binary = opa_binary();
  auto engine = OpaEngine::create(std::move(no_dir), test_redactor());
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().code, Code::config_error);
  EXPECT_NE(engine.error().message.find("is not a directory"), std::string::npos);

  OpaEngine::Options no_binary;
  no_binary.opa.policy_dir = dir_.path().string();
  no_binary.managed.binary = dir_.path() / "no-opa-here";
  engine = OpaEngine::create(std::move(no_binary), test_redactor());
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().code, Code::config_error);
}

TEST_F(OpaEngineTest, StoppingTheEngineStopsOpaAndRemovesItsSocket) {
  write("policy.rego", kHostPolicy);
  auto engine = managed();
  ASSERT_TRUE(engine);
  const pid_t pid = engine->managed()->pid();
  const std::filesystem::path socket = engine->managed()->endpoint().unix_socket;
  EXPECT_TRUE(std::filesystem::exists(socket));
  EXPECT_EQ(
      std::filesystem::status(socket.parent_path()).permissions() & std::filesystem::perms::all,
      std::filesystem::perms::owner_all);  // 0700: only this user reaches the socket
  engine.reset();
  EXPECT_TRUE(process_dead(pid));
  EXPECT_FALSE(std::filesystem::exists(socket.parent_path()));
}

TEST_F(OpaEngineTest, OpaNeverOutlivesItsParent) {
  write("policy.rego", kHostPolicy);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A pexi that is killed outright: no destructor runs.
    ::close(pipe_fds[0]);
    OpaEngine::Options options;
    options.opa.policy_dir = dir_.path().string();
    options.managed.binary = opa_binary();
    auto engine = OpaEngine::create(std::move(options), test_redactor());
    const pid_t opa = engine ? (*engine)->managed()->pid() : -1;
    [[maybe_unused]] auto n = ::write(pipe_fds[1], &opa, sizeof opa);
    ::raise(SIGKILL);
  }
  ::close(pipe_fds[1]);
  pid_t opa = 0;
  ASSERT_EQ(::read(pipe_fds[0], &opa, sizeof opa), static_cast<ssize_t>(sizeof opa));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_GT(opa, 0);
  EXPECT_TRUE(eventually([&] { return process_dead(opa); }, 5s)) << "OPA pid " << opa;

  // The killed process's socket directory is left behind; the next start removes it.
  const char* tmp = std::getenv("TMPDIR");
  const std::filesystem::path base = tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp";
  const std::string stale = "pexi-opa-" + std::to_string(child) + "-";
  const auto left = [&] {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(base, ec))
      if (entry.path().filename().string().starts_with(stale)) return true;
    return false;
  };
  EXPECT_TRUE(left());
  auto next = managed();
  ASSERT_TRUE(next);
  EXPECT_FALSE(left());
}

TEST_F(OpaEngineTest, ConcurrentDecisionsShareThePool) {
  write("policy.rego", kHostPolicy);
  auto engine = managed();
  ASSERT_TRUE(engine);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        const bool expect_allow = (i + t) % 2 == 0;
        const Decision d = engine->decide(
            input_for("GET", expect_allow ? "https://allowed.test/" : "https://denied.test/"));
        if (d.allow != expect_allow) wrong.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(OpaEngineTest, ConfiguredDecisionPathIsQueried) {
  write("policy.rego", R"(package acme.egress

verdict := {"allow": true, "reason": "acme says yes", "rule": "acme"}
)");
  OpaEngine::Options options;
  options.opa.policy_dir = dir_.path().string();
  options.opa.decision = "acme/egress/verdict";
  options.managed.binary = opa_binary();
  auto engine = OpaEngine::create(std::move(options), test_redactor());
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ((*engine)->decision_path(), "acme/egress/verdict");
  const Decision d = (*engine)->decide(input_for("GET", "https://any.test/"));
  EXPECT_TRUE(d.allow);
  EXPECT_EQ(d.rule, "acme");
}

}  // namespace
}  // namespace pexi::policy::opa_test
