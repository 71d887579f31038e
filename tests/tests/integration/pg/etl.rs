//! The Meta ETL run against the local Meta stand-in: full and repeated syncs, restatement,
//! throttling, auth failure, a failure mid-run, a held lease, and dispatch; and the secrets:
//! the token in a header with `appsecret_proof`, never in a URL, sealed at rest and bound
//! to its row, and absent from every stored error and log line whatever the platform echoes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use etl::{Endpoints, EtlDeps, EtlRun, Platform, RunStatus};
use integration_tests::fixtures::fast_retries;
use integration_tests::test_db::TestDb;
use secrecy::ExposeSecret;
use shared::lambda::Container;
use shared::queue::postgres::PostgresTransport;
use shared::queue::{Transport, catalog};
use standins::meta::{
    DEFAULT_META_ACCOUNT, DEFAULT_META_APP_SECRET, DEFAULT_META_TOKEN, appsecret_proof,
};
use standins::shopify::{DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN};
use standins::tiktok::{DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN};
use standins::{Outcome, StandinConfig, Standins};
use tokio_postgres::types::Type;
use uuid::Uuid;

pub(super) const TODAY: &str = "2026-11-30";

/// A database with one Meta connection, the stand-ins, and the ETL's dependencies pointed
/// at them (shared with `etl_async`).
pub(super) struct Etl {
    pub(super) db: TestDb,
    pub(super) deps: EtlDeps,
    pub(super) standins: Standins,
    pub(super) transport: Arc<PostgresTransport>,
    pub(super) connection: Uuid,
}

pub(super) fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

pub(super) async fn etl() -> Etl {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let client = db.client().await;
    let workspace: Uuid = integration_tests::fixtures::workspace(&client, "acme").await;
    let connection: Uuid = integration_tests::fixtures::connection(
        &client,
        workspace,
        "meta",
        DEFAULT_META_ACCOUNT,
        DEFAULT_META_TOKEN,
    )
    .await;
    let mut config = StandinConfig {
        today: Some(day(TODAY)),
        ..StandinConfig::default()
    };
    config.meta.regain_access_minutes = 0;
    let standins = standins::start(config).await.unwrap();
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = Container::new(pool, transport.clone(), shared::clock::Clock::system());
    let config = etl::Config {
        keys: integration_tests::test_keys(),
        endpoints: Endpoints {
            meta_base_url: standins.meta_base_url(),
            tiktok_base_url: standins.tiktok_base_url(),
            shopify_base_url: format!("{}/shopify", standins.url()),
            ..Endpoints::default()
        },
        meta_app_secret: Some(DEFAULT_META_APP_SECRET.into()),
        meta: Default::default(),
        tiktok: Default::default(),
    };
    let mut deps = EtlDeps {
        retry: fast_retries(3),
        ..EtlDeps::new(&container, config).unwrap()
    };
    // TikTok's 40100 asks for minutes; the tests wait as long as the fast retries do.
    deps.tiktok.throttle_wait = Duration::from_millis(10);
    Etl {
        db,
        deps,
        standins,
        transport,
        connection,
    }
}

impl Etl {
    pub(super) fn run(&self, start: &str, end: &str) -> EtlRun {
        EtlRun {
            platform: Platform::Meta,
            connection_id: self.connection,
            account_id: DEFAULT_META_ACCOUNT.into(),
            window_start: day(start),
            window_end: day(end),
        }
    }

    /// (rows, spend in cents, impressions, clicks, purchases, purchase value in cents)
    pub(super) async fn stored(&self) -> (i64, i64, i64, i64, i64, i64) {
        let row = self
            .db
            .client()
            .await
            .query_typed_one(
                "SELECT count(*), (sum(spend) * 100)::int8, sum(impressions)::int8, sum(clicks)::int8,
                        sum(conversions)::int8, (sum(conversion_value) * 100)::int8
                   FROM ad_insights",
                &[],
            )
            .await
            .unwrap();
        (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        )
    }

