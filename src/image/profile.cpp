// Profile TOML -> Profile: one strict pass. toml++ (the Debian build) only ships its throwing
// parser, so parse_profile() catches toml::parse_error at this boundary.

#include "image/profile.hpp"

#include "image/builtin_profiles.hpp"

#include <toml++/toml.h>
#include <boost/json.hpp>

#include <algorithm>
#include <initializer_list>
#include <map>

namespace pexi::image {
namespace {

constexpr std::size_t kMaxDepth = 8;  // `extends` chains longer than this are a mistake

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

// Debian policy §5.6.1: lower-case letters, digits, + - . ; at least two characters, starting
// with an alphanumeric. Also keeps package names inert inside a shell command line.
bool valid_package(std::string_view name) {
  if (name.size() < 2 || !is_lower_alnum(name.front())) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_lower_alnum(c) || c == '+' || c == '-' || c == '.'; });
}

bool valid_module(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(),
                                      [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

bool valid_profile_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && is_lower_alnum(name.front()) &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return is_lower_alnum(c) || c == '-'; });
}

bool valid_env_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

bool has_control(std::string_view text, bool allow_newline) {
  return std::any_of(text.begin(), text.end(), [&](char c) {
    const auto u = static_cast<unsigned char>(c);
    if (allow_newline && (c == '\n' || c == '\t')) return false;
    return u < 0x20 || u == 0x7f;
  });
}

