//! The user's mail filters, kept in their preference document under `mail.filters`:
//!
//! ```json
//! {"mail": {"filters": [
//!   {"match": {"from": "news@", "subject": "weekly"},
//!    "label": "News", "skip_inbox": true, "mark_read": true, "star": false,
//!    "forward": "me@elsewhere.example"}
//! ]}}
//! ```
//!
//! Every condition given must hold (case-insensitive "contains"; `to` looks at To and Cc,
//! `has_attachment` at the attachments); every matching filter applies, in order.
//! Malformed filters are skipped, never fatal: a preference typo must not bounce mail.

use serde::Deserialize;

use super::parse::Meta;

/// The conditions of one filter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Match {
    /// Text the From address or name contains.
    pub from: Option<String>,
    /// Text a To or Cc address or name contains.
    pub to: Option<String>,
    /// Text the subject contains.
    pub subject: Option<String>,
    /// Whether the message has attachments.
    pub has_attachment: Option<bool>,
}

/// One filter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Filter {
    /// The conditions; a filter without any matches nothing.
    #[serde(rename = "match", default)]
    pub when: Match,
    /// A label to add.
    pub label: Option<String>,
    /// File in Archive instead of INBOX.
    #[serde(default)]
    pub skip_inbox: bool,
    /// Mark as read.
    #[serde(default)]
    pub mark_read: bool,
    /// Star it.
    #[serde(default)]
    pub star: bool,
    /// Move to Trash.
    #[serde(default)]
    pub delete: bool,
    /// Forward a copy to this address.
    pub forward: Option<String>,
}

/// What the matching filters decided, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actions {
    /// Labels to add.
    pub labels: Vec<String>,
    /// File in Archive.
    pub skip_inbox: bool,
    /// Mark as read.
    pub mark_read: bool,
    /// Star.
    pub star: bool,
    /// Move to Trash.
    pub delete: bool,
    /// Addresses to forward to.
    pub forward: Vec<String>,
}

/// Reads the filters out of a preference document; malformed entries are skipped.
pub fn from_prefs(doc: &serde_json::Value) -> Vec<Filter> {
    let Some(list) = doc.pointer("/mail/filters").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    list.iter().filter_map(|f| serde_json::from_value(f.clone()).ok()).collect()
}

/// The filters of a preference document that forward mail (to an address with an `@`,
/// as [`apply`] requires).
fn forwarding(doc: &serde_json::Value) -> Vec<Filter> {
    from_prefs(doc).into_iter().filter(|f| f.forward.as_deref().is_some_and(|a| a.trim().contains('@'))).collect()
}

/// Whether `after` has a forwarding filter that `before` has not, exactly as it is (a new
/// one, or a changed target or condition): such a change sends the user's mail somewhere
/// new, so it needs a recent password confirmation. Removing one does not.
pub fn adds_forwarding(before: &serde_json::Value, after: &serde_json::Value) -> bool {
    let old = forwarding(before);
    forwarding(after).iter().any(|f| !old.contains(f))
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

impl Filter {
    /// Whether every condition holds for `meta`.
    pub fn matches(&self, meta: &Meta) -> bool {
        let w = &self.when;
        if w.from.is_none() && w.to.is_none() && w.subject.is_none() && w.has_attachment.is_none() {
            return false;
        }
        let from_ok = w
            .from
            .as_deref()
            .is_none_or(|x| meta.from.as_ref().is_some_and(|f| contains(&f.address, x) || contains(&f.name, x)));
        let to_ok = w
            .to
            .as_deref()
            .is_none_or(|x| meta.to.iter().chain(&meta.cc).any(|r| contains(&r.address, x) || contains(&r.name, x)));
        let subject_ok = w.subject.as_deref().is_none_or(|x| contains(&meta.subject, x));
        let attachment_ok = w.has_attachment.is_none_or(|x| x == meta.has_attachments);
        from_ok && to_ok && subject_ok && attachment_ok
    }
}

/// Applies every matching filter to `meta`.
pub fn apply(filters: &[Filter], meta: &Meta) -> Actions {
    let mut out = Actions::default();
    for f in filters.iter().filter(|f| f.matches(meta)) {
        if let Some(label) = f.label.as_deref().map(str::trim).filter(|l| !l.is_empty())
            && !out.labels.iter().any(|l| l == label)
        {
            out.labels.push(label.to_owned());
        }
        out.skip_inbox |= f.skip_inbox;
        out.mark_read |= f.mark_read;
        out.star |= f.star;
        out.delete |= f.delete;
        if let Some(to) = f.forward.as_deref().map(str::trim).filter(|a| a.contains('@')) {
            out.forward.push(to.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_or_changed_forwarding_filters_count_as_added() {
        let none = serde_json::json!({"theme": "dark"});
        let fwd = |to: &str, subject: &str| {
            serde_json::json!({"mail": {"filters": [
                {"match": {"subject": "x"}, "label": "X"},
                {"match": {"subject": subject}, "forward": to}
            ]}})
        };
        assert!(adds_forwarding(&none, &fwd("me@else.example", "weekly")));
        assert!(!adds_forwarding(&fwd("me@else.example", "weekly"), &fwd("me@else.example", "weekly")));
        assert!(adds_forwarding(&fwd("me@else.example", "weekly"), &fwd("thief@evil.example", "weekly")));
        assert!(adds_forwarding(&fwd("me@else.example", "weekly"), &fwd("me@else.example", "")));
        assert!(!adds_forwarding(&fwd("me@else.example", "weekly"), &none), "removing needs nothing");
        assert!(!adds_forwarding(&none, &fwd("not an address", "weekly")), "no @: nothing is forwarded");
    }
    use crate::domains::mail::parse::meta;

    #[test]
    fn matching_filters_merge_their_actions_and_bad_ones_are_skipped() {
        let doc = serde_json::json!({"mail": {"filters": [
            {"match": {"from": "NEWS@"}, "label": "News", "skip_inbox": true},
            {"match": {"subject": "weekly", "from": "news"}, "mark_read": true, "forward": "Me@Else.example"},
            {"match": {"subject": "nope"}, "star": true},
            {"match": {}, "delete": true},
            {"match": "not an object"},
            42
        ]}});
        let filters = from_prefs(&doc);
        assert_eq!(filters.len(), 4);
        let m = meta(b"From: News <news@shop.example>\r\nTo: ada@x.test\r\nSubject: Your Weekly deals\r\n\r\nhi\r\n");
        let a = apply(&filters, &m);
        assert_eq!(a.labels, vec!["News"]);
        assert!(a.skip_inbox && a.mark_read && !a.star && !a.delete);
        assert_eq!(a.forward, vec!["me@else.example"]);
        assert_eq!(apply(&filters, &meta(b"From: bob@b.test\r\nSubject: weekly\r\n\r\n")), Actions::default());
        assert!(from_prefs(&serde_json::json!({"mail": 3})).is_empty());
    }
}
