#pragma once
// The build's progress on the terminal: one line per step with its elapsed time,
//   [2/6] kernel 6.1.0-56-amd64… 19 modules, 2.8 s
// and, on a TTY only, a spinner with the last line of the build log while a step runs.
// Tools' own output never reaches the terminal; it goes to the build log.
//
// Thread-safety: one Progress per build, used from the building thread only.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

namespace pexi::image {

class Progress {
 public:
  // `out` may be null (silent). `log` is the file whose last line the spinner shows.
  Progress(std::FILE* out, int total_steps, std::filesystem::path log);

  void begin(const std::string& label);
  void tick();                               // redraws the spinner (TTY only)
  void end(const std::string& detail = {});  // "… DETAIL, 13.2 s"
  void failed();                             // "… failed after 13.2 s"
  void note(const std::string& line);        // a plain line

  static std::string seconds(std::chrono::steady_clock::duration d);

 private:
  std::string last_log_line() const;
  void clear_line();

  std::FILE* out_;
  bool tty_ = false;
  int total_ = 0;
  int step_ = 0;
  std::string label_;
  std::filesystem::path log_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_draw_;
  unsigned spin_ = 0;
};

}  // namespace pexi::image
