package pexi_test

import data.pexi
import data.pexi.fixtures

test_default_is_deny_with_a_reason_without_query if {
	evil := object.union(
		fixtures.request("GET", "https", "evil.test", 443, "/a"),
		{"request": {"url": "https://evil.test/a?token=secret", "query": "token=secret"}},
	)
	pexi.decision == {"allow": false, "reason": "no rule allows GET https://evil.test/a"} with input as evil
}

test_allow_names_the_rule if {
	d := pexi.decision with input as fixtures.request("GET", "https", "example.com", 443, "/")
	d == {"allow": true, "rule": "hosts:example.com", "reason": "example.com is on the host allowlist"}
}

test_llm_allow_carries_the_injection if {
	d := pexi.decision with input as fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/messages")
	d.allow
	d.rule == "llm-anthropic"
	d.inject_headers == {"x-api-key": {"env": "ANTHROPIC_API_KEY"}}
}

test_denial_wins_over_allows if {
	d := pexi.decision with input as fixtures.in_sandbox(fixtures.request("GET", "https", "example.com", 443, "/"), "quarantine")
	d == {"allow": false, "rule": "sandbox-quarantine", "reason": "sandbox quarantine is quarantined: no network access"}
}

test_business_hours_override_the_allowlist if {
	push := fixtures.request("POST", "https", "github.com", 443, "/o/r.git/git-receive-pack")
	open := pexi.decision with input as push with time.now_ns as fixtures.monday_10_berlin
	open.allow
	d := pexi.decision with input as push with time.now_ns as fixtures.saturday_10_berlin
	d.allow == false
	d.rule == "github-business-hours"
}

test_sandbox_extra_hosts if {
	ghcr := fixtures.request("GET", "https", "ghcr.io", 443, "/v2/")
	in_ci := pexi.decision with input as fixtures.in_sandbox(ghcr, "ci")
	in_ci.allow
	outside := pexi.decision with input as ghcr
	not outside.allow
}

test_several_allows_pick_the_smallest_rule_name if {
	both := {"hosts": {"allow": ["github.com", "*.github.com", "api.github.com"]}}
	d := pexi.decision with input as fixtures.request("GET", "https", "api.github.com", 443, "/") with data.hosts as both.hosts
	d.rule == "hosts:*.github.com"
}

test_every_decision_fits_the_result_schema if {
	inputs := [
		fixtures.request("GET", "https", "evil.test", 443, "/"),
		fixtures.request("GET", "https", "example.com", 443, "/"),
		fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/messages"),
		fixtures.connect("api.anthropic.com", 443),
		fixtures.in_sandbox(fixtures.request("GET", "https", "example.com", 443, "/"), "quarantine"),
	]
	every doc in inputs {
		d := pexi.decision with input as doc
		is_boolean(d.allow)
		is_string(d.reason)
		every key, _ in d {
			key in {"allow", "reason", "rule", "inject_headers", "max_response_bytes"}
		}
	}
}