// Absolute, normalised, no "." or ".." segments, no empty segments, not "/" itself.
bool valid_image_path(std::string_view path) {
  if (path.size() < 2 || path.front() != '/' || path.back() == '/') return false;
  if (has_control(path, false)) return false;
  std::size_t start = 1;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    start = end + 1;
  }
  return true;
}

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "another type";
  }
}

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  Error error_at(const toml::source_region& where, std::string_view path,
                 std::string_view what) const {
    std::string message(source_);
    if (where.begin) {
      message += ':' + std::to_string(where.begin.line) + ':' + std::to_string(where.begin.column);
    }
    message += ": ";
    message += path.empty() ? std::string_view("invalid TOML") : path;
    message += ": ";
    message += what;
    return Error{Code::config_error, std::move(message)};
  }

  Result<Profile> document(const toml::table& root) {
    Profile p;
    PEXI_TRY(check_keys(root, "",
                        {"name", "description", "extends", "packages", "kernel_package",
                         "kernel_modules", "environment", "file", "step"}));
    const toml::node* name = root.get("name");
    if (name == nullptr) return error_at(root.source(), "name", "missing");
    PEXI_TRY_ASSIGN(p.name, string_of(*name, "name"));
    if (!valid_profile_name(p.name)) {
      return error_at(name->source(), "name", "use lower-case letters, digits and '-'");
    }
    if (const auto* n = root.get("description")) {
      PEXI_TRY_ASSIGN(p.description, string_of(*n, "description"));
    }
    if (const auto* n = root.get("extends")) {
      PEXI_TRY_ASSIGN(p.extends, string_of(*n, "extends"));
      if (!valid_profile_name(p.extends)) return error_at(n->source(), "extends", "bad name");
    }
    if (const auto* n = root.get("packages")) {
      PEXI_TRY_ASSIGN(p.packages,
                      names_of(*n, "packages", valid_package, "not a Debian package name"));
    }
    if (const auto* n = root.get("kernel_package")) {
      PEXI_TRY_ASSIGN(p.kernel_package, string_of(*n, "kernel_package"));
      if (!valid_package(p.kernel_package)) {
        return error_at(n->source(), "kernel_package", "not a Debian package name");
      }
    }
    if (const auto* n = root.get("kernel_modules")) {
      PEXI_TRY_ASSIGN(p.kernel_modules,
                      names_of(*n, "kernel_modules", valid_module, "not a module name"));
    }
    if (const auto* n = root.get("environment")) PEXI_TRY(environment(*n, p));
    if (const auto* n = root.get("file")) PEXI_TRY(files(*n, p));
    if (const auto* n = root.get("step")) PEXI_TRY(steps(*n, p));
    return p;
  }

 private:
  Error wrong_type(const toml::node& node, std::string_view path, std::string_view expected) const {
    return error_at(node.source(), path,
                    "expected " + std::string(expected) + ", got " + std::string(type_name(node)));
  }

  Result<void> check_keys(const toml::table& table, std::string_view path,
                          std::initializer_list<std::string_view> known) const {
    for (auto&& [key, value] : table) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      std::string where(path);
      if (!where.empty()) where += '.';
      where += key.str();
      return error_at(key.source(), where, "unknown key");
    }
    return {};
  }

  Result<std::string> string_of(const toml::node& node, std::string_view path,
                                bool multiline = false) const {
    const auto* value = node.as_string();
    if (value == nullptr) return wrong_type(node, path, "a string");
    const std::string& text = value->get();
    if (text.empty()) return error_at(node.source(), path, "must not be empty");
    if (has_control(text, multiline)) {
      return error_at(node.source(), path, "control characters are not allowed");
    }
    return text;
  }

  template <class Valid>
  Result<std::vector<std::string>> names_of(const toml::node& node, std::string_view path,
                                            Valid valid, std::string_view complaint) const {
    const auto* array = node.as_array();
    if (array == nullptr) return wrong_type(node, path, "an array");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string item_path = std::string(path) + '[' + std::to_string(i) + ']';
      PEXI_TRY_ASSIGN(std::string name, string_of(*array->get(i), item_path));
      if (!valid(name)) return error_at(array->get(i)->source(), item_path, complaint);
      if (std::find(out.begin(), out.end(), name) != out.end()) {
        return error_at(array->get(i)->source(), item_path, "listed twice");
      }
      out.push_back(std::move(name));
    }
    return out;
  }

  Result<void> environment(const toml::node& node, Profile& p) const {
    const auto* table = node.as_table();
    if (table == nullptr) return wrong_type(node, "environment", "a table");
    for (auto&& [key, value] : *table) {
      const std::string path = "environment." + std::string(key.str());
      if (!valid_env_name(key.str())) return error_at(key.source(), path, "not a variable name");
      PEXI_TRY_ASSIGN(std::string text, string_of(value, path));
      // /etc/environment has no quoting rules worth trusting: keep values plain.
      if (text.find_first_of("\"'\\$`") != std::string::npos) {
        return error_at(value.source(), path, "quotes, '\\', '$' and '`' are not allowed");
      }
      p.environment.emplace_back(std::string(key.str()), std::move(text));
    }
    std::sort(p.environment.begin(), p.environment.end());
    return {};
  }

  Result<void> files(const toml::node& node, Profile& p) const {
    const auto* array = node.as_array();
    if (array == nullptr) return wrong_type(node, "file", "an array of tables ([[file]])");
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string path = "file[" + std::to_string(i) + ']';
      const auto* table = array->get(i)->as_table();
      if (table == nullptr) return wrong_type(*array->get(i), path, "a table");
      PEXI_TRY(check_keys(*table, path, {"path", "content", "mode"}));
      ProfileFile f;
      const auto* where = table->get("path");
      const auto* content = table->get("content");
      if (where == nullptr || content == nullptr) {
        return error_at(table->source(), path, "needs `path` and `content`");
      }
      PEXI_TRY_ASSIGN(f.path, string_of(*where, path + ".path"));
      if (!valid_image_path(f.path)) {
        return error_at(where->source(), path + ".path", "must be an absolute, normalised path");
      }
      const auto* text = content->as_string();
      if (text == nullptr) return wrong_type(*content, path + ".content", "a string");
      f.content = text->get();
      if (const auto* mode = table->get("mode")) {
        PEXI_TRY_ASSIGN(const std::string octal, string_of(*mode, path + ".mode"));
        unsigned value = 0;
        bool ok = octal.size() <= 4;
        for (char c : octal) {
          ok = ok && c >= '0' && c <= '7';
          value = value * 8 + static_cast<unsigned>(c - '0');
        }
        if (!ok) return error_at(mode->source(), path + ".mode", "an octal mode like \"0644\"");
        f.mode = value;
      }
      for (const auto& other : p.files) {
        if (other.path == f.path) return error_at(where->source(), path + ".path", "listed twice");
      }
      p.files.push_back(std::move(f));
    }
    return {};
  }

  Result<void> steps(const toml::node& node, Profile& p) const {
    const auto* array = node.as_array();
    if (array == nullptr) return wrong_type(node, "step", "an array of tables ([[step]])");
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string path = "step[" + std::to_string(i) + ']';
      const auto* table = array->get(i)->as_table();
      if (table == nullptr) return wrong_type(*array->get(i), path, "a table");
      PEXI_TRY(check_keys(*table, path, {"name", "run", "on_host"}));
      ProfileStep s;
      const auto* name = table->get("name");
      const auto* run = table->get("run");
      if (name == nullptr || run == nullptr) {
        return error_at(table->source(), path, "needs `name` and `run`");
      }
      PEXI_TRY_ASSIGN(s.name, string_of(*name, path + ".name"));
      PEXI_TRY_ASSIGN(s.run, string_of(*run, path + ".run", true));
      if (const auto* host = table->get("on_host")) {
        const auto* flag = host->as_boolean();
        if (flag == nullptr) return wrong_type(*host, path + ".on_host", "a boolean");
        s.on_host = flag->get();
      }
      p.steps.push_back(std::move(s));
    }
    return {};
  }

  std::string_view source_;
};

