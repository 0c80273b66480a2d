// Decision latency through OPA against the builtin engine, on the same 1,000 rules, in one run
// (issue 5: OPA p99 under 500 µs per decision).
//
// The OPA side is the real thing: pexi's OpaEngine in managed mode (it starts `opa run
// --server` on a Unix socket), the full input document with redacted headers, one POST on a
// kept-alive connection, result validation. The Rego policy looks the host and its suffixes up
// in a data document built from the same rules (data.bench.exact / data.bench.suffix) and picks
// the lowest matching rule index: the builtin engine's "first match wins", so both engines must
// give the same decision and rule name for every input, which is checked before timing.
// "opa_floor" is a one-line policy: the cost of the transport and JSON alone.
//
// Every decide() call is timed on its own; counters p50_ns, p99_ns and max_ns come from those
// samples. Needs OPA (scripts/install-opa).
//
//   BUILD/bench/bench_opa_decision --benchmark_counters_tabular=true
//
// Results and the exact command are recorded in docs/opa.md.

#include "config/config.hpp"
#include "net/url.hpp"
#include "policy/builtin_engine.hpp"
#include "policy/opa_engine.hpp"

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using pexi::policy::Decision;
using pexi::policy::DecisionInput;
namespace json = boost::json;

constexpr std::size_t kRules = 1'000;
constexpr std::size_t kInputs = 2'048;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench: %s\n", message.c_str());
  std::exit(1);
}

// The policy, in Rego. Matching mirrors the builtin engine for glob-free path patterns.
constexpr std::string_view kPolicy = R"(package pexi

import data.bench

default_ports := {"http": 80, "https": 443}

candidates contains i if {
	some i in bench.exact[input.request.host]
}

# Every proper suffix at a label boundary: "a.b.c" -> "b.c", "c".
candidates contains i if {
	some dot in indexof_n(input.request.host, ".")
	some i in bench.suffix[substring(input.request.host, dot + 1, -1)]
}

port_ok(rule) if {
	count(rule.ports) == 0
	input.request.port == default_ports[input.request.scheme]
}

port_ok(rule) if input.request.port in rule.ports

method_ok(rule) if count(rule.methods) == 0

method_ok(rule) if input.request.method in rule.methods

path_ok(rule) if count(rule.paths) == 0

path_ok(rule) if {
	some p in rule.paths
	path_matches(p, input.request.path)
}

path_matches(p, path) if p == path

path_matches(p, path) if {
	endswith(p, "/")
	startswith(path, p)
}

path_matches(p, path) if {
	not endswith(p, "/")
	startswith(path, concat("", [p, "/"]))
}

matches contains i if {
	some i in candidates
	rule := bench.rules[i]
	port_ok(rule)
	method_ok(rule)
	path_ok(rule)
}

decision := {"allow": true, "reason": "allowed", "rule": bench.rules[min(matches)].name} if {
	count(matches) > 0
} else := {"allow": false, "reason": sprintf("no rule allows %s %s", [input.request.method, split(input.request.url, "?")[0]])}
)";

struct Workload {
  pexi::config::PolicyConfig policy;
  json::object data;  // data.bench
  std::vector<DecisionInput> hits;
  std::vector<DecisionInput> misses;
};

const pexi::Headers& request_headers() {
  static const pexi::Headers headers = {{"Accept", "application/json"},
                                        {"User-Agent", "python-requests/2.31"},
                                        {"Authorization", "Bearer not-a-real-token"},
                                        {"Content-Type", "application/json"}};
  return headers;
}

DecisionInput make_input(std::string method, const std::string& url) {
  auto canonical = pexi::net::canonicalize(url);
  if (!canonical) die("bad URL " + url + ": " + canonical.error().message);
  DecisionInput input;
  input.method = std::move(method);
  input.url = std::move(*canonical);
  input.headers = &request_headers();
  input.body_bytes = 512;
  return input;
}

