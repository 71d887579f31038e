//! Reading JSON that came from outside, with every limit enforced while it is read.
//!
//! A body is read in two passes, neither of which builds more than it is allowed to:
//!
//! * [`array_items`], [`fields`] and [`lines`] split a body into its events' texts — the
//!   elements of an array, chosen fields of an object, the lines of NDJSON — borrowing them
//!   from the body. Strings are skipped, not decoded, so a lone surrogate (`"\ud800"`) in one
//!   event leaves its siblings readable, and the array is counted as it is read: the first
//!   element past the cap stops it, so a body of millions of `{}` costs a counter, not
//!   millions of values.
//! * [`value`] turns one event's text into a [`Value`], counting as it goes: the keys of each
//!   object and the elements of each array against the source's [`Limits`], and the memory
//!   the value will hold against the request's [`Budget`].
//!
//! serde_json's own recursion limit (128 levels) bounds the depth of both.

use std::cell::Cell;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// Why a body could not be split into items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("more than {0} events in one request")]
    TooMany(usize),
    #[error("{0}")]
    Malformed(String),
}

/// Why one item's text did not become a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The request as a whole would hold more than its budget: not this item's fault alone.
    #[error("the request's events take more than {0} bytes to hold")]
    OverBudget(usize),
    /// This item is not storable JSON (syntax, a lone surrogate, a number out of range) or
    /// breaks a per-object limit.
    #[error("{0}")]
    Refused(String),
}

/// The elements of the array `text`, at most `cap` of them.
pub fn array_items(text: &str, cap: usize) -> Result<Vec<&str>, SplitError> {
    let too_many = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let items = deserializer
        .deserialize_seq(Elements {
            cap,
            too_many: &too_many,
        })
        .and_then(|items| deserializer.end().map(|()| items));
    match items {
        Ok(items) => Ok(items),
        Err(_) if too_many.get() => Err(SplitError::TooMany(cap)),
        Err(error) => Err(SplitError::Malformed(format!("not JSON: {error}"))),
    }
}

struct Elements<'c> {
    cap: usize,
    too_many: &'c Cell<bool>,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Vec<&'de str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.cap {
                self.too_many.set(true);
                return Err(de::Error::custom("too many elements"));
            }
            items.push(item.get());
        }
        Ok(items)
    }
}

/// The raw texts of the fields `names` of the object `text` (`None` where absent; the last
/// of repeated keys wins); every other field is skipped without being decoded.
pub fn fields<'a>(text: &'a str, names: &[&str]) -> Result<Vec<Option<&'a str>>, SplitError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_map(Fields { names })
        .and_then(|found| deserializer.end().map(|()| found))
        .map_err(|error| SplitError::Malformed(format!("not JSON: {error}")))
}

struct Fields<'n> {
    names: &'n [&'n str],
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Vec<Option<&'de str>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.names.len()];
        while let Some(position) = map.next_key_seed(KeyPosition { names: self.names })? {
            match position.and_then(|position| found.get_mut(position)) {
                Some(slot) => *slot = Some(map.next_value::<&'de RawValue>()?.get()),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Where a key stands in a list of names, read without keeping the key.
struct KeyPosition<'n> {
    names: &'n [&'n str],
}

impl<'de> DeserializeSeed<'de> for KeyPosition<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyPosition<'_> {
    type Value = Option<usize>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.names.iter().position(|name| *name == key))
    }
}

/// The non-blank lines of `text` (NDJSON), at most `cap` of them.
pub fn lines(text: &str, cap: usize) -> Result<Vec<&str>, SplitError> {
    let mut items = Vec::new();
    for line in text.split('\n').filter(|line| !line.trim().is_empty()) {
        if items.len() == cap {
            return Err(SplitError::TooMany(cap));
        }
        items.push(line);
    }
    Ok(items)
}

/// Whether `text` holds exactly one JSON value (not, say, NDJSON's several).
pub fn is_one_value(text: &str) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    de::Deserialize::deserialize(&mut deserializer)
        .map(|_: IgnoredAny| ())
        .and_then(|()| deserializer.end())
        .is_ok()
}

/// How large any one object or array of an event may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub keys_per_object: usize,
    pub items_per_array: usize,
}

/// The memory, as estimated by [`value`], that one request's values may hold in all.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    remaining: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Self {
            total: bytes,
            remaining: bytes,
        }
    }

    /// Gives back what a value no longer kept was charged.
    pub fn refund(&mut self, bytes: usize) {
        self.remaining = self.remaining.saturating_add(bytes).min(self.total);
    }
}

/// What a value costs where it sits: its slot in the parent's vector or map node.
const SLOT: usize = std::mem::size_of::<Value>();
/// A map's first B-tree node, allocated with its first key (room for 11 entries).
const MAP_NODE: usize = 11 * (std::mem::size_of::<String>() + SLOT) + 16;
/// Each key: its `String` and its value's slot, twice over for half-full nodes.
const MAP_ENTRY: usize = 2 * (std::mem::size_of::<String>() + SLOT);
/// Each array element: its slot, twice over for a vector's spare capacity.
const ARRAY_ITEM: usize = 2 * SLOT;

