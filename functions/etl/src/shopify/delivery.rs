//! What a Shopify webhook delivery claims, read before anything is trusted: its headers
//! ([`read`]) and its body ([`payload`]). Pure functions, so each rule is tested alone.
//!
//! Shopify signs the body only (`X-Shopify-Hmac-Sha256`): whoever holds one genuine
//! delivery can send it again with any headers. These rules refuse the naive replay and the
//! malformed request; what keeps a replayed *body* harmless whatever its headers say is in
//! [`super::webhook`] (the order must be the named shop's, newest `updated_at` wins, refunds
//! count once by id).
//!
//! 1. `X-Shopify-Topic`, `X-Shopify-Shop-Domain`, `X-Shopify-Webhook-Id`,
//!    `X-Shopify-Event-Id` and `X-Shopify-Triggered-At` are each sent once — Shopify sends
//!    every one of them on every delivery, so a missing one is not Shopify — as visible
//!    ASCII of at most [`MAX_HEADER_BYTES`]. Otherwise: 400.
//! 2. The shop domain is `{handle}.myshopify.com` or the bare handle, the handle 1–63 of
//!    `a-z 0-9 -` not starting with `-`: it becomes part of the URL an order is re-read
//!    from. Otherwise: 400.
//! 3. `X-Shopify-Triggered-At` (RFC 3339) is at most [`MAX_AGE`] old and at most
//!    [`MAX_SKEW`] ahead of our clock. Shopify retries a failed delivery 8 times over
//!    4 hours, each time with the original trigger time, so 6 hours lets every retry in
//!    and refuses a delivery captured earlier; 5 minutes absorbs clock skew. Outside the
//!    window: refused as a replay (401).
//! 4. The body is JSON (400 otherwise). `orders/*` topics but `orders/delete` carry an
//!    order, `refunds/create` a refund (a body that is not one is a 400); `app/uninstalled`
//!    is read as the shop leaving, and the compliance topics (`customers/data_request`,
//!    `customers/redact`, `shop/redact`) as the customer and orders they name; other topics
//!    are recorded unread. A body the database could never store — `\u0000` anywhere in an
//!    order or refund, money beyond an exact decimal — is [`PayloadError::Unstorable`]:
//!    acknowledged and quarantined, since Shopify would retry a refusal for hours.

use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::wire::id;
use super::{Order, OrderError, Refund, parse_order, parse_refund};

/// The oldest `X-Shopify-Triggered-At` accepted (rule 3).
pub const MAX_AGE: Duration = Duration::hours(6);
/// How far ahead of our clock `X-Shopify-Triggered-At` may be (rule 3).
pub const MAX_SKEW: Duration = Duration::minutes(5);
/// The longest header value read (rule 1); Shopify's ids are UUIDs, topics a few words.
pub const MAX_HEADER_BYTES: usize = 255;
/// The longest shop handle (rule 2), a DNS label.
const MAX_HANDLE_BYTES: usize = 63;
const SHOPIFY_DOMAIN: &str = ".myshopify.com";

/// What the headers of a delivery claim (rules 1–3 hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub topic: &'a str,
    /// `X-Shopify-Shop-Domain` as sent.
    pub domain: &'a str,
    /// The shop handle of `domain`.
    pub shop: &'a str,
    pub webhook_id: &'a str,
    pub event_id: &'a str,
    pub triggered_at: DateTime<Utc>,
}

/// Why the headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} is not valid: {1}")]
    Invalid(&'static str, &'static str),
    #[error(
        "X-Shopify-Triggered-At is {minutes} minutes old; deliveries older than {} minutes are refused as replays",
        MAX_AGE.num_minutes()
    )]
    Stale { minutes: i64 },
    #[error(
        "X-Shopify-Triggered-At is {seconds} s ahead of our clock; at most {} s is accepted",
        MAX_SKEW.num_seconds()
    )]
    Future { seconds: i64 },
}

