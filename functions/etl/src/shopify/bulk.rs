//! A shop's first sync, or a backfill, as one bulk operation: Shopify runs the orders query
//! on its side and hands back a JSONL file, so a shop with a million orders is a handful of
//! calls instead of thousands of pages.
//!
//! Steps, in order:
//!
//! 1. `bulkOperationRunQuery` with [`bulk_orders_query`]; a `userErrors` entry refuses it
//!    (another bulk query still running is transient: the next run tries again).
//! 2. The operation is polled (`node(id:)`) every [`EtlDeps::bulk_poll_interval`] until it is
//!    `COMPLETED`, at most [`EtlDeps::bulk_deadline`]; `FAILED`, `CANCELED` and `EXPIRED`
//!    end the run with Shopify's `errorCode`, after whatever `partialDataUrl` holds is stored.
//! 3. The file is streamed, never held: it is fetched from the URL Shopify signed, without
//!    our token (it is not Shopify's API and needs none), only over HTTPS or from the shop's
//!    own API origin, a line at most [`MAX_LINE_BYTES`].
//! 4. Lines are orders, or line items naming their order in `__parentId`. Shopify does not
//!    promise that children follow their parent, so orders are written in batches of
//!    [`BATCH_ORDERS`] keeping the newest order open for its children, children seen before
//!    their order wait for it, and children of an order already written are appended to its
//!    payload at the end.
//! 5. Each batch is written like a polled page: under the run's lease, newest state winning.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use shared::db::{Budget, DbContext};
use shared::lease::Lease;
use tokio_postgres::types::Type;

use super::graphql::{
    bulk_orders_query, bulk_run_request, bulk_status_request, data, parse_order_node,
};
use super::store::store_fenced;
use super::wire::Order;
use crate::{Connection, EtlDeps, EtlError, ExtractError, RunReport, check_page_budget};

/// Orders written per transaction.
pub const BATCH_ORDERS: usize = 2_000;
/// The longest JSONL line read: an order with its refunds is a few KB.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// Line items waiting for an order not yet seen, at most (beyond, the file is refused).
const MAX_WAITING_CHILDREN: usize = 1_000_000;

/// How a bulk operation ended.
#[derive(Debug, Clone, PartialEq)]
struct Finished {
    status: String,
    error_code: Option<String>,
    url: Option<String>,
    partial_url: Option<String>,
}

/// What a bulk sync stored.
#[derive(Debug, Default)]
pub(crate) struct BulkStored {
    pub newest: Option<DateTime<Utc>>,
    pub dates: BTreeSet<NaiveDate>,
}

/// Runs the bulk sync of one shop since `since`; rule by rule as the module says.
pub(crate) async fn sync(
    deps: &EtlDeps,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    shop: &str,
    graphql_url: &str,
    since: Option<DateTime<Utc>>,
) -> Result<BulkStored, EtlError> {
    let call = |body: Value| super::poll::ask(deps, connection, graphql_url, body);
    // Rule 1.
    let started = call(bulk_run_request(&bulk_orders_query(since))).await?;
    let run = data(&started)?
        .get("bulkOperationRunQuery")
        .ok_or_else(|| {
            ExtractError::Malformed("no `bulkOperationRunQuery` in the answer".into())
        })?;
    if let Some(refusal) = run
        .get("userErrors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let message = refusal
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        let in_progress =
            refusal.get("code").and_then(Value::as_str) == Some("OPERATION_IN_PROGRESS");
        return Err(if in_progress {
            ExtractError::Throttled {
                message: format!("Shopify bulk operation: {message}"),
                retry_after: None,
            }
        } else {
            ExtractError::Api(format!("Shopify bulk operation refused: {message}"))
        }
        .into());
    }
    let id = run
        .pointer("/bulkOperation/id")
        .and_then(Value::as_str)
        .ok_or_else(|| ExtractError::Malformed("a bulk operation without an id".into()))?
        .to_string();

    // Rule 2.
    let deadline = tokio::time::Instant::now() + deps.bulk_deadline;
    let finished = loop {
        check_page_budget(report)?;
        let answer = call(bulk_status_request(&id)).await?;
        report.pages = report.pages.saturating_add(1);
        let node = data(&answer)?
            .get("node")
            .filter(|node| !node.is_null())
            .ok_or_else(|| ExtractError::Malformed(format!("bulk operation {id} not found")))?;
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_string);
        let status = text("status").unwrap_or_default();
        if !matches!(status.as_str(), "CREATED" | "RUNNING" | "CANCELING") {
            break Finished {
                status,
                error_code: text("errorCode"),
                url: text("url"),
                partial_url: text("partialDataUrl"),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExtractError::Throttled {
                message: format!(
                    "Shopify bulk operation {id} still {status} after {:?}",
                    deps.bulk_deadline
                ),
                retry_after: None,
            }
            .into());
        }
        tokio::time::sleep(deps.bulk_poll_interval).await;
    };

    let shop_api = deps.endpoints.shopify_shop_url(shop);
    let mut stored = BulkStored::default();
    // What it produced: the whole file, or what a failed one got through (an operation with
    // no match completes without a file).
    let completed = finished.status == "COMPLETED";
    let file = if completed {
        &finished.url
    } else {
        &finished.partial_url
    };
    if let Some(url) = file {
        stream(
            deps,
            lease,
            report,
            connection,
            shop,
            &shop_api,
            url,
            &mut stored,
        )
        .await?;
    }
    if completed {
        return Ok(stored);
    }
    Err(ExtractError::Api(format!(
        "Shopify bulk operation {id} ended {} ({})",
        finished.status,
        finished.error_code.as_deref().unwrap_or("no error code")
    ))
    .into())
}

