// Small cryptographic helpers over OpenSSL: hashing for stored tokens and
// fingerprints, and random tokens. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace loom {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// `bytes` random bytes from the OS CSPRNG, hex-encoded.
Result<std::string> RandomHex(size_t bytes);

}  // namespace loom
