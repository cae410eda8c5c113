//! Checks of what a client says about an attachment, free of I/O: its file name (cleaned
//! to a plain name) and its media type (RFC 9110 §8.3.1 syntax). The bytes themselves are
//! opaque here: they are stored as sent and served for download only.

use super::PrefsError;

/// Longest attachment name, in characters.
pub const NAME_MAX_CHARS: usize = 255;
/// The name of an attachment uploaded without one.
pub const DEFAULT_NAME: &str = "attachment";
/// The media type of an attachment uploaded without one.
pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";
const MEDIA_TYPE_MAX_CHARS: usize = 255;

/// A file name: any folder part is dropped (`C:\x\a.png` → `a.png`), surrounding white
/// space trimmed; empty means [`DEFAULT_NAME`]; control characters are refused.
pub fn name(raw: Option<&str>) -> Result<String, PrefsError> {
    let raw = raw.unwrap_or_default();
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if base.chars().any(char::is_control) {
        return Err(PrefsError::InvalidAttachment("the name must not contain control characters".into()));
    }
    if base.chars().count() > NAME_MAX_CHARS {
        return Err(PrefsError::InvalidAttachment(format!("the name has more than {NAME_MAX_CHARS} characters")));
    }
    Ok(if base.is_empty() || base == "." || base == ".." { DEFAULT_NAME.to_owned() } else { base.to_owned() })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A media type `type/subtype[; parameters]`: the type and subtype must be tokens
/// (stored lower-case), the parameters printable ASCII. `None` or empty means
/// [`DEFAULT_MEDIA_TYPE`].
pub fn media_type(raw: Option<&str>) -> Result<String, PrefsError> {
    let raw = raw.unwrap_or_default().trim();
    if raw.is_empty() {
        return Ok(DEFAULT_MEDIA_TYPE.to_owned());
    }
    let bad = || PrefsError::InvalidAttachment("the Content-Type is not a media type like image/png".into());
    if raw.len() > MEDIA_TYPE_MAX_CHARS || !raw.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic()) {
        return Err(bad());
    }
    let (essence, params) = raw.split_once(';').map_or((raw, None), |(e, p)| (e, Some(p)));
    let (ty, sub) = essence.trim().split_once('/').ok_or_else(bad)?;
    if ty.is_empty() || sub.is_empty() || !ty.chars().all(is_tchar) || !sub.chars().all(is_tchar) {
        return Err(bad());
    }
    let essence = format!("{}/{}", ty.to_ascii_lowercase(), sub.to_ascii_lowercase());
    Ok(match params {
        Some(p) if !p.trim().is_empty() => format!("{essence}; {}", p.trim()),
        _ => essence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_folders_and_default_when_empty() {
        assert_eq!(name(Some("photo.png")).unwrap(), "photo.png");
        assert_eq!(name(Some("../../etc/passwd")).unwrap(), "passwd");
        assert_eq!(name(Some(r"C:\Users\a\b c.txt")).unwrap(), "b c.txt");
        assert_eq!(name(Some("dir/")).unwrap(), DEFAULT_NAME);
        assert_eq!(name(Some("..")).unwrap(), DEFAULT_NAME);
        assert_eq!(name(None).unwrap(), DEFAULT_NAME);
        assert!(name(Some("a\nb")).is_err());
        assert!(name(Some(&"x".repeat(NAME_MAX_CHARS + 1))).is_err());
    }

    #[test]
    fn media_types_need_a_type_and_a_subtype() {
        assert_eq!(media_type(Some("Image/PNG")).unwrap(), "image/png");
        assert_eq!(media_type(Some("text/plain;charset=utf-8")).unwrap(), "text/plain; charset=utf-8");
        assert_eq!(media_type(None).unwrap(), DEFAULT_MEDIA_TYPE);
        for bad in ["text", "/plain", "text/", "te xt/plain", "text/plain\r\nX: y", "tëxt/plain"] {
            assert!(media_type(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
