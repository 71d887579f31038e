//! Shopify's GraphQL Admin API as it reaches us: the orders query and the bulk operation's
//! query, the answer's `data` / `errors`, the cost extension and the pacing it asks for, and
//! an order node read into the same [`Order`] a webhook gives.
//!
//! Rules, in order:
//!
//! 1. Every request is `POST {shop}/admin/api/{version}/graphql.json` with
//!    `X-Shopify-Access-Token`; the version is configuration (`SHOPIFY_API_VERSION`).
//! 2. An answer with `errors` whose code is `THROTTLED` is transient: retried after the time
//!    the bucket needs to hold the query's requested cost again ([`refill_wait`]); any other
//!    `errors` without `data` is permanent and names Shopify's message.
//! 3. Before each request, if the bucket (`extensions.cost.throttleStatus`) holds less than
//!    the cost the last request asked for, we wait for it to refill ([`pace`]) — so other apps
//!    sharing the shop's bucket keep room and a throttle is rare.
//! 4. Money is read exactly, in the shop's currency (`shopMoney`) and the buyer's
//!    (`presentmentMoney`); an order's id is its `legacyResourceId`, the same number its
//!    webhooks carry, so both paths write the same row.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::wire::{Order, OrderError, Refund, id, money_field, timestamp};
use crate::{ExtractError, MAX_QUOTED_BODY};

/// The Admin API version requests name unless `SHOPIFY_API_VERSION` says otherwise.
pub const DEFAULT_API_VERSION: &str = "2026-10";
/// Orders a page asks for: with [`LINE_ITEMS_PER_ORDER`] the query costs at most
/// 2 + 80 × 11 = 882 points, under Shopify's 1,000-point ceiling for one query.
pub const ORDERS_PER_PAGE: u32 = 80;
/// Line items each polled order carries (bulk operations carry all of them).
pub const LINE_ITEMS_PER_ORDER: u32 = 8;
/// The longest wait [`pace`] and [`refill_wait`] ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The fields of an order the mirror needs; `lineItems` is appended by each query.
const ORDER_FIELDS: &str = "id legacyResourceId name createdAt updatedAt processedAt cancelledAt \
    cancelReason currencyCode presentmentCurrencyCode displayFinancialStatus email \
    totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } } \
    subtotalPriceSet { shopMoney { amount } presentmentMoney { amount } } \
    totalTaxSet { shopMoney { amount } presentmentMoney { amount } } \
    totalDiscountsSet { shopMoney { amount } presentmentMoney { amount } } \
    customer { id legacyResourceId email } \
    refunds(first: 50) { id legacyResourceId createdAt \
        totalRefundedSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } } }";

const LINE_ITEM_FIELDS: &str = "id name quantity sku originalUnitPriceSet { shopMoney { amount } presentmentMoney { amount } }";

