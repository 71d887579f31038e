//! Text that came from outside, cut and checked so the database will take it.
//!
//! Two faults reach the database from input and are nobody's bug but the sender's: a string
//! cut in the middle of a character (a panic in Rust, before the database even sees it) and
//! `\u0000`, which JSON allows but PostgreSQL's `text` and `jsonb` refuse. [`clip`] cuts on a
//! character boundary; [`without_nul`] drops NULs from text we keep for ourselves (logs,
//! reasons); [`unstorable`] finds the first NUL in a JSON value, so the item carrying it is
//! refused with a reason while its siblings are stored.

use std::borrow::Cow;

use serde_json::Value;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary.
pub fn clip(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` without NUL characters.
pub fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

/// Where in `value` the database would refuse it (a NUL in a string or a key), as a JSON
/// pointer, or `None` when it can be stored.
pub fn unstorable(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
                let length = path.len();
                path.push('/');
                path.push_str(&index.to_string());
                let found = walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            Value::Object(fields) => fields.iter().any(|(key, item)| {
                let length = path.len();
                path.push('/');
                path.push_str(&clip(key, 64).replace('\0', "\\u0000"));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clip_never_cuts_a_character() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("🦀🦀", 5), "🦀");
        assert_eq!(clip("🦀", 3), "");
    }

    #[test]
    fn nul_is_found_where_it_is() {
        assert_eq!(unstorable(&json!({"a": [1, "x"], "b": "ok"})), None);
        assert_eq!(
            unstorable(&json!({"a": [1, "x\u{0}"]})).as_deref(),
            Some("/a/1")
        );
        assert_eq!(
            unstorable(&json!({"k\u{0}": 1})).as_deref(),
            Some("/k\\u0000")
        );
        assert_eq!(without_nul("a\0b"), "ab");
        assert!(matches!(without_nul("ab"), Cow::Borrowed(_)));
    }
}