/// Rule 3: where a result file may be fetched from.
fn result_url(url: &str, shop_api: &str) -> Result<reqwest::Url, ExtractError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| ExtractError::Malformed("the bulk result URL is not a URL".into()))?;
    let own = reqwest::Url::parse(shop_api).map(|shop| shop.origin() == parsed.origin());
    if parsed.scheme() == "https" || own.unwrap_or(false) {
        Ok(parsed)
    } else {
        Err(ExtractError::Malformed(format!(
            "the bulk result is on {}, neither HTTPS nor the shop's own API",
            parsed.origin().ascii_serialization()
        )))
    }
}

/// Orders read from the file and not yet written, with the children that wait (rule 4).
#[derive(Default)]
struct Assembly {
    /// Open orders by gid, in arrival order.
    open: Vec<(String, Value)>,
    /// Children whose order has not been seen, by the order's gid.
    waiting: HashMap<String, Vec<Value>>,
    waiting_count: usize,
    /// Gids of orders already written.
    written: HashMap<String, i64>,
    /// Children of written orders: (order id, child), appended at the end.
    late: Vec<(i64, Value)>,
}

impl Assembly {
    fn line(&mut self, mut line: Value) -> Result<(), ExtractError> {
        let parent = line
            .as_object_mut()
            .and_then(|fields| fields.remove("__parentId"))
            .and_then(|parent| parent.as_str().map(str::to_string));
        match parent {
            None => {
                let gid = line
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ExtractError::Malformed("a bulk line without an `id`".into()))?
                    .to_string();
                let mut order = line;
                order["lineItems"] =
                    json!({ "nodes": self.waiting.remove(&gid).unwrap_or_default() });
                self.waiting_count = self.waiting.values().map(Vec::len).sum();
                self.open.push((gid, order));
            }
            Some(parent) => {
                if let Some((_, order)) = self.open.iter_mut().rev().find(|(gid, _)| *gid == parent)
                {
                    push_child(order, line);
                } else if let Some(order_id) = self.written.get(&parent) {
                    self.late.push((*order_id, line));
                } else {
                    self.waiting_count += 1;
                    if self.waiting_count > MAX_WAITING_CHILDREN {
                        return Err(ExtractError::Malformed(format!(
                            "more than {MAX_WAITING_CHILDREN} bulk lines name orders not in the file"
                        )));
                    }
                    self.waiting.entry(parent).or_default().push(line);
                }
            }
        }
        Ok(())
    }

    /// The orders to write now: all but the newest (still open for its children), or all
    /// at the end of the file.
    fn take(&mut self, everything: bool) -> Result<Vec<Order>, ExtractError> {
        let keep = usize::from(!everything).min(self.open.len());
        let ready: Vec<(String, Value)> = self.open.drain(..self.open.len() - keep).collect();
        ready
            .into_iter()
            .map(|(gid, node)| {
                let order = parse_order_node(node)
                    .map_err(|error| ExtractError::Malformed(error.to_string()))?;
                self.written.insert(gid, order.order_id);
                Ok(order)
            })
            .collect()
    }
}

fn push_child(order: &mut Value, child: Value) {
    if let Some(nodes) = order
        .pointer_mut("/lineItems/nodes")
        .and_then(Value::as_array_mut)
    {
        nodes.push(child);
    }
}

/// Rules 3–5 for one file.
#[allow(clippy::too_many_arguments)]
async fn stream(
    deps: &EtlDeps,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    shop: &str,
    shop_api: &str,
    url: &str,
    stored: &mut BulkStored,
) -> Result<(), EtlError> {
    let url = result_url(url, shop_api)?;
    // A file of a million orders takes longer than a page may: its own deadline, the same
    // refusal of redirects.
    let http = crate::http_client(deps.bulk_deadline).map_err(crate::transport_error)?;
    let mut response = http.get(url).send().await.map_err(crate::transport_error)?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(ExtractError::Api(format!("the bulk result answered HTTP {status}")).into());
    }
    // The file is read and assembled while the previous batch is written: a reader and a
    // writer joined by a channel of two batches, so neither the download nor PostgreSQL
    // waits for the other.
    let (batches, ready) = tokio::sync::mpsc::channel::<Vec<Order>>(2);
    let read = async move {
        let mut assembly = Assembly::default();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(crate::transport_error)?;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                pending.extend_from_slice(&chunk);
            }
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|byte| *byte == b'\n') {
                read_line(&mut assembly, &pending[start..start + end])?;
                start += end + 1;
            }
            pending.drain(..start);
            if pending.len() > MAX_LINE_BYTES {
                return Err(ExtractError::Malformed(format!(
                    "a bulk line is longer than {MAX_LINE_BYTES} bytes"
                )));
            }
            if done {
                read_line(&mut assembly, &pending)?;
            }
            if assembly.open.len() > BATCH_ORDERS || (done && !assembly.open.is_empty()) {
                let orders = assembly.take(done)?;
                // The writer stopped: its error is the one to report.
                if batches.send(orders).await.is_err() {
                    break;
                }
            }
            if done {
                break;
            }
        }
        Ok::<_, ExtractError>(assembly.late)
    };
    let write = async {
        // Owned here, so a writer that fails drops it and the reader stops sending.
        let mut ready = ready;
        while let Some(orders) = ready.recv().await {
            write_batch(deps, lease, report, connection, shop, &orders, stored).await?;
        }
        Ok::<_, EtlError>(())
    };
    let (late, written) = tokio::join!(read, write);
    written?;
    append_late_children(deps, lease, shop, &late?).await
}

