//! SMTP reply lines: formats the bytes of every reply the session sends (RFC 5321 §4.2,
//! enhanced status codes of RFC 3463 / RFC 2034). It owns only formatting: which reply is
//! sent when is the session's business. Text that came from elsewhere (a verdict's text) is
//! cleaned of CR, LF and control characters so a reply can never be split or forged.

/// One single-line reply: `code enhanced text CRLF` (RFC 5321 §4.2, RFC 2034 §4).
pub(crate) fn line(code: u16, enhanced: &str, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    out.extend_from_slice(code.to_string().as_bytes());
    out.push(b' ');
    if !enhanced.is_empty() {
        out.extend_from_slice(clean(enhanced).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(clean(text).as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// A multi-line reply: every line but the last uses `code-`, the last `code ` (RFC 5321 §4.2.1).
pub(crate) fn multi(code: u16, lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, text) in lines.iter().enumerate() {
        let sep = if index + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{}\r\n", clean(text)).as_bytes());
    }
    out
}

/// A `334` SASL challenge (RFC 4954 §4): the base64 text as given, possibly empty.
pub(crate) fn challenge(base64: &str) -> Vec<u8> {
    format!("334 {}\r\n", clean(base64)).into_bytes()
}

/// Replaces CR, LF and other control characters, and caps the length of a reply text.
fn clean(text: &str) -> String {
    const MAX_TEXT: usize = 400;
    text.chars().take(MAX_TEXT).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_lines() {
        assert_eq!(line(250, "2.0.0", "OK"), b"250 2.0.0 OK\r\n");
        assert_eq!(line(220, "", "host ESMTP"), b"220 host ESMTP\r\n");
        assert_eq!(line(554, "5.0.0", "a\r\nb"), b"554 5.0.0 a  b\r\n");
        assert_eq!(multi(250, &["a".into(), "b".into()]), b"250-a\r\n250 b\r\n");
        assert_eq!(challenge(""), b"334 \r\n");
    }
}
