//! `POST /webhooks/shopify`: Shopify's order webhooks, verified, deduplicated and checked
//! against the shop they name before anything is written.
//!
//! [`ingest_webhook`] goes step by step, each step refusing before the next costs more:
//!
//! 1. **Size and signature.** A body over [`MAX_WEBHOOK_BYTES`] is a 413;
//!    `X-Shopify-Hmac-Sha256` is checked over the raw body against every configured secret
//!    (several during a rotation): a bad one is a 401 and nothing is written.
//! 2. **Headers and body** ([`delivery`]): 400 when malformed, 401 when
//!    `X-Shopify-Triggered-At` is outside the replay window.
//! 3. **One bounded read** (`Budget::REQUEST`): the shop's connection, whether this webhook
//!    id or this (shop, `X-Shopify-Event-Id`, topic) was handled before, and which shops
//!    hold the order id. A shop without a connection is acknowledged and not recorded (the
//!    poll of a connection added later sees everything); a delivery seen before is a
//!    `duplicate` and changes nothing.
//! 4. **Quarantine.** A body the database could never store is acknowledged 200
//!    (`"outcome": "quarantined"`) and kept in `quarantine` (source `shopify`, key = webhook
//!    id) with the reason, so Shopify stops retrying what can never succeed.
//! 5. **Ownership** ([`Owner`]). Shopify's order ids are unique across shops, so an order id
//!    stored for another shop means the body was re-sent under this shop's domain: 401. An
//!    order this shop already holds is its own. An order nobody holds yet (an
//!    `orders/create`, or a refund's order) is asked of the named shop's GraphQL Admin API —
//!    `order(id: "gid://shopify/Order/{id}")` with that shop's token — before it is
//!    trusted: no such order means it is not that shop's order and a token the shop refuses
//!    means it cannot be verified (both 401);
//!    throttling or an outage is a 503 with `Retry-After`, and Shopify retries.
//! 6. **The effect**, in one `Budget::REQUEST` transaction with the delivery's row: orders
//!    through [`upsert_orders`] (newest `updated_at` wins, so a replayed old body changes
//!    nothing), refunds through [`apply_refund`] (stored once by refund id), an uninstall
//!    through [`disconnect`], a compliance request through [`comply`], and the metrics agent
//!    told of the dates that changed (outbox). A value the database refuses
//!    (money beyond `numeric(18,4)`) rolls it all back and quarantines the delivery (200).
//!
//! Transient failures (a lock or statement timeout, a lost connection, the pool) answer 503
//! with `Retry-After`; a permanent fault of the input is never a 5xx. Pooled connections are
//! never held across the call to Shopify or the quarantine, so a pool of one suffices.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use shared::db::{Budget, DbContext, DbError, Pool};
use shared::http::ApiError;
use shared::messages::MetricsRecompute;
use shared::queue::outbox::Outbox;
use shared::queue::{Message, QueueError, Transport};
use shared::retry::{RetryClass, Retryable};

use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use super::delivery::{self, Compliance, ComplianceTopic, Delivery, Payload, PayloadError};
use super::graphql;
use super::store::apply_refund;
use super::wire::id;
use super::{Source, upsert_orders};
use crate::tokens::{self, StoredToken, TokenError};
use crate::{Credentials, Endpoints, ExtractError, Platform, post_json};

/// Order webhooks are a few kilobytes; a very large order stays well under this.
pub const MAX_WEBHOOK_BYTES: usize = 2 * 1024 * 1024;
/// How long the re-read of an order from its shop may take: Shopify waits 5 s for our
/// answer. Give [`WebhookDeps::http`] this timeout.
pub const REREAD_TIMEOUT: Duration = Duration::from_secs(3);
/// `Retry-After` of a 503 when nothing more precise is known.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The longest reason quoted back to a caller.
const MAX_REASON_BYTES: usize = 500;