/// The search string of orders changed since `since`.
pub fn updated_since(since: DateTime<Utc>) -> String {
    format!(
        "updated_at:>='{}'",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The body of one page of orders changed since `since`, after `cursor`.
pub fn orders_request(since: DateTime<Utc>, cursor: Option<&str>) -> Value {
    let query = format!(
        "query Orders($first: Int!, $after: String, $query: String!) {{ \
           orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{ \
             pageInfo {{ hasNextPage endCursor }} \
             nodes {{ {ORDER_FIELDS} lineItems(first: {LINE_ITEMS_PER_ORDER}) {{ nodes {{ {LINE_ITEM_FIELDS} }} }} }} }} }}"
    );
    json!({
        "query": query,
        "variables": { "first": ORDERS_PER_PAGE, "after": cursor, "query": updated_since(since) },
    })
}

/// The inner query of a bulk operation over every order changed since `since` (every order
/// the token may read when `None`): connections without `first`, as bulk queries are
/// written; each line item arrives as its own JSONL line with `__parentId`.
pub fn bulk_orders_query(since: Option<DateTime<Utc>>) -> String {
    let filter = since
        .map(|since| format!("query: \"{}\", ", updated_since(since).replace('"', "\\\"")))
        .unwrap_or_default();
    format!(
        "{{ orders({filter}sortKey: UPDATED_AT) {{ edges {{ node {{ {ORDER_FIELDS} \
           lineItems {{ edges {{ node {{ {LINE_ITEM_FIELDS} }} }} }} }} }} }} }}"
    )
}

/// The body that starts a bulk operation running `inner`.
pub fn bulk_run_request(inner: &str) -> Value {
    json!({
        "query": "mutation RunBulk($query: String!) { bulkOperationRunQuery(query: $query) { \
                    bulkOperation { id status } userErrors { field message code } } }",
        "variables": { "query": inner },
    })
}

/// The body that asks how bulk operation `id` is doing.
pub fn bulk_status_request(id: &str) -> Value {
    json!({
        "query": "query BulkStatus($id: ID!) { node(id: $id) { ... on BulkOperation { \
                    id status errorCode objectCount fileSize url partialDataUrl } } }",
        "variables": { "id": id },
    })
}

/// `extensions.cost.throttleStatus` and the cost the request asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub requested: f64,
    pub maximum: f64,
    pub available: f64,
    /// Points restored per second.
    pub restore_rate: f64,
}

/// The cost extension of an answer, when it has one.
pub fn cost(answer: &Value) -> Option<Cost> {
    let cost = answer.pointer("/extensions/cost")?;
    let status = cost.get("throttleStatus")?;
    let number = |value: Option<&Value>| value.and_then(Value::as_f64);
    Some(Cost {
        requested: number(cost.get("requestedQueryCost")).unwrap_or(0.0),
        maximum: number(status.get("maximumAvailable"))?,
        available: number(status.get("currentlyAvailable"))?,
        restore_rate: number(status.get("restoreRate")).filter(|rate| *rate > 0.0)?,
    })
}

/// How long until the bucket holds `needed` points again, at most 30 s.
fn wait_for(cost: &Cost, needed: f64) -> Option<Duration> {
    let missing = needed.min(cost.maximum) - cost.available;
    if missing <= 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(missing / cost.restore_rate)
        .ok()
        .map(|wait| wait.min(MAX_WAIT))
}

/// Rule 3: the wait before the next request of the same cost.
pub fn pace(cost: &Cost) -> Option<Duration> {
    wait_for(cost, cost.requested)
}

/// Rule 2: the wait a `THROTTLED` answer asks for (at least a second).
pub fn refill_wait(cost: Option<&Cost>) -> Duration {
    cost.and_then(|cost| wait_for(cost, cost.requested))
        .unwrap_or_default()
        .max(Duration::from_secs(1))
}

/// Rule 2: `data` of an answer, or the error it carries.
pub fn data(answer: &Value) -> Result<&Value, ExtractError> {
    let errors = answer.get("errors").filter(|errors| !errors.is_null());
    if let Some(errors) = errors {
        let message = errors
            .get(0)
            .and_then(|error| error.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| errors.to_string(), str::to_string);
        let message = shared::text::clip(&message, MAX_QUOTED_BODY).to_string();
        let throttled = errors.as_array().is_some_and(|errors| {
            errors.iter().any(|error| {
                error.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED")
            })
        });
        if throttled {
            return Err(ExtractError::Throttled {
                message: format!("Shopify GraphQL: {message}"),
                retry_after: Some(refill_wait(cost(answer).as_ref())),
            });
        }
        if answer.get("data").is_none_or(Value::is_null) {
            return Err(ExtractError::Api(format!("Shopify GraphQL: {message}")));
        }
    }
    answer
        .get("data")
        .filter(|data| !data.is_null())
        .ok_or_else(|| ExtractError::Malformed("a GraphQL answer without `data`".into()))
}

/// One page of polled orders.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
    pub cost: Option<Cost>,
}

