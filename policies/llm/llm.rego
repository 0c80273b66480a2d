# Method and path rules for an LLM API, with the API key injected by pexi: the sandbox never
# holds the key, pexi sets x-api-key from the host's environment variable on the way out.
# Where the API is (host, port, key variable) comes from llm/data.json (data.llm).
package pexi.llm

import data.pexi.lib

api := data.llm.anthropic

# The calls an agent needs, nothing else (no file uploads, no batches, no admin API).
routes := [
	{"method": "POST", "path": "/v1/messages"},
	{"method": "GET", "path": "/v1/models"},
]

on_api if {
	input.request.scheme == "https"
	input.request.host == api.host
	input.request.port == api.port
}

# CONNECT (pexi proxy): the tunnel to the API is allowed; every request inside it is decided
# again with its method and path.
allows contains {
	"rule": "llm-anthropic-tunnel",
	"reason": "tunnel to the Anthropic API",
} if {
	input.action == "pep.http.connect"
	on_api
}

allows contains {
	"rule": "llm-anthropic",
	"reason": sprintf("%s %s is an allowed Anthropic API call", [input.request.method, input.request.path]),
	"inject_headers": {"x-api-key": {"env": api.key_env}},
} if {
	input.action == "pep.http.request"
	on_api
	some route in routes
	input.request.method == route.method
	lib.path_matches(route.path, input.request.path)
}
