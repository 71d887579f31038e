//! posthog-js and mixpanel-browser, the current versions from npm, in headless Chromium: a
//! page on one origin loads them and points them at the analytics agent on another
//! (`tests/sdk/browser_sdks.mjs`). Every event arrives exactly once, the people updates reach
//! the audience person, no request is refused by CORS or answered with an error, and none is
//! retried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use analytics::TokenKind;
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};

const POSTHOG_TOKEN: &str = "phc_browser_site";
const MIXPANEL_TOKEN: &str = "mp_browser_site";

/// The analytics agent on its own port, until the returned task is aborted (or the test's
/// runtime ends).
async fn serve_analytics(db: &TestDb) -> (String, tokio::task::JoinHandle<()>) {
    let pool = db.pool(4);
    let keys = integration_tests::test_keys();
    analytics::ensure_default_workspace(
        &pool,
        &keys,
        "Browser shop",
        &[
            (POSTHOG_TOKEN, TokenKind::PosthogProject),
            (MIXPANEL_TOKEN, TokenKind::MixpanelProject),
        ],
    )
    .await
    .unwrap();
    let transport = Arc::new(shared::queue::postgres::PostgresTransport::new(
        pool.clone(),
    ));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let router = analytics::router(Arc::new(analytics::AnalyticsDeps::new(
        &container,
        analytics::Config { keys },
    )));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (url, server)
}

#[tokio::test]
async fn posthog_js_and_mixpanel_browser_from_another_origin_store_every_event_once() {
    let db = TestDb::new().await;
    let (api, server) = serve_analytics(&db).await;
    let page = integration_tests::browser::run_script(
        "browser_sdks.mjs",
        &[&api, POSTHOG_TOKEN, MIXPANEL_TOKEN],
        Duration::from_secs(120),
    )
    .await;
    server.abort();
    // No CORS refusal, no failed or errored request, no script error.
    assert_eq!(page["failed"], json!([]), "{page:#}");
    assert_eq!(page["pageErrors"], json!([]), "{page:#}");
    assert_eq!(page["consoleMessages"], json!([]), "{page:#}");
    let requests = page["requests"].as_array().expect("requests");
    let mut seen = BTreeMap::new();
    for request in requests {
        let status = request["status"].as_u64().unwrap();
        assert!((200..300).contains(&status), "{request}");
        assert!(
            !request["query"].as_str().unwrap().contains("retry_count"),
            "a retry: {request}"
        );
        if let Some(body) = request["bodySha256"].as_str() {
            let path = request["path"].as_str().unwrap();
            let earlier = seen.insert((path.to_string(), body.to_string()), request.clone());
            assert!(earlier.is_none(), "sent twice: {request}");
        }
    }
    // What each SDK asks for on start, and where each sends: posthog-js its gzip as
    // text/plain with no `compression` parameter.
    let called = |path: &str| requests.iter().any(|request| request["path"] == path);
    for path in [
        "/flags/",
        "/array/phc_browser_site/config",
        "/e/",
        "/track/",
        "/engage/",
    ] {
        assert!(called(path), "{path} was not called: {page:#}");
    }
    assert!(requests.iter().any(|request| request["path"] == "/e/"
        && request["contentType"] == "text/plain"
        && request["query"] == ""));

    // Every event exactly once.
    let client = db.client().await;
    let stored: Vec<(String, String, String, i64)> = client
        .query(
            "SELECT source, event, distinct_id, count(*) FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    let expected: Vec<(String, String, String, i64)> = [
        ("mixpanel", "$identify", "visitor-mp-1"),
        ("mixpanel", "Clicked CTA", "visitor-mp-1"),
        ("posthog", "$identify", "visitor-ph-1"),
        ("posthog", "$pageview", "visitor-ph-1"),
        ("posthog", "$set", "visitor-ph-1"),
        ("posthog", "clicked_cta", "visitor-ph-1"),
    ]
    .into_iter()
    .map(|(source, event, who)| (source.into(), event.into(), who.into(), 1))
    .collect();
    assert_eq!(stored, expected);

    // The people updates reached the audience person: set, set once (not overwritten by a
    // later set_once), unset.
    let person = |distinct_id: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT email, properties FROM users WHERE distinct_id = $1",
                    &[&distinct_id],
                )
                .await
                .unwrap();
            (row.get::<_, Option<String>>(0), row.get::<_, Value>(1))
        }
    };
    let (email, properties) = person("visitor-ph-1").await;
    assert_eq!(email.as_deref(), Some("visitor@example.com"));
    assert_eq!(properties["plan"], "pro");
    assert_eq!(properties["first_touch"], "ad");
    let (_, properties) = person("visitor-mp-1").await;
    assert_eq!(properties["plan"], "pro");
    assert_eq!(properties["first_touch"], "ad");
    assert_eq!(properties["$email"], "visitor@example.com");
    assert!(properties.get("temporary").is_none(), "{properties}");
}
