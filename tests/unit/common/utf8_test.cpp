#include "common/utf8.hpp"

#include <gtest/gtest.h>

namespace pexi {
namespace {

struct TerminalCase {
  const char* name;
  std::string input;
  bool keep_newlines;
  std::string expected;
};

class ForTerminal : public ::testing::TestWithParam<TerminalCase> {};

TEST_P(ForTerminal, ReplacesWhatATerminalWouldInterpret) {
  EXPECT_EQ(for_terminal(GetParam().input, GetParam().keep_newlines), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ForTerminal,
    ::testing::Values(
        TerminalCase{"plain", "Kernel panic - not syncing", false, "Kernel panic - not syncing"},
        TerminalCase{"csi_escape", "a\x1b[2Jb", false, "a?[2Jb"},
        TerminalCase{"osc_title", "\x1b]0;pwned\x07", false, "?]0;pwned?"},
        TerminalCase{"c1_csi",
                     "x\xC2\x9B"
                     "31m",
                     false, "x?31m"},
        TerminalCase{"del_and_cr", "a\x7f\rb", false, "a??b"},
        TerminalCase{"newline_dropped", "a\nb", false, "a?b"},
        TerminalCase{"newline_kept", "a\nb", true, "a\nb"},
        TerminalCase{"utf8_kept", "caf\xC3\xA9 \xE2\x9C\x93", false, "caf\xC3\xA9 \xE2\x9C\x93"},
        TerminalCase{"nul", std::string("a\0b", 3), false, "a?b"}),
    [](const auto& test) { return std::string(test.param.name); });

}  // namespace
}  // namespace pexi
