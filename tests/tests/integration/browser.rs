//! The status page in a real headless browser (Debian's Chromium driven by playwright-core,
//! `tests/sdk/status_page.mjs`), signing in through its form like a person: against seeded
//! data its KPI tiles show exactly what the database holds; in demo mode every agent and KPI
//! turns green. Each run leaves a screenshot under `target/` to look at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use integration_tests::test_db::TestDb;
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const TOKEN: &str = "browser-test-token";

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target"));
    std::fs::create_dir_all(&target).unwrap();
    target.join(name)
}

/// What the page showed, as `status_page.mjs` reports it.
async fn open_status_page(url: &str, screenshot: &Path) -> Value {
    let screenshot_arg = screenshot.to_string_lossy();
    let page = integration_tests::browser::run_script(
        "status_page.mjs",
        &[url, TOKEN, &screenshot_arg],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        page["signInStatus"], 401,
        "the page asks for the token first"
    );
    let size = std::fs::metadata(screenshot).expect("a screenshot").len();
    assert!(
        size > 10_000,
        "the screenshot is an image of a page ({size} bytes)"
    );
    page
}

fn tile<'a>(page: &'a Value, key: &str) -> &'a Value {
    page["tiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tile| tile["key"] == key)
        .unwrap_or_else(|| panic!("no tile {key}: {page}"))
}

