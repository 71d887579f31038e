//! The GraphQL Admin API stand-in: `POST /shopify/{shop}/admin/api/{version}/graphql.json`
//! serving the three operations the connector sends, with Shopify's cost-based throttling,
//! and the JSONL files of bulk operations.
//!
//! Modelled:
//! * Operations, told apart by the root field the query names (no general GraphQL parser:
//!   any other query is answered with Shopify's "doesn't exist" error):
//!   - `orders(first:, after:, query: "updated_at:>='…'", sortKey: UPDATED_AT)` with
//!     `pageInfo { hasNextPage endCursor }` and `nodes`, line items cut to the query's
//!     `lineItems(first: N)`;
//!   - `bulkOperationRunQuery(query:)` over the orders the inner query's `updated_at` filter
//!     selects, taken as a snapshot when it starts (at most five running per shop, as API
//!     2026-01+ allows; a sixth gets the `OPERATION_IN_PROGRESS` user error);
//!   - `order(id:)`, the order's ids or `null` when the shop has no such order;
//!   - `node(id:)` of a bulk operation: `CREATED`, then `RUNNING`, then `COMPLETED` after
//!     [`ShopifyScenario::bulk_polls`] polls, with `url`, `objectCount` and `fileSize`; a
//!     fault makes the next operation `FAILED` with a `partialDataUrl` holding its first half.
//! * Cost: a query's requested cost is 2 + first × (3 + line items asked for), and a query
//!   above 1,000 points is refused (`MAX_COST_EXCEEDED`); the actual cost counts what was
//!   returned. Each shop has a bucket ([`CostPlan`]: 2,000 points restoring 100/s on
//!   Standard, 20,000 and 1,000/s on Plus, the default here); a query the bucket cannot hold
//!   is answered HTTP 200 with a `THROTTLED` error, and every answer carries
//!   `extensions.cost` with `throttleStatus`.
//! * The result file, at `…/bulk-results/{id}.jsonl` on the shop's own host (Shopify's are
//!   signed storage URLs): one line per order, then one per line item with `__parentId`,
//!   streamed a few hundred orders at a time so a million-order file is never held.
//!
//! Left out: every other field and type, `reverse`, other sort keys and search syntax, query
//! validation beyond the root field, and exact error texts (approximations).

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::faults::{ShopifyFaults, ShopifyState};
use super::pagination::{Direction, Filter};
use super::shop::Shop;
use crate::answer::{Answer, serve};
use crate::lock::unpoisoned as lock;
use crate::query::encode_query;
use crate::reply::{json_body, set_header};
use crate::request_log::{Api, Outcome};

/// Shopify's ceiling on one query's requested cost.
const MAX_QUERY_COST: f64 = 1_000.0;
/// Bulk queries running at once per shop (API 2026-01 and later).
const MAX_RUNNING_BULK: usize = 5;
/// Orders generated per chunk of a streamed result file.
const FILE_CHUNK: usize = 500;
/// The largest request body read.
const MAX_BODY: usize = 256 * 1024;

/// A shop's cost bucket: how many points it holds and how fast they come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostPlan {
    pub maximum: f64,
    pub restore_rate: f64,
}

impl CostPlan {
    pub const STANDARD: CostPlan = CostPlan {
        maximum: 2_000.0,
        restore_rate: 100.0,
    };
    pub const PLUS: CostPlan = CostPlan {
        maximum: 20_000.0,
        restore_rate: 1_000.0,
    };
}

/// How full one shop's bucket is.
#[derive(Debug)]
pub(super) struct CostLevel {
    available: f64,
    at: Instant,
}

