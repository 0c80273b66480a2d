# Host allowlist read from a JSON data file (hosts/data.json, loaded by OPA as data.hosts):
# any method, any path. Entries are host patterns ("example.com", "*.github.com", scheme's
# default port) or objects {"host": pattern, "ports": [port, ...], "max_response_bytes": n}
# (ports and the response cap optional; the cap can only lower [guardrails] max_response_bytes).
package pexi.hosts

import data.pexi.lib

entries contains {"host": entry, "ports": [], "limits": {}} if {
	some entry in data.hosts.allow
	is_string(entry)
}

entries contains {
	"host": entry.host,
	"ports": object.get(entry, "ports", []),
	"limits": object.filter(entry, ["max_response_bytes"]),
} if {
	some entry in data.hosts.allow
	is_object(entry)
}

# Both CONNECT tunnels and requests: the allowlist names hosts, not methods or paths.
allows contains object.union(
	{
		"rule": concat("", ["hosts:", entry.host]),
		"reason": sprintf("%s is on the host allowlist", [input.request.host]),
	},
	entry.limits,
) if {
	some entry in entries
	lib.host_matches(entry.host, input.request.host)
	lib.port_matches(entry.ports, input.request)
}
