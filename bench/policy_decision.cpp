// Builtin policy decision latency with 10,000 rules (issue 2: p99 under 5 µs), beside a naive
// linear scan over the same rules measured in the same run.
//
// Every decide() call is timed on its own (steady_clock around the call, so each sample
// includes one clock read, about 20 ns here); the counters p50_ns, p99_ns and max_ns are
// computed from those samples. The builtin benchmarks also report p50_ratio / p99_ratio:
// the naive scan's percentile divided by the builtin engine's (registration order runs the
// naive benchmarks first).
//
//   BUILD/bench_policy_decision --benchmark_counters_tabular=true
//
// Results and the exact command used for docs/policy.md are recorded there.

#include "config/config.hpp"
#include "net/url.hpp"
#include "policy/builtin_engine.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using pexi::policy::Decision;
using pexi::policy::DecisionInput;

constexpr std::size_t kRules = 10'000;
constexpr std::size_t kAllowEntries = 2'000;
constexpr std::size_t kInputs = 4'096;

struct Workload {
  pexi::config::PolicyConfig policy;
  std::vector<DecisionInput> hits;
  std::vector<DecisionInput> misses;
};

DecisionInput make_input(std::string method, const std::string& url) {
  auto canonical = pexi::net::canonicalize(url);
  if (!canonical) {
    std::fprintf(stderr, "bench: bad URL %s: %s\n", url.c_str(), canonical.error().message.c_str());
    std::abort();
  }
  DecisionInput input;
  input.method = std::move(method);
  input.url = std::move(*canonical);
  return input;
}

// 2,000 `allow` entries and 8,000 rules; about half the hosts are "*.suffix" patterns, half
// the rules have paths, some methods and ports. Hits are derived from random rules; misses are
// unknown hosts (some with many labels, the suffix walk's worst case) and known hosts with a
// method or path no rule allows.
const Workload& workload() {
  static const Workload w = [] {
    Workload out;
    std::mt19937 random(42);
    const auto below = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
    };
    const std::vector<std::string> path_patterns = {
        "/v1/*", "/v2", "/repos/*/issues", "/static/", "/api/*/items/*", "/health"};
    const std::vector<std::string> path_hits = {"/v1/messages",         "/v2/models",
                                                "/repos/pexi/issues/7", "/static/app.js",
                                                "/api/x/items/3",       "/health"};
    struct Target {
      std::string host;    // a host the rule matches
      std::string method;  // a method it allows
      std::string path;    // a path it allows
      std::uint16_t port;  // 0 = default
    };
    std::vector<Target> targets;

    for (std::size_t i = 0; i < kAllowEntries; ++i) {
      if (i % 2 == 0) {
        out.policy.allow.push_back("svc" + std::to_string(i) + ".example" + std::to_string(i % 37) +
                                   ".com");
        targets.push_back({out.policy.allow.back(), "GET", "/", 0});
      } else {
        out.policy.allow.push_back("*.tenant" + std::to_string(i) + ".example.net");
        targets.push_back({"a.b.tenant" + std::to_string(i) + ".example.net", "POST", "/x", 0});
      }
    }
    for (std::size_t i = 0; out.policy.allow.size() + out.policy.rules.size() < kRules; ++i) {
      pexi::config::Rule rule;
      rule.name = "rule-" + std::to_string(i);
      Target target{"", "GET", "/", 0};
      if (below(2) == 0) {
        rule.hosts.push_back("api" + std::to_string(i) + ".corp" + std::to_string(i % 53) +
                             ".test");
        target.host = rule.hosts.back();
      } else {
        rule.hosts.push_back("*.zone" + std::to_string(i) + ".test");
        target.host = "node" + std::to_string(i) + ".zone" + std::to_string(i) + ".test";
      }
      if (below(4) == 0) rule.hosts.push_back("alt" + std::to_string(i) + ".corp.test");
      if (below(10) < 4) {
        rule.methods = {"GET", "POST"};
        target.method = below(2) == 0 ? "GET" : "POST";
      }
      if (below(2) == 0) {
        const std::size_t p = below(path_patterns.size());
        rule.paths = {path_patterns[p]};
        target.path = path_hits[p];
      }
      if (below(10) == 0) {
        rule.ports = {8443};
        target.port = 8443;
      }
      out.policy.rules.push_back(std::move(rule));
      targets.push_back(std::move(target));
    }

    for (std::size_t i = 0; i < kInputs; ++i) {
      const Target& t = targets[below(targets.size())];
      const std::string port = t.port != 0 ? ":" + std::to_string(t.port) : "";
      out.hits.push_back(make_input(t.method, "https://" + t.host + port + t.path));
      switch (i % 3) {
        case 0:  // unknown host, deep: every label is probed in the suffix index
          out.misses.push_back(make_input("GET", "https://a.b.c.d.e.f.nohit" + std::to_string(i) +
                                                     ".example" + std::to_string(i % 37) +
                                                     ".com/"));
          break;
        case 1:  // unknown host under a known domain suffix
          out.misses.push_back(
              make_input("GET", "https://www.corp" + std::to_string(i % 53) + ".test/v1/x"));
          break;
        default:  // a known host with a method or port nothing allows
          out.misses.push_back(make_input("DELETE", "https://" + t.host + ":9/nothing"));
          break;
      }
    }
    return out;
  }();
  return w;
}

