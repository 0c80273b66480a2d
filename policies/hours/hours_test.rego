package pexi.hours_test

import data.pexi.fixtures
import data.pexi.hours

push := fixtures.request("POST", "https", "api.github.com", 443, "/repos/o/r/git/refs")

read := fixtures.request("GET", "https", "api.github.com", 443, "/repos/o/r")

test_writes_inside_the_window if {
	count(hours.denials) == 0 with input as push with time.now_ns as fixtures.monday_10_berlin
	count(hours.denials) == 0 with input as push with time.now_ns as fixtures.friday_17_59_berlin
	count(hours.denials) == 0 with input as push with time.now_ns as fixtures.monday_08_berlin
}

test_window_edges if {
	count(hours.denials) == 1 with input as push with time.now_ns as fixtures.monday_18_berlin
	count(hours.denials) == 1 with input as push with time.now_ns as fixtures.monday_07_59_berlin
}

test_window_follows_berlin_summer_time if {
	count(hours.denials) == 0 with input as push with time.now_ns as fixtures.summer_monday_08_30_berlin
	count(hours.denials) == 1 with input as push with time.now_ns as fixtures.summer_monday_07_30_berlin
}

test_writes_outside_the_window if {
	some d in hours.denials with input as push with time.now_ns as fixtures.monday_19_berlin
	d.rule == "github-business-hours"
	count(hours.denials) == 1 with input as push with time.now_ns as fixtures.monday_07_59_berlin
	count(hours.denials) == 1 with input as push with time.now_ns as fixtures.saturday_10_berlin
}

test_reads_are_never_limited if {
	count(hours.denials) == 0 with input as read with time.now_ns as fixtures.saturday_10_berlin
}

test_other_hosts_are_not_limited if {
	other := fixtures.request("POST", "https", "example.com", 443, "/")
	count(hours.denials) == 0 with input as other with time.now_ns as fixtures.saturday_10_berlin
}
