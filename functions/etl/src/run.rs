//! One ETL run, start to end: [`dispatch`] enqueues a run per active connection; [`run`]
//! records it, takes the account's lease, walks the platform's pages through [`crate::extract`],
//! loads each page through [`crate::load`] fenced by the lease, and on success advances the
//! cursor and asks for a metrics recompute; [`backfill`] re-reads a range through the same path.
//!
//! Meta windows longer than `async_after_days`, and any window Meta refuses to answer
//! synchronously ([`ExtractError::TooMuchData`]), are read through a report run
//! ([`crate::report_jobs`]); so are TikTok windows longer than its `async_after_days`
//! (report tasks, one per 30-day chunk). A refused token marks the connection `needs_reauth`
//! ([`mark_needs_reauth`]), and a run on such a connection fails before calling the platform.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use secrecy::{ExposeSecret, SecretString};
use shared::db::{Budget, DbContext};
use shared::lease::{Lease, try_acquire};
use shared::messages::MetricsRecompute;
use shared::queue::Message;
use shared::queue::outbox::Outbox;
use shared::retry::retry;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::extract::fetch;
use crate::load::upsert;
use crate::{
    AdRow, EtlDeps, EtlError, EtlRun, ExtractError, LEASE_TTL, MAX_PAGES_PER_RUN, Platform,
    RunReport, RunStatus, meta, redacted, report_jobs, shopify, tiktok, tokens,
};

/// Enqueues one run per active connection of `platform`, each re-reading the lookback window
/// up to `today`. Returns how many were enqueued.
pub async fn dispatch(
    deps: &EtlDeps,
    platform: Platform,
    today: NaiveDate,
) -> Result<usize, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let rows = client
        .query_typed(
            "SELECT id, external_account_id FROM connections WHERE platform = $1 AND status = 'active' ORDER BY id",
            &[(&platform.as_str(), Type::TEXT)],
        )
        .await
        .context("list connections")?;
    drop(client);
    let window_start = today - chrono::Duration::days(platform.lookback_days() - 1);
    let messages = rows
        .iter()
        .map(|row| {
            EtlRun {
                platform,
                connection_id: row.get(0),
                account_id: row.get(1),
                window_start,
                window_end: today,
            }
            .to_outgoing()
        })
        .collect::<Result<Vec<_>, _>>()?;
    deps.transport.send(&messages).await?;
    Ok(messages.len())
}

pub(crate) struct Connection {
    pub(crate) workspace_id: Uuid,
    pub(crate) credentials: Credentials,
    currency: Option<String>,
    /// The stored `sync_cursor` (Shopify keeps `{"updated_at": …}` there).
    pub(crate) cursor: Option<serde_json::Value>,
    /// Meta's attribution windows the connection chose (`None`: the default).
    attribution_windows: Option<Vec<String>>,
}

/// What one connection's requests authenticate with.
pub(crate) struct Credentials {
    pub(crate) token: SecretString,
    /// Meta's `appsecret_proof` of `token`, when the app secret is configured.
    pub(crate) proof: Option<String>,
}

impl Credentials {
    pub(crate) fn new(platform: Platform, token: SecretString, app_secret: Option<&str>) -> Self {
        let proof = match (platform, app_secret) {
            (Platform::Meta, Some(secret)) => {
                Some(meta::appsecret_proof(token.expose_secret(), secret))
            }
            _ => None,
        };
        Self { token, proof }
    }

    /// The texts no error may quote.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.token.expose_secret()];
        secrets.extend(self.proof.as_deref());
        secrets
    }
}

async fn connection(deps: &EtlDeps, run: &EtlRun) -> Result<Connection, EtlError> {
    let id = run.connection_id;
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    let row = transaction
        .query_typed_opt(
            "SELECT workspace_id, access_token, access_token_sealed, currency, sync_cursor, status,
                    attribution_windows
               FROM connections WHERE id = $1",
            &[(&id, Type::UUID)],
        )
        .await
        .context("read connection")?
        .ok_or(EtlError::Connection(id))?;
    if row.get::<_, String>(5) == NEEDS_REAUTH {
        return Err(EtlError::NeedsReauth(id));
    }
    let stored = tokens::StoredToken {
        plaintext: row.get(1),
        sealed: row.get(2),
    };
    let token = tokens::open(&*transaction, &deps.keys, id, stored)
        .await?
        .ok_or(EtlError::Connection(id))?;
    transaction
        .commit()
        .await
        .context("commit connection read")?;
    let app_secret = deps
        .meta_app_secret
        .as_ref()
        .map(|secret| secret.expose_secret());
    Ok(Connection {
        workspace_id: row.get(0),
        credentials: Credentials::new(run.platform, token, app_secret),
        currency: row.get(3),
        cursor: row.get(4),
        attribution_windows: row.get(6),
    })
}