void append(json::object& index, const std::string& key, std::size_t rule) {
  json::value& slot = index[key];
  if (!slot.is_array()) slot.emplace_array();
  slot.as_array().push_back(rule);
}

// 500 exact hosts and 500 "*.suffix" patterns; 40 % with methods, half with paths, 10 % ports.
const Workload& workload() {
  static const Workload w = [] {
    Workload out;
    std::mt19937 random(42);
    const auto below = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
    };
    const std::vector<std::string> path_patterns = {"/v1", "/v2/", "/static/", "/health"};
    const std::vector<std::string> path_hits = {"/v1/messages", "/v2/models", "/static/app.js",
                                                "/health"};
    struct Target {
      std::string host, method, path;
      std::uint16_t port = 0;
    };
    std::vector<Target> targets;
    json::array rules;
    json::object exact;
    json::object suffix;
    for (std::size_t i = 0; i < kRules; ++i) {
      pexi::config::Rule rule;
      rule.name = "rule-" + std::to_string(i);
      Target target{"", "GET", "/", 0};
      json::array methods;
      json::array paths;
      json::array ports;
      if (i % 2 == 0) {
        rule.hosts = {"api" + std::to_string(i) + ".corp" + std::to_string(i % 53) + ".test"};
        target.host = rule.hosts[0];
        append(exact, rule.hosts[0], i);
      } else {
        const std::string base = "zone" + std::to_string(i) + ".test";
        rule.hosts = {"*." + base};
        target.host = "node.a" + std::to_string(i) + "." + base;
        append(suffix, base, i);
      }
      if (below(10) < 4) {
        rule.methods = {"GET", "POST"};
        methods = {"GET", "POST"};
        target.method = below(2) == 0 ? "GET" : "POST";
      }
      if (below(2) == 0) {
        const std::size_t p = below(path_patterns.size());
        rule.paths = {path_patterns[p]};
        paths.push_back(json::string(path_patterns[p]));
        target.path = path_hits[p];
      }
      if (below(10) == 0) {
        rule.ports = {8443};
        ports.push_back(8443);
        target.port = 8443;
      }
      rules.push_back(json::object{
          {"name", rule.name}, {"methods", methods}, {"paths", paths}, {"ports", ports}});
      out.policy.rules.push_back(std::move(rule));
      targets.push_back(std::move(target));
    }
    out.data = json::object{{"rules", rules}, {"exact", exact}, {"suffix", suffix}};

    for (std::size_t i = 0; i < kInputs; ++i) {
      const Target& t = targets[below(targets.size())];
      const std::string port = t.port != 0 ? ":" + std::to_string(t.port) : "";
      out.hits.push_back(make_input(t.method, "https://" + t.host + port + t.path + "?q=1"));
      switch (i % 3) {
        case 0:  // unknown host with many labels: every suffix is probed
          out.misses.push_back(
              make_input("GET", "https://a.b.c.d.e.f.nohit" + std::to_string(i) + ".example.com/"));
          break;
        case 1:  // unknown host under a known domain
          out.misses.push_back(
              make_input("GET", "https://www.corp" + std::to_string(i % 53) + ".test/v1/x"));
          break;
        default:  // known host, a method and port nothing allows
          out.misses.push_back(make_input("DELETE", "https://" + t.host + ":9/nothing"));
          break;
      }
    }
    return out;
  }();
  return w;
}

