package pexi.hosts_test

import data.pexi.fixtures
import data.pexi.hosts

test_listed_host_is_allowed_with_any_method_and_path if {
	some a in hosts.allows with input as fixtures.request("DELETE", "https", "example.com", 443, "/x/y")
	a.rule == "hosts:example.com"
}

test_wildcard_entry if {
	some a in hosts.allows with input as fixtures.request("GET", "https", "api.github.com", 443, "/")
	a.rule == "hosts:*.github.com"
}

test_apex_needs_its_own_entry if {
	count(hosts.allows) == 0 with input as fixtures.request("GET", "https", "www.pypi.org", 443, "/")
}

test_unlisted_host_gets_nothing if {
	count(hosts.allows) == 0 with input as fixtures.request("GET", "https", "evil.test", 443, "/")
}

test_string_entries_use_the_default_port_only if {
	count(hosts.allows) == 0 with input as fixtures.request("GET", "http", "example.com", 8080, "/")
	count(hosts.allows) == 1 with input as fixtures.request("GET", "http", "example.com", 80, "/")
}

test_object_entries_name_their_ports if {
	count(hosts.allows) == 1 with input as fixtures.request("GET", "http", "registry.internal.example", 5000, "/v2/")
	count(hosts.allows) == 0 with input as fixtures.request("GET", "https", "registry.internal.example", 443, "/v2/")
}

test_connect_to_a_listed_host if {
	count(hosts.allows) == 1 with input as fixtures.connect("github.com", 443)
	count(hosts.allows) == 0 with input as fixtures.connect("github.com", 22)
}

test_data_file_drives_the_list if {
	some a in hosts.allows with input as fixtures.request("GET", "https", "new.test", 443, "/")
		with data.hosts.allow as ["new.test"]
	a.rule == "hosts:new.test"
	count(hosts.allows) == 0 with input as fixtures.request("GET", "https", "example.com", 443, "/")
		with data.hosts.allow as ["new.test"]
}

test_an_entry_may_cap_the_response_size if {
	some a in hosts.allows with input as fixtures.request("GET", "https", "mirror.test", 443, "/iso")
		with data.hosts.allow as [{"host": "mirror.test", "max_response_bytes": 1048576}]
	a.max_response_bytes == 1048576
	some b in hosts.allows with input as fixtures.request("GET", "https", "example.com", 443, "/")
	not "max_response_bytes" in object.keys(b)
}
