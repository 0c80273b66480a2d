#include "image/modules.hpp"

#include <algorithm>

namespace pexi::image {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Calls each(line) for every line of text.
template <class F>
void for_each_line(std::string_view text, F&& each) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    each(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

enum class Mark { none, visiting, done };

class Orderer {
 public:
  explicit Orderer(const ModuleIndex& index) : index_(index) {}

  Result<void> visit(const std::string& name, const std::string& wanted_by) {
    Mark& mark = marks_[name];
    if (mark == Mark::done) return {};
    if (mark == Mark::visiting) {
      return fail(Code::config_error, "kernel module dependency cycle through " + name);
    }
    const std::string* path = index_.path_of(name);
    if (path == nullptr) {
      return fail(Code::config_error,
                  "kernel module " + name +
                      (wanted_by.empty() ? "" : " (needed by " + wanted_by + ")") +
                      " is neither in modules.dep nor built into the kernel");
    }
    mark = Mark::visiting;
    const auto* deps = index_.dependencies(name);
    // depmod lists dependencies so that the last one is loaded first.
    for (auto it = deps->rbegin(); it != deps->rend(); ++it) {
      PEXI_TRY(visit(module_name(*it), name));
    }
    marks_[name] = Mark::done;
    order_.push_back(KernelModule{name, *path});
    return {};
  }

  std::vector<KernelModule> take() { return std::move(order_); }

 private:
  const ModuleIndex& index_;
  std::map<std::string, Mark> marks_;
  std::vector<KernelModule> order_;
};

}  // namespace

std::string module_name(std::string_view path) {
  const auto slash = path.rfind('/');
  if (slash != std::string_view::npos) path.remove_prefix(slash + 1);
  for (std::string_view suffix : {".ko.xz", ".ko.zst", ".ko.gz", ".ko"}) {
    if (path.size() > suffix.size() && path.substr(path.size() - suffix.size()) == suffix) {
      path.remove_suffix(suffix.size());
      break;
    }
  }
  std::string name(path);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

Result<ModuleIndex> ModuleIndex::parse(std::string_view modules_dep) {
  ModuleIndex index;
  std::size_t line_number = 0;
  Result<void> status;
  for_each_line(modules_dep, [&](std::string_view raw) {
    ++line_number;
    if (!status) return;
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') return;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || trim(line.substr(0, colon)).empty()) {
      status = fail(Code::config_error,
                    "modules.dep line " + std::to_string(line_number) + ": expected 'PATH: DEPS'");
      return;
    }
    Entry entry;
    entry.path = std::string(trim(line.substr(0, colon)));
    std::string_view rest = line.substr(colon + 1);
    while (!rest.empty()) {
      rest = trim(rest);
      const auto space = rest.find_first_of(" \t");
      const std::string_view dep = rest.substr(0, space);
      if (!dep.empty()) entry.deps.emplace_back(dep);
      rest = space == std::string_view::npos ? std::string_view() : rest.substr(space);
    }
    index.modules_[module_name(entry.path)] = std::move(entry);
  });
  if (!status) return status.error();
  return index;
}

const std::vector<std::string>* ModuleIndex::dependencies(std::string_view name) const {
  auto it = modules_.find(name);
  return it == modules_.end() ? nullptr : &it->second.deps;
}

const std::string* ModuleIndex::path_of(std::string_view name) const {
  auto it = modules_.find(name);
  return it == modules_.end() ? nullptr : &it->second.path;
}

std::set<std::string, std::less<>> parse_modules_builtin(std::string_view text) {
  std::set<std::string, std::less<>> names;
  for_each_line(text, [&](std::string_view line) {
    line = trim(line);
    if (!line.empty() && line.front() != '#') names.insert(module_name(line));
  });
  return names;
}

Result<std::vector<KernelModule>> load_order(const ModuleIndex& index,
                                             const std::vector<std::string>& roots,
                                             const std::set<std::string, std::less<>>& builtin) {
  Orderer orderer(index);
  for (const auto& root : roots) {
    const std::string name = module_name(root);
    if (builtin.count(name) != 0 && index.path_of(name) == nullptr) continue;
    PEXI_TRY(orderer.visit(name, ""));
  }
  return orderer.take();
}

}  // namespace pexi::image