impl DeliveryError {
    /// Whether the delivery was refused as a replay (401) rather than as malformed (400).
    pub fn is_replay(&self) -> bool {
        matches!(
            self,
            DeliveryError::Stale { .. } | DeliveryError::Future { .. }
        )
    }
}

/// Rule 1: one value, visible ASCII, not too long.
fn single<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, DeliveryError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(DeliveryError::Missing(name))?;
    if values.next().is_some() {
        return Err(DeliveryError::Invalid(name, "sent more than once"));
    }
    let value = std::str::from_utf8(value.as_bytes())
        .map_err(|_| DeliveryError::Invalid(name, "not ASCII"))?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if value.is_empty() {
        return Err(DeliveryError::Missing(name));
    }
    if value.len() > MAX_HEADER_BYTES {
        return Err(DeliveryError::Invalid(name, "longer than 255 bytes"));
    }
    if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(DeliveryError::Invalid(
            name,
            "only visible ASCII characters are allowed",
        ));
    }
    Ok(value)
}

/// Rule 2: the handle of `demo-store.myshopify.com` (or of `demo-store`).
pub fn shop_of(domain: &str) -> Result<&str, DeliveryError> {
    const NAME: &str = "X-Shopify-Shop-Domain";
    let handle = domain.strip_suffix(SHOPIFY_DOMAIN).unwrap_or(domain);
    let valid = !handle.is_empty()
        && handle.len() <= MAX_HANDLE_BYTES
        && !handle.starts_with('-')
        && handle
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if valid {
        Ok(handle)
    } else {
        Err(DeliveryError::Invalid(
            NAME,
            "expected {shop}.myshopify.com with a shop of a-z, 0-9 and -",
        ))
    }
}

/// Rule 3: `triggered_at` is inside the window around `now`.
pub fn check_fresh(triggered_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), DeliveryError> {
    let age = now.signed_duration_since(triggered_at);
    if age > MAX_AGE {
        return Err(DeliveryError::Stale {
            minutes: age.num_minutes(),
        });
    }
    if -age > MAX_SKEW {
        return Err(DeliveryError::Future {
            seconds: (-age).num_seconds(),
        });
    }
    Ok(())
}

/// Rules 1–3 over a delivery's headers, at `now`.
pub fn read(headers: &HeaderMap, now: DateTime<Utc>) -> Result<Delivery<'_>, DeliveryError> {
    let topic = single(headers, "x-shopify-topic")?;
    let domain = single(headers, "x-shopify-shop-domain")?;
    let webhook_id = single(headers, "x-shopify-webhook-id")?;
    let event_id = single(headers, "x-shopify-event-id")?;
    let triggered = single(headers, "x-shopify-triggered-at")?;
    let shop = shop_of(domain)?;
    let triggered_at = DateTime::parse_from_rfc3339(triggered)
        .map_err(|_| DeliveryError::Invalid("X-Shopify-Triggered-At", "not an RFC 3339 time"))?
        .with_timezone(&Utc);
    check_fresh(triggered_at, now)?;
    Ok(Delivery {
        topic,
        domain,
        shop,
        webhook_id,
        event_id,
        triggered_at,
    })
}

/// What a delivery's body carries (rule 4).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Order(Box<Order>),
    Refund(Refund),
    /// `app/uninstalled`: the shop removed the app.
    Uninstalled,
    /// A compliance request (`customers/data_request`, `customers/redact`, `shop/redact`).
    Compliance(Compliance),
    /// A topic we record without reading.
    Other,
}

/// What a compliance request names.
#[derive(Debug, Clone, PartialEq)]
pub struct Compliance {
    pub topic: ComplianceTopic,
    /// The customer, for the `customers/*` topics.
    pub customer_id: Option<i64>,
    /// `orders_to_redact` or `orders_requested`.
    pub orders: Vec<i64>,
    pub body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplianceTopic {
    DataRequest,
    CustomerRedact,
    ShopRedact,
}

impl ComplianceTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceTopic::DataRequest => "customers/data_request",
            ComplianceTopic::CustomerRedact => "customers/redact",
            ComplianceTopic::ShopRedact => "shop/redact",
        }
    }
}