template <class T, class Same>
void merge_replacing(std::vector<T>& into, const std::vector<T>& from, Same same) {
  for (const auto& item : from) {
    auto it = std::find_if(into.begin(), into.end(), [&](const T& x) { return same(x, item); });
    if (it != into.end()) {
      *it = item;
    } else {
      into.push_back(item);
    }
  }
}

Result<Profile> resolve(std::string_view name, std::size_t depth) {
  if (depth > kMaxDepth) {
    return fail(Code::config_error, "profile `extends` chain too long at " + std::string(name));
  }
  const auto sources = builtin_profile_sources();
  auto it = std::find_if(sources.begin(), sources.end(),
                         [&](const BuiltinProfileSource& s) { return s.name == name; });
  if (it == sources.end()) {
    std::string known;
    for (const auto& s : sources) known += (known.empty() ? "" : ", ") + std::string(s.name);
    return fail(Code::usage_error,
                "unknown image profile '" + std::string(name) + "' (known: " + known + ")");
  }
  PEXI_TRY_ASSIGN(Profile profile,
                  parse_profile(it->toml, "profiles/" + std::string(it->name) + ".toml"));
  if (profile.name != name) {
    return fail(Code::internal_error,
                "built-in profile " + std::string(name) + " names itself " + profile.name);
  }
  if (profile.extends.empty()) return profile;
  PEXI_TRY_ASSIGN(Profile parent, resolve(profile.extends, depth + 1));
  return merge_profiles(parent, profile);
}

boost::json::array strings_json(const std::vector<std::string>& items) {
  boost::json::array out;
  for (const auto& s : items) out.emplace_back(s);
  return out;
}

}  // namespace

Result<Profile> parse_profile(std::string_view toml_text, std::string_view source_name) {
  Parser parser(source_name);
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    return parser.error_at(e.source(), "", e.description());
  }
  return parser.document(root);
}

Profile merge_profiles(const Profile& parent, const Profile& child) {
  Profile out = parent;
  out.name = child.name;
  out.description = child.description;
  out.extends = child.extends;
  for (const auto& p : child.packages) {
    if (std::find(out.packages.begin(), out.packages.end(), p) == out.packages.end()) {
      out.packages.push_back(p);
    }
  }
  if (!child.kernel_package.empty()) out.kernel_package = child.kernel_package;
  for (const auto& m : child.kernel_modules) {
    if (std::find(out.kernel_modules.begin(), out.kernel_modules.end(), m) ==
        out.kernel_modules.end()) {
      out.kernel_modules.push_back(m);
    }
  }
  merge_replacing(out.environment, child.environment,
                  [](const auto& a, const auto& b) { return a.first == b.first; });
  std::sort(out.environment.begin(), out.environment.end());
  merge_replacing(out.files, child.files,
                  [](const ProfileFile& a, const ProfileFile& b) { return a.path == b.path; });
  out.steps.insert(out.steps.end(), child.steps.begin(), child.steps.end());
  return out;
}

Result<Profile> builtin_profile(std::string_view name) {
  PEXI_TRY_ASSIGN(Profile profile, resolve(name, 0));
  if (profile.kernel_package.empty()) {
    return fail(Code::config_error, "profile " + profile.name + " names no kernel_package");
  }
  return profile;
}

std::vector<std::string> builtin_profile_names() {
  std::vector<std::string> names;
  for (const auto& s : builtin_profile_sources()) names.emplace_back(s.name);
  return names;
}

std::string canonical_json(const Profile& profile) {
  // Field order is fixed here (boost::json::object keeps insertion order), so equal profiles
  // always serialise to equal bytes.
  boost::json::object o;
  o["name"] = profile.name;
  o["description"] = profile.description;
  o["extends"] = profile.extends;
  o["packages"] = strings_json(profile.packages);
  o["kernel_package"] = profile.kernel_package;
  o["kernel_modules"] = strings_json(profile.kernel_modules);
  boost::json::array env;
  for (const auto& [k, v] : profile.environment) env.push_back(boost::json::array{k, v});
  o["environment"] = std::move(env);
  boost::json::array files;
  for (const auto& f : profile.files) {
    files.push_back(
        boost::json::object{{"path", f.path}, {"mode", f.mode}, {"content", f.content}});
  }
  o["files"] = std::move(files);
  boost::json::array steps;
  for (const auto& s : profile.steps) {
    steps.push_back(boost::json::object{{"name", s.name}, {"run", s.run}, {"on_host", s.on_host}});
  }
  o["steps"] = std::move(steps);
  return boost::json::serialize(o);
}

}  // namespace pexi::image
