# pexi's example policy: the entry point pexi queries for every decision
# (POST /v1/data/pexi/decision, see docs/opa.md for the input and result).
#
# Each module under this directory contributes `allows` (objects with rule, reason and maybe
# inject_headers) and `denials` (rule, reason). A denial wins over every allow; otherwise the
# allow with the smallest rule name decides; with neither, the request is denied.
package pexi

denials := data.pexi.sandboxes.denials | data.pexi.hours.denials

allows := (data.pexi.hosts.allows | data.pexi.llm.allows) | data.pexi.sandboxes.allows

decision := object.union({"allow": false}, first(denials)) if {
	count(denials) > 0
} else := object.union({"allow": true}, first(allows)) if {
	count(allows) > 0
} else := {
	"allow": false,
	"reason": sprintf("no rule allows %s %s", [input.request.method, without_query(input.request.url)]),
}

# The member with the smallest rule name (ties broken by the rest of the object), so the
# answer never depends on set iteration order.
first(set) := pairs[0][1] if {
	pairs := sort([[x.rule, x] | some x in set])
}

# Queries carry secrets; reasons reach the sandbox and the audit log.
without_query(url) := split(url, "?")[0]