/// What the webhook route needs.
pub struct WebhookDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub clock: shared::clock::Clock,
    /// Opens the shop's sealed access token, to re-read an order from the shop it names.
    pub keys: Arc<shared::crypto::Keys>,
    /// The app's client secrets; several while one is being rotated.
    pub webhook_secrets: Vec<String>,
    /// Re-reads orders from their shop: build it with [`crate::http_client`] and
    /// [`REREAD_TIMEOUT`].
    pub http: reqwest::Client,
    /// Where the shops' Admin APIs are (`shopify_base_url`).
    pub endpoints: Endpoints,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// The stored order now shows this delivery's state.
    Applied,
    /// Recorded; the stored order was already as new or newer.
    Stale,
    /// The refund is stored and waits for its order.
    Pending,
    /// This `X-Shopify-Webhook-Id`, or this event of this shop and topic, was handled
    /// before: nothing changed.
    Duplicate,
    /// Recorded; the topic is not modelled.
    Unsupported,
    /// `app/uninstalled`: the connection is marked so and no longer synced.
    Disconnected,
    /// A compliance request acted on and recorded (`shopify_compliance_requests`).
    Complied,
    /// No Shopify connection has this shop: acknowledged, not recorded.
    UnknownShop,
    /// The database can never store what it carries: kept in `quarantine`, acknowledged.
    Quarantined,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not signed by Shopify with a configured secret (401).
    #[error("X-Shopify-Hmac-Sha256: {0}")]
    Signature(String),
    /// Not a delivery in Shopify's shape (400).
    #[error("{0}")]
    Malformed(String),
    /// Signed, but not accepted as a fresh delivery for the shop it names (401).
    #[error("{0}")]
    Refused(String),
    /// Could not be decided now; Shopify's retry will (503).
    #[error("{reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Retryable for WebhookError {
    fn retry_class(&self) -> RetryClass {
        match self {
            WebhookError::Unavailable { retry_after, .. } => RetryClass::Transient {
                retry_after: Some(*retry_after),
            },
            WebhookError::Db(error) => error.retry_class(),
            WebhookError::Queue(error) => error.retry_class(),
            WebhookError::Signature(_) | WebhookError::Malformed(_) | WebhookError::Refused(_) => {
                RetryClass::Permanent
            }
        }
    }
}

impl From<TokenError> for WebhookError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Db(error) => WebhookError::Db(error),
            error @ TokenError::Sealed { .. } => {
                tracing::error!(%error, "a Shopify token does not open; the order cannot be verified");
                WebhookError::Refused(
                    "the shop's access token cannot be opened, so the order cannot be verified"
                        .into(),
                )
            }
            error @ (TokenError::Seal { .. } | TokenError::Contended(_)) => {
                WebhookError::Unavailable {
                    reason: error.to_string(),
                    retry_after: RETRY_AFTER,
                }
            }
        }
    }
}

/// Who already holds an order id (step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The shop the delivery names: its own order.
    ThisShop,
    /// Only other shops: the body was re-sent under another shop's domain.
    OtherShop,
    /// Nobody yet: to be read back from the named shop.
    Nobody,
}

impl Owner {
    /// From "some row of this shop holds it" and "some row of another shop holds it". A
    /// shop of its own wins: ids are unique across Shopify, so rows of both can only come
    /// from an earlier injection, and the named shop's own order is still its own.
    pub fn of(this_shop: bool, other_shop: bool) -> Self {
        match (this_shop, other_shop) {
            (true, _) => Owner::ThisShop,
            (false, true) => Owner::OtherShop,
            (false, false) => Owner::Nobody,
        }
    }
}

/// The shop's connection, as step 3 found it.
struct ShopConnection {
    id: Uuid,
    workspace: Uuid,
    token: StoredToken,
}

/// What step 3 read.
struct Known {
    connection: Option<ShopConnection>,
    seen: bool,
    owner: Owner,
}

fn signed(deps: &WebhookDeps, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    let signature = headers
        .get("x-shopify-hmac-sha256")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty());
    let mut verdict = Err("no secret configured".to_string());
    for secret in &deps.webhook_secrets {
        verdict = shared::webhook::verify_shopify(body, signature, secret)
            .map_err(|error| error.to_string());
        if verdict.is_ok() {
            break;
        }
    }
    verdict.map_err(WebhookError::Signature)
}

