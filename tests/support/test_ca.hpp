#pragma once
// A certificate authority generated at runtime for tests (OpenSSL, P-256 keys), so that no key
// material is checked in and every test run trusts only what it created.
//
//   const auto& ca = pexi::test::TestCa::shared();
//   config.fetch.extra_ca = {ca.ca_pem_path().string()};   // trust it in pexi
//   auto leaf = ca.issue_leaf({"pinned.test"});             // serve as
//   localhost/127.0.0.1/::1/pinned.test
//
// Thread-safety: all const members may be called from any thread.

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace pexi::test {

class TestCa {
 public:
  // A fresh CA whose files live in a private temp dir removed with it.
  explicit TestCa(std::string common_name = "pexi test CA");
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  // The process-wide CA most tests trust; created on first use, lives until exit.
  static const TestCa& shared();

  const std::string& ca_pem() const noexcept { return ca_pem_; }
  const std::filesystem::path& ca_pem_path() const noexcept { return ca_pem_path_; }

  struct Leaf {
    std::string cert_pem;  // the leaf only (the CA is trusted separately)
    std::string key_pem;
    std::filesystem::path cert_path;
    std::filesystem::path key_path;
  };
  // A server certificate valid for localhost, 127.0.0.1, ::1 and `extra_names`. Names that parse
  // as IP addresses become IP SANs, others DNS SANs. Throws std::runtime_error on failure.
  Leaf issue_leaf(const std::vector<std::string>& extra_names = {}) const;

 private:
  struct Key;
  TempDir dir_;
  std::unique_ptr<Key> key_;
  std::string ca_pem_;
  std::filesystem::path ca_pem_path_;
  mutable std::atomic<unsigned> next_serial_{2};
};

}  // namespace pexi::test
