// Leaf minting cost for TLS interception (src/tls, docs/tls.md): a new host (leaf certificate
// signed by the CA plus its server SSL_CTX), a cached host, and OpenSSL's own building blocks
// measured in the same run (SSL_CTX_new, one ECDSA P-256 signature) to show where the time
// goes.
//
//   BUILD/bench/bench_tls_mint --benchmark_counters_tabular=true
//
// Results and the exact command are recorded in docs/tls.md.

#include "tls/ca.hpp"
#include "tls/leaf_minter.hpp"

#include <benchmark/benchmark.h>

#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using pexi::tls::CertificateAuthority;
using pexi::tls::LeafMinter;

[[noreturn]] void die(const std::string& what, const pexi::Error& error) {
  std::fprintf(stderr, "bench: %s: %s (%s)\n", what.c_str(), error.message.c_str(),
               error.detail.c_str());
  std::abort();
}

// A CA in a private temporary directory, removed at exit.
struct BenchCa {
  fs::path dir;
  std::unique_ptr<CertificateAuthority> ca;

  BenchCa() {
    std::string pattern = (fs::temp_directory_path() / "pexi-bench-tls-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir = pattern;
    auto loaded = CertificateAuthority::load_or_create(dir / "ca");
    if (!loaded) die("CA", loaded.error());
    ca = std::make_unique<CertificateAuthority>(std::move(*loaded));
  }
  ~BenchCa() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
  BenchCa(const BenchCa&) = delete;
  BenchCa& operator=(const BenchCa&) = delete;
};

const CertificateAuthority& bench_ca() {
  static BenchCa instance;
  return *instance.ca;
}

std::unique_ptr<LeafMinter> make_minter() {
  auto minter = LeafMinter::create(bench_ca());
  if (!minter) die("minter", minter.error());
  return std::move(*minter);
}

// Every iteration asks for a host never seen before: one full mint (certificate + context).
// The cache keeps its default size, so old contexts are evicted and freed as in a long run.
void BM_MintNewHost(benchmark::State& state) {
  static std::unique_ptr<LeafMinter> minter;
  static std::atomic<long> next_host{0};
  if (state.thread_index() == 0) minter = make_minter();
  for (auto _ : state) {
    state.PauseTiming();
    const std::string host = "h" + std::to_string(next_host++) + ".bench.test";
    state.ResumeTiming();
    auto context = minter->context_for(host);
    if (!context) die("mint", context.error());
    benchmark::DoNotOptimize(context->get());
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    state.counters["minted"] = static_cast<double>(minter->stats().minted);
  }
}
BENCHMARK(BM_MintNewHost)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MintNewHost)->Unit(benchmark::kMicrosecond)->Threads(2)->UseRealTime();

// The common case: a host seen before (cache hit, one mutex and one hash lookup). Also reports
// the heap held per cached context (glibc mallinfo2 before and after minting the hosts).
void BM_CachedHost(benchmark::State& state) {
  static std::unique_ptr<LeafMinter> minter;
  static std::vector<std::string> hosts;
  static double heap_per_context = 0;
  if (state.thread_index() == 0) {
    minter = make_minter();
    hosts.clear();
    for (int i = 0; i < 256; ++i) hosts.push_back("cached" + std::to_string(i) + ".bench.test");
    const std::size_t heap_before = ::mallinfo2().uordblks;
    for (const auto& host : hosts) (void)minter->context_for(host);
    heap_per_context = static_cast<double>(::mallinfo2().uordblks - heap_before) /
                       static_cast<double>(hosts.size());
  }
  std::size_t i = static_cast<std::size_t>(state.thread_index());
  for (auto _ : state) {
    auto context = minter->context_for(hosts[i++ % hosts.size()]);
    benchmark::DoNotOptimize(context);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) state.counters["heap_bytes_per_context"] = heap_per_context;
}
BENCHMARK(BM_CachedHost);
BENCHMARK(BM_CachedHost)->Threads(2)->UseRealTime();

// OpenSSL alone: creating and freeing an empty server context.
void BM_OpensslSslCtxNew(benchmark::State& state) {
  for (auto _ : state) {
    SSL_CTX* context = SSL_CTX_new(TLS_server_method());
    benchmark::DoNotOptimize(context);
    SSL_CTX_free(context);
  }
}
BENCHMARK(BM_OpensslSslCtxNew)->Unit(benchmark::kMicrosecond);

// OpenSSL alone: one ECDSA P-256 / SHA-256 signature over a certificate-sized message.
void BM_OpensslEcdsaP256Sign(benchmark::State& state) {
  pexi::tls::PkeyPtr key(EVP_EC_gen("P-256"));
  std::vector<unsigned char> message(400, 0x5a);
  std::vector<unsigned char> signature(128);
  for (auto _ : state) {
    std::unique_ptr<EVP_MD_CTX, pexi::tls::Free<EVP_MD_CTX_free>> md(EVP_MD_CTX_new());
    std::size_t length = signature.size();
    if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(md.get(), signature.data(), &length, message.data(), message.size()) != 1)
      std::abort();
    benchmark::DoNotOptimize(signature.data());
  }
}
BENCHMARK(BM_OpensslEcdsaP256Sign)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
