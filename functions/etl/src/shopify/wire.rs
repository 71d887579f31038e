//! Shopify's order and refund JSON as webhooks (and the REST Admin API) deliver it, read
//! with exact money; `Retry-After`; and error answers classified into what may be retried.
//! The GraphQL side is in `graphql`.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::retry::RetryClass;

use crate::{ExtractError, MAX_QUOTED_BODY};

/// The longest `Retry-After` read as a wait; longer ones are this (the retry policy then
/// gives up rather than hold a Lambda).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// Why a body is not an order or refund we can keep. Both are permanent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Not the shape of one: a missing or non-numeric id, timestamp, currency or amount.
    #[error("{0}")]
    Malformed(String),
    /// The shape is right but a number is beyond what an exact decimal holds (`1e30`).
    #[error("{0}")]
    OutOfRange(String),
}

/// The shop handle (`demo-store`) of a handle or a `demo-store.myshopify.com` domain.
pub fn shop_handle(shop: &str) -> &str {
    let shop = shop.trim();
    shop.strip_suffix(".myshopify.com").unwrap_or(shop)
}

/// The newest `updated_at` a stored cursor (`{"updated_at": "…"}`) names.
pub fn cursor_updated_at(cursor: &Value) -> Option<DateTime<Utc>> {
    timestamp(cursor.get("updated_at"))
}

/// One refund: its id, order, and the money it returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub refund_id: i64,
    pub order_id: i64,
    /// The sum of its successful `refund` transactions.
    pub amount: Decimal,
    pub created_at: Option<DateTime<Utc>>,
    pub raw: Value,
}

/// The columns of an order we keep, plus the whole payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: i64,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub currency: String,
    pub total_price: Decimal,
    pub subtotal_price: Option<Decimal>,
    pub total_tax: Option<Decimal>,
    pub total_discounts: Option<Decimal>,
    pub financial_status: Option<String>,
    pub customer_id: Option<i64>,
    pub customer_email: Option<String>,
    /// The buyer's currency and the total in it, when Shopify says (multi-currency shops).
    pub presentment_currency: Option<String>,
    pub presentment_total_price: Option<Decimal>,
    pub refunds: Vec<Refund>,
    pub raw: Value,
}

pub(super) fn timestamp(value: Option<&Value>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value?.as_str()?)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// What a money field holds.
enum Money {
    Exact(Decimal),
    /// A number no decimal can hold (beyond ±7.9e28).
    OutOfRange,
    NotANumber,
}

/// Reads money exactly: `"110.10"`, `110.1`, `"1.5e2"`.
fn money(value: &Value) -> Money {
    let text = match value {
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) => number.to_string(),
        _ => return Money::NotANumber,
    };
    if let Ok(exact) = text.parse::<Decimal>() {
        return Money::Exact(exact);
    }
    if let Ok(exact) = Decimal::from_scientific(&text) {
        return Money::Exact(exact);
    }
    if text.parse::<f64>().is_ok_and(f64::is_finite) {
        Money::OutOfRange
    } else {
        Money::NotANumber
    }
}

/// A required or optional money field as a result: `what` names it in the error.
pub(super) fn money_field(
    value: Option<&Value>,
    what: &str,
) -> Result<Option<Decimal>, OrderError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match money(value) {
            Money::Exact(exact) => Ok(Some(exact)),
            Money::OutOfRange => Err(OrderError::OutOfRange(format!(
                "{what} is out of range for an exact decimal"
            ))),
            Money::NotANumber => Err(OrderError::Malformed(format!("{what} is not a decimal"))),
        },
    }
}

pub(crate) fn id(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value?.as_str().map(str::to_string)
}

/// Reads a refund (`refunds/create` body, or one entry of an order's `refunds`).
pub fn parse_refund(body: &Value) -> Result<Refund, OrderError> {
    let malformed = |what: &str| OrderError::Malformed(what.to_string());
    let refund_id = id(body.get("id")).ok_or_else(|| malformed("refund without a numeric `id`"))?;
    let order_id =
        id(body.get("order_id")).ok_or_else(|| malformed("refund without a numeric `order_id`"))?;
    let mut amount = Decimal::ZERO;
    for transaction in body
        .get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = transaction.get("kind").and_then(Value::as_str);
        let status = transaction.get("status").and_then(Value::as_str);
        if kind == Some("refund") && matches!(status, None | Some("success")) {
            let what = format!("refund {refund_id}: a transaction's `amount`");
            let part = money_field(transaction.get("amount"), &what)?
                .ok_or_else(|| OrderError::Malformed(format!("{what} is missing")))?;
            amount = amount.checked_add(part).ok_or_else(|| {
                OrderError::OutOfRange(format!("refund {refund_id}: the amounts overflow"))
            })?;
        }
    }
    Ok(Refund {
        refund_id,
        order_id,
        amount,
        created_at: timestamp(body.get("created_at")),
        raw: body.clone(),
    })
}