    pub(super) fn expected(&self, start: &str, end: &str) -> (i64, i64, i64, i64, i64, i64) {
        let totals =
            self.standins
                .meta_faults()
                .expected_totals(DEFAULT_META_ACCOUNT, day(start), day(end));
        (
            totals.rows as i64,
            totals.spend_cents,
            totals.impressions as i64,
            totals.clicks as i64,
            totals.purchases as i64,
            totals.purchase_value_cents,
        )
    }

    pub(super) async fn cursor(&self) -> Option<serde_json::Value> {
        self.db
            .client()
            .await
            .query_typed_one(
                "SELECT sync_cursor FROM connections WHERE id = $1",
                &[(&self.connection, Type::UUID)],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn a_full_sync_stores_exactly_what_the_api_serves() {
    let e = etl().await;
    let report = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert!(report.pages >= 2, "several pages: {report:?}");
    assert_eq!(
        report.rows_inserted as i64,
        e.expected("2026-11-01", TODAY).0
    );
    assert_eq!(e.stored().await, e.expected("2026-11-01", TODAY));
    assert_eq!(e.cursor().await.unwrap()["synced_through"], TODAY);
    let run =
        e.db.client()
            .await
            .query_typed_one("SELECT status, pages FROM etl_runs", &[])
            .await
            .unwrap();
    assert_eq!(
        (run.get::<_, String>(0), run.get::<_, i32>(1)),
        ("ok".into(), report.pages)
    );
    let metrics = e.transport.depth(catalog::METRICS.name).await.unwrap();
    assert_eq!(metrics.visible, 30, "one recompute request per day touched");
}

#[tokio::test]
async fn re_running_a_window_changes_nothing() {
    let e = etl().await;
    etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    let first = e.stored().await;
    let again = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(
        (again.rows_inserted, again.rows_updated as i64),
        (0, first.0)
    );
    assert_eq!(e.stored().await, first);
}

#[tokio::test]
async fn a_restated_day_is_updated_not_duplicated() {
    let e = etl().await;
    etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    let before = e.stored().await;
    e.standins.meta_faults().restate_day(day("2026-11-20"));
    etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    let after = e.stored().await;
    assert_eq!(after.0, before.0, "no new rows");
    assert_ne!(after.4, before.4, "the day's conversions changed");
    assert_eq!(after, e.expected("2026-11-01", TODAY));
}

#[tokio::test]
async fn throttling_is_waited_out() {
    let e = etl().await;
    e.standins.meta_faults().throttle_next(2);
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    assert_eq!(e.standins.meta_faults().count(Outcome::Throttled), 2);
    assert_eq!(e.stored().await, e.expected("2026-11-24", TODAY));
}

#[tokio::test]
async fn an_expired_token_fails_the_run_without_retrying() {
    let e = etl().await;
    e.standins.meta_faults().expire_token();
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("authentication"),
        "{report:?}"
    );
    assert_eq!(
        e.standins.meta_faults().request_count(),
        1,
        "no retry for a dead token"
    );
    assert_eq!(e.cursor().await, None);
    let error: Option<String> =
        e.db.client()
            .await
            .query_typed_one("SELECT error FROM etl_runs WHERE status = 'failed'", &[])
            .await
            .unwrap()
            .get(0);
    assert!(error.unwrap().contains("190"));
}

#[tokio::test]
async fn a_failure_mid_run_leaves_the_window_unsynced_and_the_next_run_recovers() {
    let mut e = etl().await;
    e.deps.retry = fast_retries(0);
    e.standins.meta_faults().fail_at_page(2);
    let failed = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.pages, 1,
        "the first page was stored before the failure"
    );
    assert_eq!(e.cursor().await, None, "the window is not marked synced");
    let recovered = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(recovered.status, RunStatus::Ok);
    assert_eq!(e.stored().await, e.expected("2026-11-01", TODAY));
    assert_eq!(e.cursor().await.unwrap()["synced_through"], TODAY);
}

#[tokio::test]
async fn a_run_that_finds_the_account_leased_is_skipped() {
    let e = etl().await;
    let client = e.deps.pool.get().await.unwrap();
    let held = shared::lease::try_acquire(
        &**client,
        &format!("etl:meta:{DEFAULT_META_ACCOUNT}"),
        "other",
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Skipped);
    assert_eq!(
        e.standins.meta_faults().request_count(),
        0,
        "nothing fetched"
    );
    held.release(&**client).await.unwrap();
    let window = e.run("2026-11-24", TODAY);
    let (a, b) = tokio::join!(
        etl::run(&e.deps, &window, "worker-a"),
        etl::run(&e.deps, &window, "worker-b")
    );
    let statuses = [a.unwrap().status, b.unwrap().status];
    assert!(statuses.contains(&RunStatus::Ok), "{statuses:?}");
    assert_eq!(e.stored().await, e.expected("2026-11-24", TODAY));
}

#[tokio::test]
async fn dispatch_enqueues_one_run_per_account_even_when_fired_twice() {
    let e = etl().await;
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Meta, day(TODAY))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Meta, day(TODAY))
            .await
            .unwrap(),
        1
    );
    let queued = e
        .transport
        .receive(catalog::ETL.name, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "the second firing is deduplicated");
    let run: EtlRun = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(
        (run.window_start, run.window_end),
        (day("2026-11-03"), day(TODAY)),
        "28 days of lookback"
    );
    assert_eq!(queued[0].group_id, format!("meta:{DEFAULT_META_ACCOUNT}"));
}