impl Payload {
    /// The order the delivery would write to, if any.
    pub fn order_id(&self) -> Option<i64> {
        match self {
            Payload::Order(order) => Some(order.order_id),
            Payload::Refund(refund) => Some(refund.order_id),
            Payload::Uninstalled | Payload::Compliance(_) | Payload::Other => None,
        }
    }
}

/// Why a body was refused (rule 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but no row could ever hold it: quarantined.
    #[error("{0}")]
    Unstorable(String),
}

impl From<OrderError> for PayloadError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Malformed(reason) => PayloadError::Malformed(reason),
            OrderError::OutOfRange(reason) => PayloadError::Unstorable(reason),
        }
    }
}

/// Rule 4: the body of a `topic` delivery.
pub fn payload(topic: &str, body: &[u8]) -> Result<Payload, PayloadError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|error| PayloadError::NotJson(error.to_string()))?;
    let compliance = match topic {
        "app/uninstalled" => return Ok(Payload::Uninstalled),
        "customers/data_request" => Some(ComplianceTopic::DataRequest),
        "customers/redact" => Some(ComplianceTopic::CustomerRedact),
        "shop/redact" => Some(ComplianceTopic::ShopRedact),
        _ => None,
    };
    if let Some(topic) = compliance {
        if let Some(at) = shared::text::unstorable(&json) {
            return Err(PayloadError::Unstorable(format!(
                "the body holds \\u0000 at {at}, which the database cannot store"
            )));
        }
        let orders_key = match topic {
            ComplianceTopic::DataRequest => "orders_requested",
            _ => "orders_to_redact",
        };
        let orders = match json.get(orders_key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|order| id(Some(order)))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| {
                    PayloadError::Malformed(format!("`{orders_key}` holds a non-numeric id"))
                })?,
            Some(_) => {
                return Err(PayloadError::Malformed(format!(
                    "`{orders_key}` is not a list"
                )));
            }
        };
        let customer_id = id(json.pointer("/customer/id"));
        if topic != ComplianceTopic::ShopRedact && customer_id.is_none() {
            return Err(PayloadError::Malformed(format!(
                "{} without a numeric `customer.id`",
                topic.as_str()
            )));
        }
        return Ok(Payload::Compliance(Compliance {
            topic,
            customer_id,
            orders,
            body: json,
        }));
    }
    let carries_order = topic.starts_with("orders/") && topic != "orders/delete";
    if !carries_order && topic != "refunds/create" {
        return Ok(Payload::Other);
    }
    if let Some(at) = shared::text::unstorable(&json) {
        return Err(PayloadError::Unstorable(format!(
            "the body holds \\u0000 at {at}, which the database cannot store"
        )));
    }
    if carries_order {
        Ok(Payload::Order(Box::new(parse_order(&json)?)))
    } else {
        Ok(Payload::Refund(parse_refund(&json)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    const NOW: &str = "2026-12-07T12:00:00Z";

    fn genuine() -> Vec<(&'static str, &'static str)> {
        vec![
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "demo-store.myshopify.com"),
            (
                "x-shopify-webhook-id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
            ("x-shopify-event-id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
            ("x-shopify-triggered-at", "2026-12-07T11:59:58.123Z"),
        ]
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut pairs = genuine();
        pairs.retain(|(key, _)| *key != name);
        pairs.push((name, value));
        headers(&pairs)
    }

    fn without(name: &'static str) -> HeaderMap {
        let mut pairs = genuine();
        pairs.retain(|(key, _)| *key != name);
        headers(&pairs)
    }

    #[test]
    fn a_genuine_delivery_is_read() {
        let map = headers(&genuine());
        let delivery = read(&map, at(NOW)).unwrap();
        assert_eq!(delivery.shop, "demo-store");
        assert_eq!(delivery.domain, "demo-store.myshopify.com");
        assert_eq!(delivery.topic, "orders/create");
        assert_eq!(delivery.triggered_at, at("2026-12-07T11:59:58.123Z"));
    }

    #[test]
    fn rule_1_every_header_is_required_once_and_visible_ascii() {
        for name in [
            "x-shopify-topic",
            "x-shopify-shop-domain",
            "x-shopify-webhook-id",
            "x-shopify-event-id",
            "x-shopify-triggered-at",
        ] {
            assert!(
                matches!(
                    read(&without(name), at(NOW)),
                    Err(DeliveryError::Missing(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            read(&with("x-shopify-webhook-id", "  "), at(NOW)),
            Err(DeliveryError::Missing(_))
        ));
        let mut twice = headers(&genuine());
        twice.append(
            "x-shopify-shop-domain",
            "other.myshopify.com".parse().unwrap(),
        );
        assert_eq!(
            read(&twice, at(NOW)),
            Err(DeliveryError::Invalid(
                "x-shopify-shop-domain",
                "sent more than once"
            ))
        );
        let long = "a".repeat(256);
        let mut map = headers(&genuine());
        map.insert("x-shopify-webhook-id", long.parse().unwrap());
        assert!(matches!(
            read(&map, at(NOW)),
            Err(DeliveryError::Invalid(_, _))
        ));
        let mut map = headers(&genuine());
        map.insert(
            "x-shopify-webhook-id",
            axum::http::HeaderValue::from_bytes("idé".as_bytes()).unwrap(),
        );
        assert!(matches!(
            read(&map, at(NOW)),
            Err(DeliveryError::Invalid(_, _))
        ));
        assert!(matches!(
            read(&with("x-shopify-event-id", "a b"), at(NOW)),
            Err(DeliveryError::Invalid(_, _))
        ));
    }

    #[test]
    fn rule_2_the_shop_is_a_myshopify_handle() {
        assert_eq!(shop_of("demo-store.myshopify.com"), Ok("demo-store"));
        assert_eq!(shop_of("demo-store"), Ok("demo-store"));
        let long = "a".repeat(64);
        for bad in [
            ".myshopify.com",
            "-x.myshopify.com",
            "Demo.myshopify.com",
            "evil.com/x?",
            "a.b.myshopify.com",
            "evil.example",
            long.as_str(),
        ] {
            assert!(shop_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_3_the_trigger_time_is_inside_the_window() {
        let now = at(NOW);
        assert_eq!(check_fresh(now - MAX_AGE, now), Ok(()));
        assert_eq!(
            check_fresh(now - MAX_AGE - Duration::seconds(1), now),
            Err(DeliveryError::Stale { minutes: 360 })
        );
        assert_eq!(check_fresh(now + MAX_SKEW, now), Ok(()));
        assert!(matches!(
            check_fresh(now + MAX_SKEW + Duration::seconds(1), now),
            Err(DeliveryError::Future { .. })
        ));
        // Shopify's last retry, 4 hours after the trigger, is let in.
        assert_eq!(check_fresh(now - Duration::hours(4), now), Ok(()));
        let replayed = |at: &'static str| {
            read(&with("x-shopify-triggered-at", at), now)
                .unwrap_err()
                .is_replay()
        };
        assert!(replayed("2026-12-07T05:00:00Z"));
        assert!(!replayed("yesterday"));
        assert!(replayed("0000-01-01T00:00:00Z"));
        assert!(replayed("9999-12-31T23:59:59Z"));
    }

    #[test]
    fn rule_4_bodies_are_orders_refunds_or_recorded_unread() {
        let order = json!({"id": 1, "created_at": "2026-12-07T10:00:00Z", "updated_at": "2026-12-07T10:00:00Z",
                           "currency": "USD", "total_price": "10.00"});
        let body = |value: &Value| serde_json::to_vec(value).unwrap();
        assert!(matches!(
            payload("orders/create", &body(&order)),
            Ok(Payload::Order(_))
        ));
        assert_eq!(payload("orders/delete", b"{\"id\": 1}"), Ok(Payload::Other));
        assert_eq!(payload("app/uninstalled", b"{}"), Ok(Payload::Uninstalled));
        assert_eq!(payload("shop/update", b"{}"), Ok(Payload::Other));
        let redact = payload(
            "customers/redact",
            br#"{"shop_domain": "s.myshopify.com", "customer": {"id": 7}, "orders_to_redact": [1, "2"]}"#,
        );
        assert!(
            matches!(&redact, Ok(Payload::Compliance(request))
                if request.customer_id == Some(7) && request.orders == [1, 2]),
            "{redact:?}"
        );
        for refused in [
            &br#"{"customer": {}}"#[..],
            br#"{"customer": {"id": 7}, "orders_to_redact": ["x"]}"#,
            br#"{"customer": {"id": 7}, "orders_to_redact": 3}"#,
        ] {
            assert!(matches!(
                payload("customers/redact", refused),
                Err(PayloadError::Malformed(_))
            ));
        }
        assert!(matches!(
            payload("shop/redact", br#"{"shop_domain": "s.myshopify.com"}"#),
            Ok(Payload::Compliance(request)) if request.customer_id.is_none()
        ));
        assert!(matches!(
            payload(
                "customers/data_request",
                br#"{"customer": {"id": 1}, "x": "\u0000"}"#
            ),
            Err(PayloadError::Unstorable(_))
        ));
        assert!(matches!(
            payload("orders/create", b"{\"id\": 1,"),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            payload("refunds/create", b"{\"id\": 1}"),
            Err(PayloadError::Malformed(_))
        ));
        let mut huge = order.clone();
        huge["total_price"] = json!("1e30");
        assert!(matches!(
            payload("orders/updated", &body(&huge)),
            Err(PayloadError::Unstorable(_))
        ));
        huge["total_price"] = json!(1e30);
        assert!(matches!(
            payload("orders/updated", &body(&huge)),
            Err(PayloadError::Unstorable(_))
        ));
        let mut nul = order.clone();
        nul["name"] = json!("#1001\u{0}");
        assert_eq!(
            payload("orders/paid", &body(&nul)),
            Err(PayloadError::Unstorable(
                "the body holds \\u0000 at /name, which the database cannot store".into()
            ))
        );
        let mut scientific = order;
        scientific["total_price"] = json!("1.5e2");
        let Ok(Payload::Order(parsed)) = payload("orders/paid", &body(&scientific)) else {
            panic!("scientific money is money")
        };
        assert_eq!(parsed.total_price, rust_decimal::Decimal::new(150, 0));
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            Just(b"2026-12-07T11:59:58Z".to_vec()),
            Just(b"demo-store.myshopify.com".to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_headers_are_read_or_refused_never_a_panic(
            values in proptest::collection::vec(header_value(), 5),
            now in -8_000_000_000_000i64..8_000_000_000_000,
        ) {
            let names = [
                "x-shopify-topic",
                "x-shopify-shop-domain",
                "x-shopify-webhook-id",
                "x-shopify-event-id",
                "x-shopify-triggered-at",
            ];
            let mut map = HeaderMap::new();
            for (name, value) in names.iter().zip(&values) {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(value) {
                    map.append(*name, value);
                }
            }
            let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
            if let Ok(delivery) = read(&map, now) {
                prop_assert!(delivery.webhook_id.len() <= MAX_HEADER_BYTES);
                prop_assert!(shop_of(delivery.domain).is_ok());
            }
        }

        #[test]
        fn arbitrary_bodies_are_parsed_or_refused_never_a_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            topic in prop_oneof![
                Just("orders/create".to_string()),
                Just("refunds/create".to_string()),
                Just("orders/delete".to_string()),
                "[a-z/]{0,20}",
            ],
        ) {
            let _ = payload(&topic, &body);
        }
    }
}
