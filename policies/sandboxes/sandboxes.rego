# Per-sandbox rules: input.sandbox is the sandbox's name (`pexi pep serve --sandbox NAME`),
# or null outside a VM, where nothing here applies.
package pexi.sandboxes

import data.pexi.lib

# Hosts some sandboxes may reach besides the common allowlist (default ports).
extra_hosts := {
	"ci": ["ghcr.io", "registry-1.docker.io", "*.docker.io"],
	"docs": ["docs.python.org", "*.readthedocs.io"],
}

# No network at all, whatever other modules allow.
quarantined := {"quarantine"}

# Reads only: GET and HEAD (and tunnels, whose requests are decided one by one).
read_only := {"review"}

allows contains {
	"rule": concat("", ["sandbox:", input.sandbox, ":", pattern]),
	"reason": sprintf("sandbox %s may reach %s", [input.sandbox, input.request.host]),
} if {
	some pattern in extra_hosts[input.sandbox]
	lib.host_matches(pattern, input.request.host)
	lib.port_matches([], input.request)
}

denials contains {
	"rule": "sandbox-quarantine",
	"reason": sprintf("sandbox %s is quarantined: no network access", [input.sandbox]),
} if {
	input.sandbox in quarantined
}

denials contains {
	"rule": "sandbox-read-only",
	"reason": sprintf("sandbox %s may only read (GET, HEAD), not %s", [input.sandbox, input.request.method]),
} if {
	input.sandbox in read_only
	input.action == "pep.http.request"
	not input.request.method in {"GET", "HEAD"}
}