/// A TikTok connection in the same workspace.
pub(super) async fn tiktok_connection(e: &Etl) -> Uuid {
    e.db.client()
        .await
        .query_typed_one(
            "INSERT INTO connections (workspace_id, platform, external_account_id, access_token, currency)
             SELECT workspace_id, 'tiktok', $1, $2, 'USD' FROM connections LIMIT 1 RETURNING id",
            &[(&DEFAULT_TIKTOK_ADVERTISER, Type::TEXT), (&DEFAULT_TIKTOK_TOKEN, Type::TEXT)],
        )
        .await
        .unwrap()
        .get(0)
}

pub(super) fn tiktok_run(connection: Uuid, start: &str, end: &str) -> EtlRun {
    EtlRun {
        platform: Platform::Tiktok,
        connection_id: connection,
        account_id: DEFAULT_TIKTOK_ADVERTISER.into(),
        window_start: day(start),
        window_end: day(end),
    }
}

#[tokio::test]
async fn tiktok_windows_over_30_days_are_split_and_dashes_stay_null() {
    let mut e = etl().await;
    // The synchronous report, even for 61 days (longer windows go through report tasks by
    // default: see etl_async).
    e.deps.tiktok.async_after_days = etl::MAX_WINDOW_DAYS;
    let connection = tiktok_connection(&e).await;
    e.standins.tiktok_faults().throttle_next(1);
    let report = etl::run(
        &e.deps,
        &tiktok_run(connection, "2026-10-01", TODAY),
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let totals = e.standins.tiktok_faults().expected_totals(
        DEFAULT_TIKTOK_ADVERTISER,
        day("2026-10-01"),
        day(TODAY),
    );
    let row = e
        .db
        .client()
        .await
        .query_typed_one(
            "SELECT count(*), (sum(spend) * 100)::int8, sum(conversions)::int8, (sum(conversion_value) * 100)::int8,
                    count(*) FILTER (WHERE conversion_value IS NULL)
               FROM ad_insights WHERE platform = 'tiktok'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), totals.rows as i64);
    assert_eq!(row.get::<_, i64>(1), totals.spend_cents);
    assert_eq!(row.get::<_, i64>(2), totals.purchases as i64);
    assert_eq!(row.get::<_, i64>(3), totals.purchase_value_cents);
    assert!(row.get::<_, i64>(4) > 0, "\"-\" is stored as NULL, not 0");
    let spans: Vec<(String, String)> = e
        .standins
        .tiktok_faults()
        .requests()
        .iter()
        .filter(|request| request.outcome == Outcome::Ok)
        .map(|request| {
            let param = |name| request.param(name).unwrap_or_default().to_string();
            (param("start_date"), param("end_date"))
        })
        .collect();
    assert!(
        spans
            .iter()
            .all(|(start, end)| (day(end) - day(start)).num_days() < 30),
        "{spans:?}"
    );
    assert!(spans.len() >= 3, "61 days need three requests: {spans:?}");
    assert_eq!(
        e.standins.tiktok_faults().count(Outcome::Throttled),
        1,
        "40100 was retried"
    );
}

