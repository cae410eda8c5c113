//! The rules of a preference document, free of I/O: it is a JSON object, it fits in
//! `prefs.max_bytes`, a change is either a replacement or a JSON Merge Patch (RFC 7396),
//! and which attachment ids it still mentions. The service stores what these return.

use serde_json::Value;

use super::PrefsError;

/// The document of a user who never stored one.
pub fn empty() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Reads a stored document.
pub fn decode_stored(text: &str) -> Result<Value, PrefsError> {
    serde_json::from_str(text).map_err(|e| PrefsError::Internal(format!("stored document unreadable: {e}")))
}

/// `current` with the merge patch applied: members set to `null` are removed, objects
/// are merged recursively, anything else replaces (RFC 7396 §2).
pub fn merge(current: &Value, patch: &Value) -> Value {
    let mut doc = current.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Checks that `doc` is an object of at most `max_bytes` bytes as compact JSON, and
/// returns that JSON.
pub fn encode(doc: &Value, max_bytes: usize) -> Result<String, PrefsError> {
    if !doc.is_object() {
        return Err(PrefsError::NotAnObject);
    }
    let text = serde_json::to_string(doc).map_err(|e| PrefsError::Internal(e.to_string()))?;
    if text.len() > max_bytes {
        return Err(PrefsError::TooLarge { max: max_bytes });
    }
    Ok(text)
}

/// Whether any string in `doc`, a value or an object key, contains `needle`. An
/// attachment is kept while its id is mentioned, also inside a URL such as
/// `/api/v1/prefs/attachments/ID`.
pub fn mentions(doc: &Value, needle: &str) -> bool {
    match doc {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|v| mentions(v, needle)),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains(needle) || mentions(v, needle)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let doc = json!({"theme": "dark", "mail": {"density": "compact", "preview": true}, "tags": ["a"]});
        let patch = json!({"theme": null, "mail": {"preview": null, "sig": "x"}, "tags": ["b", "c"], "new": 1});
        assert_eq!(
            merge(&doc, &patch),
            json!({"mail": {"density": "compact", "sig": "x"}, "tags": ["b", "c"], "new": 1})
        );
        // RFC 7396 appendix A: a patch that is not an object replaces the whole target.
        assert_eq!(merge(&doc, &json!(["x"])), json!(["x"]));
        assert_eq!(merge(&doc, &json!({})), doc);
    }

    #[test]
    fn only_objects_within_the_limit_are_stored() {
        assert!(matches!(encode(&json!([1, 2]), 100), Err(PrefsError::NotAnObject)));
        assert!(matches!(encode(&json!("x"), 100), Err(PrefsError::NotAnObject)));
        assert!(matches!(encode(&Value::Null, 100), Err(PrefsError::NotAnObject)));
        assert_eq!(encode(&json!({"a": 1}), 7).unwrap(), r#"{"a":1}"#);
        assert!(matches!(encode(&json!({"a": 10}), 7), Err(PrefsError::TooLarge { max: 7 })));
        assert_eq!(decode_stored(&encode(&empty(), 10).unwrap()).unwrap(), empty());
    }

    #[test]
    fn mentions_look_into_every_string_and_key() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(mentions(&json!({"bg": id}), id));
        assert!(mentions(&json!({"a": [{"b": format!("/api/v1/prefs/attachments/{id}")}]}), id));
        assert!(mentions(&json!({"files": {id: true}}), id));
        assert!(!mentions(&json!({"a": 1, "b": [null, false], "c": "other"}), id));
    }
}