/// Parses one item's `text` into a value within `limits`, charging `budget` an estimate of
/// the memory it holds; returns the value and what it was charged.
pub fn value(
    text: &str,
    limits: Limits,
    budget: &mut Budget,
) -> Result<(Value, usize), ValueError> {
    let context = Context {
        limits,
        remaining: Cell::new(budget.remaining),
        over_budget: Cell::new(false),
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = Bounded { context: &context }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    let charged = budget.remaining.saturating_sub(context.remaining.get());
    match parsed {
        Ok(value) => {
            budget.remaining = context.remaining.get();
            Ok((value, charged))
        }
        Err(_) if context.over_budget.get() => Err(ValueError::OverBudget(budget.total)),
        Err(error) => Err(ValueError::Refused(format!("not storable JSON: {error}"))),
    }
}

struct Context {
    limits: Limits,
    remaining: Cell<usize>,
    over_budget: Cell<bool>,
}

impl Context {
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.remaining.get().checked_sub(bytes) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => {
                self.over_budget.set(true);
                Err(E::custom("over the request's budget"))
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Bounded<'c> {
    context: &'c Context,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.context.charge(value.len())?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.context.charge(value.len())?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            if items.len() == self.context.limits.items_per_array {
                return Err(de::Error::custom(format!(
                    "an array has more than {} elements",
                    self.context.limits.items_per_array
                )));
            }
            self.context.charge(ARRAY_ITEM)?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.len() == self.context.limits.keys_per_object && !object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "an object has more than {} keys",
                    self.context.limits.keys_per_object
                )));
            }
            let node = if object.is_empty() { MAP_NODE } else { 0 };
            self.context
                .charge(node.saturating_add(MAP_ENTRY).saturating_add(key.len()))?;
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOOSE: Limits = Limits {
        keys_per_object: 1_000,
        items_per_array: 1_000,
    };

    #[test]
    fn an_array_is_split_without_decoding_its_strings() {
        let text = r#"[{"a":1}, {"b":"\ud800"} ,{"c":"\u0000"}]"#;
        assert_eq!(
            array_items(text, 10).unwrap(),
            [r#"{"a":1}"#, r#"{"b":"\ud800"}"#, r#"{"c":"\u0000"}"#]
        );
        let mut budget = Budget::new(1 << 20);
        let refused = value(r#"{"b":"\ud800"}"#, LOOSE, &mut budget).unwrap_err();
        assert!(refused.to_string().contains("escape"), "{refused}");
        assert!(array_items("[1,", 10).is_err());
        assert!(array_items("[1] 2", 10).is_err());
        assert!(matches!(
            array_items("{}", 10),
            Err(SplitError::Malformed(_))
        ));
    }

    #[test]
    fn the_count_stops_the_array_at_the_cap() {
        let text = format!("[{}{{}}]", "{},".repeat(9));
        assert_eq!(array_items(&text, 10).unwrap().len(), 10);
        let text = format!("[{}{{}}]", "{},".repeat(10));
        assert_eq!(array_items(&text, 10), Err(SplitError::TooMany(10)));
        // Stopped at the cap even when what follows is broken.
        let text = format!("[{}{{", "{},".repeat(11));
        assert_eq!(array_items(&text, 10), Err(SplitError::TooMany(10)));
    }

    #[test]
    fn fields_are_picked_and_the_rest_skipped() {
        let text = r#"{"api_key":"phc","x":"\ud800","batch":[1,2],"api_key":"last"}"#;
        assert_eq!(
            fields(text, &["batch", "api_key", "token"]).unwrap(),
            [Some("[1,2]"), Some(r#""last""#), None]
        );
        assert!(fields("[]", &["batch"]).is_err());
    }

    #[test]
    fn ndjson_lines_are_counted() {
        assert_eq!(lines("{}\n\n {} \n", 2).unwrap(), ["{}", " {} "]);
        assert_eq!(lines("{}\n{}\n{}", 2), Err(SplitError::TooMany(2)));
        assert!(is_one_value(" {\"a\": [1]} "));
        assert!(!is_one_value("{}\n{}"));
    }

    #[test]
    fn values_are_built_within_limits() {
        let mut budget = Budget::new(1 << 20);
        let (parsed, charged) = value(
            r#"{"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}}"#,
            LOOSE,
            &mut budget,
        )
        .unwrap();
        assert_eq!(
            parsed,
            json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}})
        );
        assert!(charged > 0);
        let tight = Limits {
            keys_per_object: 2,
            items_per_array: 2,
        };
        assert!(value(r#"{"a":1,"b":2}"#, tight, &mut budget).is_ok());
        assert!(value(r#"{"a":1,"a":2,"b":2}"#, tight, &mut budget).is_ok());
        assert!(matches!(
            value(r#"{"a":1,"b":2,"c":3}"#, tight, &mut budget),
            Err(ValueError::Refused(reason)) if reason.contains("more than 2 keys")
        ));
        assert!(matches!(
            value("[[1,2,3]]", tight, &mut budget),
            Err(ValueError::Refused(reason)) if reason.contains("more than 2 elements")
        ));
        assert!(matches!(
            value("1e400", LOOSE, &mut budget),
            Err(ValueError::Refused(_))
        ));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            value(&deep, LOOSE, &mut budget),
            Err(ValueError::Refused(_))
        ));
    }

    #[test]
    fn the_budget_is_shared_by_a_request_and_refunded() {
        let many_small_maps = format!("[{}]", vec![r#"{"a":0}"#; 200].join(","));
        let mut budget = Budget::new(64 * 1024);
        assert_eq!(
            value(&many_small_maps, LOOSE, &mut budget),
            Err(ValueError::OverBudget(64 * 1024)),
            "200 one-key maps hold far more than their text"
        );
        let mut budget = Budget::new(64 * 1024);
        let (_, charged) = value(r#"{"a":"0123456789"}"#, LOOSE, &mut budget).unwrap();
        let left = budget.remaining;
        budget.refund(charged);
        assert_eq!(budget.remaining, left + charged);
        budget.refund(usize::MAX);
        assert_eq!(budget.remaining, 64 * 1024);
    }
}
