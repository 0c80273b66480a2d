#pragma once
// Parsing helpers shared by the config unit tests.

#include "config/config.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pexi::config::testing {

// The parsed config; a test failure (and an empty Config) when it does not parse.
inline Config parse_ok(std::string_view text) {
  auto config = parse(text, "t.toml");
  EXPECT_TRUE(config) << config.error().message;
  return config ? *config : Config{};
}

// The error message when `text` is refused (a config_error, on one line); a test failure when it
// parses.
inline std::string parse_error(std::string_view text) {
  auto config = parse(text, "t.toml");
  EXPECT_FALSE(config) << "parsed unexpectedly:\n" << text;
  if (config) return {};
  EXPECT_EQ(config.error().code, Code::config_error);
  EXPECT_EQ(config.error().message.find('\n'), std::string::npos);
  return config.error().message;
}

}  // namespace pexi::config::testing