/// The connection status of a connection whose token the platform refused.
const NEEDS_REAUTH: &str = "needs_reauth";

/// Marks an active connection `needs_reauth` after its platform refused the token, with the
/// (redacted) reason; dispatch passes it over from now on. Logged as an alert the first
/// time only: a run already queued that fails the same way changes nothing.
async fn mark_needs_reauth(deps: &EtlDeps, run: &EtlRun, reason: &str) -> Result<(), EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let marked = client
        .execute_typed(
            "UPDATE connections SET status = 'needs_reauth', status_reason = $2, updated_at = now()
              WHERE id = $1 AND status = 'active'",
            &[(&run.connection_id, Type::UUID), (&reason, Type::TEXT)],
        )
        .await
        .context("mark connection needs_reauth")?;
    if marked == 1 {
        tracing::error!(alert = "connection_needs_reauth", platform = run.platform.as_str(), account = %run.account_id,
                        connection = %run.connection_id, %reason, "the platform refused the token; the connection waits for a new one");
    }
    Ok(())
}

async fn start_run(deps: &EtlDeps, run: &EtlRun) -> Result<Uuid, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_one(
            "INSERT INTO etl_runs (connection_id, platform, account_id, window_start, window_end)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                (&run.connection_id, Type::UUID),
                (&run.platform.as_str(), Type::TEXT),
                (&run.account_id, Type::TEXT),
                (&run.window_start, Type::DATE),
                (&run.window_end, Type::DATE),
            ],
        )
        .await
        .context("record run")?;
    Ok(row.get(0))
}

async fn finish_run(
    deps: &EtlDeps,
    report: &RunReport,
    token: Option<i64>,
) -> Result<(), EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let status = match report.status {
        RunStatus::Ok => "ok",
        RunStatus::Failed => "failed",
        RunStatus::Skipped => "skipped",
    };
    client
        .execute_typed(
            "UPDATE etl_runs SET status = $2, finished_at = now(), pages = $3, rows_inserted = $4, rows_updated = $5,
                    error = $6, fencing_token = $7 WHERE id = $1",
            &[
                (&report.run_id, Type::UUID),
                (&status, Type::TEXT),
                (&report.pages, Type::INT4),
                (&report.rows_inserted, Type::INT4),
                (&report.rows_updated, Type::INT4),
                (&report.error, Type::TEXT),
                (&token, Type::INT8),
            ],
        )
        .await
        .context("finish run")?;
    Ok(())
}

/// Marks the window synced (`cursor` becomes the connection's `sync_cursor`; `None` keeps
/// the stored one) and asks for the touched dates to be recomputed, under the lease.
pub(crate) async fn complete(
    deps: &EtlDeps,
    lease: &Lease,
    run: &EtlRun,
    workspace: Uuid,
    cursor: Option<&serde_json::Value>,
    dates: &BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let outbox = Outbox::new(deps.pool.clone(), deps.transport.clone());
    let mut client = deps.pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    lease.fence(&*transaction).await?;
    transaction
        .execute_typed(
            "UPDATE connections SET sync_cursor = COALESCE($2, sync_cursor), cursor_fencing_token = $3,
                    last_synced_at = now(), updated_at = now()
              WHERE id = $1 AND cursor_fencing_token <= $3",
            &[(&run.connection_id, Type::UUID), (&cursor, Type::JSONB), (&lease.token, Type::INT8)],
        )
        .await
        .context("advance cursor")?;
    let now = deps.clock.now();
    let messages = dates
        .iter()
        .map(|date| MetricsRecompute::new(workspace, *date, "etl", now).to_outgoing())
        .collect::<Result<Vec<_>, _>>()?;
    let pending = outbox.enqueue(&transaction, &messages).await?;
    transaction.commit().await.context("commit completion")?;
    drop(client);
    if let Err(error) = outbox.dispatch(&pending).await {
        tracing::warn!(%error, "metrics requests left for the outbox relay");
    }
    Ok(())
}

