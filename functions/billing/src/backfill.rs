//! The Stripe backfill: every object of an existing account, read from Stripe's list API
//! ([`crate::stripe_api`]) into the mirror, so an account connected today does not start
//! empty.
//!
//! Each object read is an API read ([`StripeEvent::api_read`]): an event-shaped snapshot whose
//! `created` is the second it was read, taken through the webhook's own transaction
//! ([`crate::ingest::ingest_event`]): the same lock, the same ledger, the same mirror writes
//! and the same ordering rule, whose rules 2 and 3 ([`crate::ordering`]) make a read lose to
//! any event it cannot prove older. So a backfill can run while webhooks arrive, before or
//! after them, and the newest state still wins.
//!
//! The endpoints are paged in lanes: the catalog and the customers first (what follows takes
//! its workspace from a customer), then subscriptions beside all the rest. Each endpoint goes
//! one page at a time: a page's objects are applied concurrently (distinct objects, distinct
//! locks; plain rows in batch transactions, `ingest_batch`) while the next page is
//! fetched; then the page's last id is stored in `stripe.backfill_cursors`. An interrupted run (a refusal, a crash) therefore
//! continues after the last page stored; pages are never skipped, and a page applied twice
//! changes nothing (same read second: duplicates; later second: the same state again). Once
//! every endpoint is complete, the next run starts a new pass.
//!
//! At most two requests are in flight (one per lane), which keeps a backfill far below
//! Stripe's read rate limit (100 per second in live mode); a 429 is waited out as Stripe asks
//! (`Retry-After`, `Stripe-Should-Retry`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use shared::db::DbContext;
use shared::retry::{RetryClass, Retryable};
use tokio_postgres::types::Type;

use crate::mirror::Table;
use crate::stripe_api::{ApiError, Page, StripeApi};
use crate::{BillingDeps, BillingError, Ingested, StripeEvent, ingest, ingest_batch};

/// A list endpoint the backfill pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Products,
    Prices,
    Customers,
    Subscriptions,
    Invoices,
    PaymentIntents,
    Charges,
    Refunds,
    Disputes,
}

impl Resource {
    /// Every endpoint, in the order of their lanes (see the module).
    pub const ORDER: [Resource; 9] = [
        Resource::Products,
        Resource::Prices,
        Resource::Customers,
        Resource::Subscriptions,
        Resource::Invoices,
        Resource::PaymentIntents,
        Resource::Charges,
        Resource::Refunds,
        Resource::Disputes,
    ];

    /// The path after `/v1/`, also the cursor's key.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Products => "products",
            Resource::Prices => "prices",
            Resource::Customers => "customers",
            Resource::Subscriptions => "subscriptions",
            Resource::Invoices => "invoices",
            Resource::PaymentIntents => "payment_intents",
            Resource::Charges => "charges",
            Resource::Refunds => "refunds",
            Resource::Disputes => "disputes",
        }
    }

    /// Query parameters beyond paging: subscriptions list only live ones unless asked for
    /// all (their items come with them, a first page of them; when it `has_more`, the rest
    /// are paged from `/v1/subscription_items`).
    fn query(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Resource::Subscriptions => &[("status", "all")],
            _ => &[],
        }
    }
}

/// How far the backfill is, after each page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub resource: Resource,
    /// Pages of this resource applied, in this pass.
    pub pages: u64,
    /// Objects stored this run, all resources.
    pub objects: u64,
}

/// How a backfill went.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ApiBackfillReport {
    /// Objects read from the API this run.
    pub read: u64,
    /// Written to the mirror.
    pub applied: u64,
    /// Older than what the mirror holds (an event newer than the read, or a deleted object).
    pub stale: u64,
    /// Read in the same second before (a page applied again).
    pub duplicate: u64,
    /// Objects the mirror does not model.
    pub unsupported: u64,
    pub quarantined: u64,
    /// Pages fetched this run.
    pub pages: u64,
    /// Objects that are not Stripe objects the mirror can take: (resource, reason).
    pub rejected: Vec<(Resource, String)>,
    /// Endpoints already complete when this run started (continued from a stored cursor).
    pub resumed: Vec<Resource>,
}

