//! The rules for what a contact book holds: address syntax (checked by the
//! `email_address` crate, RFC 5322 dot-atom local parts and host-name domains only), the
//! `Name <addr>` form of a recipient, limits on names, phones, notes and group names, and
//! the lower-cased keys used for matching and sorting. Pure functions: no I/O.

use email_address::{EmailAddress, Options};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Most addresses one contact may have.
pub const MAX_ADDRESSES: usize = 20;
/// Longest address in bytes (RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its
/// angle brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// Longest phone number, in characters.
pub const MAX_PHONE_CHARS: usize = 64;
/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 10_000;
/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
/// Characters a group name may not hold: they separate or mark addresses in To/Cc, and
/// commas separate vCard CATEGORIES.
const GROUP_NAME_FORBIDDEN: &[char] = &['@', ',', ';', '<', '>', '"'];

/// A checked address: as given, and lower-cased for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// As given, trimmed (shown).
    pub display: String,
    /// Lower-cased (matched).
    pub lc: String,
}

/// Checks one address (`local@domain`, no display name, no quoted local part, no domain
/// literal).
pub fn address(raw: &str) -> Result<Address, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("an email address is empty".into());
    }
    if s.len() > MAX_ADDRESS_BYTES {
        return Err(format!("email address longer than {MAX_ADDRESS_BYTES} bytes"));
    }
    let options = Options::default().without_display_text().without_domain_literal();
    match EmailAddress::parse_with_options(s, options) {
        Ok(_) if !s.starts_with('"') => Ok(Address { display: s.to_owned(), lc: s.to_lowercase() }),
        Ok(_) => Err(format!("{s:?} is not a supported email address (quoted local part)")),
        Err(e) => Err(format!("{s:?} is not a valid email address: {e}")),
    }
}

/// Checks a contact's address list: one to [`MAX_ADDRESSES`], each valid, none twice
/// (ignoring case). The first is the primary.
pub fn addresses(list: &[String]) -> Result<Vec<Address>, String> {
    if list.is_empty() {
        return Err("a contact needs at least one email address".into());
    }
    if list.len() > MAX_ADDRESSES {
        return Err(format!("a contact has at most {MAX_ADDRESSES} email addresses"));
    }
    let mut out: Vec<Address> = Vec::with_capacity(list.len());
    for raw in list {
        let a = address(raw)?;
        if out.iter().any(|o| o.lc == a.lc) {
            return Err(format!("{} is listed twice", a.display));
        }
        out.push(a);
    }
    Ok(out)
}

/// Splits a recipient as typed or sent, `Name <addr>`, `"Name" <addr>` or a bare address,
/// into its display name (if any) and its checked address.
pub fn recipient(raw: &str) -> Result<(Option<String>, Address), String> {
    let s = raw.trim();
    let Some(inner) = s.strip_suffix('>') else { return Ok((None, address(s)?)) };
    let Some(open) = inner.rfind('<') else { return Err(format!("{s:?} is not a valid recipient")) };
    let addr = address(&inner[open + 1..])?;
    let name = unquote(inner[..open].trim());
    let name = clean_line(&name);
    let name = clip(name.trim(), MAX_NAME_CHARS);
    Ok(((!name.is_empty()).then_some(name), addr))
}

