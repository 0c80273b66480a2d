# A business-hours window: writes to GitHub (pushes, pull requests, comments) only Monday to
# Friday, 08:00 to 18:00 in Berlin, when someone is around to notice. Reads are not limited.
# Tests fix the clock with `with time.now_ns as ...`.
package pexi.hours

import data.pexi.lib

zone := "Europe/Berlin"

write_methods := {"POST", "PUT", "PATCH", "DELETE"}

guarded_hosts := ["github.com", "*.github.com"]

open_now if {
	now := time.now_ns()
	not time.weekday([now, zone]) in {"Saturday", "Sunday"}
	[hour, _, _] := time.clock([now, zone])
	hour >= 8
	hour < 18
}

denials contains {
	"rule": "github-business-hours",
	"reason": "writes to GitHub are allowed Monday to Friday, 08:00-18:00 Europe/Berlin",
} if {
	input.action == "pep.http.request"
	input.request.method in write_methods
	some pattern in guarded_hosts
	lib.host_matches(pattern, input.request.host)
	not open_now
}