// The obvious implementation: scan every rule in priority order.
class NaiveEngine {
 public:
  explicit NaiveEngine(const pexi::config::PolicyConfig& policy) {
    for (std::size_t i = 0; i < policy.allow.size(); ++i) {
      rules_.push_back({"allow[" + std::to_string(i) + "]", {policy.allow[i]}, {}, {}, {}, {}});
    }
    for (const auto& r : policy.rules) {
      rules_.push_back({r.name, r.hosts, r.methods, r.paths, r.ports, r.inject_headers});
    }
  }

  Decision decide(const DecisionInput& in) const {
    const std::uint16_t default_port = in.url.scheme == "https" ? 443 : 80;
    for (const Rule& r : rules_) {
      const bool host = std::any_of(r.hosts.begin(), r.hosts.end(), [&](const std::string& p) {
        if (p.starts_with("*.")) {
          const std::string_view suffix = std::string_view(p).substr(1);
          return in.url.host.size() > suffix.size() && in.url.host.ends_with(suffix);
        }
        return p == in.url.host;
      });
      if (!host) continue;
      if (r.ports.empty()
              ? in.url.port != default_port
              : std::find(r.ports.begin(), r.ports.end(), in.url.port) == r.ports.end()) {
        continue;
      }
      if (!r.methods.empty() &&
          std::find(r.methods.begin(), r.methods.end(), in.method) == r.methods.end()) {
        continue;
      }
      if (!r.paths.empty() &&
          std::none_of(r.paths.begin(), r.paths.end(), [&](const std::string& p) {
            return pexi::policy::path_matches(p, in.url.path);
          })) {
        continue;
      }
      return Decision::allowed(r.name, "allowed by rule " + r.name, r.inject);
    }
    return Decision::denied(pexi::Code::denied_by_policy, "no rule allows " + in.method + " " +
                                                              in.url.scheme + "://" +
                                                              in.url.authority() + in.url.path);
  }

 private:
  struct Rule {
    std::string name;
    std::vector<std::string> hosts;
    std::vector<std::string> methods;
    std::vector<std::string> paths;
    std::vector<std::uint16_t> ports;
    std::vector<pexi::config::InjectHeader> inject;
  };
  std::vector<Rule> rules_;
};

struct Percentiles {
  double p50 = 0;
  double p99 = 0;
};
std::map<std::string, Percentiles>& naive_results() {
  static std::map<std::string, Percentiles> results;
  return results;
}

// Times each call; reports percentiles and checks that hits allow and misses deny.
template <class Decide>
Percentiles run(benchmark::State& state, const std::vector<DecisionInput>& inputs,
                bool expect_allow, Decide&& decide) {
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
      state.SkipWithError("decision differs from the workload's expectation");
      break;
    }
    samples.push_back(std::chrono::duration<double, std::nano>(stop - start).count());
  }
  Percentiles p;
  if (samples.empty()) return p;
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double q) {
    return samples[std::min(samples.size() - 1,
                            static_cast<std::size_t>(q * static_cast<double>(samples.size())))];
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  state.counters["p50_ns"] = p.p50;
  state.counters["p99_ns"] = p.p99;
  state.counters["max_ns"] = samples.back();
  state.counters["rules"] = static_cast<double>(kRules);
  return p;
}

void BM_NaiveScan(benchmark::State& state, bool hits) {
  const Workload& w = workload();
  const NaiveEngine engine(w.policy);
  const Percentiles p = run(state, hits ? w.hits : w.misses, hits,
                            [&](const DecisionInput& in) { return engine.decide(in); });
  naive_results()[hits ? "hit" : "miss"] = p;
}

void BM_Builtin(benchmark::State& state, bool hits) {
  const Workload& w = workload();
  auto created = pexi::policy::BuiltinEngine::create(w.policy);
  if (!created) {
    state.SkipWithError(created.error().message.c_str());
    for (auto _ : state) {
    }
    return;
  }
  auto& engine = **created;
  const Percentiles p = run(state, hits ? w.hits : w.misses, hits,
                            [&](const DecisionInput& in) { return engine.decide(in); });
  const auto naive = naive_results().find(hits ? "hit" : "miss");
  if (naive != naive_results().end() && p.p50 > 0 && p.p99 > 0) {
    state.counters["p50_ratio"] = naive->second.p50 / p.p50;
    state.counters["p99_ratio"] = naive->second.p99 / p.p99;
  }
}

BENCHMARK_CAPTURE(BM_NaiveScan, hit, true);
BENCHMARK_CAPTURE(BM_NaiveScan, miss, false);
BENCHMARK_CAPTURE(BM_Builtin, hit, true);
BENCHMARK_CAPTURE(BM_Builtin, miss, false);

}  // namespace

BENCHMARK_MAIN();