/// Verifies, parses, deduplicates, checks and applies one delivery.
pub async fn ingest_webhook(
    deps: &WebhookDeps,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookOutcome, WebhookError> {
    signed(deps, headers, body)?;
    let delivery = delivery::read(headers, deps.clock.now()).map_err(|error| {
        if error.is_replay() {
            WebhookError::Refused(error.to_string())
        } else {
            WebhookError::Malformed(error.to_string())
        }
    })?;
    let payload = match delivery::payload(delivery.topic, body) {
        Ok(payload) => Ok(payload),
        Err(PayloadError::Unstorable(reason)) => Err(reason),
        Err(error) => return Err(WebhookError::Malformed(error.to_string())),
    };
    let order_id = payload.as_ref().ok().and_then(Payload::order_id);
    let known = look_up(&deps.pool, &delivery, order_id).await?;
    let Some(connection) = known.connection else {
        tracing::warn!(
            shop = delivery.shop,
            topic = delivery.topic,
            "Shopify webhook for a shop without a connection"
        );
        return Ok(WebhookOutcome::UnknownShop);
    };
    if known.seen {
        return Ok(WebhookOutcome::Duplicate);
    }
    let payload = match payload {
        Ok(payload) => payload,
        Err(reason) => return quarantine(deps, &delivery, &reason, body).await,
    };
    if let Some(order_id) = order_id {
        match known.owner {
            Owner::ThisShop => {}
            Owner::OtherShop => {
                return Err(WebhookError::Refused(format!(
                    "order {order_id} belongs to another shop than {}",
                    delivery.shop
                )));
            }
            Owner::Nobody => verify_with_shop(deps, &delivery, &connection, order_id).await?,
        }
    }
    match apply(deps, &delivery, &connection, &payload).await {
        Err(WebhookError::Db(error)) if error.is_refused_value() => {
            let reason = error.refused_reason().unwrap_or_else(|| error.to_string());
            quarantine(deps, &delivery, &reason, body).await
        }
        outcome => outcome,
    }
}

/// Step 3: the shop's connection, whether the delivery was seen, who holds the order.
async fn look_up(
    pool: &Pool,
    delivery: &Delivery<'_>,
    order_id: Option<i64>,
) -> Result<Known, DbError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = client
        .transaction()
        .await
        .context("begin webhook look-up")?;
    let names = [delivery.shop, delivery.domain];
    let names = &names[..];
    let by_shop = [(&names as &(dyn ToSql + Sync), Type::TEXT_ARRAY)];
    let by_delivery = [
        (&delivery.webhook_id as &(dyn ToSql + Sync), Type::TEXT),
        (&delivery.shop, Type::TEXT),
        (&delivery.event_id, Type::TEXT),
        (&delivery.topic, Type::TEXT),
    ];
    let by_order = [
        (&order_id as &(dyn ToSql + Sync), Type::INT8),
        (&delivery.shop, Type::TEXT),
    ];
    let (limited, connection, seen, holders) = tokio::join!(
        shared::db::limit(&transaction, Budget::REQUEST),
        transaction.query_typed_opt(
            "SELECT id, workspace_id, access_token, access_token_sealed FROM connections
              WHERE platform = 'shopify' AND external_account_id = ANY($1)
              ORDER BY (status = 'active') DESC, created_at LIMIT 1",
            &by_shop,
        ),
        transaction.query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM shopify_webhook_deliveries
                             WHERE webhook_id = $1 OR (shop = $2 AND event_id = $3 AND topic = $4))",
            &by_delivery,
        ),
        transaction.query_typed_one(
            "SELECT COALESCE(bool_or(shop = $2), false), COALESCE(bool_or(shop <> $2), false)
               FROM orders WHERE order_id = $1",
            &by_order,
        ),
    );
    limited?;
    let connection = connection
        .context("find the shop's connection")?
        .map(|row| ShopConnection {
            id: row.get(0),
            workspace: row.get(1),
            token: StoredToken {
                plaintext: row.get(2),
                sealed: row.get(3),
            },
        });
    let seen: bool = seen.context("look up the delivery")?.get(0);
    let holders = holders.context("look up the order's shop")?;
    transaction
        .commit()
        .await
        .context("commit webhook look-up")?;
    Ok(Known {
        connection,
        seen,
        owner: Owner::of(holders.get(0), holders.get(1)),
    })
}

