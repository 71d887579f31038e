//! Shopify's REST Admin API as it reaches us: orders and refunds read with exact money,
//! pages and their `Link` headers, the call-limit bucket, `Retry-After`, and error answers
//! classified into what may be retried.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::retry::RetryClass;

use crate::{ExtractError, MAX_QUOTED_BODY};

/// The Admin API version the requests name.
pub const API_VERSION: &str = "2024-10";
/// Orders a page asks for (Shopify's maximum).
pub const PAGE_LIMIT: u32 = 250;
/// The longest pause [`pause_for`] asks for.
const MAX_PAUSE: Duration = Duration::from_secs(10);
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

/// `updated_at_min` of a run: the cursor minus the lookback, or the window start.
pub fn updated_at_min(
    cursor: Option<DateTime<Utc>>,
    window_start: NaiveDate,
    lookback_days: i64,
) -> DateTime<Utc> {
    match cursor {
        Some(newest) => newest
            .checked_sub_signed(chrono::Duration::days(lookback_days))
            .unwrap_or(newest),
        None => window_start.and_time(NaiveTime::MIN).and_utc(),
    }
}

/// The newest `updated_at` a stored cursor (`{"updated_at": "…"}`) names.
pub fn cursor_updated_at(cursor: &Value) -> Option<DateTime<Utc>> {
    timestamp(cursor.get("updated_at"))
}

/// The first page's URL for a shop (`shop_url` as [`crate::Endpoints::shopify_shop_url`]).
pub fn first_page(shop_url: &str, since: DateTime<Utc>) -> String {
    let since = since.to_rfc3339_opts(SecondsFormat::Secs, true);
    let limit = PAGE_LIMIT.to_string();
    let query = crate::meta::form_query(&[
        ("status", "any"),
        ("updated_at_min", &since),
        ("limit", &limit),
        ("order", "updated_at asc"),
    ]);
    format!(
        "{}/admin/api/{API_VERSION}/orders.json?{query}",
        shop_url.trim_end_matches('/')
    )
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

/// One page of orders and where the next one is.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    pub next: Option<String>,
    /// `X-Shopify-Shop-Api-Call-Limit` as (used, bucket size).
    pub call_limit: Option<(u32, u32)>,
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

/// The URL of `Link: <…>; rel="next"`, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|part| {
            let (target, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|param| param.trim().replace(' ', "") == "rel=\"next\"")
                .then(|| {
                    target
                        .trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
        })
}

/// `X-Shopify-Shop-Api-Call-Limit: 32/40` as (32, 40).
pub fn call_limit(headers: &HeaderMap) -> Option<(u32, u32)> {
    let value = headers
        .get("x-shopify-shop-api-call-limit")?
        .to_str()
        .ok()?;
    let (used, size) = value.trim().split_once('/')?;
    Some((used.trim().parse().ok()?, size.trim().parse().ok()?))
}

/// How long to wait before the next request when the shop's bucket is at `used` of `size`:
/// nothing below 80 %, else half a second (one leak at the standard 2 req/s) for every
/// request above 80 %, at most 10 s — e.g. 32/40 → 0.5 s, 40/40 → 4.5 s.
pub fn pause_for(used: u32, size: u32) -> Option<Duration> {
    let threshold = u64::from(size) * 4 / 5;
    let used = u64::from(used);
    if size == 0 || used < threshold {
        return None;
    }
    let over = used - threshold + 1;
    Some(Duration::from_millis(over.saturating_mul(500)).min(MAX_PAUSE))
}

/// The URL of a `Link: rel="next"` to follow: only on the shop's own host (`shop_url`), which
/// is the only host the shop's token may be sent to.
pub fn next_page(next: &str, shop_url: &str) -> Result<String, ExtractError> {
    let url = reqwest::Url::parse(next)
        .map_err(|_| ExtractError::Malformed("the Link rel=\"next\" is not a URL".into()))?;
    let shop = reqwest::Url::parse(shop_url)
        .map_err(|_| ExtractError::Malformed("the shop's API URL is not a URL".into()))?;
    if url.origin() != shop.origin() {
        return Err(ExtractError::Malformed(format!(
            "the next page is on {}, not on the shop's {}",
            url.origin().ascii_serialization(),
            shop.origin().ascii_serialization()
        )));
    }
    Ok(url.into())
}

