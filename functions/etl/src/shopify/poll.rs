//! The sync of one shop: a bulk operation when the run reaches back further than the cursor
//! (a first sync, a backfill), else pages of the orders query from the cursor minus the
//! lookback, paced by the cost bucket, each page written under the run's lease.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde_json::json;
use shared::lease::Lease;
use shared::retry::retry;

use super::bulk;
use super::graphql::{OrdersPage, data, orders_request, pace, parse_orders_page};
use super::store::store_fenced;
use super::wire::{cursor_updated_at, shop_handle};
use crate::{
    Connection, EtlDeps, EtlError, EtlRun, ExtractError, Platform, RunReport, check_page_budget,
    complete, post_json,
};

/// How a run reads a shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One bulk operation over every order changed since then (`None`: every order the
    /// token may read — all of them with `read_all_orders`, else the last 60 days).
    Bulk { since: Option<DateTime<Utc>> },
    /// Pages of the orders query changed since then.
    Pages { since: DateTime<Utc> },
}

/// Which [`Plan`] a run follows, in order:
///
/// 1. no cursor (a first sync): bulk, over every order the token may read;
/// 2. a window that starts more than a day before the cursor minus the lookback (a
///    backfill): bulk, from the window start;
/// 3. otherwise pages, from the cursor minus the lookback — an order edited while a run was
///    paging, or stamped slightly out of order, would otherwise be skipped for good.
pub fn plan(cursor: Option<DateTime<Utc>>, window_start: NaiveDate, lookback_days: i64) -> Plan {
    let start = window_start.and_time(NaiveTime::MIN).and_utc();
    let Some(newest) = cursor else {
        return Plan::Bulk { since: None };
    };
    let since = newest
        .checked_sub_signed(chrono::Duration::days(lookback_days))
        .unwrap_or(newest);
    if start < since - chrono::Duration::days(1) {
        Plan::Bulk { since: Some(start) }
    } else {
        Plan::Pages { since }
    }
}

/// The Shopify half of [`crate::run`]: the [`plan`]'s reads, then the cursor moves to the
/// newest `updated_at` seen.
pub(crate) async fn extract_and_load(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
) -> Result<(), EtlError> {
    let shop = shop_handle(&run.account_id);
    let previous = connection.cursor.as_ref().and_then(cursor_updated_at);
    let graphql_url = deps.endpoints.shopify_graphql_url(shop);
    let (newest, dates) = match plan(
        previous,
        run.window_start,
        Platform::Shopify.lookback_days(),
    ) {
        Plan::Bulk { since } => {
            let stored =
                bulk::sync(deps, lease, report, connection, shop, &graphql_url, since).await?;
            (
                stored.newest.into_iter().chain(previous).max(),
                stored.dates,
            )
        }
        Plan::Pages { since } => {
            pages(
                deps,
                lease,
                report,
                connection,
                shop,
                &graphql_url,
                since,
                previous,
            )
            .await?
        }
    };
    let cursor =
        newest.map(|at| json!({ "updated_at": at.to_rfc3339_opts(SecondsFormat::Secs, true) }));
    complete(
        deps,
        lease,
        run,
        connection.workspace_id,
        cursor.as_ref(),
        &dates,
    )
    .await
}

/// One GraphQL request of the shop, retried while it may pass — a `THROTTLED` answer too,
/// which is HTTP 200 and read here; the answer once it carries `data`.
pub(super) async fn ask(
    deps: &EtlDeps,
    connection: &Connection,
    graphql_url: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ExtractError> {
    retry(deps.retry, || async {
        let (_, answer) = post_json(
            &deps.http,
            Platform::Shopify,
            graphql_url,
            &connection.credentials,
            &body,
        )
        .await?;
        data(&answer)?;
        Ok(answer)
    })
    .await
}

/// Rule 3: page after page, waiting before a request the bucket cannot hold yet.
#[allow(clippy::too_many_arguments)]
async fn pages(
    deps: &EtlDeps,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    shop: &str,
    graphql_url: &str,
    since: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> Result<(Option<DateTime<Utc>>, BTreeSet<NaiveDate>), EtlError> {
    let fetch_page = |cursor: Option<String>| async move {
        let answer = ask(
            deps,
            connection,
            graphql_url,
            orders_request(since, cursor.as_deref()),
        )
        .await?;
        parse_orders_page(&answer)
    };
    let mut fetched: Option<Result<OrdersPage, _>> = Some(fetch_page(None).await);
    let mut newest = previous;
    let mut dates = BTreeSet::new();
    while let Some(answer) = fetched.take() {
        check_page_budget(report)?;
        let page = answer?;
        let wait: Option<Duration> = page.cost.as_ref().and_then(pace);
        // The next page is asked for while this one is stored, unless the bucket asks us to
        // wait first.
        let prefetch = async {
            match (&page.next, wait) {
                (Some(next), None) => Some(fetch_page(Some(next.clone())).await),
                _ => None,
            }
        };
        let store = store_fenced(
            &deps.pool,
            lease,
            shop,
            connection.workspace_id,
            report.run_id,
            &page.orders,
        );
        let (written, prefetched) = tokio::join!(store, prefetch);
        let written = written?;
        report.pages = report.pages.saturating_add(1);
        report.rows_inserted = report.rows_inserted.saturating_add(written.inserted);
        report.rows_updated = report.rows_updated.saturating_add(written.updated);
        dates.extend(written.dates);
        newest = page
            .orders
            .iter()
            .map(|order| order.updated_at)
            .chain(newest)
            .max();
        fetched = match (prefetched, page.next) {
            (Some(answer), _) => Some(answer),
            (None, Some(next)) => {
                if let Some(wait) = wait {
                    tracing::info!(?wait, cost = ?page.cost, "Shopify cost bucket low; pausing");
                    tokio::time::sleep(wait).await;
                }
                Some(fetch_page(Some(next)).await)
            }
            (None, None) => None,
        };
    }
    Ok((newest, dates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_syncs_and_backfills_are_bulk_and_the_rest_pages() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        let at = |d: u32| day(d).and_time(NaiveTime::MIN).and_utc();
        assert_eq!(plan(None, day(1), 7), Plan::Bulk { since: None }, "rule 1");
        let cursor = Some(at(20) + chrono::Duration::hours(5));
        assert_eq!(
            plan(cursor, day(1), 7),
            Plan::Bulk { since: Some(at(1)) },
            "rule 2"
        );
        assert_eq!(
            plan(cursor, day(13), 7),
            Plan::Pages {
                since: at(13) + chrono::Duration::hours(5)
            },
            "rule 3: within a day of the lookback"
        );
        assert_eq!(
            plan(cursor, day(19), 7),
            Plan::Pages {
                since: at(13) + chrono::Duration::hours(5)
            }
        );
    }
}