/// Step 5 for an order nobody holds: read it back from the shop the delivery names.
async fn verify_with_shop(
    deps: &WebhookDeps,
    delivery: &Delivery<'_>,
    connection: &ShopConnection,
    order_id: i64,
) -> Result<(), WebhookError> {
    let stored = StoredToken {
        plaintext: connection.token.plaintext.clone(),
        sealed: connection.token.sealed.clone(),
    };
    let token = {
        let mut client = deps.pool.get().await.context("check out a connection")?;
        let transaction = shared::db::begin(&mut client, Budget::REQUEST).await?;
        let token = tokens::open(&*transaction, &deps.keys, connection.id, stored).await?;
        transaction.commit().await.context("commit token read")?;
        token
    };
    let Some(token) = token else {
        return Err(WebhookError::Refused(format!(
            "order {order_id} cannot be verified: shop {} has no access token",
            delivery.shop
        )));
    };
    let credentials = Credentials { token, proof: None };
    let url = deps.endpoints.shopify_graphql_url(delivery.shop);
    let question = json!({
        "query": "query Verify($id: ID!) { order(id: $id) { legacyResourceId } }",
        "variables": { "id": format!("gid://shopify/Order/{order_id}") },
    });
    let cannot_verify = |reason: &str| {
        WebhookError::Refused(format!(
            "order {order_id} cannot be verified with shop {}: {}",
            delivery.shop,
            shared::text::clip(reason, MAX_REASON_BYTES)
        ))
    };
    let answer = post_json(&deps.http, Platform::Shopify, &url, &credentials, &question)
        .await
        .and_then(|(_, answer)| graphql::data(&answer).map(|data| data.get("order").cloned()));
    match answer {
        Ok(Some(order)) if id(order.get("legacyResourceId")) == Some(order_id) => Ok(()),
        Ok(Some(order)) if !order.is_null() => {
            Err(cannot_verify("the shop answered with another order"))
        }
        Ok(_) | Err(ExtractError::NotFound(_)) => Err(WebhookError::Refused(format!(
            "order {order_id} is not an order of shop {}",
            delivery.shop
        ))),
        Err(ExtractError::Auth(reason) | ExtractError::Api(reason)) => Err(cannot_verify(&reason)),
        Err(error) => {
            let retry_after = match error.retry_class() {
                RetryClass::Transient {
                    retry_after: Some(wait),
                } => wait,
                _ => RETRY_AFTER,
            };
            tracing::warn!(%error, shop = delivery.shop, order_id, "order not verified with its shop; asking Shopify to retry");
            Err(WebhookError::Unavailable {
                reason: "the order could not be verified with its shop now; retry later".into(),
                retry_after,
            })
        }
    }
}

/// Step 6: the delivery's row and its effect, in one transaction.
async fn apply(
    deps: &WebhookDeps,
    delivery: &Delivery<'_>,
    connection: &ShopConnection,
    payload: &Payload,
) -> Result<WebhookOutcome, WebhookError> {
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = client.transaction().await.context("begin webhook")?;
    let row = [
        (&delivery.webhook_id as &(dyn ToSql + Sync), Type::TEXT),
        (&delivery.topic, Type::TEXT),
        (&delivery.shop, Type::TEXT),
        (&delivery.event_id, Type::TEXT),
        (&delivery.triggered_at, Type::TIMESTAMPTZ),
    ];
    let (limited, fresh) = tokio::join!(
        shared::db::limit(&transaction, Budget::REQUEST),
        // No conflict target: a repeated webhook id and a repeated (shop, event, topic)
        // are both duplicates.
        transaction.execute_typed(
            "INSERT INTO shopify_webhook_deliveries (webhook_id, topic, shop, event_id, triggered_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &row,
        ),
    );
    limited?;
    if fresh.context("record webhook delivery")? == 0 {
        return Ok(WebhookOutcome::Duplicate);
    }
    let shop = delivery.shop;
    let (outcome, dates) = match payload {
        Payload::Order(order) => {
            let written = upsert_orders(
                &transaction,
                shop,
                connection.workspace,
                None,
                Source::Webhook,
                std::slice::from_ref(order.as_ref()),
            )
            .await?;
            if written.dates.is_empty() {
                (WebhookOutcome::Stale, written.dates)
            } else {
                (WebhookOutcome::Applied, written.dates)
            }
        }
        Payload::Refund(refund) => match apply_refund(&transaction, shop, refund).await? {
            None => (WebhookOutcome::Stale, BTreeSet::new()),
            Some(None) => (WebhookOutcome::Pending, BTreeSet::new()),
            Some(Some(date)) => (WebhookOutcome::Applied, BTreeSet::from([date])),
        },
        Payload::Uninstalled => {
            disconnect(&transaction, connection.id).await?;
            (WebhookOutcome::Disconnected, BTreeSet::new())
        }
        Payload::Compliance(request) => (
            WebhookOutcome::Complied,
            comply(&transaction, shop, delivery.event_id, request).await?,
        ),
        Payload::Other => (WebhookOutcome::Unsupported, BTreeSet::new()),
    };
    let now = deps.clock.now();
    let messages = dates
        .iter()
        .map(|date| {
            MetricsRecompute::new(connection.workspace, *date, "shopify", now).to_outgoing()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pending = outbox.enqueue(&transaction, &messages).await?;
    transaction.commit().await.context("commit webhook")?;
    drop(client);
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "metrics requests left for the outbox relay");
    }
    Ok(outcome)
}

