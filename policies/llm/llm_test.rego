package pexi.llm_test

import data.pexi.fixtures
import data.pexi.llm

messages := fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/messages")

test_messages_call_is_allowed_with_the_key_injected if {
	some a in llm.allows with input as messages
	a.rule == "llm-anthropic"
	a.inject_headers == {"x-api-key": {"env": "ANTHROPIC_API_KEY"}}
}

test_paths_below_a_route_are_allowed if {
	count(llm.allows) == 1 with input as fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/messages/count_tokens")
	count(llm.allows) == 1 with input as fixtures.request("GET", "https", "api.anthropic.com", 443, "/v1/models")
}

test_wrong_method_is_not_allowed if {
	count(llm.allows) == 0 with input as fixtures.request("GET", "https", "api.anthropic.com", 443, "/v1/messages")
	count(llm.allows) == 0 with input as fixtures.request("DELETE", "https", "api.anthropic.com", 443, "/v1/models")
}

test_other_paths_are_not_allowed if {
	count(llm.allows) == 0 with input as fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/messages-admin")
	count(llm.allows) == 0 with input as fixtures.request("POST", "https", "api.anthropic.com", 443, "/v1/files")
	count(llm.allows) == 0 with input as fixtures.request("POST", "https", "api.anthropic.com", 443, "/")
}

test_cleartext_and_other_ports_are_not_allowed if {
	count(llm.allows) == 0 with input as fixtures.request("POST", "http", "api.anthropic.com", 80, "/v1/messages")
	count(llm.allows) == 0 with input as fixtures.request("POST", "https", "api.anthropic.com", 8443, "/v1/messages")
}

test_tunnel_to_the_api_is_allowed_without_injection if {
	some a in llm.allows with input as fixtures.connect("api.anthropic.com", 443)
	a.rule == "llm-anthropic-tunnel"
	not a.inject_headers
}

test_api_location_comes_from_data if {
	moved := {"host": "llm.test", "port": 8443, "key_env": "LLM_KEY"}
	some a in llm.allows with input as fixtures.request("POST", "https", "llm.test", 8443, "/v1/messages")
		with data.llm.anthropic as moved
	a.inject_headers == {"x-api-key": {"env": "LLM_KEY"}}
}
