//! Files served as downloads (mail attachments, raw messages, preference attachments): a
//! response that can never render as this origin, whatever the bytes are.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `bytes` as a download named `name`: `attachment` disposition, `nosniff`, a `sandbox`
/// CSP and no shared caching; `content_type` is kept only when it is a plain
/// `type/subtype`.
pub fn download(content_type: &str, name: &str, bytes: impl IntoResponse) -> Response {
    let plain = content_type.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && content_type.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.+-".contains(&b));
    let content_type = if plain { content_type } else { "application/octet-stream" };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(name)).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    resp
}

/// `attachment` with the file name as a quoted ASCII fallback and as UTF-8
/// (RFC 6266 §4.3, RFC 8187 §3.2).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(content_disposition("a b.png"), "attachment; filename=\"a b.png\"; filename*=UTF-8''a%20b.png");
        assert_eq!(
            content_disposition("\"é\".txt"),
            "attachment; filename=\"___.txt\"; filename*=UTF-8''%22%C3%A9%22.txt"
        );
    }
}
