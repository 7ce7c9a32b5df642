// PII scrubbing of crash reports before anything is stored: what an app's
// users typed or carried (emails, IP addresses, bearer tokens and keys, card
// numbers) is replaced by a marker in every text kept from an event. Values of
// fields whose names say they hold secrets (password, token, cookie, ...) are
// replaced whole. Thread-safe (no state).
#pragma once

#include <string>
#include <string_view>

namespace loom::feedback::internal {

// Which kinds of PII are replaced (config keys sentry.scrub_*). All on by default.
struct ScrubOptions {
  bool emails = true;        // "[email]"
  bool ip_addresses = true;  // "[ip]": IPv4 and IPv6
  bool secrets = true;       // "[secret]": Bearer/Basic credentials, key=value
                             // pairs with a secret-sounding key, well-known key
                             // formats (sk-, ghp_, AKIA, xox?-, glpat-, loom_),
                             // and long random-looking tokens
  bool cards = true;         // "[card]": 13-19 digits (spaces or dashes between)
                             // that pass the Luhn check
};

// `text` with the PII `options` name replaced.
std::string ScrubText(std::string_view text, const ScrubOptions& options);

// True when a field (a tag, a header, a query parameter) named `name` holds a
// secret whatever its value looks like: password, secret, token, api_key,
// authorization, cookie, session, credential, private key ... (case-insensitive).
bool IsSecretFieldName(std::string_view name);

}  // namespace loom::feedback::internal
