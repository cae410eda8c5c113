//! vCard files: reading vCard 3.0 (RFC 2426) and 4.0 (RFC 6350) cards into the book's
//! shape, and writing the book as one vCard 3.0 file. Parsing, unfolding, unescaping,
//! escaping and folding are Stalwart's `calcard` crate; this module cuts a file into its
//! cards, takes FN, N, EMAIL, TEL, NOTE and CATEGORIES from each, and cleans them to the
//! book's rules. Pure functions: no I/O, and never a panic on any input.

use std::collections::HashSet;

use calcard::vcard::{
    VCard, VCardEntry, VCardParameter, VCardParameterName, VCardParameterValue, VCardProperty, VCardValue, VCardVersion,
};

use super::Contact;
use super::fields::{self, Address};

/// The media type of a vCard file (RFC 6350 §10.1).
pub const MEDIA_TYPE: &str = "text/vcard";

/// A card read from a file, cleaned to the book's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Name (FN, else N; empty when it is just one of the addresses).
    pub name: String,
    /// Valid addresses, the preferred first; never empty.
    pub emails: Vec<Address>,
    /// The first phone number (may be empty).
    pub phone: String,
    /// The notes (may be empty).
    pub notes: String,
    /// Group names from CATEGORIES with their lower-cased keys.
    pub groups: Vec<(String, String)>,
}

/// What a file held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The usable cards, in file order.
    pub cards: Vec<Card>,
    /// Cards that were cut short, unreadable or without one valid address.
    pub skipped: usize,
}

/// Reads every card of a vCard file. A broken card (no END, unreadable, or no valid
/// address) is skipped and counted; the cards around it are still read.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for chunk in split(text) {
        match chunk.and_then(read_card) {
            Some(card) => out.cards.push(card),
            None => out.skipped += 1,
        }
    }
    out
}

/// Cuts a file into the texts of its cards, each from its `BEGIN:VCARD` line to its
/// `END:VCARD` line. A card cut short by another `BEGIN:VCARD` or by the end of the file
/// is `None`; lines outside cards are ignored. (A folded line starts with white space, so
/// it is never taken for either.)
fn split(text: &str) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start_matches('\u{feff}').trim();
        if t.eq_ignore_ascii_case("BEGIN:VCARD") {
            if start.is_some() {
                out.push(None);
            }
            start = Some(pos);
        } else if t.eq_ignore_ascii_case("END:VCARD")
            && let Some(s) = start.take()
        {
            out.push(text.get(s..pos + line.len()));
        }
        pos += line.len();
    }
    if start.is_some() {
        out.push(None);
    }
    out
}

/// One card's text as a [`Card`], or `None` when it is unreadable or has no valid address.
fn read_card(text: &str) -> Option<Card> {
    // calcard is fuzzed upstream; a panic on some input must still only skip this card.
    let parsed = std::panic::catch_unwind(|| VCard::parse(text)).ok()?.ok()?;
    card_from(&parsed)
}

fn texts(entry: &VCardEntry) -> impl Iterator<Item = &str> {
    entry.values.iter().flat_map(|v| match v {
        VCardValue::Text(t) => vec![t.as_str()],
        VCardValue::Component(items) => items.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    })
}