/// Why a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("reading {resource:?} from Stripe: {source}")]
    Api {
        resource: Resource,
        #[source]
        source: ApiError,
    },
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl Retryable for BackfillError {
    fn retry_class(&self) -> RetryClass {
        match self {
            BackfillError::Api { source, .. } => source.retry_class(),
            BackfillError::Billing(error) => error.retry_class(),
        }
    }
}

/// The backfill's knobs.
#[derive(Debug, Clone, Copy)]
pub struct BackfillOptions {
    /// Objects of one page applied at once (each its own transaction).
    pub concurrency: usize,
    /// Forget stored cursors and start a new pass.
    pub restart: bool,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            restart: false,
        }
    }
}

/// Where one endpoint's paging stands.
#[derive(Debug, Clone, Default)]
struct Cursor {
    starting_after: Option<String>,
    pages: u64,
    complete: bool,
}

/// Backfills every endpoint of [`Resource::ORDER`], continuing from the stored cursors;
/// `progress` hears of every page applied.
pub async fn backfill_from_api(
    deps: &BillingDeps,
    api: &StripeApi,
    options: BackfillOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ApiBackfillReport, BackfillError> {
    let mut cursors = load_cursors(deps).await?;
    let all_complete = Resource::ORDER
        .iter()
        .all(|resource| cursors.iter().any(|(r, c)| r == resource && c.complete));
    if options.restart || all_complete {
        reset_cursors(deps).await?;
        cursors.clear();
    }
    let stored = AtomicU64::new(0);
    let lane = |resources: &'static [Resource]| {
        let (cursors, stored) = (&cursors, &stored);
        async move {
            let mut report = ApiBackfillReport::default();
            for &resource in resources {
                let cursor = cursors
                    .iter()
                    .find(|(r, _)| *r == resource)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_default();
                if cursor.complete {
                    report.resumed.push(resource);
                    continue;
                }
                let run = Run {
                    deps,
                    api,
                    options,
                    progress,
                    stored,
                };
                backfill_resource(&run, resource, cursor, &mut report).await?;
            }
            Ok::<ApiBackfillReport, BackfillError>(report)
        }
    };
    let mut report = lane(FIRST).await?;
    // Both lanes run to their end even when one fails, so every page served is stored.
    let (subscriptions, rest) = tokio::join!(lane(SUBSCRIPTIONS), lane(AFTER_CUSTOMERS));
    report.absorb(subscriptions?);
    report.absorb(rest?);
    Ok(report)
}

/// A pass in three lanes: the catalog and the customers first (the others inherit the
/// customers' workspace); then subscriptions (one transaction each: items and revenue facts)
/// beside everything else (batched rows), which needs nothing from them.
const FIRST: &[Resource] = &[Resource::Products, Resource::Prices, Resource::Customers];
const SUBSCRIPTIONS: &[Resource] = &[Resource::Subscriptions];
const AFTER_CUSTOMERS: &[Resource] = &[
    Resource::Invoices,
    Resource::PaymentIntents,
    Resource::Charges,
    Resource::Refunds,
    Resource::Disputes,
];

impl ApiBackfillReport {
    fn absorb(&mut self, other: ApiBackfillReport) {
        self.read += other.read;
        self.applied += other.applied;
        self.stale += other.stale;
        self.duplicate += other.duplicate;
        self.unsupported += other.unsupported;
        self.quarantined += other.quarantined;
        self.pages += other.pages;
        self.rejected.extend(other.rejected);
        self.resumed.extend(other.resumed);
    }
}