/// `app/uninstalled`: the shop's token is dead, so the connection stops being synced
/// (dispatch reads active connections only); its data stays until `shop/redact`.
async fn disconnect(
    transaction: &tokio_postgres::Transaction<'_>,
    connection: Uuid,
) -> Result<(), DbError> {
    transaction
        .execute_typed(
            "UPDATE connections SET status = 'revoked', updated_at = now() WHERE id = $1",
            &[(&connection, Type::UUID)],
        )
        .await
        .context("mark the connection uninstalled")?;
    Ok(())
}

/// The compliance topics, acted on the data we hold and recorded once per event:
/// * `customers/redact`: the customer's details are erased from their orders (the named
///   `orders_to_redact` and any other order of that customer id); the sums stay;
/// * `shop/redact`: the shop's orders and refunds are deleted;
/// * `customers/data_request`: what we hold of the customer (their orders' ids) is recorded
///   for the shop's owner to be given.
///
/// Returns the order dates whose numbers changed (a deleted shop's).
async fn comply(
    transaction: &tokio_postgres::Transaction<'_>,
    shop: &str,
    event_id: &str,
    request: &Compliance,
) -> Result<BTreeSet<chrono::NaiveDate>, DbError> {
    let mut dates = BTreeSet::new();
    let outcome = match request.topic {
        ComplianceTopic::CustomerRedact => {
            let redacted = transaction
                .execute_typed(
                    "UPDATE orders
                        SET customer_email = NULL, customer_id = NULL,
                            raw = raw - 'customer' - 'email' - 'contact_email' - 'phone'
                                      - 'billing_address' - 'shipping_address',
                            stored_at = now()
                      WHERE shop = $1 AND (customer_id = $2 OR order_id = ANY ($3))",
                    &[
                        (&shop, Type::TEXT),
                        (&request.customer_id, Type::INT8),
                        (&request.orders, Type::INT8_ARRAY),
                    ],
                )
                .await
                .context("redact a customer's orders")?;
            json!({ "orders_redacted": redacted })
        }
        ComplianceTopic::ShopRedact => {
            let refunds = transaction
                .execute_typed(
                    "DELETE FROM order_refunds WHERE shop = $1",
                    &[(&shop, Type::TEXT)],
                )
                .await
                .context("delete the shop's refunds")?;
            let rows = transaction
                .query_typed(
                    "DELETE FROM orders WHERE shop = $1
                     RETURNING (COALESCE(processed_at, created_at) AT TIME ZONE 'UTC')::date",
                    &[(&shop, Type::TEXT)],
                )
                .await
                .context("delete the shop's orders")?;
            dates.extend(rows.iter().map(|row| row.get::<_, chrono::NaiveDate>(0)));
            json!({ "orders_deleted": rows.len(), "refunds_deleted": refunds })
        }
        ComplianceTopic::DataRequest => {
            let held: Vec<i64> = transaction
                .query_typed(
                    "SELECT order_id FROM orders
                      WHERE shop = $1 AND (customer_id = $2 OR order_id = ANY ($3)) ORDER BY order_id",
                    &[
                        (&shop, Type::TEXT),
                        (&request.customer_id, Type::INT8),
                        (&request.orders, Type::INT8_ARRAY),
                    ],
                )
                .await
                .context("find what we hold of a customer")?
                .iter()
                .map(|row| row.get(0))
                .collect();
            json!({ "orders_held": held })
        }
    };
    transaction
        .execute_typed(
            "INSERT INTO shopify_compliance_requests (shop, topic, event_id, customer_id, payload, outcome)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (shop, event_id) DO NOTHING",
            &[
                (&shop, Type::TEXT),
                (&request.topic.as_str(), Type::TEXT),
                (&event_id, Type::TEXT),
                (&request.customer_id, Type::INT8),
                (&request.body, Type::JSONB),
                (&outcome, Type::JSONB),
            ],
        )
        .await
        .context("record the compliance request")?;
    Ok(dates)
}

