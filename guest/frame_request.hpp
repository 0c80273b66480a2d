#pragma once
// `pexi-guest frame-request [-H 'NAME: VALUE']… [-d BODY] [--body] METHOD URL`: one request to
// the seed frame front through the guest relay (127.0.0.1:4040), for tests and for guest
// programs that want the frame protocol without writing a client. Prints the response frame
// (JSON) or, with --body, the decoded body; exit 0 when the response carries no error.

namespace pexi::guest {

int frame_request_main(int argc, char** argv);

}  // namespace pexi::guest