/// What every endpoint of one run shares.
struct Run<'a> {
    deps: &'a BillingDeps,
    api: &'a StripeApi,
    options: BackfillOptions,
    progress: &'a (dyn Fn(Progress) + Sync),
    /// Objects stored this run, all lanes.
    stored: &'a AtomicU64,
}

async fn backfill_resource(
    run: &Run<'_>,
    resource: Resource,
    mut cursor: Cursor,
    report: &mut ApiBackfillReport,
) -> Result<(), BackfillError> {
    let (deps, api, options) = (run.deps, run.api, run.options);
    let fetch = |after: Option<String>| async move {
        let mut page = api
            .list(resource.path(), resource.query(), after.as_deref())
            .await?;
        if resource == Resource::Subscriptions {
            complete_items(api, &mut page).await?;
        }
        Ok::<Page, ApiError>(page)
    };
    let api_error = |source| BackfillError::Api { resource, source };
    let mut page = fetch(cursor.starting_after.clone())
        .await
        .map_err(api_error)?;
    loop {
        report.pages += 1;
        let last_id = page
            .data
            .last()
            .and_then(|object| object.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        // The next page is read while this one is written.
        let next_after = last_id.clone().or_else(|| cursor.starting_after.clone());
        let (applied, next) = tokio::join!(
            apply_page(deps, resource, &page, options.concurrency, report),
            async {
                if page.has_more && last_id.is_some() {
                    Some(fetch(next_after).await)
                } else {
                    None
                }
            }
        );
        let stored = applied?;
        cursor.pages += 1;
        cursor.complete = !page.has_more || last_id.is_none();
        if last_id.is_some() {
            cursor.starting_after = last_id;
        }
        store_cursor(deps, resource, &cursor, page.data.len()).await?;
        let objects = run.stored.fetch_add(stored, Ordering::Relaxed) + stored;
        (run.progress)(Progress {
            resource,
            pages: cursor.pages,
            objects,
        });
        match next {
            None => return Ok(()),
            Some(next) => page = next.map_err(api_error)?,
        }
    }
}

/// A subscription lists its first items only; the rest come from `/v1/subscription_items`,
/// so that no item is taken for removed.
async fn complete_items(api: &StripeApi, page: &mut Page) -> Result<(), ApiError> {
    for subscription in &mut page.data {
        if subscription
            .pointer("/items/has_more")
            .and_then(Value::as_bool)
            != Some(true)
        {
            continue;
        }
        let Some(id) = subscription
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let mut items: Vec<Value> = subscription
            .pointer("/items/data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut after = items
            .last()
            .and_then(|item| item.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        loop {
            let more = api
                .list(
                    "subscription_items",
                    &[("subscription", id.as_str())],
                    after.as_deref(),
                )
                .await?;
            after = more
                .data
                .last()
                .and_then(|item| item.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            items.extend(more.data);
            if !more.has_more || after.is_none() {
                break;
            }
        }
        subscription["items"]["data"] = Value::Array(items);
        subscription["items"]["has_more"] = Value::Bool(false);
    }
    Ok(())
}

/// Objects of one batch transaction (a page is cut into a few, written side by side).
const BATCH: usize = 25;

/// Applies one page's objects through the webhook's path: plain rows of one table in batch
/// transactions (`ingest_batch`), the rest (subscriptions, deletions) each in its own.
async fn apply_page(
    deps: &BillingDeps,
    resource: Resource,
    page: &Page,
    concurrency: usize,
    report: &mut ApiBackfillReport,
) -> Result<u64, BackfillError> {
    let mut outcomes: Vec<Result<Ingested, BillingError>> = Vec::new();
    let mut batched: Vec<(Table, StripeEvent)> = Vec::new();
    let mut single: Vec<StripeEvent> = Vec::new();
    let mut seen = HashSet::new();
    for object in &page.data {
        match StripeEvent::api_read(object.clone(), page.read_at, page.api_version.as_deref()) {
            Err(error) => outcomes.push(Err(error)),
            Ok(event) => match ingest_batch::batchable(&event) {
                Some(table) if seen.insert(event.id.clone()) => batched.push((table, event)),
                _ => single.push(event),
            },
        }
    }
    let mut groups: HashMap<Table, Vec<StripeEvent>> = HashMap::new();
    for (table, event) in batched {
        groups.entry(table).or_default().push(event);
    }
    let chunks: Vec<(Table, &[StripeEvent])> = groups
        .iter()
        .flat_map(|(table, events)| events.chunks(BATCH).map(|chunk| (*table, chunk)))
        .collect();
    let batches: Vec<Result<Vec<Result<Ingested, BillingError>>, BillingError>> =
        futures::stream::iter(chunks)
            .map(|(table, chunk)| ingest_batch::ingest_batch(deps, table, chunk))
            .buffer_unordered(concurrency.clamp(1, 4))
            .collect()
            .await;
    for batch in batches {
        outcomes.extend(batch?);
    }
    let singles: Vec<Result<Ingested, BillingError>> = futures::stream::iter(&single)
        .map(|event| ingest::ingest_event(deps, event))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outcomes.extend(singles);
    report.read += page.data.len() as u64;
    let mut stored = 0;
    let mut failure = None;
    for outcome in outcomes {
        match outcome {
            Ok(Ingested::Applied) => (report.applied, stored) = (report.applied + 1, stored + 1),
            Ok(Ingested::Stale) => (report.stale, stored) = (report.stale + 1, stored + 1),
            Ok(Ingested::Duplicate) => {
                (report.duplicate, stored) = (report.duplicate + 1, stored + 1)
            }
            Ok(Ingested::Unsupported) => report.unsupported += 1,
            Ok(Ingested::Quarantined) => report.quarantined += 1,
            Err(BillingError::Malformed(reason)) => report.rejected.push((resource, reason)),
            // The page's cursor is not stored: the next run applies it again.
            Err(error) => failure = Some(error),
        }
    }
    failure.map_or(Ok(stored), |error| Err(error.into()))
}

async fn load_cursors(deps: &BillingDeps) -> Result<Vec<(Resource, Cursor)>, BillingError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT resource, starting_after, pages, complete FROM stripe.backfill_cursors",
            &[],
        )
        .await
        .context("read the backfill cursors")?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let resource: &str = row.get(0);
            let resource = Resource::ORDER
                .into_iter()
                .find(|known| known.path() == resource)?;
            Some((
                resource,
                Cursor {
                    starting_after: row.get(1),
                    pages: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                    complete: row.get(3),
                },
            ))
        })
        .collect())
}

async fn reset_cursors(deps: &BillingDeps) -> Result<(), BillingError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    client
        .execute_typed("DELETE FROM stripe.backfill_cursors", &[])
        .await
        .context("start a new backfill pass")?;
    Ok(())
}

async fn store_cursor(
    deps: &BillingDeps,
    resource: Resource,
    cursor: &Cursor,
    objects: usize,
) -> Result<(), BillingError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let pages = i64::try_from(cursor.pages).unwrap_or(i64::MAX);
    let objects = i64::try_from(objects).unwrap_or(i64::MAX);
    client
        .execute_typed(
            "INSERT INTO stripe.backfill_cursors (resource, starting_after, pages, objects, complete)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (resource) DO UPDATE SET starting_after = EXCLUDED.starting_after,
                 pages = EXCLUDED.pages,
                 objects = stripe.backfill_cursors.objects + EXCLUDED.objects,
                 complete = EXCLUDED.complete, updated_at = now()",
            &[
                (&resource.path(), Type::TEXT),
                (&cursor.starting_after, Type::TEXT),
                (&pages, Type::INT8),
                (&objects, Type::INT8),
                (&cursor.complete, Type::BOOL),
            ],
        )
        .await
        .context("store the backfill cursor")?;
    Ok(())
}
