#pragma once
// pexi's documented exit codes (docs/cli.md).

namespace pexi::cli {

inline constexpr int kOk = 0;
inline constexpr int kFailure = 1;  // the command ran and the answer is "no" (deny, bad chain)
                                    // or a runtime failure
inline constexpr int kUsage = 2;    // bad flags, bad config
inline constexpr int kInterrupted = 130;

}  // namespace pexi::cli
