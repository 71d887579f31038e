//! Asynchronous reports, the steps: Meta's report runs and TikTok's report tasks, for
//! windows too large to read synchronously. [`meta_report_run`] creates a run (POST of the synchronous first page),
//! polls its `async_status` every `report_poll_interval` until it completes, renewing the
//! account's lease meanwhile (a run can take longer than the lease lasts), and returns the
//! first page of its rows, which the caller walks like any other pages.
//!
//! Bounded: polling stops at `report_deadline` (a run that never finishes fails the ETL run,
//! permanently for this run, so the next schedule tries again). A run Meta fails or skips is
//! created anew up to the retry policy's `max_retries`; then the ETL run fails with Meta's
//! status in its recorded error. Each HTTP call retries its own transient failures.
//!
//! [`tiktok_report_tasks`] reads a window chunk by chunk (≤ 30 days each): it creates a
//! task — when [`CreationLimit`] allows, since TikTok accepts only 2 creations a second and
//! 60 a minute on every tier —, checks it every `task_poll_interval` until `SUCCESS` (to
//! `task_deadline`, renewing the lease), downloads the CSV and stores it as one page. A `FAILED` task is created anew like a failed Meta run; a 40100 waits
//! `throttle_wait` through the retry policy.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Instant;

use chrono::NaiveDate;
use reqwest::Method;
use shared::db::DbContext;
use shared::lease::Lease;
use shared::retry::retry;

use crate::extract::{call_meta, call_tiktok, download_tiktok};
use crate::meta::report_run::{self, JobStatus};
use crate::run::store_page;
use crate::tiktok::creation_limit::CreationLimit;
use crate::tiktok::task::{self, TaskStatus};
use crate::{
    Connection, EtlDeps, EtlError, EtlRun, ExtractError, RunReport, check_page_budget, tiktok,
};

/// Runs a Meta report for `synchronous_first_page` (its parameters are the report's) to
/// completion; returns the first page of its rows.
pub(crate) async fn meta_report_run(
    deps: &EtlDeps,
    lease: &Lease,
    connection: &Connection,
    synchronous_first_page: &str,
) -> Result<String, EtlError> {
    let mut attempt = 0;
    loop {
        match create_and_wait(deps, lease, connection, synchronous_first_page).await {
            Err(EtlError::Extract(ExtractError::ReportJob {
                message,
                transient: true,
            })) if attempt < deps.retry.max_retries => {
                attempt += 1;
                tracing::warn!(%message, attempt, "Meta report run did not complete; creating another");
            }
            outcome => return outcome,
        }
    }
}

async fn create_and_wait(
    deps: &EtlDeps,
    lease: &Lease,
    connection: &Connection,
    synchronous_first_page: &str,
) -> Result<String, EtlError> {
    let credentials = &connection.credentials;
    let proof = credentials.proof.as_deref();
    let base_url = &deps.endpoints.meta_base_url;
    let version = deps.meta.api_version;
    let created = retry(deps.retry, || {
        call_meta(deps, Method::POST, synchronous_first_page, credentials)
    })
    .await?;
    let run_id = report_run::parse_created(&created)?;
    let status_url = report_run::status_url(base_url, version, &run_id, proof);
    let deadline = Instant::now() + deps.meta.report_deadline;
    loop {
        let answer = retry(deps.retry, || {
            call_meta(deps, Method::GET, &status_url, credentials)
        })
        .await?;
        let ended = |status: &str| ExtractError::ReportJob {
            message: format!("Meta report run {run_id} ended as {status}"),
            transient: true,
        };
        match report_run::parse_status(&answer)? {
            JobStatus::Completed => {
                return Ok(report_run::results_url(base_url, version, &run_id, proof));
            }
            JobStatus::Failed => return Err(ended("Job Failed").into()),
            JobStatus::Skipped => return Err(ended("Job Skipped").into()),
            JobStatus::Pending { status, percent } => {
                if Instant::now() >= deadline {
                    return Err(ExtractError::ReportJob {
                        message: format!(
                            "Meta report run {run_id} did not complete within {:?} (last: {status}, {percent} %)",
                            deps.meta.report_deadline
                        ),
                        transient: false,
                    }
                    .into());
                }
                let client = deps.pool.get().await.context("check out a connection")?;
                lease.renew(&**client).await?;
                drop(client);
                tokio::time::sleep(deps.meta.report_poll_interval).await;
            }
        }
    }
}

