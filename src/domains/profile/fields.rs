//! Checks and clean-up of the profile's text fields: display name, signature (sanitised
//! with ammonia), time zone and language tag. Pure functions, no I/O; they decide what is
//! stored, never how it is shown.

use super::ProfileError;

/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
/// Largest signature as sent, in bytes (before sanitising).
pub const SIGNATURE_MAX_BYTES: usize = 16 * 1024;
/// Longest time zone name (the longest IANA name has 32 characters).
const TIME_ZONE_MAX_CHARS: usize = 64;
/// Longest language tag (RFC 5646 §4.4.1 asks for at least 35 characters to be supported).
const LANGUAGE_MAX_CHARS: usize = 35;

fn invalid(field: &'static str, reason: impl Into<String>) -> ProfileError {
    ProfileError::Invalid { field, reason: reason.into() }
}

/// A display name: trimmed, 1 to [`DISPLAY_NAME_MAX_CHARS`] characters, no control
/// characters.
pub fn display_name(raw: &str) -> Result<String, ProfileError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(invalid("display_name", "must not be empty"));
    }
    if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(invalid("display_name", format!("at most {DISPLAY_NAME_MAX_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("display_name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// A signature: HTML cleaned by ammonia's default policy (no scripts, no event handlers,
/// only safe URL schemes, links get `rel="noopener noreferrer"`).
pub fn signature(raw: &str) -> Result<String, ProfileError> {
    if raw.len() > SIGNATURE_MAX_BYTES {
        return Err(invalid("signature_html", format!("at most {SIGNATURE_MAX_BYTES} bytes")));
    }
    Ok(ammonia::clean(raw))
}

/// A time zone that looks like an IANA tz database name: `UTC`, `Europe/Berlin`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`. Each `/`-separated part starts with an
/// upper-case ASCII letter and holds letters, digits, `_`, `-` and `+`.
pub fn time_zone(raw: &str) -> Result<String, ProfileError> {
    let tz = raw.trim();
    let bad = || invalid("time_zone", format!("{tz:?} is not an IANA time zone name like Europe/Berlin or UTC"));
    if tz.is_empty() || tz.len() > TIME_ZONE_MAX_CHARS {
        return Err(bad());
    }
    let parts: Vec<&str> = tz.split('/').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    for part in parts {
        let mut chars = part.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+')) {
            return Err(bad());
        }
    }
    Ok(tz.to_owned())
}

/// A language tag shaped like BCP 47 (RFC 5646 §2.1): a primary language of 2 to 8
/// letters, then subtags of 1 to 8 letters or digits, joined by `-` (`en`, `de-CH`,
/// `zh-Hant-TW`, `sr-Latn`). Private-use (`x-...`) tags are accepted too.
pub fn language(raw: &str) -> Result<String, ProfileError> {
    let tag = raw.trim();
    let bad = || invalid("language", format!("{tag:?} is not a language tag like en or de-CH"));
    if tag.is_empty() || tag.len() > LANGUAGE_MAX_CHARS {
        return Err(bad());
    }
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    let primary_ok = ((2..=8).contains(&primary.len()) || primary.eq_ignore_ascii_case("x"))
        && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok = subtags.all(|s| !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_alphanumeric()));
    if !primary_ok || !rest_ok {
        return Err(bad());
    }
    Ok(tag.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_lose_scripts_handlers_and_javascript_urls() {
        let raw = r#"<p>hi<script>alert(1)</script><a href="javascript:x" onclick="y">l</a></p>"#;
        let clean = signature(raw).unwrap();
        assert!(!clean.contains("script"), "{clean}");
        assert!(!clean.contains("javascript"), "{clean}");
        assert!(!clean.contains("onclick"), "{clean}");
        assert!(clean.starts_with("<p>hi"), "{clean}");
        assert!(clean.contains(">l</a>"), "{clean}");
        let kept = signature(r#"<b>Bo</b> <a href="https://example.org">site</a>"#).unwrap();
        assert!(kept.contains(r#"href="https://example.org""#), "{kept}");
        assert!(signature(&"a".repeat(SIGNATURE_MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn time_zones_must_look_like_iana_names() {
        for ok in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince"] {
            assert_eq!(time_zone(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "utc",
            "Europe/",
            "/Berlin",
            "Europe//Berlin",
            "Europe/Berlin;drop",
            "../etc/passwd",
            "A/B/C/D",
            "Europe/Be rlin",
        ] {
            assert!(time_zone(bad).is_err(), "{bad:?} accepted");
        }
        assert!(time_zone(&format!("A{}", "b".repeat(64))).is_err());
    }

    #[test]
    fn languages_must_look_like_bcp47_tags() {
        for ok in ["en", "de-CH", "zh-Hant-TW", "sr-Latn", "es-419", "x-klingon"] {
            assert_eq!(language(ok).unwrap(), ok);
        }
        for bad in ["", "e", "en_US", "en-", "-en", "en--US", "123", "en-toolongsubtag", "de CH"] {
            assert!(language(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(display_name("   ").is_err());
        assert!(display_name("a\u{7}b").is_err());
        assert!(display_name(&"é".repeat(DISPLAY_NAME_MAX_CHARS)).is_ok());
        assert!(display_name(&"é".repeat(DISPLAY_NAME_MAX_CHARS + 1)).is_err());
    }
}
