//! The paged sync of one shop: from the cursor minus the lookback, page after page on the
//! shop's own host, pacing by the call-limit bucket, each page written under the run's lease.

use std::collections::BTreeSet;

use super::store::{Source, upsert_orders};
use super::wire::{
    cursor_updated_at, first_page, next_page, parse_page, pause_for, shop_handle, updated_at_min,
};

use chrono::SecondsFormat;
use serde_json::json;
use shared::db::{Budget, DbContext};
use shared::lease::Lease;
use shared::retry::retry;

use crate::{
    Connection, EtlDeps, EtlError, EtlRun, Platform, RunReport, check_page_budget, complete,
    fetch_json,
};

/// The Shopify half of [`crate::run`]: pages of orders since the cursor, each stored under the
/// lease (the next page is fetched meanwhile); then the cursor moves to the newest
/// `updated_at` seen.
pub(crate) async fn extract_and_load(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
) -> Result<(), EtlError> {
    let shop = shop_handle(&run.account_id);
    let previous = connection.cursor.as_ref().and_then(cursor_updated_at);
    let since = updated_at_min(
        previous,
        run.window_start,
        Platform::Shopify.lookback_days(),
    );
    let shop_url = deps.endpoints.shopify_shop_url(shop);
    let fetch_page = |page_url: String| async move {
        retry(deps.retry, || {
            fetch_json(
                &deps.http,
                Platform::Shopify,
                &page_url,
                &connection.credentials,
            )
        })
        .await
    };
    let mut fetched = Some(fetch_page(first_page(&shop_url, since)).await);
    let mut newest = previous;
    let mut dates = BTreeSet::new();
    while let Some(answer) = fetched.take() {
        check_page_budget(report)?;
        let (headers, body) = answer?;
        let mut page = parse_page(&headers, &body)?;
        page.next = page
            .next
            .map(|next| next_page(&next, &shop_url))
            .transpose()?;
        let pause = page
            .call_limit
            .and_then(|(used, size)| pause_for(used, size));
        // The next page is asked for while this one is stored, unless the call limit asks
        // us to slow down first.
        let prefetch = async {
            match (&page.next, pause) {
                (Some(next), None) => Some(fetch_page(next.clone()).await),
                _ => None,
            }
        };
        let store = async {
            let mut client = deps.pool.get().await.context("check out a connection")?;
            let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
            lease.fence(&*transaction).await?;
            let written = upsert_orders(
                &transaction,
                shop,
                connection.workspace_id,
                Some(report.run_id),
                Source::Poll,
                &page.orders,
            )
            .await?;
            transaction.commit().await.context("commit page")?;
            lease.renew(&**client).await?;
            Ok::<_, EtlError>(written)
        };
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
                if let Some(wait) = pause {
                    tracing::info!(?wait, call_limit = ?page.call_limit, "Shopify call limit near; pausing");
                    tokio::time::sleep(wait).await;
                }
                Some(fetch_page(next).await)
            }
            (None, None) => None,
        };
    }
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
