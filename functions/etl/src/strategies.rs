//! Proptest strategies for what the platforms send: arbitrary JSON built from the keys the
//! parsers look for and values of every kind (numbers at the edges of their types,
//! numeric-looking strings, timestamps, Meta's and TikTok's `"-"`), so a property reaches
//! the parsers' deep branches instead of stopping at "not an object".

use proptest::prelude::*;
use serde_json::{Value, json};

const KEYS: &[&str] = &[
    "id",
    "order_id",
    "created_at",
    "updated_at",
    "processed_at",
    "cancelled_at",
    "currency",
    "total_price",
    "subtotal_price",
    "total_tax",
    "total_discounts",
    "financial_status",
    "customer",
    "email",
    "refunds",
    "transactions",
    "kind",
    "status",
    "amount",
    "name",
    "orders",
    "data",
    "paging",
    "next",
    "date_start",
    "ad_id",
    "campaign_id",
    "adgroup_id",
    "spend",
    "impressions",
    "clicks",
    "conversion",
    "actions",
    "action_values",
    "action_type",
    "value",
    "code",
    "message",
    "list",
    "dimensions",
    "metrics",
    "stat_time_day",
    "page_info",
    "page",
    "total_page",
    "error",
    "errors",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|float| {
            serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)
        }),
        "[0-9.eE+-]{0,14}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
        proptest::sample::select(vec![
            json!("2026-11-03T09:00:00-05:00"),
            json!("2026-11-03 00:00:00"),
            json!("-"),
            json!("1e30"),
            json!("79228162514264337593543950335"),
            json!("-79228162514264337593543950336"),
            json!("refund"),
            json!("success"),
            json!("omni_purchase"),
            json!("USD"),
            json!("https://graph.facebook.com/v21.0/act_1/insights?after=x"),
        ]),
    ]
}

/// JSON values up to five levels deep, mostly objects with the parsers' keys.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..7)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
