# Matching helpers shared by the example modules, with the builtin engine's semantics
# (docs/policy.md): host patterns, default ports and path prefixes.
package pexi.lib

# "example.com" matches exactly that host; "*.example.com" matches any subdomain at any
# depth, but not example.com itself.
host_matches(pattern, host) if pattern == host

host_matches(pattern, host) if {
	startswith(pattern, "*.")
	suffix := substring(pattern, 1, -1)
	endswith(host, suffix) # ".example.com": never the apex itself
}

default_ports := {"http": 80, "https": 443}

# No ports listed: the scheme's default port only. Otherwise one of the listed ports.
port_matches(ports, request) if {
	count(ports) == 0
	request.port == default_ports[request.scheme]
}

port_matches(ports, request) if request.port in ports

# "/v1" matches "/v1" and everything below "/v1/", but not "/v1x"; "/v1/" matches below it.
path_matches(prefix, path) if path == prefix

path_matches(prefix, path) if {
	endswith(prefix, "/")
	startswith(path, prefix)
}

path_matches(prefix, path) if {
	not endswith(prefix, "/")
	startswith(path, concat("", [prefix, "/"]))
}
