package pexi.sandboxes_test

import data.pexi.fixtures
import data.pexi.sandboxes

docker := fixtures.request("GET", "https", "registry-1.docker.io", 443, "/v2/")

test_ci_sandbox_reaches_its_extra_hosts if {
	some a in sandboxes.allows with input as fixtures.in_sandbox(docker, "ci")
	a.rule == "sandbox:ci:registry-1.docker.io"
}

test_other_sandboxes_do_not if {
	count(sandboxes.allows) == 0 with input as fixtures.in_sandbox(docker, "docs")
}

test_outside_a_vm_nothing_applies if {
	count(sandboxes.allows) == 0 with input as docker
	count(sandboxes.denials) == 0 with input as docker
}

test_quarantined_sandbox_is_denied_everything if {
	some d in sandboxes.denials with input as fixtures.in_sandbox(docker, "quarantine")
	d.rule == "sandbox-quarantine"
	some e in sandboxes.denials with input as fixtures.in_sandbox(fixtures.connect("github.com", 443), "quarantine")
	e.rule == "sandbox-quarantine"
}

test_read_only_sandbox if {
	count(sandboxes.denials) == 0 with input as fixtures.in_sandbox(fixtures.request("GET", "https", "github.com", 443, "/"), "review")
	count(sandboxes.denials) == 0 with input as fixtures.in_sandbox(fixtures.connect("github.com", 443), "review")
	some d in sandboxes.denials with input as fixtures.in_sandbox(fixtures.request("POST", "https", "github.com", 443, "/"), "review")
	d.rule == "sandbox-read-only"
}
