// Decompression of request bodies (Content-Encoding) with a cap on the output,
// so that a small compressed body cannot expand into gigabytes (a "zip bomb").
// zlib for gzip and deflate, libbrotli for br; their headers stay in the .cc.
// Thread-safe (no state).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace loom::feedback::internal {

// `body` decoded as `content_encoding` ("", "identity", "gzip", "x-gzip",
// "deflate" (zlib-wrapped, or raw as some clients send it) or "br").
// Errors: ResourceExhausted when the output would pass `max_output` bytes
// (decoding stops there: no more than that is ever held); InvalidArgument for a
// corrupt or truncated stream, or bytes after its end; Unimplemented for an
// encoding not listed above (a list of several encodings included).
Result<std::string> Decompress(std::string_view body, std::string_view content_encoding,
                               size_t max_output);

}  // namespace loom::feedback::internal
