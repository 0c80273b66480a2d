#pragma once
// Loader for the TSV case tables in tests/unit/net/data: one case per line, TAB-separated
// columns, '#' comments, and {TAB} {LF} {CR} {NUL} {xHH} escapes for bytes a text file cannot
// show. Rows are loaded at static-initialisation time so that each row becomes its own
// GoogleTest case (INSTANTIATE_TEST_SUITE_P).

#include <cstddef>
#include <fstream>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace pexi::net::test {

struct Row {
  std::string file;
  std::size_t line = 0;
  std::vector<std::string> cols;

  const std::string& col(std::size_t i) const {
    static const std::string empty;
    return i < cols.size() ? cols[i] : empty;
  }
};

inline void PrintTo(const Row& row, std::ostream* os) {
  *os << row.file << ":" << row.line << " [" << row.col(0) << "]";
}

inline std::string unescape(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '{') {
      const std::size_t close = in.find('}', i);
      if (close != std::string::npos) {
        const std::string token = in.substr(i + 1, close - i - 1);
        bool matched = true;
        if (token == "TAB") {
          out += '\t';
        } else if (token == "LF") {
          out += '\n';
        } else if (token == "CR") {
          out += '\r';
        } else if (token == "NUL") {
          out += '\0';
        } else if (token.size() == 3 && token[0] == 'x' &&
                   token.find_first_not_of("0123456789abcdefABCDEF", 1) == std::string::npos) {
          out += static_cast<char>(std::stoi(token.substr(1), nullptr, 16));
        } else {
          matched = false;
        }
        if (matched) {
          i = close;
          continue;
        }
      }
    }
    out += in[i];
  }
  return out;
}

// Throws (failing test registration loudly) when the file is missing or a row is malformed.
inline std::vector<Row> load_table(const std::string& name, std::size_t min_cols) {
  const std::string path = std::string(PEXI_TEST_DATA_DIR) + "/net/data/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<Row> rows;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    Row row{name, number, {}};
    std::size_t start = 0;
    while (true) {
      const std::size_t tab = line.find('\t', start);
      row.cols.push_back(unescape(line.substr(start, tab - start)));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    if (row.cols.size() < min_cols) {
      throw std::runtime_error(path + ":" + std::to_string(number) + ": too few columns");
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) throw std::runtime_error(path + ": no rows");
  return rows;
}

// Test names must be alphanumeric: "urls_tsv_L42".
inline std::string row_name(const Row& row) { return "L" + std::to_string(row.line); }

// Name generator for INSTANTIATE_TEST_SUITE_P (a lambda there would shadow gtest's `info`).
struct RowName {
  template <class ParamInfo>
  std::string operator()(const ParamInfo& param_info) const {
    return row_name(param_info.param);
  }
};

}  // namespace pexi::net::test