/// Reads a page of the orders query.
pub fn parse_orders_page(answer: &Value) -> Result<OrdersPage, ExtractError> {
    let orders = data(answer)?
        .get("orders")
        .ok_or_else(|| ExtractError::Malformed("orders answer without `orders`".into()))?;
    let nodes = orders
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| ExtractError::Malformed("orders answer without `nodes`".into()))?;
    let orders_read = nodes
        .iter()
        .map(|node| parse_order_node(node.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ExtractError::Malformed(error.to_string()))?;
    let page_info = orders.get("pageInfo");
    let more = page_info
        .and_then(|info| info.get("hasNextPage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let next = page_info
        .and_then(|info| info.get("endCursor"))
        .and_then(Value::as_str)
        .filter(|_| more)
        .map(str::to_string);
    Ok(OrdersPage {
        orders: orders_read,
        next,
        cost: cost(answer),
    })
}

fn amount(set: Option<&Value>, currency: &str, what: &str) -> Result<Option<Decimal>, OrderError> {
    money_field(
        set.and_then(|set| set.get(currency))
            .and_then(|money| money.get("amount")),
        what,
    )
}

/// Rule 4: an order node (of a page, or a bulk line with its line items gathered under
/// `lineItems.nodes`) as the [`Order`] the mirror keeps; the node itself is its payload.
pub fn parse_order_node(node: Value) -> Result<Order, OrderError> {
    let malformed = |what: String| OrderError::Malformed(what);
    let order_id = id(node.get("legacyResourceId"))
        .ok_or_else(|| malformed("order node without a numeric `legacyResourceId`".into()))?;
    let at = |key: &str| {
        timestamp(node.get(key))
            .ok_or_else(|| malformed(format!("order {order_id} without a valid `{key}`")))
    };
    let shop_money = |key: &str| {
        amount(
            node.get(key),
            "shopMoney",
            &format!("order {order_id}: `{key}`"),
        )
    };
    let presentment_money = |key: &str| {
        amount(
            node.get(key),
            "presentmentMoney",
            &format!("order {order_id}: `{key}`"),
        )
    };
    let currency = node
        .get("currencyCode")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("order {order_id} without a `currencyCode`")))?
        .to_string();
    let total_price = shop_money("totalPriceSet")?
        .ok_or_else(|| malformed(format!("order {order_id} without a `totalPriceSet`")))?;
    let refunds = node
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|refund| {
            let refund_id = id(refund.get("legacyResourceId")).ok_or_else(|| {
                malformed(format!(
                    "order {order_id}: a refund without `legacyResourceId`"
                ))
            })?;
            let refunded = amount(
                refund.get("totalRefundedSet"),
                "shopMoney",
                &format!("refund {refund_id}: `totalRefundedSet`"),
            )?
            .unwrap_or(Decimal::ZERO);
            Ok(Refund {
                refund_id,
                order_id,
                amount: refunded,
                created_at: timestamp(refund.get("createdAt")),
                raw: refund.clone(),
            })
        })
        .collect::<Result<Vec<_>, OrderError>>()?;
    let customer = node.get("customer").filter(|customer| !customer.is_null());
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    Ok(Order {
        order_id,
        name: text(node.get("name")),
        created_at: at("createdAt")?,
        updated_at: at("updatedAt")?,
        processed_at: timestamp(node.get("processedAt")),
        cancelled_at: timestamp(node.get("cancelledAt")),
        currency,
        total_price,
        subtotal_price: shop_money("subtotalPriceSet")?,
        total_tax: shop_money("totalTaxSet")?,
        total_discounts: shop_money("totalDiscountsSet")?,
        // `PARTIALLY_REFUNDED` as the REST and webhook payloads spell it.
        financial_status: text(node.get("displayFinancialStatus"))
            .map(|status| status.to_ascii_lowercase()),
        customer_id: customer.and_then(|customer| id(customer.get("legacyResourceId"))),
        customer_email: customer
            .and_then(|customer| text(customer.get("email")))
            .or_else(|| text(node.get("email"))),
        presentment_currency: text(node.get("presentmentCurrencyCode")),
        presentment_total_price: presentment_money("totalPriceSet")?,
        refunds,
        raw: node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Value {
        json!({
            "id": "gid://shopify/Order/450789469", "legacyResourceId": "450789469", "name": "#1001",
            "createdAt": "2026-11-02T15:00:00Z", "updatedAt": "2026-11-03T14:00:00Z",
            "processedAt": "2026-11-02T15:00:00Z", "cancelledAt": null,
            "currencyCode": "USD", "presentmentCurrencyCode": "EUR",
            "displayFinancialStatus": "PARTIALLY_REFUNDED",
            "totalPriceSet": {"shopMoney": {"amount": "110.10", "currencyCode": "USD"},
                              "presentmentMoney": {"amount": "101.30", "currencyCode": "EUR"}},
            "subtotalPriceSet": {"shopMoney": {"amount": "100.00"}, "presentmentMoney": {"amount": "92.00"}},
            "customer": {"id": "gid://shopify/Customer/207119551", "legacyResourceId": "207119551",
                         "email": "bob@example.com"},
            "refunds": [{"id": "gid://shopify/Refund/509562969", "legacyResourceId": "509562969",
                         "createdAt": "2026-11-03T14:00:00Z",
                         "totalRefundedSet": {"shopMoney": {"amount": "10.05", "currencyCode": "USD"}}}],
            "lineItems": {"nodes": [{"id": "gid://shopify/LineItem/1", "quantity": 1}]}
        })
    }

    #[test]
    fn an_order_node_is_read_with_both_currencies_and_its_refunds() {
        let order = parse_order_node(node()).unwrap();
        assert_eq!(order.order_id, 450789469);
        assert_eq!(order.total_price, Decimal::new(11010, 2));
        assert_eq!(order.presentment_total_price, Some(Decimal::new(10130, 2)));
        assert_eq!(order.presentment_currency.as_deref(), Some("EUR"));
        assert_eq!(
            order.financial_status.as_deref(),
            Some("partially_refunded")
        );
        assert_eq!(order.refunds[0].refund_id, 509562969);
        assert_eq!(order.refunds[0].amount, Decimal::new(1005, 2));
        assert_eq!(order.customer_id, Some(207119551));
        let mut broken = node();
        broken["totalPriceSet"]["shopMoney"]["amount"] = json!("1e40");
        assert!(matches!(
            parse_order_node(broken),
            Err(OrderError::OutOfRange(_))
        ));
        let mut no_id = node();
        no_id.as_object_mut().unwrap().remove("legacyResourceId");
        assert!(matches!(
            parse_order_node(no_id),
            Err(OrderError::Malformed(_))
        ));
    }

    #[test]
    fn the_bucket_paces_before_it_throttles() {
        let cost = |available: f64| Cost {
            requested: 882.0,
            maximum: 2000.0,
            available,
            restore_rate: 100.0,
        };
        assert_eq!(pace(&cost(1500.0)), None, "room for the next page");
        assert_eq!(pace(&cost(682.0)), Some(Duration::from_secs(2)));
        assert_eq!(pace(&cost(0.0)), Some(Duration::from_secs_f64(8.82)));
        let huge = Cost {
            requested: 5000.0,
            ..cost(0.0)
        };
        assert_eq!(
            pace(&huge),
            Some(Duration::from_secs(20)),
            "never more than the bucket"
        );
        assert_eq!(refill_wait(None), Duration::from_secs(1));
    }

    #[test]
    fn throttled_and_failed_answers_are_told_apart() {
        let throttled = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 882, "actualQueryCost": null,
                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 382, "restoreRate": 100.0}}}
        });
        match data(&throttled) {
            Err(ExtractError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(5)));
            }
            other => panic!("{other:?}"),
        }
        let failed = json!({"errors": [{"message": "Field 'x' doesn't exist on type 'Order'"}]});
        assert!(
            matches!(data(&failed), Err(ExtractError::Api(message)) if message.contains("doesn't exist"))
        );
        assert!(matches!(data(&json!({})), Err(ExtractError::Malformed(_))));
        let partial = json!({"data": {"orders": null}, "errors": [{"message": "partial"}]});
        assert!(data(&partial).is_ok(), "data with errors is read");
    }

    #[test]
    fn a_page_says_where_the_next_one_is() {
        let answer = json!({"data": {"orders": {"pageInfo": {"hasNextPage": true, "endCursor": "abc"},
                                               "nodes": [node()]}}});
        let page = parse_orders_page(&answer).unwrap();
        assert_eq!(page.next.as_deref(), Some("abc"));
        assert_eq!(page.orders.len(), 1);
        let last = json!({"data": {"orders": {"pageInfo": {"hasNextPage": false, "endCursor": "abc"},
                                             "nodes": []}}});
        assert_eq!(parse_orders_page(&last).unwrap().next, None);
        assert!(
            bulk_orders_query(Some("2026-12-01T00:00:00Z".parse().unwrap()))
                .contains(r#"orders(query: "updated_at:>='2026-12-01T00:00:00Z'", sortKey"#)
        );
        assert!(bulk_orders_query(None).contains("orders(sortKey: UPDATED_AT)"));
    }
}
