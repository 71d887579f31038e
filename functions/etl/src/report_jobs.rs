//! Asynchronous reports, the steps: Meta's report runs, for windows too large to read
//! synchronously. [`meta_report_run`] creates a run (POST of the synchronous first page),
//! polls its `async_status` every `report_poll_interval` until it completes, renewing the
//! account's lease meanwhile (a run can take longer than the lease lasts), and returns the
//! first page of its rows, which the caller walks like any other pages.
//!
//! Bounded: polling stops at `report_deadline` (a run that never finishes fails the ETL run,
//! permanently for this run, so the next schedule tries again). A run Meta fails or skips is
//! created anew up to the retry policy's `max_retries`; then the ETL run fails with Meta's
//! status in its recorded error. Each HTTP call retries its own transient failures.

use std::time::Instant;

use reqwest::Method;
use shared::db::DbContext;
use shared::lease::Lease;
use shared::retry::retry;

use crate::extract::call_meta;
use crate::meta::report_run::{self, JobStatus};
use crate::{Connection, EtlDeps, EtlError, ExtractError};

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