impl CostLevel {
    pub(super) fn full(plan: CostPlan) -> Self {
        CostLevel {
            available: plan.maximum,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, plan: CostPlan) {
        let now = Instant::now();
        let restored = now.duration_since(self.at).as_secs_f64() * plan.restore_rate;
        self.available = (self.available + restored).min(plan.maximum);
        self.at = now;
    }
}

/// A bulk operation and the orders it froze.
#[derive(Debug, Clone)]
pub(super) struct BulkOperation {
    shop: String,
    ids: Vec<u64>,
    polls: u32,
    fails: bool,
    finished: bool,
}

/// The bulk operations of every shop, and the fault that fails the next one.
#[derive(Debug, Default)]
pub(super) struct BulkOperations {
    next_id: u64,
    operations: HashMap<String, BulkOperation>,
    fail_next: bool,
}

pub(crate) fn routes(faults: &ShopifyFaults) -> Router {
    Router::new()
        .route(
            "/shopify/{shop}/admin/api/{version}/graphql.json",
            post(graphql),
        )
        .route("/shopify/{shop}/bulk-results/{file}", get(bulk_file))
        .with_state(faults.clone())
}

impl ShopifyFaults {
    /// Makes the next bulk operation end `FAILED`, with half its orders in `partialDataUrl`.
    pub fn fail_next_bulk_operation(&self) {
        lock(&self.0.bulk).fail_next = true;
    }

    /// Sets the cost bucket of every shop (and fills it).
    pub fn set_cost_plan(&self, plan: CostPlan) {
        *lock(&self.0.cost_plan) = plan;
        for shop in &self.0.shops {
            *lock(&shop.cost) = CostLevel::full(plan);
        }
    }
}

/// Shopify's GraphQL error answer: HTTP 200, `errors`, and the cost extension.
fn graphql_errors(message: &str, code: &str, cost: Value) -> Response {
    json_body(
        StatusCode::OK,
        &json!({
            "errors": [{"message": message, "extensions": {"code": code}}],
            "extensions": {"cost": cost},
        }),
    )
}

/// The `updated_at:>='…'` of a search string, when it has one.
fn updated_since(search: &str) -> Option<i64> {
    let rest = search.split("updated_at:>=").nth(1)?;
    let value: String = rest
        .trim_start_matches(['\'', '"', '\\'])
        .chars()
        .take_while(|c| !matches!(c, '\'' | '"' | ' ' | '\\'))
        .collect();
    DateTime::parse_from_rfc3339(&value)
        .ok()
        .map(|at| at.timestamp())
}

/// `lineItems(first: N)` of a query, or `None` (a bulk query takes them all).
fn line_items_asked(query: &str) -> Option<usize> {
    let rest = query.split("lineItems(first:").nth(1)?;
    rest.trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn encode_cursor(entry: (i64, u64)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", entry.0, entry.1))
}

fn decode_cursor(text: &str) -> Option<(i64, u64)> {
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (updated, id) = decoded.split_once(':')?;
    Some((updated.parse().ok()?, id.parse().ok()?))
}

fn utc(text: Option<&str>) -> Value {
    text.and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| {
            Value::from(
                at.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            )
        })
        .unwrap_or(Value::Null)
}

/// A REST order of the shared model as the GraphQL node of the same order, and its line
/// items (as nodes).
pub(super) fn order_node(rest: &Value) -> (Value, Vec<Value>) {
    let text = |key: &str| rest.get(key).and_then(Value::as_str);
    let currency = text("currency").unwrap_or("USD");
    let presentment = text("presentment_currency").unwrap_or(currency);
    let set = |key: &str| {
        let amount = text(key).unwrap_or("0.00");
        json!({"shopMoney": {"amount": amount, "currencyCode": currency},
               "presentmentMoney": {"amount": amount, "currencyCode": presentment}})
    };
    let id = rest.get("id").and_then(Value::as_u64).unwrap_or_default();
    let customer = rest.get("customer");
    let refunds: Vec<Value> = rest
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|refund| {
            let refund_id = refund.get("id").and_then(Value::as_u64).unwrap_or_default();
            let cents: i64 = refund
                .get("transactions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|transaction| transaction["kind"] == "refund")
                .filter_map(|transaction| transaction["amount"].as_str())
                .filter_map(|amount| amount.replace('.', "").parse::<i64>().ok())
                .sum();
            let amount = crate::money::money(cents);
            json!({"id": format!("gid://shopify/Refund/{refund_id}"),
                   "legacyResourceId": refund_id.to_string(),
                   "createdAt": utc(refund.get("created_at").and_then(Value::as_str)),
                   "totalRefundedSet": {"shopMoney": {"amount": amount, "currencyCode": currency},
                                        "presentmentMoney": {"amount": amount, "currencyCode": presentment}}})
        })
        .collect();
    let lines: Vec<Value> = rest
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|line| {
            let line_id = line.get("id").and_then(Value::as_u64).unwrap_or_default();
            let price = line.get("price").and_then(Value::as_str).unwrap_or("0.00");
            json!({"id": format!("gid://shopify/LineItem/{line_id}"), "name": line["name"],
                   "quantity": line["quantity"], "sku": line["sku"],
                   "originalUnitPriceSet": {"shopMoney": {"amount": price},
                                            "presentmentMoney": {"amount": price}}})
        })
        .collect();
    let node = json!({
        "id": format!("gid://shopify/Order/{id}"),
        "legacyResourceId": id.to_string(),
        "name": rest["name"],
        "createdAt": utc(text("created_at")),
        "updatedAt": utc(text("updated_at")),
        "processedAt": utc(text("processed_at")),
        "cancelledAt": utc(text("cancelled_at")),
        "cancelReason": text("cancel_reason").map(str::to_ascii_uppercase),
        "currencyCode": currency,
        "presentmentCurrencyCode": presentment,
        "displayFinancialStatus": text("financial_status").map(str::to_ascii_uppercase),
        "email": rest["email"],
        "totalPriceSet": set("total_price"),
        "subtotalPriceSet": set("subtotal_price"),
        "totalTaxSet": set("total_tax"),
        "totalDiscountsSet": set("total_discounts"),
        "customer": customer.map(|customer| json!({
            "id": format!("gid://shopify/Customer/{}", customer["id"]),
            "legacyResourceId": customer["id"].to_string(),
            "email": customer["email"],
        })),
        "refunds": refunds,
    });
    (node, lines)
}