/// A display name without its surrounding double quotes and backslash escapes
/// (RFC 5322 §3.2.4 quoted-string).
pub fn unquote(s: &str) -> String {
    let Some(body) = s.strip_prefix('"').and_then(|b| b.strip_suffix('"')) else { return s.to_owned() };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `Name <addr>` as typed into To/Cc, the name quoted when it holds a special character
/// (RFC 5322 §3.2.3, §3.4); just the address when there is no name.
pub fn mailbox(name: &str, address: &str) -> String {
    if name.is_empty() {
        return address.to_owned();
    }
    let plain = !name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c));
    if plain {
        return format!("{name} <{address}>");
    }
    let escaped: String =
        name.chars().flat_map(|c| if matches!(c, '"' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
    format!("\"{escaped}\" <{address}>")
}

/// A name: trimmed, at most [`MAX_NAME_CHARS`], one line.
pub fn name(raw: &str) -> Result<String, String> {
    line("name", raw, MAX_NAME_CHARS)
}

/// A phone number: trimmed, at most [`MAX_PHONE_CHARS`], one line.
pub fn phone(raw: &str) -> Result<String, String> {
    line("phone", raw, MAX_PHONE_CHARS)
}

/// Notes: at most [`MAX_NOTES_CHARS`]; line breaks and tabs allowed, other control
/// characters not.
pub fn notes(raw: &str) -> Result<String, String> {
    let s = raw.trim_end();
    if s.chars().count() > MAX_NOTES_CHARS {
        return Err(format!("notes longer than {MAX_NOTES_CHARS} characters"));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err("notes contain control characters".into());
    }
    Ok(s.to_owned())
}

/// A group name and its lower-cased key: trimmed, 1 to [`MAX_GROUP_NAME_CHARS`], one
/// line, none of `@ , ; < > "` (so that in To/Cc it is never taken for an address).
pub fn group_name(raw: &str) -> Result<(String, String), String> {
    let s = line("group name", raw, MAX_GROUP_NAME_CHARS)?;
    if s.is_empty() {
        return Err("a group needs a name".into());
    }
    if let Some(c) = s.chars().find(|c| GROUP_NAME_FORBIDDEN.contains(c)) {
        return Err(format!("a group name may not contain {c:?}"));
    }
    let lc = s.to_lowercase();
    Ok((s, lc))
}

fn line(what: &str, raw: &str, max: usize) -> Result<String, String> {
    let s = raw.trim();
    if s.chars().count() > max {
        return Err(format!("{what} longer than {max} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(s.to_owned())
}

/// Control characters turned into spaces (for values read from files).
pub fn clean_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// At most `max` characters of `s`.
pub fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A group name made acceptable: forbidden characters become spaces, then checked.
pub fn group_name_lenient(raw: &str) -> Option<(String, String)> {
    let cleaned: String =
        clean_line(raw).chars().map(|c| if GROUP_NAME_FORBIDDEN.contains(&c) { ' ' } else { c }).collect();
    let collapsed = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    group_name(&clip(&collapsed, MAX_GROUP_NAME_CHARS)).ok()
}

/// The words of `s`, lower-cased, split at anything not a letter or digit.
fn words(s: &str) -> Vec<String> {
    s.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// The stored name key: every word after a space (`"Jean-Luc Picard"` → `" jean luc picard"`).
pub fn name_key(name: &str) -> String {
    words(name).iter().map(|w| format!(" {w}")).collect()
}

/// What a typed prefix must match in a name key: its words joined by spaces, with a
/// trailing separator kept (`"jean-"` → `"jean "`), so `" " + prefix` is a word prefix.
pub fn name_prefix(typed: &str) -> String {
    let mut p = words(typed).join(" ");
    if !p.is_empty() && typed.ends_with(|c: char| !c.is_alphanumeric()) {
        p.push(' ');
    }
    p
}

/// What lists sort by: the lower-cased name, or the primary address for a nameless contact.
pub fn sort_key(name: &str, primary_lc: &str) -> String {
    if name.is_empty() { primary_lc.to_owned() } else { name.to_lowercase() }
}

/// `s` with `\`, `%` and `_` escaped for `LIKE … ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased_for_matching() {
        let a = address("  Ada.Lovelace@Example.ORG ").unwrap();
        assert_eq!((a.display.as_str(), a.lc.as_str()), ("Ada.Lovelace@Example.ORG", "ada.lovelace@example.org"));
        assert_eq!(address("bob@localhost").unwrap().lc, "bob@localhost");
        for bad in
            ["", "plain", "a@", "@b.org", "a b@c.org", "a@b..org", "Ada <a@b.org>", "a@[127.0.0.1]", "\"q r\"@b.org"]
        {
            assert!(address(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(address(&long).is_err());
    }

    #[test]
    fn address_lists_need_one_to_max_distinct_entries() {
        assert!(addresses(&[]).is_err());
        let twice = addresses(&["a@x.org".into(), "A@X.org".into()]).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        let many: Vec<String> = (0..=MAX_ADDRESSES).map(|i| format!("u{i}@x.org")).collect();
        assert!(addresses(&many).is_err());
        assert_eq!(addresses(&many[..MAX_ADDRESSES]).unwrap().len(), MAX_ADDRESSES);
    }

    #[test]
    fn recipients_may_carry_a_display_name() {
        let (n, a) = recipient("Ada Lovelace <Ada@Example.org>").unwrap();
        assert_eq!((n.as_deref(), a.display.as_str()), (Some("Ada Lovelace"), "Ada@Example.org"));
        let (n, _) = recipient(r#""Lovelace, Ada \"the first\"" <ada@example.org>"#).unwrap();
        assert_eq!(n.as_deref(), Some("Lovelace, Ada \"the first\""));
        let (n, a) = recipient("<bob@example.org>").unwrap();
        assert_eq!((n, a.lc.as_str()), (None, "bob@example.org"));
        assert_eq!(recipient("bob@example.org").unwrap().0, None);
        assert!(recipient("Bob <not an address>").is_err());
        assert!(recipient("Bob>").is_err());
        for (name, shown) in [
            ("", "a@b.example"),
            ("Ada L", "Ada L <a@b.example>"),
            ("L., Ada \"x\"", "\"L., Ada \\\"x\\\"\" <a@b.example>"),
        ] {
            let m = mailbox(name, "a@b.example");
            assert_eq!(m, shown);
            let back = recipient(&m).unwrap();
            assert_eq!(back.0.unwrap_or_default(), name, "{m} reads back");
        }
    }

    #[test]
    fn group_names_refuse_address_syntax() {
        assert_eq!(group_name(" Team A ").unwrap(), ("Team A".into(), "team a".into()));
        for bad in ["", "  ", "a@b", "x,y", "x;y", "<x>", "\"x\"", "a\nb"] {
            assert!(group_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(group_name(&"g".repeat(MAX_GROUP_NAME_CHARS + 1)).is_err());
        assert_eq!(group_name_lenient("Friends, <close>").unwrap().0, "Friends close");
        assert_eq!(group_name_lenient(" ,; "), None);
    }

    #[test]
    fn names_phones_and_notes_have_limits() {
        assert_eq!(name("  Ada ").unwrap(), "Ada");
        assert!(name("a\u{0}b").is_err());
        assert!(name(&"n".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(phone(&"1".repeat(MAX_PHONE_CHARS + 1)).is_err());
        assert_eq!(notes("line one\nline two\n").unwrap(), "line one\nline two");
        assert!(notes("bell\u{7}").is_err());
        assert!(notes(&"x".repeat(MAX_NOTES_CHARS + 1)).is_err());
    }

    #[test]
    fn keys_match_any_word_prefix() {
        assert_eq!(name_key("Jean-Luc  Picard"), " jean luc picard");
        assert_eq!(name_key(""), "");
        assert_eq!(name_prefix("Jean-L"), "jean l");
        assert_eq!(name_prefix("jean-"), "jean ");
        assert_eq!(name_prefix("@"), "");
        assert!(name_key("Jean-Luc Picard").contains(&format!(" {}", name_prefix("luc pi"))));
        assert_eq!(sort_key("", "a@b.org"), "a@b.org");
        assert_eq!(sort_key("Ada", "a@b.org"), "ada");
        assert_eq!(like_escape(r"a_b%c\d"), r"a\_b\%c\\d");
    }
}
