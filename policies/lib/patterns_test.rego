package pexi.lib_test

import data.pexi.lib

test_host_exact if {
	lib.host_matches("example.com", "example.com")
	not lib.host_matches("example.com", "www.example.com")
	not lib.host_matches("example.com", "badexample.com")
}

test_host_wildcard_is_subdomains_only if {
	lib.host_matches("*.example.com", "a.example.com")
	lib.host_matches("*.example.com", "a.b.example.com")
	not lib.host_matches("*.example.com", "example.com")
	not lib.host_matches("*.example.com", "badexample.com")
}

test_default_ports if {
	lib.port_matches([], {"scheme": "https", "port": 443})
	lib.port_matches([], {"scheme": "http", "port": 80})
	not lib.port_matches([], {"scheme": "http", "port": 8080})
	not lib.port_matches([], {"scheme": "https", "port": 80})
}

test_listed_ports if {
	lib.port_matches([8080, 8443], {"scheme": "http", "port": 8080})
	not lib.port_matches([8080], {"scheme": "https", "port": 443})
}

test_path_prefix_boundaries if {
	lib.path_matches("/v1", "/v1")
	lib.path_matches("/v1", "/v1/")
	lib.path_matches("/v1", "/v1/messages")
	not lib.path_matches("/v1", "/v1x")
	not lib.path_matches("/v1", "/v")
	lib.path_matches("/v1/", "/v1/a")
	not lib.path_matches("/v1/", "/v1")
	lib.path_matches("/", "/anything")
}