/// Reads an order (one entry of `orders`, or an `orders/*` webhook body).
pub fn parse_order(body: &Value) -> Result<Order, OrderError> {
    let order_id = id(body.get("id"))
        .ok_or_else(|| OrderError::Malformed("order without a numeric `id`".into()))?;
    let at = |key: &str| -> Result<DateTime<Utc>, OrderError> {
        timestamp(body.get(key)).ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a valid `{key}`"))
        })
    };
    let money = |key: &str| money_field(body.get(key), &format!("order {order_id}: `{key}`"));
    let refunds = body
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|refund| {
            let mut refund = refund.clone();
            // Shopify repeats it, but do not depend on that inside an order.
            if let Value::Object(fields) = &mut refund {
                fields.entry("order_id").or_insert_with(|| json!(order_id));
            }
            parse_refund(&refund)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let customer = body.get("customer");
    Ok(Order {
        order_id,
        name: text(body.get("name")),
        created_at: at("created_at")?,
        updated_at: at("updated_at")?,
        processed_at: timestamp(body.get("processed_at")),
        cancelled_at: timestamp(body.get("cancelled_at")),
        currency: text(body.get("currency")).ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a `currency`"))
        })?,
        total_price: money("total_price")?.ok_or_else(|| {
            OrderError::Malformed(format!("order {order_id} without a `total_price`"))
        })?,
        subtotal_price: money("subtotal_price")?,
        total_tax: money("total_tax")?,
        total_discounts: money("total_discounts")?,
        financial_status: text(body.get("financial_status")),
        customer_id: customer.and_then(|customer| id(customer.get("id"))),
        customer_email: customer
            .and_then(|customer| text(customer.get("email")))
            .or_else(|| text(body.get("email"))),
        presentment_currency: text(body.get("presentment_currency")),
        presentment_total_price: money_field(
            body.pointer("/total_price_set/presentment_money/amount"),
            &format!("order {order_id}: `total_price_set`"),
        )?,
        refunds,
        raw: body.clone(),
    })
}

/// `Retry-After` as Shopify sends it (`2.0`), or as delay-seconds or an HTTP date, at most
/// an hour.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    shared::retry::retry_after(headers, SystemTime::now())
        .or_else(|| {
            let seconds: f64 = headers
                .get("retry-after")?
                .to_str()
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Duration::try_from_secs_f64(seconds).ok()
        })
        .map(|wait| wait.min(MAX_RETRY_AFTER))
}

