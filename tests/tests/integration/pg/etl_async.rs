//! The December-2026 contracts of the ad platforms against their stand-ins: Meta's
//! asynchronous report runs (when Meta refuses a synchronous read, for long windows, and when
//! a run fails, is skipped or never finishes), pacing by Meta's usage headers before it
//! throttles, the configured Marketing API version, attribution windows per connection,
//! TikTok's report tasks within their creation limit, and a refused token marking the
//! connection `needs_reauth`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use etl::{Platform, RunStatus};
use integration_tests::fixtures::fast_retries;
use standins::Outcome;
use standins::meta::DEFAULT_META_ACCOUNT;
use tokio_postgres::types::Type;

use super::etl::{Etl, TODAY, day, etl, tiktok_connection, tiktok_run};

/// (ad, day, spend in cents, impressions, clicks, purchases, purchase value in cents)
type StoredRow = (String, chrono::NaiveDate, i64, i64, i64, i64, Option<i64>);

/// The stand-in's ETL with report runs polled every 10 ms.
async fn quick_polls() -> Etl {
    let mut e = etl().await;
    e.deps.meta.report_poll_interval = Duration::from_millis(10);
    e.deps.meta.report_deadline = Duration::from_secs(5);
    e
}

/// Every stored Meta row as (ad, day, spend in cents, impressions, clicks, purchases,
/// purchase value in cents), sorted; a day without purchases (Meta sends no `actions`)
/// as zeros, as the stand-in's ground truth counts it.
async fn stored_rows(e: &Etl) -> Vec<StoredRow> {
    let rows =
        e.db.client()
            .await
            .query_typed(
                "SELECT level_id, date, (spend * 100)::int8, impressions, clicks,
                        COALESCE(conversions, 0)::int8, (COALESCE(conversion_value, 0) * 100)::int8
                   FROM ad_insights WHERE platform = 'meta' ORDER BY level_id, date",
                &[],
            )
            .await
            .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            )
        })
        .collect()
}