impl ShopifyState {
    /// The cost extension after charging `actual` (or nothing, when refused).
    fn charge(&self, shop: &Shop, requested: f64, actual: Option<f64>) -> Result<Value, Value> {
        let plan = *lock(&self.cost_plan);
        let mut level = lock(&shop.cost);
        level.refill(plan);
        let refused = requested > level.available;
        if !refused {
            level.available -= actual.unwrap_or(requested).min(level.available);
        }
        let cost = json!({
            "requestedQueryCost": requested,
            "actualQueryCost": if refused { Value::Null } else { json!(actual.unwrap_or(requested)) },
            "throttleStatus": {"maximumAvailable": plan.maximum,
                               "currentlyAvailable": level.available.floor(),
                               "restoreRate": plan.restore_rate},
        });
        if refused { Err(cost) } else { Ok(cost) }
    }

    /// The cost extension of a bucket a test emptied (`throttle_next`).
    fn drained(&self, shop: &Shop) -> Value {
        let plan = *lock(&self.cost_plan);
        let mut level = lock(&shop.cost);
        level.available = 0.0;
        level.at = Instant::now();
        json!({"requestedQueryCost": Value::Null, "actualQueryCost": Value::Null,
               "throttleStatus": {"maximumAvailable": plan.maximum, "currentlyAvailable": 0,
                                  "restoreRate": plan.restore_rate}})
    }

    fn answer(&self, shop: &Shop, requested: f64, actual: f64, data: Value, rows: usize) -> Answer {
        match self.charge(shop, requested, Some(actual)) {
            Ok(cost) => Answer::served(
                json_body(
                    StatusCode::OK,
                    &json!({"data": data, "extensions": {"cost": cost}}),
                ),
                None,
                rows,
            ),
            Err(cost) => Answer::refused(
                graphql_errors("Throttled", "THROTTLED", cost),
                Outcome::Throttled,
            ),
        }
    }