/// Runs one connection over an explicit date range (a backfill), through the same path as a
/// scheduled run: lease, pages, upserts, cursor, metrics requests.
pub async fn backfill(
    deps: &EtlDeps,
    connection_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RunReport, EtlError> {
    let client = deps.pool.get().await.context("check out a connection")?;
    let row = client
        .query_typed_opt(
            "SELECT platform, external_account_id FROM connections WHERE id = $1",
            &[(&connection_id, Type::UUID)],
        )
        .await
        .context("read connection")?
        .ok_or(EtlError::Connection(connection_id))?;
    drop(client);
    let platform: String = row.get(0);
    let platform = serde_json::from_value(serde_json::Value::String(platform))
        .map_err(|_| EtlError::Connection(connection_id))?;
    let run = EtlRun {
        platform,
        connection_id,
        account_id: row.get(1),
        window_start: from,
        window_end: to,
    };
    self::run(deps, &run, "backfill").await
}

/// Executes one run; `holder` names this worker in the lease. A run whose window cannot be
/// executed is refused ([`EtlError::InvalidRun`]) before anything is recorded.
pub async fn run(deps: &EtlDeps, run: &EtlRun, holder: &str) -> Result<RunReport, EtlError> {
    if let Some(problem) = run.window_problem() {
        return Err(EtlError::InvalidRun(problem));
    }
    let run_id = start_run(deps, run).await?;
    let mut report = RunReport {
        run_id,
        status: RunStatus::Ok,
        pages: 0,
        rows_inserted: 0,
        rows_updated: 0,
        error: None,
    };
    let lease_name = format!("etl:{}:{}", run.platform.as_str(), run.account_id);
    let lease = {
        let client = deps.pool.get().await.context("check out a connection")?;
        try_acquire(&**client, &lease_name, holder, LEASE_TTL).await?
    };
    let Some(lease) = lease else {
        report.status = RunStatus::Skipped;
        finish_run(deps, &report, None).await?;
        return Ok(report);
    };
    let (outcome, secrets) = match connection(deps, run).await {
        Ok(connection) => {
            let outcome = extract_and_load(deps, run, &lease, &mut report, &connection).await;
            let secrets = connection
                .credentials
                .secrets()
                .into_iter()
                .map(str::to_string)
                .collect();
            (outcome, secrets)
        }
        Err(error) => (Err(error), Vec::new()),
    };
    if let Err(failure) = &outcome {
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let error = redacted(&failure.to_string(), &secrets);
        if matches!(failure, EtlError::Extract(ExtractError::Auth(_))) {
            mark_needs_reauth(deps, run, &error).await?;
        }
        report.status = RunStatus::Failed;
        // The structured line the template's metric filter and alarm count.
        tracing::error!(alert = "etl_run_failed", platform = run.platform.as_str(), account = %run.account_id, %error, "ETL run failed");
        report.error = Some(error);
    }
    finish_run(deps, &report, Some(lease.token)).await?;
    let client = deps.pool.get().await.context("check out a connection")?;
    lease.release(&**client).await?;
    Ok(report)
}

async fn extract_and_load(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
) -> Result<(), EtlError> {
    if run.platform == Platform::Shopify {
        return shopify::extract_and_load(deps, run, lease, report, connection).await;
    }
    let mut dates = BTreeSet::new();
    if run.platform == Platform::Meta {
        meta_window(deps, run, lease, report, connection, &mut dates).await?;
    } else if deps.tiktok.reads_async(run.window_start, run.window_end) {
        report_jobs::tiktok_report_tasks(deps, run, lease, report, connection, &mut dates).await?;
    } else {
        for start in ad_pages(deps, run, connection) {
            walk(deps, run, lease, report, connection, start, &mut dates).await?;
        }
    }
    let cursor = serde_json::json!({ "synced_through": run.window_end });
    complete(
        deps,
        lease,
        run,
        connection.workspace_id,
        Some(&cursor),
        &dates,
    )
    .await
}

/// Reads a Meta window: synchronously when it is short, through a report run when it is
/// long or when Meta asks for less data than a synchronous read.
async fn meta_window(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    dates: &mut BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let first_page = meta_first_page(deps, run, connection);
    let results = if deps.meta.reads_async(run.window_start, run.window_end) {
        report_jobs::meta_report_run(deps, lease, connection, &first_page).await?
    } else {
        match walk(
            deps,
            run,
            lease,
            report,
            connection,
            first_page.clone(),
            dates,
        )
        .await
        {
            Err(EtlError::Extract(ExtractError::TooMuchData(reason))) => {
                tracing::info!(%reason, account = %run.account_id, "Meta asks for less data; reading the window through a report run");
                report_jobs::meta_report_run(deps, lease, connection, &first_page).await?
            }
            outcome => return outcome,
        }
    };
    walk(deps, run, lease, report, connection, results, dates).await
}

fn meta_first_page(deps: &EtlDeps, run: &EtlRun, connection: &Connection) -> String {
    let windows = meta::attribution::windows(connection.attribution_windows.as_deref());
    let request = meta::InsightsRequest {
        version: deps.meta.api_version,
        account_id: &run.account_id,
        since: run.window_start,
        until: run.window_end,
        windows: &windows,
    };
    meta::first_page(
        &deps.endpoints.meta_base_url,
        &request,
        connection.credentials.proof.as_deref(),
    )
}

/// The first page of every request an ad platform's window needs (synchronously).
fn ad_pages(deps: &EtlDeps, run: &EtlRun, connection: &Connection) -> Vec<String> {
    match run.platform {
        Platform::Meta => vec![meta_first_page(deps, run, connection)],
        Platform::Tiktok => tiktok::first_pages(
            &deps.endpoints.tiktok_base_url,
            &run.account_id,
            run.window_start,
            run.window_end,
        ),
        Platform::Shopify => Vec::new(),
    }
}

/// Fetches every page of an ad platform's window without storing anything; returns the
/// number of rows. For the benchmark, which compares a run with what the API side alone
/// can serve.
pub async fn fetch_window(deps: &EtlDeps, run: &EtlRun) -> Result<usize, EtlError> {
    let connection = connection(deps, run).await?;
    let mut rows = 0;
    for start in ad_pages(deps, run, &connection) {
        let mut url = Some(start);
        while let Some(page_url) = url {
            let page = retry(deps.retry, || {
                fetch(deps, run.platform, &page_url, &connection.credentials)
            })
            .await?;
            rows += page.rows.len();
            url = page.next;
        }
    }
    Ok(rows)
}

/// Follows one chain of pages from `url`, storing each page before asking for the next.
async fn walk(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    url: String,
    dates: &mut BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let mut url = Some(url);
    while let Some(page_url) = url {
        check_page_budget(report)?;
        let page = retry(deps.retry, || {
            fetch(deps, run.platform, &page_url, &connection.credentials)
        })
        .await?;
        store_page(deps, run, lease, report, connection, &page.rows, dates).await?;
        url = page.next;
    }
    Ok(())
}

/// Stores one page of rows under the lease, counts it in the report, and renews the lease.
pub(crate) async fn store_page(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    rows: &[AdRow],
    dates: &mut BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let (inserted, updated) = upsert(
        deps,
        lease,
        run,
        report.run_id,
        connection.workspace_id,
        connection.currency.as_deref(),
        rows,
    )
    .await?;
    report.pages = report.pages.saturating_add(1);
    report.rows_inserted = report.rows_inserted.saturating_add(inserted);
    report.rows_updated = report.rows_updated.saturating_add(updated);
    dates.extend(rows.iter().map(|row| row.date));
    let client = deps.pool.get().await.context("check out a connection")?;
    lease.renew(&**client).await?;
    Ok(())
}

/// Refuses another page once a run has followed [`MAX_PAGES_PER_RUN`].
pub(crate) fn check_page_budget(report: &RunReport) -> Result<(), ExtractError> {
    if report.pages >= MAX_PAGES_PER_RUN {
        return Err(ExtractError::Malformed(format!(
            "the platform still offers pages after {MAX_PAGES_PER_RUN}; the run stops there"
        )));
    }
    Ok(())
}