/// Step 4 (and a refusal in step 6): keep the delivery and acknowledge it.
async fn quarantine(
    deps: &WebhookDeps,
    delivery: &Delivery<'_>,
    reason: &str,
    body: &[u8],
) -> Result<WebhookOutcome, WebhookError> {
    shared::quarantine::keep(
        &deps.pool,
        shared::quarantine::Quarantined {
            source: "shopify",
            key: delivery.webhook_id,
            reason,
            payload: body,
        },
    )
    .await?;
    tracing::warn!(
        shop = delivery.shop,
        topic = delivery.topic,
        webhook_id = delivery.webhook_id,
        reason = shared::text::clip(reason, MAX_REASON_BYTES),
        "Shopify delivery quarantined: the database cannot store it"
    );
    Ok(WebhookOutcome::Quarantined)
}

/// What Shopify hears of each failure: any non-2xx is a failed delivery to it, 401 is what its
/// docs ask for a bad signature, and the reasons are clipped, as they may quote input.
impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        let refusal = |status: StatusCode, reason: &str| {
            ApiError::new(status, shared::text::clip(reason, MAX_REASON_BYTES))
        };
        match &error {
            WebhookError::Signature(_) => refusal(StatusCode::UNAUTHORIZED, &error.to_string()),
            WebhookError::Refused(reason) => {
                tracing::warn!(reason, "Shopify delivery refused");
                refusal(StatusCode::UNAUTHORIZED, reason)
            }
            WebhookError::Malformed(reason) => refusal(
                StatusCode::BAD_REQUEST,
                &format!("malformed webhook: {reason}"),
            ),
            _ => ApiError::failed_to_record("the webhook", &error),
        }
    }
}

async fn receive(
    State(deps): State<Arc<WebhookDeps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let outcome = ingest_webhook(&deps, &headers, &body).await?;
    Ok(Json(json!({ "received": true, "outcome": outcome })))
}

/// `POST /webhooks/shopify`, for the ETL Lambda's HTTP side and the local stack.
pub fn router(deps: Arc<WebhookDeps>) -> Router {
    let runs = shared::runs::RunLog::new(deps.pool.clone(), shared::agents::Agent::ShopifyWebhook);
    let routes = Router::new().route("/webhooks/shopify", post(receive));
    runs.layer(shared::http::limit_body(routes, MAX_WEBHOOK_BYTES).with_state(deps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_belongs_to_the_shop_that_holds_it() {
        assert_eq!(Owner::of(true, false), Owner::ThisShop);
        assert_eq!(Owner::of(true, true), Owner::ThisShop);
        assert_eq!(Owner::of(false, true), Owner::OtherShop);
        assert_eq!(Owner::of(false, false), Owner::Nobody);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        let unavailable = WebhookError::Unavailable {
            reason: "x".into(),
            retry_after: Duration::from_secs(2),
        };
        assert_eq!(
            unavailable.retry_class(),
            RetryClass::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        for permanent in [
            WebhookError::Signature("x".into()),
            WebhookError::Malformed("x".into()),
            WebhookError::Refused("x".into()),
        ] {
            assert_eq!(permanent.retry_class(), RetryClass::Permanent);
        }
    }
}