    fn orders(&self, shop: &Shop, query: &str, variables: &Value) -> Answer {
        let first = variables.get("first").and_then(Value::as_u64).unwrap_or(0) as usize;
        let lines = line_items_asked(query).unwrap_or(10);
        let requested = 2.0 + first as f64 * (3.0 + lines as f64);
        if first == 0 || first > 250 || requested > MAX_QUERY_COST {
            let message = format!(
                "Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}); or `first` is not 1 to 250"
            );
            return Answer::refused(
                graphql_errors(
                    &message,
                    "MAX_COST_EXCEEDED",
                    json!({"requestedQueryCost": requested}),
                ),
                Outcome::Rejected,
            );
        }
        let search = variables.get("query").and_then(Value::as_str).unwrap_or("");
        let after = variables
            .get("after")
            .and_then(Value::as_str)
            .and_then(decode_cursor);
        let filter = Filter {
            status: "any".into(),
            updated_min: updated_since(search),
            ..Filter::default()
        };
        let (nodes, more, last) = {
            let inner = shop.lock();
            let (found, more) = shop.select(&inner, &filter, Direction::Next, after, first);
            let nodes: Vec<Value> = found
                .iter()
                .filter_map(|(_, id)| shop.find(&inner, *id))
                .map(|model| {
                    let rest = serde_json::to_value(shop.order_json(&model)).unwrap_or_default();
                    let (mut node, mut items) = order_node(&rest);
                    items.truncate(lines);
                    node["lineItems"] = json!({ "nodes": items });
                    node
                })
                .collect();
            (nodes, more, found.last().copied())
        };
        let items: usize = nodes
            .iter()
            .map(|node| node["lineItems"]["nodes"].as_array().map_or(0, Vec::len))
            .sum();
        let actual = 2.0 + nodes.len() as f64 * 3.0 + items as f64;
        let rows = nodes.len();
        let data = json!({"orders": {
            "pageInfo": {"hasNextPage": more, "endCursor": last.map(encode_cursor)},
            "nodes": nodes,
        }});
        self.answer(shop, requested, actual, data, rows)
    }

    /// `order(id:)`: the order's ids when this shop has it, `null` otherwise.
    fn one_order(&self, shop: &Shop, variables: &Value) -> Answer {
        let id = variables
            .get("id")
            .and_then(Value::as_str)
            .and_then(|gid| gid.strip_prefix("gid://shopify/Order/"))
            .and_then(|id| id.parse::<u64>().ok());
        let found = id.filter(|id| {
            let inner = shop.lock();
            shop.find(&inner, *id).is_some()
        });
        let order = found.map(|id| {
            json!({"id": format!("gid://shopify/Order/{id}"), "legacyResourceId": id.to_string()})
        });
        self.answer(
            shop,
            1.0,
            1.0,
            json!({ "order": order }),
            usize::from(order.is_some()),
        )
    }

    fn run_bulk(&self, shop: &Shop, variables: &Value) -> Answer {
        let inner_query = variables.get("query").and_then(Value::as_str).unwrap_or("");
        let mut bulk = lock(&self.bulk);
        let running = bulk
            .operations
            .values()
            .filter(|operation| operation.shop == shop.spec.shop && !operation.finished)
            .count();
        if running >= MAX_RUNNING_BULK {
            let data = json!({"bulkOperationRunQuery": {"bulkOperation": null, "userErrors": [{
                "field": null, "code": "OPERATION_IN_PROGRESS",
                "message": "A bulk query operation for this app and shop is already in progress"}]}});
            return self.answer(shop, 10.0, 10.0, data, 0);
        }
        let filter = Filter {
            status: "any".into(),
            updated_min: updated_since(inner_query),
            ..Filter::default()
        };
        let ids: Vec<u64> = {
            let inner = shop.lock();
            shop.select(&inner, &filter, Direction::Next, None, usize::MAX - 1)
                .0
                .into_iter()
                .map(|(_, id)| id)
                .collect()
        };
        bulk.next_id += 1;
        let id = format!("gid://shopify/BulkOperation/{}", 7_000_000 + bulk.next_id);
        let fails = std::mem::take(&mut bulk.fail_next);
        bulk.operations.insert(
            id.clone(),
            BulkOperation {
                shop: shop.spec.shop.clone(),
                ids,
                polls: 0,
                fails,
                finished: false,
            },
        );
        drop(bulk);
        let data = json!({"bulkOperationRunQuery": {
            "bulkOperation": {"id": id, "status": "CREATED"}, "userErrors": []}});
        self.answer(shop, 10.0, 10.0, data, 0)
    }