fn options(database_url: String, demo: bool, mailbox: &Path) -> local_stack::Options {
    local_stack::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url),
        agents: local_stack::AgentConfigs {
            status: status::Config {
                token: TOKEN.to_string().into(),
                ..status::Config::local()
            },
            ..local_stack::AgentConfigs::local()
        },
        demo,
        mailbox_dir: mailbox.to_path_buf(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_kpi_tiles_show_what_the_database_holds() {
    let db = TestDb::new().await;
    // 150 product events and 10 email events today; ETL 19 of 20 runs ok (95 %, not above
    // it); 200 Stripe deliveries, all ok; 2 of 4 suggestions judged, 1 accepted; 10 D1 emails
    // an hour old, 9 delivered; 30 days of metrics for the chart.
    db.client()
        .await
        .batch_execute(
            "INSERT INTO workspaces (id, name) VALUES ('00000000-0000-0000-0000-0000000000b1', 'Browser Labs');
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp)
             SELECT gen_random_uuid(), '00000000-0000-0000-0000-0000000000b1', CASE WHEN n <= 150 THEN 'posthog' ELSE 'email' END,
                    'u' || n, 'e', now() FROM generate_series(1, 160) AS n;
             INSERT INTO etl_runs (platform, account_id, window_start, window_end, status)
             SELECT 'meta', 'a', current_date, current_date, CASE WHEN n = 1 THEN 'failed' ELSE 'ok' END
               FROM generate_series(1, 20) AS n;
             INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome)
             SELECT 'billing', 'http', now() - make_interval(secs => n), 2, 'ok' FROM generate_series(1, 200) AS n;
             INSERT INTO suggestions (id, workspace_id, kind, target, explanation, expected_impact, features, score, model_version)
             SELECT ('00000000-0000-0000-0000-00000000000' || n)::uuid, '00000000-0000-0000-0000-0000000000b1', 'pause_ad',
                    'ad-' || n, 'why', 10, '{}', 0.5, 'prior-v1' FROM generate_series(1, 4) AS n;
             INSERT INTO suggestion_feedback (suggestion_id, user_id, verdict) VALUES
                 ('00000000-0000-0000-0000-000000000001', gen_random_uuid(), 'accepted'),
                 ('00000000-0000-0000-0000-000000000002', gen_random_uuid(), 'rejected');
             INSERT INTO users (id, workspace_id, distinct_id, email, signed_up_at)
             SELECT ('00000000-0000-0000-0000-0000000001' || lpad(n::text, 2, '0'))::uuid, '00000000-0000-0000-0000-0000000000b1',
                    'p' || n, 'p' || n || '@example.com', now() - interval '1 day' FROM generate_series(1, 10) AS n;
             INSERT INTO email_sends (workspace_id, user_id, campaign, status, attempts, due_at, sent_at, provider_message_id, delivered_at)
             SELECT '00000000-0000-0000-0000-0000000000b1', ('00000000-0000-0000-0000-0000000001' || lpad(n::text, 2, '0'))::uuid,
                    'd1', 'sent', 1, now() - interval '2 hours', now() - interval '2 hours', 'm' || n,
                    CASE WHEN n <= 9 THEN now() - interval '100 minutes' END
               FROM generate_series(1, 10) AS n;
             INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks, conversions, conversion_value,
                    orders, gross_revenue, refunds, net_revenue, new_customers, subscription_revenue, mrr, new_mrr,
                    expansion_mrr, contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue, roas,
                    events, dau, wau, mau, signups)
             SELECT '00000000-0000-0000-0000-0000000000b1', current_date - d, 'USD', 100 + d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 300 + 5 * d, (300 + 5 * d) / (100.0 + d), 0, 0, 0, 0, 0
               FROM generate_series(0, 29) AS d;",
        )
        .await
        .unwrap();
    let mailbox = std::env::temp_dir().join(format!("mailbox-{}", uuid::Uuid::new_v4().simple()));
    let stack = local_stack::start(options(db.url.clone(), false, &mailbox))
        .await
        .unwrap();
    let page = open_status_page(&stack.url(), &screenshot_path("status-page.png")).await;
    stack.stop().await;

    let expected = [
        ("analytics_events_per_day", 150.0, "ok", "150"),
        ("etl_success_rate", 0.95, "failing", "95.0 %"),
        ("etl_duplicate_rows", 0.0, "ok", "0"),
        ("stripe_webhook_success", 1.0, "ok", "100.0 %"),
        ("suggestion_adoption", 0.5, "ok", "50.0 %"),
        ("email_delivery_rate", 0.9, "failing", "90.0 %"),
    ];
    for (key, value, state, display) in expected {
        let shown = tile(&page, key);
        assert_eq!(shown["value"].as_f64(), Some(value), "{key}: {shown}");
        assert_eq!(shown["state"], state, "{key}: {shown}");
        assert_eq!(shown["display"], display, "{key}: {shown}");
    }
    let billing = page["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|agent| agent["name"] == "billing")
        .unwrap();
    assert_eq!(billing["state"], "ok");
    let lines: Vec<(&str, u64)> = page["chart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["id"].as_str().unwrap(),
                line["points"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![("spend-line", 30), ("revenue-line", 30), ("roas-line", 30)]
    );
    std::fs::remove_dir_all(&mailbox).ok();
}

#[tokio::test]
async fn demo_mode_turns_every_agent_and_kpi_green() {
    let db = TestDb::empty().await;
    let mailbox = std::env::temp_dir().join(format!("mailbox-{}", uuid::Uuid::new_v4().simple()));
    let stack = local_stack::start(options(db.url.clone(), true, &mailbox))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut report = Value::Null;
    // A deadline, not a count of polls: on a loaded machine each poll takes longer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while tokio::time::Instant::now() < deadline {
        report = http
            .get(format!("{}/status.json", stack.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let agents_green = report["agents"]
            .as_array()
            .is_some_and(|agents| agents.iter().all(|agent| agent["state"] == "ok"));
        let chart_drawn = report["chart"]["days"]
            .as_array()
            .is_some_and(|days| days.iter().any(|day| day["spend"].as_f64() > Some(0.0)));
        if report["ok"] == true && report["kpis_green"] == true && agents_green && chart_drawn {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(report["ok"], true, "{}", not_green(&report));
    assert_eq!(report["kpis_green"], true, "{}", not_green(&report));
    for agent in report["agents"].as_array().unwrap() {
        assert_eq!(agent["state"], "ok", "{agent}");
    }
    let page = open_status_page(&stack.url(), &screenshot_path("status-demo.png")).await;
    stack.stop().await;
    assert_eq!(
        page["overall"]
            .as_str()
            .map(|text| text.starts_with("all green")),
        Some(true),
        "{page}"
    );
    for tile in page["tiles"].as_array().unwrap() {
        assert_eq!(tile["state"], "ok", "{tile}");
    }
    let emails = email::provider::Mailbox::new(&mailbox).read_all().unwrap();
    assert_eq!(
        emails.len(),
        local_stack::demo::DEMO_PEOPLE.len(),
        "the D1 emails"
    );
    std::fs::remove_dir_all(&mailbox).ok();
}

/// The parts of a status report that are not green, so a failure names them in a few lines.
fn not_green(report: &Value) -> String {
    let mut parts = vec![format!(
        "ok={} kpis_green={} database={} outbox={} agents_error={} kpis_error={}",
        report["ok"],
        report["kpis_green"],
        report["database"],
        report["outbox"],
        report["agents_error"],
        report["kpis_error"]
    )];
    for list in ["agents", "kpis", "queues"] {
        for item in report[list].as_array().into_iter().flatten() {
            let unwell = item.get("state").is_some_and(|state| state != "ok")
                || item.get("error").is_some_and(|error| !error.is_null());
            if unwell {
                parts.push(format!("{list}: {item}"));
            }
        }
    }
    parts.join("\n")
}