#[tokio::test]
async fn a_revoked_tiktok_token_fails_the_run() {
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
    assert!(report.error.unwrap().contains("40105"));
    assert_eq!(e.standins.tiktok_faults().request_count(), 1);
}

#[tokio::test]
async fn backfill_reads_an_explicit_range_through_the_same_path() {
    let e = etl().await;
    let report = etl::backfill(&e.deps, e.connection, day("2026-10-01"), day("2026-10-10"))
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok);
    assert_eq!(e.stored().await, e.expected("2026-10-01", "2026-10-10"));
    let window: (NaiveDate, NaiveDate) = {
        let row =
            e.db.client()
                .await
                .query_typed_one("SELECT window_start, window_end FROM etl_runs", &[])
                .await
                .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(window, (day("2026-10-01"), day("2026-10-10")));
}

#[tokio::test]
async fn meta_gets_the_token_in_a_header_and_a_proof_never_the_token_in_a_url() {
    let e = etl().await;
    let report = etl::run(&e.deps, &e.run("2026-11-01", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let requests = e.standins.meta_faults().requests();
    assert!(
        requests.len() >= 2,
        "paging.next, which repeats the token, was followed"
    );
    let proof = appsecret_proof(DEFAULT_META_TOKEN, DEFAULT_META_APP_SECRET);
    for request in &requests {
        assert_eq!(request.outcome, Outcome::Ok);
        assert_eq!(request.param("access_token"), None, "{request:?}");
        assert_eq!(request.param("appsecret_proof"), Some(proof.as_str()));
    }
}

#[tokio::test]
async fn a_wrong_app_secret_fails_the_run_at_once() {
    let mut e = etl().await;
    e.deps.meta_app_secret = Some("not-the-app-secret".into());
    let report = etl::run(&e.deps, &e.run("2026-11-24", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("Invalid appsecret_proof"), "{error}");
    assert_eq!(e.standins.meta_faults().request_count(), 1, "not retried");
}

#[tokio::test]
async fn a_run_with_an_impossible_window_is_refused_before_anything_is_recorded() {
    let e = etl().await;
    for run in [e.run(TODAY, "2026-11-01"), e.run("2000-01-01", TODAY)] {
        let refused = etl::run(&e.deps, &run, "worker-a").await;
        assert!(
            matches!(refused, Err(etl::EtlError::InvalidRun(_))),
            "{refused:?}"
        );
    }
    let runs: i64 =
        e.db.client()
            .await
            .query_typed_one("SELECT count(*) FROM etl_runs", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(runs, 0);
    assert_eq!(e.standins.meta_faults().request_count(), 0);
}

/// What a tracing subscriber writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn no_failure_leaves_a_credential_in_runs_errors_or_logs() {
    let mut e = etl().await;
    e.deps.retry = fast_retries(1);
    let logs = Captured::default();
    let writer = logs.clone();
    // Every line of this (single-threaded) test, at every level.
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let tiktok = tiktok_connection(&e).await;
    let shop: Uuid =
        e.db.client()
            .await
            .query_typed_one(
                "INSERT INTO connections (workspace_id, platform, external_account_id, access_token, currency)
                 SELECT workspace_id, 'shopify', $1, $2, 'USD' FROM connections LIMIT 1 RETURNING id",
                &[(&DEFAULT_SHOP, Type::TEXT), (&DEFAULT_SHOPIFY_TOKEN, Type::TEXT)],
            )
            .await
            .unwrap()
            .get(0);
    let runs = shared::runs::RunLog::new(e.deps.pool.clone(), shared::agents::Agent::Etl);
    let meta = e.run("2026-11-24", TODAY);
    let shopify = EtlRun {
        platform: Platform::Shopify,
        connection_id: shop,
        account_id: DEFAULT_SHOP.into(),
        window_start: day("2026-11-24"),
        window_end: day(TODAY),
    };
    let handles = e.standins.handles().clone();
    let echoing: [(&standins::Switches, EtlRun); 3] = [
        (&handles.meta, meta.clone()),
        (&handles.tiktok, tiktok_run(tiktok, "2026-11-24", TODAY)),
        (&handles.shopify, shopify),
    ];
    // Each platform answers with an error page that repeats the request, credentials and all.
    for (switches, run) in &echoing {
        switches.echo_next(1);
        let report = runs
            .observe_judged(
                shared::runs::Trigger::Queue,
                etl::run(&e.deps, run, "worker-a"),
                etl::RunReport::judged,
            )
            .await
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed, "{report:?}");
        let error = report.error.unwrap();
        assert!(
            error.contains("could not serve GET"),
            "the echo reached the error: {error}"
        );
    }
    // The platform is unreachable: a transport error names the URL it failed on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    e.deps.endpoints.meta_base_url = format!("http://127.0.0.1:{port}/meta");
    let report = runs
        .observe_judged(
            shared::runs::Trigger::Queue,
            etl::run(&e.deps, &meta, "worker-a"),
            etl::RunReport::judged,
        )
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("request failed"),
        "{report:?}"
    );

    let client = e.db.client().await;
    let errors: Vec<String> = client
        .query_typed("SELECT error FROM etl_runs WHERE status = 'failed'", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let details: Vec<String> = client
        .query_typed(
            "SELECT detail FROM agent_runs WHERE agent = 'etl' AND outcome = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!((errors.len(), details.len()), (4, 4));
    let logged = logs.text();
    assert!(
        logged.contains("etl_run_failed"),
        "the alerts were captured"
    );
    let proof = appsecret_proof(DEFAULT_META_TOKEN, DEFAULT_META_APP_SECRET);
    for secret in [
        DEFAULT_META_TOKEN,
        DEFAULT_TIKTOK_TOKEN,
        DEFAULT_SHOPIFY_TOKEN,
        proof.as_str(),
    ] {
        for text in errors.iter().chain(&details).chain([&logged]) {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn tokens_are_sealed_at_rest_and_open_only_on_their_own_row() {
    let e = etl().await;
    let run = e.run("2026-11-28", TODAY);
    // The fixture wrote the token in plaintext, as rows from before sealing have it.
    let report = etl::run(&e.deps, &run, "worker-a").await.unwrap();
    assert_eq!(report.status, RunStatus::Ok, "{report:?}");
    let client = e.db.client().await;
    let row = client
        .query_typed_one(
            "SELECT access_token, access_token_sealed FROM connections WHERE id = $1",
            &[(&e.connection, Type::UUID)],
        )
        .await
        .unwrap();
    let (plaintext, sealed): (Option<String>, Option<Vec<u8>>) = (row.get(0), row.get(1));
    assert_eq!(
        plaintext, None,
        "the first read sealed it and cleared the plaintext"
    );
    let sealed = sealed.unwrap();
    let leaks: i64 = client
        .query_typed_one(
            "SELECT count(*) FROM connections
              WHERE access_token IS NOT NULL OR position(convert_to($1, 'UTF8') IN access_token_sealed) > 0",
            &[(&DEFAULT_META_TOKEN, Type::TEXT)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaks, 0, "no row holds the token in the clear");

    // The sealed token opens on its row: a second run and dispatch work as before.
    let again = etl::run(&e.deps, &run, "worker-a").await.unwrap();
    assert_eq!(again.status, RunStatus::Ok, "{again:?}");
    assert_eq!(
        etl::dispatch(&e.deps, Platform::Meta, day(TODAY))
            .await
            .unwrap(),
        1
    );

    // Copied onto another connection's row, it does not open, and nothing is asked of Meta.
    let copy: Uuid = client
        .query_typed_one(
            "INSERT INTO connections (workspace_id, platform, external_account_id, access_token_sealed, currency)
             SELECT workspace_id, 'meta', '999', $2, 'USD' FROM connections WHERE id = $1 RETURNING id",
            &[(&e.connection, Type::UUID), (&sealed, Type::BYTEA)],
        )
        .await
        .unwrap()
        .get(0);
    let requests = e.standins.meta_faults().request_count();
    let stolen = etl::run(
        &e.deps,
        &EtlRun {
            connection_id: copy,
            account_id: "999".into(),
            ..run.clone()
        },
        "worker-a",
    )
    .await
    .unwrap();
    assert_eq!(stolen.status, RunStatus::Failed);
    assert!(
        stolen.error.as_deref().unwrap().contains("does not open"),
        "{stolen:?}"
    );
    assert_eq!(e.standins.meta_faults().request_count(), requests);

    // Storing a token for that row seals it for that row.
    assert!(
        etl::tokens::store(&client, &e.deps.keys, copy, "EAAB-new-token")
            .await
            .unwrap()
    );
    let stored = client
        .query_typed_one(
            "SELECT access_token, access_token_sealed FROM connections WHERE id = $1",
            &[(&copy, Type::UUID)],
        )
        .await
        .unwrap();
    let opened = etl::tokens::open(
        &client,
        &e.deps.keys,
        copy,
        etl::tokens::StoredToken {
            plaintext: stored.get(0),
            sealed: stored.get(1),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(opened.expose_secret(), "EAAB-new-token");
}

#[tokio::test]
async fn two_first_readers_seal_a_plaintext_token_once_and_a_newer_token_wins() {
    let e = etl().await;
    let (a, b) = (
        e.deps.pool.get().await.unwrap(),
        e.deps.pool.get().await.unwrap(),
    );
    let plaintext = || etl::tokens::StoredToken {
        plaintext: Some(DEFAULT_META_TOKEN.into()),
        sealed: None,
    };
    let keys = &e.deps.keys;
    let (first, second) = tokio::join!(
        etl::tokens::open(&**a, keys, e.connection, plaintext()),
        etl::tokens::open(&**b, keys, e.connection, plaintext()),
    );
    for token in [first.unwrap().unwrap(), second.unwrap().unwrap()] {
        assert_eq!(token.expose_secret(), DEFAULT_META_TOKEN);
    }
    let sealed_once: (Option<String>, Option<Vec<u8>>) = {
        let row = a
            .query_typed_one(
                "SELECT access_token, access_token_sealed FROM connections WHERE id = $1",
                &[(&e.connection, Type::UUID)],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(sealed_once.0, None);
    // A reader holding the stale plaintext after a new token was stored gets the new one,
    // and does not put the old one back.
    etl::tokens::store(&**a, keys, e.connection, "EAAB-rotated")
        .await
        .unwrap();
    let late = etl::tokens::open(&**b, keys, e.connection, plaintext())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.expose_secret(), "EAAB-rotated");
    let run = etl::run(&e.deps, &e.run("2026-11-29", TODAY), "worker-a")
        .await
        .unwrap();
    assert_eq!(
        run.status,
        RunStatus::Failed,
        "the stand-in knows only the old token"
    );
    assert!(run.error.unwrap().contains("190"));
}