/// Classifies an error answer: 429 and 5xx are transient, 401/403 an auth failure.
pub fn classify(status: reqwest::StatusCode, headers: &HeaderMap, body: &str) -> ExtractError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|json| json.get("errors").cloned())
        .map(|errors| match errors {
            Value::String(text) => text,
            other => other.to_string(),
        })
        .unwrap_or_else(|| body.to_string());
    let message = shared::text::clip(&message, MAX_QUOTED_BODY);
    if matches!(status.as_u16(), 401 | 403) {
        return ExtractError::Auth(format!("Shopify HTTP {status}: {message}"));
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return ExtractError::NotFound(format!("Shopify HTTP {status}: {message}"));
    }
    match shared::retry::classify_http(status, headers, SystemTime::now()) {
        RetryClass::Transient { .. } => ExtractError::Throttled {
            message: format!("Shopify HTTP {status}: {message}"),
            retry_after: retry_after(headers),
        },
        RetryClass::Permanent => ExtractError::Api(format!("Shopify HTTP {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn orders_are_read_with_exact_money_and_refunds() {
        let order = parse_order(&json!({
            "id": 450789469, "name": "#1001", "created_at": "2026-11-02T10:00:00-05:00",
            "updated_at": "2026-11-03T09:00:00-05:00", "processed_at": "2026-11-02T10:00:00-05:00",
            "cancelled_at": null, "currency": "USD", "total_price": "110.10", "subtotal_price": "100.00",
            "total_tax": "8.00", "total_discounts": "0.00", "financial_status": "partially_refunded",
            "customer": {"id": 207119551, "email": "bob@example.com"},
            "refunds": [{"id": 509562969, "created_at": "2026-11-03T09:00:00-05:00", "transactions": [
                {"kind": "refund", "status": "success", "amount": "10.05"},
                {"kind": "refund", "status": "failure", "amount": "99.00"}]}]
        }))
        .unwrap();
        assert_eq!(order.total_price, Decimal::new(11010, 2));
        assert_eq!(order.refunds[0].amount, Decimal::new(1005, 2));
        assert_eq!(order.refunds[0].order_id, 450789469);
        assert_eq!(order.created_at.to_rfc3339(), "2026-11-02T15:00:00+00:00");
        assert_eq!(order.customer_email.as_deref(), Some("bob@example.com"));
        assert!(parse_order(&json!({"id": 1})).is_err());
    }

    #[test]
    fn errors_are_classified() {
        let throttled = classify(
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2.0")]),
            r#"{"errors":"Exceeded 2 calls per second for api client."}"#,
        );
        assert!(
            matches!(throttled, ExtractError::Throttled { retry_after: Some(wait), .. } if wait == Duration::from_secs(2))
        );
        let auth = classify(
            reqwest::StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            r#"{"errors":"[API] Invalid API key or access token"}"#,
        );
        assert!(matches!(auth, ExtractError::Auth(message) if message.contains("Invalid API key")));
        let bad = classify(reqwest::StatusCode::BAD_REQUEST, &HeaderMap::new(), "{}");
        assert!(matches!(bad, ExtractError::Api(_)));
    }

    fn order_with(field: &str, value: Value) -> Value {
        let mut order = json!({"id": 7, "created_at": "2026-11-02T10:00:00Z", "updated_at": "2026-11-02T10:00:00Z",
                               "currency": "USD", "total_price": "10.00"});
        order[field] = value;
        order
    }

    #[test]
    fn odd_refunds_and_huge_money_are_errors_not_panics() {
        // A refunds entry that is not an object once panicked on `refund["order_id"] = …`.
        for odd in [json!([5]), json!(["x"]), json!([null]), json!([[1]])] {
            assert!(matches!(
                parse_order(&order_with("refunds", odd)),
                Err(OrderError::Malformed(_))
            ));
        }
        let huge = "79228162514264337593543950335";
        let overflow = json!([{"id": 1, "transactions": [
            {"kind": "refund", "status": "success", "amount": huge},
            {"kind": "refund", "status": "success", "amount": huge}]}]);
        assert!(matches!(
            parse_order(&order_with("refunds", overflow)),
            Err(OrderError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_order(&order_with("total_price", json!("1e30"))),
            Err(OrderError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_order(&order_with("total_price", json!("NaN"))),
            Err(OrderError::Malformed(_))
        ));
        assert_eq!(
            parse_order(&order_with("total_price", json!(12.5)))
                .unwrap()
                .total_price,
            Decimal::new(125, 1)
        );
    }

    #[test]
    fn extreme_retry_afters_are_bounded() {
        for value in ["1e30", "18446744073709551615", "-1", "inf", "NaN"] {
            let wait = retry_after(&headers(&[("retry-after", value)]));
            assert!(
                wait.is_none_or(|wait| wait <= MAX_RETRY_AFTER),
                "{value}: {wait:?}"
            );
        }
    }

    #[test]
    fn a_missing_order_is_not_found() {
        assert!(matches!(
            classify(
                reqwest::StatusCode::NOT_FOUND,
                &HeaderMap::new(),
                r#"{"errors":"Not Found"}"#
            ),
            ExtractError::NotFound(_)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_order_or_refund_body_parses_or_is_refused(body in crate::strategies::json()) {
            let _ = parse_order(&body);
            let _ = parse_refund(&body);
            let _ = parse_order(&order_with("refunds", json!([body.clone()])));
            let _ = parse_order(&order_with("total_price", body.clone()));
            let _ = parse_refund(&json!({"id": 1, "order_id": 2, "transactions": [body]}));
        }

        #[test]
        fn any_error_answer_is_classified(code in 100u16..600, body in ".{0,400}", wait in "[ -~]{0,20}") {
            let status = reqwest::StatusCode::from_u16(code).unwrap_or(reqwest::StatusCode::BAD_REQUEST);
            let mut map = HeaderMap::new();
            if let Ok(value) = wait.parse() {
                map.insert("retry-after", value);
            }
            let _ = classify(status, &map, &body);
        }
    }
}