/// Reads a TikTok window through report tasks, one per ≤ 30-day chunk, storing each
/// chunk's download as one page.
pub(crate) async fn tiktok_report_tasks(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    report: &mut RunReport,
    connection: &Connection,
    dates: &mut BTreeSet<NaiveDate>,
) -> Result<(), EtlError> {
    let creations = Mutex::new(CreationLimit::default());
    for (start, end) in tiktok::chunks(run.window_start, run.window_end) {
        check_page_budget(report)?;
        let mut attempt = 0;
        let rows = loop {
            match tiktok_task(deps, run, lease, connection, (start, end), &creations).await {
                Err(EtlError::Extract(ExtractError::ReportJob {
                    message,
                    transient: true,
                })) if attempt < deps.retry.max_retries => {
                    attempt += 1;
                    tracing::warn!(%message, attempt, "TikTok report task did not succeed; creating another");
                }
                outcome => break outcome?,
            }
        };
        store_page(deps, run, lease, report, connection, &rows, dates).await?;
    }
    Ok(())
}

/// One task for `start..=end`: created when `creations` allows, checked until it
/// succeeds, downloaded.
async fn tiktok_task(
    deps: &EtlDeps,
    run: &EtlRun,
    lease: &Lease,
    connection: &Connection,
    (start, end): (NaiveDate, NaiveDate),
    creations: &Mutex<CreationLimit>,
) -> Result<Vec<crate::AdRow>, EtlError> {
    let limit = || {
        creations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let credentials = &connection.credentials;
    let base_url = &deps.endpoints.tiktok_base_url;
    let settings = &deps.tiktok;
    let body = task::create_body(&run.account_id, start, end);
    let create_url = task::create_url(base_url);
    let created = retry(deps.retry, || async {
        let allowed = limit().next_allowed(Instant::now());
        tokio::time::sleep_until(allowed.into()).await;
        limit().record(Instant::now());
        call_tiktok(deps, Method::POST, &create_url, Some(&body), credentials).await
    })
    .await?;
    let task_id = task::parse_created(&created)?;
    let check_url = task::task_url(base_url, "check", &run.account_id, &task_id);
    let deadline = Instant::now() + settings.task_deadline;
    loop {
        let answer = retry(deps.retry, || {
            call_tiktok(deps, Method::GET, &check_url, None, credentials)
        })
        .await?;
        match task::parse_status(&answer)? {
            TaskStatus::Succeeded => break,
            TaskStatus::Ended(status) => {
                return Err(ExtractError::ReportJob {
                    message: format!("TikTok report task {task_id} ended as {status}"),
                    transient: true,
                }
                .into());
            }
            TaskStatus::Pending(status) => {
                if Instant::now() >= deadline {
                    return Err(ExtractError::ReportJob {
                        message: format!(
                            "TikTok report task {task_id} did not succeed within {:?} (last: {status})",
                            settings.task_deadline
                        ),
                        transient: false,
                    }
                    .into());
                }
                let client = deps.pool.get().await.context("check out a connection")?;
                lease.renew(&**client).await?;
                drop(client);
                tokio::time::sleep(settings.task_poll_interval).await;
            }
        }
    }
    let download_url = task::task_url(base_url, "download", &run.account_id, &task_id);
    let csv = retry(deps.retry, || {
        download_tiktok(deps, &download_url, credentials)
    })
    .await?;
    Ok(task::parse_download(&csv)?)
}
