//! `GET /status.json` through the same router Lambda and the local stack serve.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use integration_tests::test_db::TestDb;
use shared::clock::Clock;
use shared::db::migrations;
use shared::lambda::Container;
use shared::queue::{OutgoingMessage, catalog};
use tower::ServiceExt;

const TOKEN: &str = "status-test-token";

/// The status agent as its Lambda builds it, on `container`, opened by [`TOKEN`].
fn status_deps(container: &Container) -> status::StatusDeps {
    let config = status::Config {
        token: TOKEN.to_string().into(),
        jwt: None,
        cors_origins: Vec::new(),
    };
    status::StatusDeps::new(container, config)
}

/// `GET /status.json` through the status router, as Lambda or the local stack would serve it.
async fn get_status(container: &Container) -> (StatusCode, serde_json::Value) {
    let deps = status_deps(container);
    let request = Request::get("/status.json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    integration_tests::routes::answer(&status::router(Arc::new(deps)), request).await
}

#[tokio::test]
async fn reports_database_migrations_and_queue_depths() {
    let db = TestDb::new().await;
    let container = db.container(2, Clock::system());
    let transport = container.transport.clone();
    transport
        .send(&[
            OutgoingMessage::new(catalog::METRICS.name, "g".into(), "1".into(), "{}".into()),
            OutgoingMessage::new(catalog::METRICS.name, "h".into(), "2".into(), "{}".into()),
            OutgoingMessage::new(catalog::EMAIL.name, "u".into(), "3".into(), "{}".into()),
        ])
        .await
        .unwrap();
    let _in_flight = transport
        .receive(catalog::METRICS.name, 1, std::time::Duration::from_secs(60))
        .await
        .unwrap();

    let (code, json) = get_status(&container).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(json["ok"], true);
    assert_eq!(json["database"]["reachable"], true);
    assert_eq!(
        json["database"]["migration_version"],
        migrations::all().last().unwrap().version
    );
    let queue = |name: &str| {
        json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(queue("metrics.fifo")["visible"], 1);
    assert_eq!(queue("metrics.fifo")["in_flight"], 1);
    assert_eq!(queue("email.fifo")["visible"], 1);
    assert_eq!(queue("etl.fifo")["dead_letters"], 0);
    let agents: Vec<&str> = json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        status::deployed_agents(),
        "every agent, even before its first run"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_reported_not_hidden() {
    let db = TestDb::new().await;
    let container = db.container(1, Clock::system());
    container.pool.close();
    let (code, json) = get_status(&container).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json["ok"], false);
    assert_eq!(json["database"]["reachable"], false);
    assert!(
        json["database"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
}

#[tokio::test]
async fn kpis_come_from_the_tables_they_summarise() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO etl_runs (platform, account_id, window_start, window_end, status)
             SELECT 'meta', 'a', current_date, current_date, status
               FROM unnest(ARRAY['ok', 'ok', 'ok', 'failed', 'skipped', 'running']) AS s(status);
             INSERT INTO etl_runs (platform, account_id, window_start, window_end, status, started_at)
             VALUES ('meta', 'a', current_date, current_date, 'failed', now() - interval '8 days');
             INSERT INTO workspaces (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'w');
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp, received_at)
             SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'posthog', 'u', 'e', now(), now() - make_interval(hours => h)
               FROM generate_series(1, 30) AS h;",
        )
        .await
        .unwrap();
    let container = db.container(2, Clock::system());
    db.client()
        .await
        .batch_execute(
            "INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome, detail)
             SELECT 'billing', 'http', now() - make_interval(mins => n), 3, CASE WHEN n = 1 THEN 'rejected' ELSE 'ok' END,
                    CASE WHEN n = 1 THEN 'POST /webhooks/stripe → 400' END
               FROM generate_series(1, 200) AS n;
             INSERT INTO agent_runs (agent, trigger, started_at, duration_ms, outcome, detail) VALUES
                 ('metrics', 'queue', now() - interval '2 hours', 40, 'ok', NULL),
                 ('metrics', 'queue', now() - interval '1 hour', 40, 'failed', 'recompute: connection reset'),
                 ('relay', 'schedule', now() - interval '8 days', 4, 'failed', 'too old to count');",
        )
        .await
        .unwrap();
    let (code, json) = get_status(&container).await;
    assert_eq!(code, StatusCode::OK);
    let kpi = |key: &str| {
        json["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kpi| kpi["key"] == key)
            .unwrap_or_else(|| panic!("no KPI {key}: {json}"))
            .clone()
    };
    assert_eq!(
        kpi("etl_success_rate")["value"],
        0.75,
        "3 ok of 4 finished in 7 days"
    );
    assert_eq!(kpi("etl_success_rate")["state"], "failing");
    assert_eq!(kpi("analytics_events_per_day")["value"], 23.0);
    assert_eq!(
        kpi("analytics_events_per_day")["state"],
        "failing",
        "not above 100"
    );
    assert_eq!(kpi("etl_duplicate_rows")["value"], 0.0);
    assert_eq!(kpi("etl_duplicate_rows")["state"], "ok");
    assert_eq!(
        kpi("stripe_webhook_success")["value"],
        0.995,
        "199 of 200 deliveries"
    );
    assert_eq!(kpi("stripe_webhook_success")["state"], "ok");
    assert_eq!(kpi("suggestion_adoption")["state"], "no_data");
    assert_eq!(kpi("email_delivery_rate")["state"], "no_data");
    assert_eq!(json["kpis_green"], false);
    assert_eq!(json["ok"], false, "the metrics agent is failing");

    let agent = |name: &str| {
        json["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|agent| agent["name"] == name)
            .unwrap()
            .clone()
    };
    let billing = agent("billing");
    assert_eq!(
        (
            billing["runs_24h"].as_i64(),
            billing["rejected_24h"].as_i64()
        ),
        (Some(200), Some(1))
    );
    assert_eq!(
        billing["success_rate_24h"], 1.0,
        "a refusal is the caller's failure"
    );
    assert_eq!(billing["state"], "ok");
    let metrics = agent("metrics");
    assert_eq!(metrics["success_rate_24h"], 0.5);
    assert_eq!(metrics["state"], "failing");
    assert_eq!(metrics["last_error"], "recompute: connection reset");
    assert_eq!(metrics["last_outcome"], "failed");
    let relay = agent("relay");
    assert_eq!(
        relay["state"], "no_data",
        "a run older than 7 days does not count"
    );
    assert!(relay["last_run_at"].is_null());
}

#[tokio::test]
async fn nothing_is_shown_without_a_credential_and_the_login_sets_a_cookie() {
    let db = TestDb::new().await;
    let router = status::router(Arc::new(status_deps(&db.container(2, Clock::system()))));
    let call = |request: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (
                parts.status,
                parts.headers,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    let (code, _, body) = call(Request::get("/status.json").body(Body::empty()).unwrap()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(!body.contains("queues"), "{body}");
    let wrong = Request::get("/status.json")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(wrong).await.0, StatusCode::UNAUTHORIZED);
    let (code, _, page) = call(Request::get("/status").body(Body::empty()).unwrap()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        page.contains("name=\"token\"") && !page.contains("data-kpi"),
        "{page}"
    );

    let login = |token: &str| {
        Request::post("/status/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let (code, _, page) = call(login("guess")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not right"), "{page}");
    let (code, headers, _) = call(login(TOKEN)).await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(
        pair.starts_with("status_session=v1.") && !cookie.contains(TOKEN),
        "the cookie is a session, not the token: {cookie}"
    );
    let (code, _, page) = call(
        Request::get("/status")
            .header("cookie", pair)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, _) = call(
        Request::get("/status")
            .header("cookie", format!("status_session={TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::UNAUTHORIZED,
        "the raw token in a cookie opens nothing"
    );
    assert!(page.contains("data-kpi=\"email_delivery_rate\""), "{page}");
    let bad_workspace = Request::get("/status.json?workspace=nope")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (code, _, body) = call(bad_workspace).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("not a UUID"), "{body}");
}

#[tokio::test]
async fn repeated_wrong_logins_are_slowed_then_refused() {
    let db = TestDb::new().await;
    let router = status::router(Arc::new(status_deps(&db.container(2, Clock::system()))));
    let login = |token: &str, from: &str| {
        Request::post("/status/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", from)
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let started = std::time::Instant::now();
    for _ in 0..status::access::MAX_FAILURES {
        let response = router
            .clone()
            .oneshot(login("guess", "203.0.113.7"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250) * status::access::MAX_FAILURES,
        "each wrong token is answered slowly"
    );
    let refused = router
        .clone()
        .oneshot(login(TOKEN, "203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token, from a client that guessed too often"
    );
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= status::access::FAILURE_WINDOW.as_secs());
    let other = router
        .clone()
        .oneshot(login(TOKEN, "198.51.100.2"))
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::SEE_OTHER,
        "another client is not locked out"
    );
}

#[tokio::test]
async fn quarantined_deliveries_and_outbox_rows_set_aside_are_shown() {
    let db = TestDb::new().await;
    let container = db.container(2, Clock::system());
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO quarantine (source, key, reason, payload, received_at) VALUES
                 ('stripe', 'evt_1', 'numeric field overflow', '\\x7b7d', now() - interval '1 hour'),
                 ('stripe', 'evt_2', 'unsupported Unicode escape sequence', '\\x7b7d', now()),
                 ('stripe', 'evt_0', 'older than the window', '\\x7b7d', now() - interval '8 days');
             INSERT INTO outbox (queue, group_id, dedup_id, body, attempts, dead_at)
                 VALUES ('metrics.fifo', 'g', 'd', '{}', 20, now());
             INSERT INTO outbox (queue, group_id, dedup_id, body) VALUES ('metrics.fifo', 'g', 'e', '{}');",
        )
        .await
        .unwrap();
    let (code, report) = get_status(&container).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        report["outbox"],
        serde_json::json!({"pending": 1, "dead": 1})
    );
    assert_eq!(
        report["ok"], false,
        "a message set aside is a message not delivered"
    );
    assert_eq!(report["quarantine"][0]["source"], "stripe");
    assert_eq!(report["quarantine"][0]["count_7d"], 2);
    assert_eq!(
        report["quarantine"][0]["last_reason"],
        "unsupported Unicode escape sequence"
    );
}

/// The template gives each function `DATABASE_POOL_SIZE=1`: the whole report, KPIs included,
/// must come from one connection, never waiting for a second while it holds the first (the
/// pool would make it wait 10 s, then fail the KPIs).
#[tokio::test]
async fn the_whole_report_is_served_from_a_pool_of_one_connection() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO workspaces (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'w');
             INSERT INTO suggestions (workspace_id, kind, target, explanation, expected_impact, features, score, model_version)
             VALUES ('00000000-0000-0000-0000-000000000001', 'pause_ad', 'meta:1', 'Pause it', 80, '[80, 0]', 0.5, 'prior-v1');",
        )
        .await
        .unwrap();
    let container = db.container(1, Clock::system());
    let started = std::time::Instant::now();
    let (code, json) = get_status(&container).await;
    let took = started.elapsed();
    assert_eq!(code, StatusCode::OK, "{json}");
    assert!(json.get("kpis_error").is_none(), "{json}");
    assert!(json.get("agents_error").is_none(), "{json}");
    let adoption = json["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kpi| kpi["key"] == "suggestion_adoption")
        .unwrap_or_else(|| panic!("no adoption KPI: {json}"));
    assert_eq!(
        adoption["state"], "no_data",
        "nothing shown yet: {adoption}"
    );
    assert!(json["email_campaigns_30d"].is_array(), "{json}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "the report took {took:?}: something waited for a second connection"
    );
}

/// The members' view: one workspace's connections, freshness and chart, for its members'
/// access tokens (ES256 from a Supabase Auth stand-in), any workspace for operators, and
/// nothing of another tenant or of the deployment.
#[tokio::test]
async fn members_see_their_own_workspace_only_and_operators_any() {
    use integration_tests::fixtures::{auth_user, membership, workspace};
    let db = TestDb::new().await;
    let client = db.client().await;
    let (a, b) = (workspace(&client, "A").await, workspace(&client, "B").await);
    let ada = auth_user(&client, "ada@example.com").await;
    membership(&client, a, ada, "member").await;
    let eve = auth_user(&client, "eve@example.com").await;
    client
        .execute(
            "WITH c AS (
                 INSERT INTO connections (workspace_id, platform, external_account_id, last_synced_at)
                 VALUES ($1, 'meta', 'act_1', now()) RETURNING id)
             INSERT INTO etl_runs (connection_id, platform, account_id, window_start, window_end,
                                   status, finished_at, error)
             SELECT id, 'meta', 'act_1', current_date, current_date, 'failed', now(),
                    'HTTP 400 from https://graph.facebook.com?access_token=EAAsecret123' FROM c",
            &[&a],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO connections (workspace_id, platform, external_account_id)
             VALUES ($1, 'shopify', 'other-shop')",
            &[&b],
        )
        .await
        .unwrap();
    let auth = standins::supabase_auth::SupabaseAuth::start()
        .await
        .unwrap();
    let container = db.container(2, Clock::system());
    let deps = status::StatusDeps::new(
        &container,
        status::Config {
            token: TOKEN.to_string().into(),
            jwt: Some(shared::jwt::JwtConfig {
                supabase_url: auth.url(),
                legacy_secret: None,
            }),
            cors_origins: vec![APP_ORIGIN.into()],
        },
    );
    let router = status::router(Arc::new(deps));
    let now = chrono::Utc::now().timestamp();
    let (ada_token, eve_token) = (auth.access_token(ada, now), auth.access_token(eve, now));
    let ask = |workspace: String, bearer: Option<String>| {
        let router = router.clone();
        async move {
            let mut request = Request::get(format!("/status/workspace.json?workspace={workspace}"));
            if let Some(bearer) = bearer {
                request = request.header("authorization", format!("Bearer {bearer}"));
            }
            integration_tests::routes::answer(&router, request.body(Body::empty()).unwrap()).await
        }
    };
    let cases = [
        (
            "a member, their workspace",
            a.to_string(),
            Some(ada_token.clone()),
            StatusCode::OK,
        ),
        (
            "a member, another's",
            b.to_string(),
            Some(ada_token.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            "a non-member",
            a.to_string(),
            Some(eve_token),
            StatusCode::FORBIDDEN,
        ),
        (
            "the operator, any",
            b.to_string(),
            Some(TOKEN.into()),
            StatusCode::OK,
        ),
        (
            "no credential",
            a.to_string(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a forged token",
            a.to_string(),
            Some(format!("{ada_token}x")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no workspace",
            String::new(),
            Some(ada_token.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "not a uuid",
            "x'--".into(),
            Some(ada_token.clone()),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (who, workspace, bearer, expected) in cases {
        let (code, body) = ask(workspace, bearer).await;
        assert_eq!(code, expected, "{who}: {body}");
        if code != StatusCode::OK {
            assert!(body["error"].is_string(), "{who}: {body}");
        }
    }
    let (_, view) = ask(a.to_string(), Some(ada_token)).await;
    assert_eq!(view["workspace"], a.to_string());
    let connections = view["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "only A's: {view}");
    assert_eq!(connections[0]["platform"], "meta");
    assert_eq!(connections[0]["last_run"], "failed");
    let error = connections[0]["last_error"].as_str().unwrap();
    assert!(!error.contains("EAAsecret123"), "redacted: {error}");
    assert_eq!(view["chart"]["days"].as_array().map(Vec::len), Some(30));
    for private in ["queues", "agents", "kpis", "outbox", "quarantine"] {
        assert!(view.get(private).is_none(), "{private} is the operator's");
    }
    // The frontend's origin may read it from a browser; another site may not.
    for (origin, allowed) in [(APP_ORIGIN, true), ("https://evil.example", false)] {
        let preflight = Request::options("/status/workspace.json")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(preflight).await.unwrap();
        let allow = response
            .headers()
            .get("access-control-allow-origin")
            .map(|value| value.to_str().unwrap().to_string());
        assert_eq!(allow, allowed.then(|| origin.to_string()), "{origin}");
    }
}

const APP_ORIGIN: &str = "https://app.example.test";
