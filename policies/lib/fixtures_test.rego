# Input documents for the tests, shaped exactly as pexi sends them (docs/opa.md).
package pexi.fixtures

request(method, scheme, host, port, path) := {
	"action": "pep.http.request",
	"request": {
		"method": method,
		"url": url(scheme, host, port, path),
		"scheme": scheme,
		"host": host,
		"port": port,
		"path": path,
		"query": null,
		"headers": {"accept": "*/*"},
		"body_bytes": 0,
	},
	"sandbox": null,
	"front": "frame",
	"hop": 0,
	"origin_url": null,
}

connect(host, port) := object.union(request("CONNECT", scheme_for(port), host, port, "/"), {"action": "pep.http.connect"})

in_sandbox(input_doc, name) := object.union(input_doc, {"sandbox": name})

scheme_for(80) := "http"

scheme_for(port) := "https" if port != 80

url(scheme, host, port, path) := sprintf("%s://%s%s", [scheme, host, path]) if {
	{"http": 80, "https": 443}[scheme] == port
} else := sprintf("%s://%s:%d%s", [scheme, host, port, path])

# 2026-11-23 is a Monday; times are UTC (Berlin is UTC+1 in November).
monday_10_berlin := time.parse_rfc3339_ns("2026-11-23T09:00:00Z")

monday_18_berlin := time.parse_rfc3339_ns("2026-11-23T17:00:00Z")

monday_19_berlin := time.parse_rfc3339_ns("2026-11-23T18:00:00Z")

monday_08_berlin := time.parse_rfc3339_ns("2026-11-23T07:00:00Z")

# Summer time: Berlin is UTC+2 in July; 2026-07-06 is a Monday.
summer_monday_08_30_berlin := time.parse_rfc3339_ns("2026-07-06T06:30:00Z")

summer_monday_07_30_berlin := time.parse_rfc3339_ns("2026-07-06T05:30:00Z")

monday_07_59_berlin := time.parse_rfc3339_ns("2026-11-23T06:59:59Z")

friday_17_59_berlin := time.parse_rfc3339_ns("2026-11-27T16:59:59Z")

saturday_10_berlin := time.parse_rfc3339_ns("2026-11-28T09:00:00Z")