fn first_text(entry: &VCardEntry) -> Option<String> {
    let t = entry.values.first()?.as_text()?.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// N's components (family; given; additional; prefixes; suffixes — RFC 6350 §6.2.2) in
/// reading order.
fn name_from_n(entry: &VCardEntry) -> String {
    let part = |i: usize| -> String {
        match entry.values.get(i) {
            Some(VCardValue::Text(t)) => t.trim().to_owned(),
            Some(VCardValue::Component(items)) => items.join(" ").trim().to_owned(),
            _ => String::new(),
        }
    };
    [3, 1, 2, 0, 4].iter().map(|&i| part(i)).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// How much an EMAIL is preferred: `PREF=n` (4.0) or `TYPE=PREF` (3.0); lower first.
fn preference(entry: &VCardEntry) -> u32 {
    let mut best = u32::MAX;
    for p in &entry.params {
        match (&p.name, &p.value) {
            (VCardParameterName::Pref, VCardParameterValue::Integer(n)) => best = best.min(*n),
            (VCardParameterName::Type, VCardParameterValue::Text(t)) if t.eq_ignore_ascii_case("pref") => best = 0,
            _ => {}
        }
    }
    best
}

fn card_from(vcard: &VCard) -> Option<Card> {
    let mut emails: Vec<(u32, Address)> = Vec::new();
    for entry in vcard.properties(&VCardProperty::Email) {
        let Some(raw) = first_text(entry) else { continue };
        let Ok(a) = fields::address(raw.strip_prefix("mailto:").unwrap_or(&raw)) else { continue };
        if emails.len() < fields::MAX_ADDRESSES && !emails.iter().any(|(_, e)| e.lc == a.lc) {
            emails.push((preference(entry), a));
        }
    }
    if emails.is_empty() {
        return None;
    }
    emails.sort_by_key(|(rank, _)| *rank); // stable: file order among equals
    let emails: Vec<Address> = emails.into_iter().map(|(_, a)| a).collect();

    let raw_name = vcard
        .properties(&VCardProperty::Fn)
        .find_map(first_text)
        .or_else(|| vcard.property(&VCardProperty::N).map(name_from_n))
        .unwrap_or_default();
    let collapsed = fields::clean_line(&raw_name).split_whitespace().collect::<Vec<_>>().join(" ");
    let mut name = fields::clip(&collapsed, fields::MAX_NAME_CHARS);
    if emails.iter().any(|e| e.lc == name.to_lowercase()) {
        name.clear();
    }

    let phone = vcard
        .properties(&VCardProperty::Tel)
        .find_map(first_text)
        .map(|t| {
            let t = t.strip_prefix("tel:").or_else(|| t.strip_prefix("TEL:")).unwrap_or(&t).to_owned();
            fields::clip(fields::clean_line(&t).trim(), fields::MAX_PHONE_CHARS)
        })
        .unwrap_or_default();

    let notes: Vec<String> = vcard.properties(&VCardProperty::Note).filter_map(first_text).collect();
    let notes = notes
        .join("\n")
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>();
    let notes = fields::clip(notes.trim(), fields::MAX_NOTES_CHARS);

    let mut seen = HashSet::new();
    let groups = vcard
        .properties(&VCardProperty::Categories)
        .flat_map(texts)
        .filter_map(fields::group_name_lenient)
        .filter(|(_, lc)| seen.insert(lc.clone()))
        .collect();

    Some(Card { name, emails, phone, notes, groups })
}

fn text(prop: VCardProperty, value: &str) -> VCardEntry {
    VCardEntry::new(prop).with_value(VCardValue::Text(value.to_owned()))
}

fn type_param(value: &str) -> VCardParameter {
    VCardParameter::typ(VCardParameterValue::Text(value.to_owned()))
}

/// One contact as a vCard 3.0 card (RFC 2426): FN and N are required, so a nameless
/// contact's FN is its primary address (read back as "no name").
fn to_vcard(c: &Contact) -> VCard {
    let primary = c.primary().unwrap_or_default();
    let shown = if c.name.is_empty() { primary } else { c.name.as_str() };
    // "Family, Given" or "Given … Family".
    let (given, family) = match (c.name.split_once(','), c.name.rsplit_once(' ')) {
        (Some((family, given)), _) => (given.trim(), family.trim()),
        (None, Some((given, family))) => (given.trim(), family.trim()),
        (None, None) => ("", c.name.as_str()),
    };
    let mut entries = vec![
        text(VCardProperty::Prodid, "-//postcast//contacts//EN"),
        text(VCardProperty::Fn, shown),
        VCardEntry::new(VCardProperty::N)
            .with_values([family, given, "", "", ""].iter().map(|s| VCardValue::Text((*s).to_owned())).collect()),
    ];
    for e in &c.emails {
        let mut entry = text(VCardProperty::Email, &e.address).with_param(type_param("INTERNET"));
        if e.primary {
            entry = entry.with_param(type_param("PREF"));
        }
        entries.push(entry);
    }
    if !c.phone.is_empty() {
        entries.push(text(VCardProperty::Tel, &c.phone));
    }
    if !c.notes.is_empty() {
        entries.push(text(VCardProperty::Note, &c.notes));
    }
    if !c.groups.is_empty() {
        entries.push(
            VCardEntry::new(VCardProperty::Categories)
                .with_values(c.groups.iter().map(|g| VCardValue::Text(g.name.clone())).collect()),
        );
    }
    VCard { entries }
}

/// The contacts as one vCard 3.0 file (CRLF line ends, lines folded at 75 octets, text
/// escaped).
pub fn write(contacts: &[Contact]) -> String {
    let mut out = String::new();
    for c in contacts {
        // Writing to a String cannot fail.
        let _ = to_vcard(c).write_to(&mut out, VCardVersion::V3_0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::contacts::{Email, GroupRef};

    const FILE: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n\
        EMAIL;TYPE=INTERNET:ada@work.example\r\nEMAIL;TYPE=INTERNET,PREF:Ada@Home.Example\r\n\
        TEL;TYPE=CELL:+44 20 7946 0000\r\nNOTE:First programmer\\, and a long note that is fol\r\n ded onto a \
        second line\\nwith a break\r\nCATEGORIES:Friends,Math\\, Science\r\nEND:VCARD\r\n\
        BEGIN:VCARD\nVERSION:4.0\nN:Hopper;Grace;Brewster;Rear Admiral;\nEMAIL;PREF=2:grace@navy.example\n\
        EMAIL;PREF=1:grace@yale.example\nTEL;VALUE=uri:tel:+1-555-0100\nEND:VCARD\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Address\r\nEMAIL:not an address\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cut Short\r\nEMAIL:cut@short.example\r\n\
        BEGIN:VCARD\r\nVERSION:3.0\r\nFN:alan@turing.example\r\nEMAIL:alan@turing.example\r\nEND:VCARD\r\n\
        BEGIN:VCARD\r\nFN:Never Ends\r\n";

    #[test]
    fn reads_three_and_four_with_folding_preferences_and_categories() {
        let p = parse(FILE);
        assert_eq!(p.skipped, 3, "no address, cut short by BEGIN, cut short by the end");
        assert_eq!(p.cards.len(), 3);
        let ada = &p.cards[0];
        assert_eq!(ada.name, "Ada Lovelace");
        let emails: Vec<&str> = ada.emails.iter().map(|e| e.display.as_str()).collect();
        assert_eq!(emails, ["Ada@Home.Example", "ada@work.example"], "TYPE=PREF first");
        assert_eq!(ada.phone, "+44 20 7946 0000");
        assert_eq!(ada.notes, "First programmer, and a long note that is folded onto a second line\nwith a break");
        let groups: Vec<&str> = ada.groups.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(groups, ["Friends", "Math Science"]);
        let grace = &p.cards[1];
        assert_eq!(grace.name, "Rear Admiral Grace Brewster Hopper", "from N without FN");
        assert_eq!(grace.emails[0].lc, "grace@yale.example", "PREF=1 first");
        assert_eq!(grace.phone, "+1-555-0100");
        assert_eq!(p.cards[2].name, "", "a name that is just the address is no name");
    }

    #[test]
    fn garbage_never_panics_and_counts_nothing_or_skips() {
        for junk in [
            "",
            "hello",
            "END:VCARD\n",
            "BEGIN:VCARD",
            "BEGIN:VCARD\nEND:VCARD",
            "\u{feff}BEGIN:VCARD\n:\n;;\nEMAIL;;;=:\nEND:VCARD\n",
        ] {
            let p = parse(junk);
            assert!(p.cards.is_empty(), "{junk:?}");
        }
        assert_eq!(parse("BEGIN:VCARD\nEND:VCARD\n").skipped, 1);
        let mut bytes = FILE.as_bytes().to_vec();
        for i in (0..bytes.len()).step_by(7) {
            bytes[i] = bytes[i].wrapping_mul(31) | 0x20;
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn writes_escaped_folded_three_that_reads_back_the_same() {
        let c = Contact {
            id: 1,
            name: "Ada Lovelace".into(),
            emails: vec![
                Email { address: "Ada@Home.Example".into(), primary: true, use_count: 3, last_used_at: 9 },
                Email { address: "ada@work.example".into(), primary: false, use_count: 0, last_used_at: 0 },
            ],
            phone: "+44 20".into(),
            notes: format!("semi; comma, back\\slash\nand {}", "long ".repeat(30)).trim_end().to_owned(),
            groups: vec![GroupRef { id: 1, name: "Friends".into() }, GroupRef { id: 2, name: "Ümlaut Club".into() }],
            created_at: 0,
            updated_at: 0,
        };
        let nameless = Contact {
            id: 2,
            name: String::new(),
            emails: vec![Email { address: "x@y.example".into(), primary: true, use_count: 0, last_used_at: 0 }],
            phone: String::new(),
            notes: String::new(),
            groups: vec![],
            created_at: 0,
            updated_at: 0,
        };
        let out = write(&[c.clone(), nameless]);
        assert!(out.starts_with("BEGIN:VCARD\r\nVERSION:3.0\r\n"), "{out}");
        assert!(out.contains("N:Lovelace;Ada;;;\r\n"), "{out}");
        assert!(out.contains("NOTE:semi\\; comma\\, back\\\\slash\\nand "), "{out}");
        assert!(out.lines().all(|l| l.len() <= 75), "folded:\n{out}");
        assert!(out.contains("\r\n long") || out.contains("\r\n "), "a folded continuation line");
        let back = parse(&out);
        assert_eq!(back.skipped, 0);
        let a = &back.cards[0];
        assert_eq!(
            (a.name.as_str(), a.phone.as_str(), a.notes.as_str()),
            (c.name.as_str(), "+44 20", c.notes.as_str())
        );
        assert_eq!(
            a.emails.iter().map(|e| e.display.as_str()).collect::<Vec<_>>(),
            ["Ada@Home.Example", "ada@work.example"]
        );
        assert_eq!(a.groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["Friends", "Ümlaut Club"]);
        assert_eq!(back.cards[1].name, "");
    }
}
