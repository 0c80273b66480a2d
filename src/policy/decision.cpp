#include "policy/decision.hpp"

namespace pexi::policy {

Decision Decision::allowed(std::string rule, std::string reason,
                           std::vector<config::InjectHeader> inject) {
  Decision d;
  d.allow = true;
  d.code = Code::denied_by_policy;  // unused when allowed
  d.rule = std::move(rule);
  d.reason = std::move(reason);
  d.inject = std::move(inject);
  return d;
}

Decision Decision::denied(Code code, std::string reason, std::string rule) {
  Decision d;
  d.allow = false;
  d.code = code;
  d.rule = std::move(rule);
  d.reason = std::move(reason);
  return d;
}

}  // namespace pexi::policy