    fn bulk_status(&self, shop: &Shop, variables: &Value) -> Answer {
        let id = variables.get("id").and_then(Value::as_str).unwrap_or("");
        let polls_to_finish = *lock(&self.bulk_polls);
        let node = {
            let mut bulk = lock(&self.bulk);
            match bulk
                .operations
                .get_mut(id)
                .filter(|operation| operation.shop == shop.spec.shop)
            {
                None => Value::Null,
                Some(operation) => {
                    operation.polls += 1;
                    let (status, finished) = match operation.polls {
                        1 if polls_to_finish > 1 => ("CREATED", false),
                        polls if polls < polls_to_finish => ("RUNNING", false),
                        _ if operation.fails => ("FAILED", true),
                        _ => ("COMPLETED", true),
                    };
                    operation.finished = finished;
                    let file = |part: &str| {
                        format!(
                            "{}/{}/bulk-results/{}{part}.jsonl",
                            self.base_url,
                            shop.spec.shop,
                            id.rsplit('/').next().unwrap_or_default()
                        )
                    };
                    let empty = operation.ids.is_empty();
                    json!({
                        "id": id, "status": status,
                        "errorCode": if status == "FAILED" { json!("INTERNAL_SERVER_ERROR") } else { Value::Null },
                        "objectCount": if finished { operation.ids.len().to_string() } else { "0".into() },
                        "fileSize": Value::Null,
                        "url": if status == "COMPLETED" && !empty { json!(file("")) } else { Value::Null },
                        "partialDataUrl": if status == "FAILED" && !empty { json!(file("-partial")) } else { Value::Null },
                    })
                }
            }
        };
        self.answer(shop, 1.0, 1.0, json!({ "node": node }), 0)
    }
}

async fn graphql(
    State(faults): State<ShopifyFaults>,
    Path((shop, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = format!("/shopify/{shop}/admin/api/{version}/graphql.json");
    let (mut parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let request_body = serde_json::from_slice::<Value>(&body).ok();
    // The request log keeps a GraphQL request's operation and variables as its parameters,
    // so a test reads what was asked for as it would a REST query string.
    if let Some(logged) = request_body.as_ref().map(logged_parameters)
        && let Ok(uri) = format!(
            "{path}?{}",
            encode_query(logged.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        )
        .parse()
    {
        parts.uri = uri;
    }
    let request = Request::from_parts(parts, Body::empty());
    let state = &faults.0;
    serve(&state.switches, Api::Shopify, path, &request, |_| {
        let Some(found) = state.shop(&shop) else {
            return Answer::refused(
                json_body(StatusCode::NOT_FOUND, &json!({"errors": "Not Found"})),
                Outcome::Rejected,
            );
        };
        if let Some(refusal) = state.refuse_token(found, request.headers()) {
            return refusal;
        }
        if state.switches.take_throttle() {
            return Answer::refused(
                graphql_errors("Throttled", "THROTTLED", state.drained(found)),
                Outcome::Throttled,
            );
        }
        if let Some(failure) = state.switches.injected_failure(0, || {
            json_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"errors": "Internal Server Error"}),
            )
        }) {
            return failure;
        }
        let Some(request_body) = &request_body else {
            return Answer::refused(
                json_body(
                    StatusCode::BAD_REQUEST,
                    &json!({"errors": {"query": "Required parameter missing or invalid"}}),
                ),
                Outcome::Rejected,
            );
        };
        let query = request_body
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or("");
        let variables = request_body
            .get("variables")
            .cloned()
            .unwrap_or(Value::Null);
        let mut answer = match operation(query) {
            "bulkOperationRunQuery" => state.run_bulk(found, &variables),
            "node" => state.bulk_status(found, &variables),
            "order" => state.one_order(found, &variables),
            "orders" => state.orders(found, query, &variables),
            _ => Answer::refused(
                graphql_errors(
                    "Field doesn't exist on type 'QueryRoot'",
                    "undefinedField",
                    json!({}),
                ),
                Outcome::Rejected,
            ),
        };
        set_header(&mut answer.response, "x-shopify-api-version", &version);
        answer
    })
}

/// Which operation a request body holds.
fn operation(query: &str) -> &'static str {
    if query.contains("bulkOperationRunQuery") {
        "bulkOperationRunQuery"
    } else if query.contains("node(id:") {
        "node"
    } else if query.contains("order(id:") {
        "order"
    } else if query.contains("orders(") {
        "orders"
    } else {
        "unknown"
    }
}

