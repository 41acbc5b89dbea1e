//! The migration dashboard served at `/` on the metrics listener: one HTML page whose inline
//! script fetches `/status` every two seconds and renders it (stream, phase, data sync %, lag,
//! the last verification, error rate, schema changes, the reverse stream, per-table backfill).
//!
//! Guarantees: the page is a constant compiled into the binary — it carries no data and no
//! secret (the token of `metrics.token_file` guards `/` like `/status` and is never written
//! into it), and it loads nothing from elsewhere. The `Content-Security-Policy` sent with it
//! allows exactly its own inline script and style (by hash) and same-origin requests, so a
//! browser refuses any other script, style, image, font or connection, and the script writes
//! `/status` values as text only (`textContent`), never as markup.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The page, as served.
pub const PAGE: &str = include_str!("dashboard.html");

/// The `Content-Security-Policy` header value for [`PAGE`].
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash_of(element_body(PAGE, "script")),
            hash_of(element_body(PAGE, "style")),
        )
    })
}

/// The text between the first `<tag>` and the following `</tag>` (empty when absent, which
/// the unit tests rule out for the page).
fn element_body<'a>(html: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    html.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(body, _)| body)
        .unwrap_or("")
}

/// The CSP source hash of an inline element's text: base64 of its SHA-256.
fn hash_of(text: &str) -> String {
    base64(&Sha256::digest(text.as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_nothing_outside_itself() {
        let lower = PAGE.to_ascii_lowercase();
        for needle in [
            "http://", "https://", "//cdn", "src=", "href=", "@import", "url(", "<link", "<img",
            "<iframe", "<object", "<embed",
        ] {
            assert!(!lower.contains(needle), "the page contains {needle:?}");
        }
        // One inline script and one inline style, exactly what the policy's hashes allow.
        assert_eq!(lower.matches("<script").count(), 1);
        assert_eq!(lower.matches("<style").count(), 1);
        assert!(!element_body(PAGE, "script").trim().is_empty());
        assert!(!element_body(PAGE, "style").trim().is_empty());
        // No inline event handlers or style attributes (the policy would block them).
        assert!(!lower.contains(" onclick="), "inline handler");
        assert!(!lower.contains(" style="), "style attribute");
    }

    #[test]
    fn data_reaches_the_page_as_text_only() {
        assert!(!PAGE.contains("innerHTML"));
        assert!(!PAGE.contains("outerHTML"));
        assert!(!PAGE.contains("insertAdjacentHTML"));
        assert!(!PAGE.contains("document.write"));
        assert!(PAGE.contains("textContent"));
        // The status is fetched relative to the page, so a proxy under a path prefix works.
        assert!(PAGE.contains("fetch(\"status\""));
    }

    #[test]
    fn the_policy_allows_only_the_page_s_own_script_and_style() {
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        let script = format!(
            "script-src 'sha256-{}'",
            hash_of(element_body(PAGE, "script"))
        );
        assert!(csp.contains(&script), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
        // SHA-256 of the empty string, as CSP tools print it.
        assert_eq!(hash_of(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}
