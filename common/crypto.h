// Small cryptographic helpers over OpenSSL: hashing for stored tokens and
// fingerprints, and random tokens. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace loom {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// Lower-case hex HMAC-SHA256 of `data` under `key` (RFC 2104): what GitHub's
// X-Hub-Signature-256 and Loom's X-Loom-Signature-256 carry after "sha256=".
std::string HmacSha256Hex(std::string_view key, std::string_view data);
// Whether `a` and `b` are equal, in a time that depends on their length only
// (for comparing a signature or token someone sent with the expected one).
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// `bytes` random bytes from the OS CSPRNG, hex-encoded.
Result<std::string> RandomHex(size_t bytes);

// AES-256-GCM with a random 96-bit nonce. `key` is 32 bytes. Seal returns
// hex(nonce || ciphertext || tag); Unseal checks the tag and returns the
// plaintext, Corruption when the text was altered or the key is wrong.
Result<std::string> SealAes256Gcm(std::string_view key, std::string_view plaintext);
Result<std::string> UnsealAes256Gcm(std::string_view key, std::string_view sealed_hex);

// Raw SHA-256 (32 bytes) of `data`. (Version 1 of the secret store derived its
// key from a passphrase this way; it is kept only to open what v1 sealed.)
std::string Sha256Raw(std::string_view data);

// A 32-byte key from a passphrase: scrypt with `salt` and N = 2^15, r = 8, p = 1
// (about 32 MiB and a few tens of milliseconds, once per salt and process).
Result<std::string> DeriveKeyScrypt(std::string_view passphrase, std::string_view salt);

}  // namespace loom