// A policy directory in a temp dir, removed at exit.
struct PolicyDir {
  std::filesystem::path path;
  explicit PolicyDir(std::string_view policy, const json::object* data) {
    std::string pattern = (std::filesystem::temp_directory_path() / "pexi-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp failed");
    path = pattern;
    std::ofstream(path / "policy.rego") << policy;
    if (data != nullptr) {
      std::filesystem::create_directories(path / "bench");
      std::ofstream(path / "bench" / "data.json") << json::serialize(*data);
    }
  }
  ~PolicyDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::unique_ptr<pexi::policy::OpaEngine> start_opa(const std::filesystem::path& dir) {
  pexi::policy::OpaEngine::Options options;
  options.opa.policy_dir = dir.string();
  options.opa.timeout_ms = 5000;
  auto binary = pexi::policy::opa::find_opa_binary(std::nullopt);
  if (!binary) die(binary.error().message);
  options.managed.binary = *binary;
  auto redactor = std::make_shared<const pexi::audit::Redactor>(pexi::config::AuditConfig{},
                                                                std::vector<std::string>{});
  auto engine = pexi::policy::OpaEngine::create(std::move(options), std::move(redactor));
  if (!engine) die(engine.error().message + " " + engine.error().detail);
  return std::move(*engine);
}

pexi::policy::BuiltinEngine& builtin() {
  static auto engine = [] {
    auto created = pexi::policy::BuiltinEngine::create(workload().policy);
    if (!created) die(created.error().message);
    return std::move(*created);
  }();
  return *engine;
}

// The 1,000-rule OPA engine, checked against the builtin engine on every input first.
pexi::policy::OpaEngine& opa_rules() {
  static PolicyDir dir(kPolicy, &workload().data);
  static auto engine = [] {
    auto e = start_opa(dir.path);
    for (const auto* inputs : {&workload().hits, &workload().misses}) {
      for (const auto& in : *inputs) {
        const Decision a = builtin().decide(in);
        const Decision b = e->decide(in);
        if (a.allow != b.allow || (a.allow && a.rule != b.rule))
          die("OPA and builtin disagree on " + in.method + " " + in.url.href() + ": " + a.rule +
              " vs " + b.rule + " (" + b.reason + ")");
      }
    }
    return e;
  }();
  return *engine;
}

pexi::policy::OpaEngine& opa_floor() {
  static PolicyDir dir("package pexi\n\ndecision := {\"allow\": true, \"reason\": \"ok\"}\n",
                       nullptr);
  static auto engine = start_opa(dir.path);
  return *engine;
}

template <class Decide>
void run(benchmark::State& state, const std::vector<DecisionInput>& inputs, bool expect_allow,
         Decide&& decide) {
  std::vector<double> samples;
  samples.reserve(1 << 20);
  std::size_t i = 0;
  for (auto _ : state) {
    const DecisionInput& input = inputs[i++ % inputs.size()];
    const auto start = std::chrono::steady_clock::now();
    Decision d = decide(input);
    const auto stop = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(d);
    if (d.allow != expect_allow) {
      state.SkipWithError(("unexpected decision: " + d.reason).c_str());
      break;
    }
    samples.push_back(std::chrono::duration<double, std::nano>(stop - start).count());
  }
  if (samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    return samples[std::min(samples.size() - 1,
                            static_cast<std::size_t>(q * static_cast<double>(samples.size())))];
  };
  state.counters["p50_ns"] = at(0.50);
  state.counters["p99_ns"] = at(0.99);
  state.counters["max_ns"] = samples.back();
}

void BM_Builtin(benchmark::State& state, bool hits) {
  const Workload& w = workload();
  auto& engine = builtin();
  run(state, hits ? w.hits : w.misses, hits,
      [&](const DecisionInput& in) { return engine.decide(in); });
}

void BM_Opa(benchmark::State& state, bool hits) {
  const Workload& w = workload();
  auto& engine = opa_rules();
  run(state, hits ? w.hits : w.misses, hits,
      [&](const DecisionInput& in) { return engine.decide(in); });
}

void BM_OpaFloor(benchmark::State& state) {
  auto& engine = opa_floor();
  run(state, workload().hits, true, [&](const DecisionInput& in) { return engine.decide(in); });
}

BENCHMARK_CAPTURE(BM_Builtin, hit, true);
BENCHMARK_CAPTURE(BM_Builtin, miss, false);
BENCHMARK_CAPTURE(BM_Opa, hit, true);
BENCHMARK_CAPTURE(BM_Opa, miss, false);
BENCHMARK(BM_OpaFloor);

}  // namespace

BENCHMARK_MAIN();