fn expected_rows(e: &Etl, start: &str, end: &str) -> Vec<StoredRow> {
    let mut rows: Vec<_> = e
        .standins
        .meta_faults()
        .expected_rows(DEFAULT_META_ACCOUNT, day(start), day(end))
        .into_iter()
        .map(|row| {
            (
                row.ad_id,
                row.date,
                row.spend_cents,
                row.impressions as i64,
                row.clicks as i64,
                row.purchases as i64,
                row.purchase_value_cents,
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn run_error(e: &Etl) -> String {
    e.db.client()
        .await
        .query_typed_one(
            "SELECT error FROM etl_runs WHERE status = 'failed' ORDER BY started_at DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_meta_range_the_stand_in_refuses_synchronously_completes_through_a_report_run() {
    let e = quick_polls().await;
    let meta = e.standins.meta_faults();
    meta.set_max_sync_rows(Some(100));
    let report = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(meta.report_runs_created(), 1);
    assert_eq!(
        meta.count(Outcome::Rejected),
        1,
        "the one synchronous read Meta refused"
    );
    let stored = stored_rows(&e).await;
    let keys: HashSet<_> = stored.iter().map(|row| (row.0.clone(), row.1)).collect();
    assert_eq!(keys.len(), stored.len(), "one row per ad and day");
    assert_eq!(stored, expected_rows(&e, "2026-11-01", TODAY));
    assert_eq!(e.stored().await, e.expected("2026-11-01", TODAY));
    assert_eq!(e.cursor().await.unwrap()["synced_through"], TODAY);
    let polls = meta
        .requests()
        .iter()
        .filter(|request| !request.path.ends_with("/insights"))
        .count();
    assert!(polls >= 3, "the run was polled until it completed: {polls}");

    // The same window again through a run: updates in place, nothing added.
    let again = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!((again.status, again.rows_inserted), (RunStatus::Ok, 0));
    assert_eq!(stored_rows(&e).await, stored);
}

#[tokio::test]
async fn a_window_longer_than_the_async_threshold_goes_straight_to_a_report_run() {
    let e = quick_polls().await;
    let report = etl::run(&e.deps, &e.run("2026-10-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let meta = e.standins.meta_faults();
    assert_eq!(meta.report_runs_created(), 1);
    assert!(
        meta.requests()
            .iter()
            .all(|request| !request.path.contains("/act_") || request.page.is_none()),
        "no synchronous page of act_… was read"
    );
    assert_eq!(
        stored_rows(&e).await,
        expected_rows(&e, "2026-10-01", TODAY)
    );
}

#[tokio::test]
async fn a_failed_report_run_is_created_again_and_a_run_that_keeps_failing_is_recorded() {
    let mut e = quick_polls().await;
    e.deps.retry = fast_retries(1);
    let meta = e.standins.meta_faults();
    meta.set_max_sync_rows(Some(100));
    meta.fail_next_report_runs(1);
    let recovered = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(recovered.status, RunStatus::Ok, "{recovered:?}");
    assert_eq!(meta.report_runs_created(), 2);
    assert_eq!(
        stored_rows(&e).await,
        expected_rows(&e, "2026-11-01", TODAY)
    );

    meta.fail_next_report_runs(2);
    let failed = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        meta.report_runs_created(),
        4,
        "created again once, then given up"
    );
    assert!(
        run_error(&e).await.contains("Job Failed"),
        "{}",
        run_error(&e).await
    );

    meta.skip_next_report_runs(2);
    let skipped = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(skipped.status, RunStatus::Failed);
    assert!(run_error(&e).await.contains("Job Skipped"));
}

#[tokio::test]
async fn a_report_run_that_never_finishes_fails_at_its_deadline() {
    let mut e = quick_polls().await;
    e.deps.meta.report_deadline = Duration::from_millis(200);
    let meta = e.standins.meta_faults();
    meta.set_max_sync_rows(Some(100));
    meta.stall_report_runs(true);
    let started = Instant::now();
    let report = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        meta.report_runs_created(),
        1,
        "a deadline is not retried within the run"
    );
    let error = run_error(&e).await;
    assert!(
        error.contains("did not complete") && error.contains("Job Running"),
        "{error}"
    );
    assert_eq!(e.cursor().await, None);
}

#[tokio::test]
async fn pacing_slows_down_before_meta_throttles() {
    let mut e = etl().await;
    // Three synchronous pages; usage rises 48 points a call and falls back after a 400 ms
    // pause (longer than storing a page takes, shorter than the pacing pause).
    e.deps.meta.async_after_days = 3_000;
    e.deps.meta.pacing_pause = Duration::from_millis(500);
    let meta = e.standins.meta_faults();
    meta.set_usage_pct(0);
    meta.ramp_usage(48, Duration::from_millis(400));
    let started = Instant::now();
    let report = etl::run(&e.deps, &e.run("2026-10-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert!(report.pages >= 3, "{report:?}");
    assert_eq!(
        meta.count(Outcome::Throttled),
        0,
        "the run slowed down before Meta throttled it"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it paused after the answer at 96 %"
    );
    assert_eq!(e.stored().await, e.expected("2026-10-01", TODAY));
}

#[tokio::test]
async fn requests_name_the_configured_version_and_the_connections_attribution_windows() {
    let mut e = etl().await;
    e.deps.meta.api_version = "v26.0".parse().unwrap();
    etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    let requests = e.standins.meta_faults().requests();
    assert!(
        requests[0].path.starts_with("/meta/v26.0/act_"),
        "{}",
        requests[0].path
    );
    assert_eq!(
        requests[0].param("action_attribution_windows"),
        Some(r#"["7d_click","1d_view"]"#)
    );

    let client = e.db.client().await;
    client
        .execute_typed(
            "UPDATE connections SET attribution_windows = '{28d_click,1d_click}' WHERE id = $1",
            &[(&e.connection, Type::UUID)],
        )
        .await
        .unwrap();
    let retired = client
        .execute_typed(
            "UPDATE connections SET attribution_windows = '{7d_view}' WHERE id = $1",
            &[(&e.connection, Type::UUID)],
        )
        .await;
    assert!(
        retired.is_err(),
        "a window Meta no longer serves cannot be stored"
    );
    e.deps.meta.api_version = etl::meta::ApiVersion::default();
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let last = e.standins.meta_faults().requests().last().cloned().unwrap();
    assert!(last.path.starts_with("/meta/v27.0/"), "{}", last.path);
    assert_eq!(
        last.param("action_attribution_windows"),
        Some(r#"["1d_click","28d_click"]"#)
    );
}

async fn status(e: &Etl, connection: uuid::Uuid) -> (String, Option<String>) {
    let row =
        e.db.client()
            .await
            .query_typed_one(
                "SELECT status, status_reason FROM connections WHERE id = $1",
                &[(&connection, Type::UUID)],
            )
            .await
            .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn a_refused_meta_token_marks_the_connection_needs_reauth_until_a_new_one_is_stored() {
    let e = etl().await;
    let meta = e.standins.meta_faults();
    meta.expire_token();
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let (state, reason) = status(&e, e.connection).await;
    assert_eq!(state, "needs_reauth");
    assert!(reason.unwrap().contains("190"));
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Meta, day(TODAY))
            .await
            .unwrap(),
        0,
        "no run is dispatched for it"
    );
    let queued_before = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(queued_before.status, RunStatus::Failed);
    assert!(queued_before.error.unwrap().contains("sign in again"));
    assert_eq!(
        meta.request_count(),
        1,
        "a run already queued does not call Meta"
    );

    meta.renew_token();
    let client = e.db.client().await;
    etl::tokens::store(
        &client,
        &e.deps.keys,
        e.connection,
        standins::meta::DEFAULT_META_TOKEN,
    )
    .await
    .unwrap();
    assert_eq!(status(&e, e.connection).await, ("active".into(), None));
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
}

#[tokio::test]
async fn a_revoked_tiktok_token_marks_the_connection_needs_reauth() {
    let e = etl().await;
    let connection = tiktok_connection(&e).await;
    e.standins.tiktok_faults().expire_token();
    let report = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-11-24", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let (state, reason) = status(&e, connection).await;
    assert_eq!(state, "needs_reauth");
    assert!(reason.unwrap().contains("40105"));
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Tiktok, day(TODAY))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        status(&e, e.connection).await.0,
        "active",
        "the Meta connection is untouched"
    );
}

/// The TikTok connection's stored totals: (rows, spend in cents, conversions, value in cents).
async fn tiktok_stored(e: &Etl) -> (i64, i64, i64, i64) {
    let row =
        e.db.client()
            .await
            .query_typed_one(
                "SELECT count(*), (sum(spend) * 100)::int8, sum(conversions)::int8,
                        (sum(conversion_value) * 100)::int8
                   FROM ad_insights WHERE platform = 'tiktok'",
                &[],
            )
            .await
            .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn a_long_tiktok_window_is_read_through_report_tasks_within_the_creation_limit() {
    let mut e = etl().await;
    e.deps.tiktok.async_after_days = 30;
    e.deps.tiktok.task_poll_interval = Duration::from_millis(10);
    let connection = tiktok_connection(&e).await;
    let tiktok = e.standins.tiktok_faults();
    tiktok.fail_next_tasks(1);
    let report = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-10-01", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(
        tiktok.tasks_created(),
        4,
        "three chunks, one of them twice (FAILED)"
    );
    assert_eq!(
        tiktok.task_creations_refused(),
        0,
        "never more than 2 creations a second"
    );
    assert!(
        tiktok
            .requests()
            .iter()
            .all(|request| !request.path.ends_with("/integrated/get/")),
        "no synchronous page was read"
    );
    let totals = tiktok.expected_totals(
        standins::tiktok::DEFAULT_TIKTOK_ADVERTISER,
        day("2026-10-01"),
        day(TODAY),
    );
    assert_eq!(
        tiktok_stored(&e).await,
        (
            totals.rows as i64,
            totals.spend_cents,
            totals.purchases as i64,
            totals.purchase_value_cents
        )
    );
    let again = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-10-01", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!((again.status, again.rows_inserted), (RunStatus::Ok, 0));
}

#[tokio::test]
async fn a_tiktok_throttle_waits_the_configured_back_off() {
    let mut e = etl().await;
    let connection = tiktok_connection(&e).await;
    let tiktok = e.standins.tiktok_faults();
    e.deps.tiktok.throttle_wait = Duration::from_millis(300);
    tiktok.throttle_next(1);
    let started = Instant::now();
    let report = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-11-24", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it backed off before retrying"
    );

    // A back-off longer than the retry policy waits is not slept through: the run ends
    // throttled and the next schedule comes back later.
    e.deps.tiktok.throttle_wait = Duration::from_secs(300);
    tiktok.throttle_next(1);
    let report = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-11-24", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.error.unwrap().contains("40100"));
    assert_eq!(
        status(&e, connection).await.0,
        "active",
        "a throttle is not an auth failure"
    );
}