/// Reads one page of `orders.json`.
pub fn parse_page(headers: &HeaderMap, body: &Value) -> Result<OrdersPage, ExtractError> {
    let orders = body
        .get("orders")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("orders answer without `orders`".into()))?
        .iter()
        .map(parse_order)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ExtractError::Malformed(error.to_string()))?;
    Ok(OrdersPage {
        orders,
        next: next_link(headers),
        call_limit: call_limit(headers),
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
    fn link_and_call_limit_headers_are_read() {
        let map = headers(&[
            (
                "link",
                r#"<https://s/admin/api/2024-10/orders.json?limit=250&page_info=abc>; rel="previous", <https://s/admin/api/2024-10/orders.json?limit=250&page_info=def>; rel="next""#,
            ),
            ("x-shopify-shop-api-call-limit", "32/40"),
        ]);
        assert_eq!(
            next_link(&map).as_deref(),
            Some("https://s/admin/api/2024-10/orders.json?limit=250&page_info=def")
        );
        assert_eq!(call_limit(&map), Some((32, 40)));
        assert_eq!(pause_for(1, 40), None);
        assert_eq!(pause_for(31, 40), None);
        assert_eq!(pause_for(32, 40), Some(Duration::from_millis(500)));
        assert_eq!(pause_for(40, 40), Some(Duration::from_millis(4500)));
        assert_eq!(pause_for(0, 0), None);
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

    #[test]
    fn the_first_page_reads_from_the_cursor_minus_the_lookback() {
        let cursor = cursor_updated_at(&json!({"updated_at": "2026-11-30T04:59:59Z"}));
        let since = updated_at_min(cursor, "2026-01-01".parse().unwrap(), 7);
        assert_eq!(since.to_rfc3339(), "2026-11-23T04:59:59+00:00");
        let first = updated_at_min(None, "2026-11-01".parse().unwrap(), 7);
        assert_eq!(first.to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            first_page("http://x/shopify/demo", since),
            "http://x/shopify/demo/admin/api/2024-10/orders.json?status=any&updated_at_min=2026-11-23T04%3A59%3A59Z&limit=250&order=updated_at%20asc"
        );
        assert_eq!(shop_handle("demo.myshopify.com"), "demo");
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
    fn extreme_call_limits_and_retry_afters_are_bounded() {
        assert_eq!(pause_for(u32::MAX, 1), Some(MAX_PAUSE));
        assert_eq!(
            pause_for(u32::MAX, u32::MAX),
            Some(Duration::from_millis(500).max(MAX_PAUSE).min(MAX_PAUSE))
        );
        for value in ["1e30", "18446744073709551615", "-1", "inf", "NaN"] {
            let wait = retry_after(&headers(&[("retry-after", value)]));
            assert!(
                wait.is_none_or(|wait| wait <= MAX_RETRY_AFTER),
                "{value}: {wait:?}"
            );
        }
    }

    #[test]
    fn next_pages_stay_on_the_shop() {
        let shop = "https://demo.myshopify.com";
        assert!(
            next_page(
                "https://demo.myshopify.com/admin/api/2024-10/orders.json?page_info=x",
                shop
            )
            .is_ok()
        );
        assert!(
            next_page(
                "https://evil.example/admin/api/2024-10/orders.json?page_info=x",
                shop
            )
            .is_err()
        );
        assert!(next_page("/relative", shop).is_err());
        assert!(matches!(
            classify(
                reqwest::StatusCode::NOT_FOUND,
                &HeaderMap::new(),
                r#"{"errors":"Not Found"}"#
            ),
            ExtractError::NotFound(_)
        ));
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "[ -~]{0,80}".prop_map(String::into_bytes),
            "(<[ -~]{0,20}>; ?rel=\"?(next|previous)\"?,? ?){0,3}".prop_map(String::into_bytes),
            "[0-9]{0,12}/[0-9]{0,12}".prop_map(String::into_bytes),
        ]
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
        fn any_page_headers_are_read_without_a_panic(link in header_bytes(), limit in header_bytes(), wait in header_bytes()) {
            let mut map = HeaderMap::new();
            for (name, value) in [("link", link), ("x-shopify-shop-api-call-limit", limit), ("retry-after", wait)] {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(&value) {
                    map.append(name, value);
                }
            }
            let _ = next_link(&map);
            if let Some((used, size)) = call_limit(&map) {
                prop_assert!(pause_for(used, size).is_none_or(|pause| pause <= MAX_PAUSE));
            }
            prop_assert!(retry_after(&map).is_none_or(|wait| wait <= MAX_RETRY_AFTER));
            let _ = parse_page(&map, &json!({"orders": []}));
        }

        #[test]
        fn any_bucket_reading_pauses_at_most_ten_seconds(used in any::<u32>(), size in any::<u32>()) {
            prop_assert!(pause_for(used, size).is_none_or(|pause| pause <= MAX_PAUSE));
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

        #[test]
        fn any_next_link_is_followed_only_on_the_shop(next in ".{0,80}") {
            if let Ok(url) = next_page(&next, "https://demo.myshopify.com") {
                prop_assert!(url.starts_with("https://demo.myshopify.com/"));
            }
        }
    }
}
