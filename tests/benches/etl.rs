//! ETL throughput: rows per second from a platform stand-in to the table, through the same
//! `etl::run` path as production (lease, pages, fenced upserts, cursor, metrics requests),
//! for a 90-day × 500-ad Meta account (45,000 rows), the same TikTok advertiser, and a
//! Shopify shop of 100,000 orders synced for the first time (one bulk operation). Each
//! figure is set beside the stand-in's own serving rate (pages fetched and parsed, nothing
//! stored), to show the API side is not the bottleneck. Meta and TikTok run twice: read
//! synchronously (pages), and asynchronously (a Meta report run polled every 50 ms; TikTok
//! report tasks, one per 30 days, created within TikTok's 2-a-second creation limit).
//!
//! `DATABASE_URL=postgres://… cargo bench -p integration-tests --bench etl`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use etl::{Endpoints, EtlDeps, EtlRun, Platform};
use integration_tests::test_db::TestDb;
use shared::queue::postgres::PostgresTransport;
use standins::meta::{DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN};
use standins::shopify::{DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN};
use standins::tiktok::{DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN};
use standins::{StandinConfig, Standins};
use uuid::Uuid;

const TODAY: &str = "2026-11-30";
const START: &str = "2026-09-01";
/// Shopify's first run reads orders updated since this day; the stand-in's 100,000 orders
/// span the 120 days before `TODAY`.
const SHOPIFY_START: &str = "2026-07-01";

/// How the ad platforms' window is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Pages,
    Async,
}

async fn setup(standins: &Standins, platform: Platform, read: Read) -> (TestDb, EtlDeps, EtlRun) {
    let db = TestDb::new().await;
    let pool = db.pool(4);
    let (account, token) = match platform {
        Platform::Meta => (DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN),
        Platform::Tiktok => (DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN),
        Platform::Shopify => (DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN),
    };
    let client = db.client().await;
    let workspace: Uuid = integration_tests::fixtures::workspace(&client, "bench").await;
    let connection: Uuid = integration_tests::fixtures::connection(
        &client,
        workspace,
        platform.as_str(),
        account,
        token,
    )
    .await;
    let transport = Arc::new(PostgresTransport::new(pool.clone()));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let config = etl::Config {
        keys: integration_tests::test_keys(),
        endpoints: Endpoints {
            meta_base_url: standins.meta_base_url(),
            tiktok_base_url: standins.tiktok_base_url(),
            shopify_base_url: format!("{}/shopify", standins.url()),
            ..Endpoints::default()
        },
        meta_app_secret: Some(standins::meta::DEFAULT_META_APP_SECRET.into()),
        meta: Default::default(),
        tiktok: Default::default(),
    };
    let mut deps = EtlDeps::new(&container, config).unwrap();
    match read {
        Read::Pages => {
            deps.meta.async_after_days = etl::MAX_WINDOW_DAYS;
            deps.tiktok.async_after_days = etl::MAX_WINDOW_DAYS;
        }
        Read::Async => {
            deps.meta.async_after_days = 1;
            deps.meta.report_poll_interval = Duration::from_millis(50);
            deps.tiktok.async_after_days = 1;
            deps.tiktok.task_poll_interval = Duration::from_millis(50);
        }
    }
    let day = |text: &str| text.parse::<NaiveDate>().unwrap();
    let run = EtlRun {
        platform,
        connection_id: connection,
        account_id: account.into(),
        window_start: day(if platform == Platform::Shopify {
            SHOPIFY_START
        } else {
            START
        }),
        window_end: day(TODAY),
    };
    (db, deps, run)
}

#[tokio::main]
async fn main() {
    let mut config = StandinConfig::benchmark();
    config.today = Some(TODAY.parse().unwrap());
    let standins = standins::start(config).await.unwrap();
    println!("ETL, {START}..{TODAY} (91 days) × 500 ads, stand-ins on loopback");
    println!(
        "| platform | read | rows | run seconds | rows/s stored | pages | stand-in alone rows/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (platform, read) in [
        (Platform::Meta, Read::Pages),
        (Platform::Meta, Read::Async),
        (Platform::Tiktok, Read::Pages),
        (Platform::Tiktok, Read::Async),
        (Platform::Shopify, Read::Pages),
    ] {
        let (_db, deps, run) = setup(&standins, platform, read).await;
        let started = Instant::now();
        let report = etl::run(&deps, &run, "bench").await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(report.status, etl::RunStatus::Ok, "{report:?}");
        let rows = (report.rows_inserted + report.rows_updated) as f64;
        let api_alone = if platform == Platform::Shopify {
            bulk_serve_rate(&standins).await
        } else if read == Read::Async {
            f64::NAN
        } else {
            serve_rate(&deps, &run).await
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {} | {:.0} |",
            platform.as_str(),
            if read == Read::Async {
                "async"
            } else {
                "pages"
            },
            rows,
            elapsed.as_secs_f64(),
            rows / elapsed.as_secs_f64(),
            report.pages,
            api_alone
        );
    }
    standins.stop().await;
}

/// Orders per second the Shopify stand-in serves as a bulk operation's JSONL when nothing is
/// stored: the operation started and polled over GraphQL, the file read and every line parsed.
async fn bulk_serve_rate(standins: &Standins) -> f64 {
    let http = reqwest::Client::new();
    let graphql = format!(
        "{}/shopify/{DEFAULT_SHOP}/admin/api/{}/graphql.json",
        standins.url(),
        etl::shopify::graphql::DEFAULT_API_VERSION
    );
    let call = |body: serde_json::Value| {
        let (http, graphql) = (http.clone(), graphql.clone());
        async move {
            http.post(graphql)
                .header("X-Shopify-Access-Token", DEFAULT_SHOPIFY_TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let started = Instant::now();
    let run = call(etl::shopify::graphql::bulk_run_request(
        &etl::shopify::graphql::bulk_orders_query(None),
    ))
    .await;
    let id = run["data"]["bulkOperationRunQuery"]["bulkOperation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let url = loop {
        let status = call(etl::shopify::graphql::bulk_status_request(&id)).await;
        if let Some(url) = status["data"]["node"]["url"].as_str() {
            break url.to_string();
        }
    };
    let mut response = http.get(url).send().await.unwrap();
    let (mut orders, mut pending) = (0usize, Vec::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|byte| *byte == b'\n') {
            let line: serde_json::Value =
                serde_json::from_slice(&pending[start..start + end]).unwrap();
            orders += usize::from(line.get("__parentId").is_none());
            start += end + 1;
        }
        pending.drain(..start);
    }
    orders as f64 / started.elapsed().as_secs_f64()
}

/// Rows per second the stand-in serves for the same window when nothing is stored: the run
/// again against an account whose lease is held would skip, so fetch directly instead.
async fn serve_rate(deps: &EtlDeps, run: &EtlRun) -> f64 {
    let started = Instant::now();
    let rows = etl::fetch_window(deps, run).await.unwrap();
    rows as f64
        / started
            .elapsed()
            .max(Duration::from_micros(1))
            .as_secs_f64()
}