/// The operation and the variables of a request body, for the request log.
fn logged_parameters(body: &Value) -> Vec<(String, String)> {
    let query = body.get("query").and_then(Value::as_str).unwrap_or("");
    let mut logged = vec![("operation".to_string(), operation(query).to_string())];
    if let Some(Value::Object(variables)) = body.get("variables") {
        for (name, value) in variables {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            logged.push((name.clone(), text));
        }
    }
    logged
}

/// The JSONL lines of `ids`, each order followed by its line items.
fn jsonl(shop: &Shop, ids: &[u64]) -> Vec<u8> {
    let inner = shop.lock();
    let mut out = Vec::with_capacity(ids.len() * 1_500);
    for id in ids {
        let Some(model) = shop.find(&inner, *id) else {
            continue;
        };
        let rest = serde_json::to_value(shop.order_json(&model)).unwrap_or_default();
        let (node, items) = order_node(&rest);
        let parent = node["id"].clone();
        serde_json::to_writer(&mut out, &node).unwrap_or_default();
        out.push(b'\n');
        for mut item in items {
            item["__parentId"] = parent.clone();
            serde_json::to_writer(&mut out, &item).unwrap_or_default();
            out.push(b'\n');
        }
    }
    out
}

async fn bulk_file(
    State(faults): State<ShopifyFaults>,
    Path((shop, file)): Path<(String, String)>,
) -> Response {
    let state = faults.0.clone();
    let not_found = || json_body(StatusCode::NOT_FOUND, &json!({"errors": "Not Found"}));
    let Some(name) = file.strip_suffix(".jsonl") else {
        return not_found();
    };
    let (number, partial) = match name.strip_suffix("-partial") {
        Some(number) => (number, true),
        None => (name, false),
    };
    let id = format!("gid://shopify/BulkOperation/{number}");
    let ids = {
        let bulk = lock(&state.bulk);
        match bulk
            .operations
            .get(&id)
            .filter(|operation| operation.shop == shop && operation.finished)
        {
            Some(operation) if partial => operation.ids[..operation.ids.len() / 2].to_vec(),
            Some(operation) => operation.ids.clone(),
            None => return not_found(),
        }
    };
    if state.shop(&shop).is_none() {
        return not_found();
    }
    let chunks = futures::stream::unfold(0usize, move |start| {
        let state = state.clone();
        let ids = ids.clone();
        let shop = shop.clone();
        async move {
            if start >= ids.len() {
                return None;
            }
            let end = (start + FILE_CHUNK).min(ids.len());
            let lines = state
                .shop(&shop)
                .map(|found| jsonl(found, &ids[start..end]))
                .unwrap_or_default();
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(lines)), end))
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/jsonl".parse().expect("a header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_strings_cursors_and_line_item_counts_are_read() {
        assert_eq!(
            updated_since("updated_at:>='2026-12-01T00:00:00Z'"),
            Some(1_796_083_200)
        );
        assert_eq!(
            updated_since("updated_at:>=\\\"2026-12-01T00:00:00Z\\\""),
            Some(1_796_083_200)
        );
        assert_eq!(updated_since("status:any"), None);
        assert_eq!(line_items_asked("x lineItems(first: 8) { nodes"), Some(8));
        assert_eq!(line_items_asked("lineItems { edges"), None);
        assert_eq!(decode_cursor(&encode_cursor((5, 9))), Some((5, 9)));
        assert_eq!(decode_cursor("!!"), None);
    }
}