fn read_line(assembly: &mut Assembly, line: &[u8]) -> Result<(), ExtractError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|error| ExtractError::Malformed(format!("a bulk line is not JSON: {error}")))?;
    assembly.line(value)
}

async fn write_batch(
    deps: &EtlDeps,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    shop: &str,
    orders: &[Order],
    stored: &mut BulkStored,
) -> Result<(), EtlError> {
    let written = store_fenced(
        &deps.pool,
        lease,
        shop,
        connection.workspace_id,
        report.run_id,
        orders,
    )
    .await?;
    report.rows_inserted = report.rows_inserted.saturating_add(written.inserted);
    report.rows_updated = report.rows_updated.saturating_add(written.updated);
    stored.dates.extend(written.dates);
    stored.newest = orders
        .iter()
        .map(|order| order.updated_at)
        .chain(stored.newest)
        .max();
    Ok(())
}

/// Rule 4's last step: children of orders written before they arrived.
async fn append_late_children(
    deps: &EtlDeps,
    lease: &Lease,
    shop: &str,
    late: &[(i64, Value)],
) -> Result<(), EtlError> {
    if late.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = late.iter().map(|(id, _)| *id).collect();
    let children: Vec<&Value> = late.iter().map(|(_, child)| child).collect();
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    transaction
        .execute_typed(
            "UPDATE orders AS o
                SET raw = jsonb_set(o.raw, '{lineItems,nodes}',
                                    COALESCE(o.raw #> '{lineItems,nodes}', '[]'::jsonb) || c.children)
               FROM (SELECT id, jsonb_agg(child) AS children
                       FROM unnest($2::int8[], $3::jsonb[]) AS l(id, child) GROUP BY id) c
              WHERE o.shop = $1 AND o.order_id = c.id",
            &[(&shop, Type::TEXT), (&ids, Type::INT8_ARRAY), (&children, Type::JSONB_ARRAY)],
        )
        .await
        .context("append line items to their orders")?;
    transaction
        .commit()
        .await
        .context("commit late line items")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u64) -> Value {
        json!({"id": format!("gid://shopify/Order/{n}"), "legacyResourceId": n.to_string(),
               "createdAt": "2026-11-02T15:00:00Z", "updatedAt": "2026-11-03T14:00:00Z",
               "currencyCode": "USD", "totalPriceSet": {"shopMoney": {"amount": "1.00"}}})
    }

    fn item(n: u64, parent: u64) -> Value {
        json!({"id": format!("gid://shopify/LineItem/{n}"), "quantity": 1,
               "__parentId": format!("gid://shopify/Order/{parent}")})
    }

    #[test]
    fn children_find_their_order_in_whatever_order_they_come() {
        let mut assembly = Assembly::default();
        // A child before its order, its order, a child after it, then another order.
        for line in [item(10, 1), order(1), item(11, 1), order(2), item(20, 2)] {
            assembly.line(line).unwrap();
        }
        let first = assembly.take(false).unwrap();
        assert_eq!(first.len(), 1, "the newest order stays open");
        let items = first[0]
            .raw
            .pointer("/lineItems/nodes")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|item| item.get("__parentId").is_none()));
        // A child of a written order is appended at the end.
        assembly.line(item(12, 1)).unwrap();
        assert_eq!(assembly.late.len(), 1);
        assert_eq!(assembly.late[0].0, 1);
        let rest = assembly.take(true).unwrap();
        assert_eq!(rest[0].order_id, 2);
        assert!(assembly.line(json!({"no": "id"})).is_err());
    }

    #[test]
    fn results_are_fetched_over_https_or_from_the_shop_only() {
        let shop = "http://127.0.0.1:9000/shopify/demo";
        assert!(
            result_url(
                "https://storage.googleapis.com/shopify/b/x.jsonl?sig=1",
                shop
            )
            .is_ok()
        );
        assert!(result_url("http://127.0.0.1:9000/bulk/x.jsonl", shop).is_ok());
        assert!(result_url("http://evil.example/x.jsonl", shop).is_err());
        assert!(result_url("file:///etc/passwd", shop).is_err());
        assert!(result_url("not a url", shop).is_err());
    }
}
