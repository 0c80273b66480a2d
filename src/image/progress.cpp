#include "image/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <fstream>

namespace pexi::image {

Progress::Progress(std::FILE* out, int total_steps, std::filesystem::path log)
    : out_(out), total_(total_steps), log_(std::move(log)) {
  tty_ = out_ != nullptr && ::isatty(::fileno(out_)) != 0;
}

std::string Progress::seconds(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

void Progress::begin(const std::string& label) {
  ++step_;
  label_ = "[" + std::to_string(step_) + "/" + std::to_string(total_) + "] " + label + "\u2026";
  started_ = std::chrono::steady_clock::now();
  if (out_ == nullptr) return;
  if (tty_) {
    tick();
  } else {
    // Without a TTY the line is completed by end(): one line per step in logs and CI output.
    std::fputs(label_.c_str(), out_);
    std::fflush(out_);
  }
}

void Progress::clear_line() { std::fputs("\r\033[K", out_); }

std::string Progress::last_log_line() const {
  std::ifstream in(log_, std::ios::binary);
  if (!in) return {};
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(in.tellg());
  const std::streamoff from = size > 1024 ? size - 1024 : 0;
  in.seekg(from);
  std::string tail(static_cast<std::size_t>(size - from), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r' || tail.back() == ' ')) {
    tail.pop_back();
  }
  const auto cut = tail.find_last_of("\r\n");
  std::string line = cut == std::string::npos ? tail : tail.substr(cut + 1);
  for (char& c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return line;
}

void Progress::tick() {
  if (out_ == nullptr || !tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(90)) return;
  last_draw_ = now;
  static constexpr const char* kFrames[] = {"|", "/", "-", "\\"};
  std::string line = label_ + " " + kFrames[spin_++ % 4] + " " + seconds(now - started_);
  std::size_t width = 80;
  winsize ws{};
  if (::ioctl(::fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
  const std::string tail = last_log_line();
  // Byte counts, not columns: close enough for ASCII tool output; the label is ours.
  if (!tail.empty() && line.size() + 4 < width) {
    line += "  " + tail.substr(0, width - line.size() - 3);
  }
  clear_line();
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
}

void Progress::end(const std::string& detail) {
  if (out_ == nullptr) return;
  const std::string elapsed = seconds(std::chrono::steady_clock::now() - started_);
  if (tty_) {
    clear_line();
    std::fputs(label_.c_str(), out_);
  }
  std::fprintf(out_, " %s%s%s\n", detail.c_str(), detail.empty() ? "" : ", ", elapsed.c_str());
  std::fflush(out_);
}

void Progress::failed() {
  if (out_ == nullptr) return;
  const std::string elapsed = seconds(std::chrono::steady_clock::now() - started_);
  if (tty_) {
    clear_line();
    std::fputs(label_.c_str(), out_);
  }
  std::fprintf(out_, " failed after %s\n", elapsed.c_str());
  std::fflush(out_);
}

void Progress::note(const std::string& line) {
  if (out_ == nullptr) return;
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

}  // namespace pexi::image
