//! `GET /metrics` as the frontend calls it: with the member's Supabase access token (ES256,
//! from a Supabase Auth stand-in publishing its keys, as new projects sign them), reading
//! only the workspaces they belong to; a server with the service token reads any; browsers
//! from the configured app origins only.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use integration_tests::fixtures::{auth_user, membership, workspace};
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use standins::supabase_auth::SupabaseAuth;
use tower::ServiceExt;
use uuid::Uuid;

const SERVICE_TOKEN: &str = "service-token-for-servers";
const APP_ORIGIN: &str = "https://app.example.test";

struct Api {
    _db: TestDb,
    auth: SupabaseAuth,
    router: axum::Router,
    a: Uuid,
    b: Uuid,
    ada: Uuid,
    eve: Uuid,
}

async fn api(service_token: Option<&str>) -> Api {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (a, b) = (workspace(&client, "A").await, workspace(&client, "B").await);
    let ada = auth_user(&client, "ada@example.com").await;
    membership(&client, a, ada, "member").await;
    let eve = auth_user(&client, "eve@example.com").await;
    for workspace in [a, b] {
        client
            .execute(
                "INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks,
                        conversions, conversion_value, orders, gross_revenue, refunds, net_revenue,
                        new_customers, subscription_revenue, mrr, new_mrr, expansion_mrr,
                        contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                        events, dau, wau, mau, signups)
                 VALUES ($1, '2026-12-01', 'USD', 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0,
                         0, 1, 1, 1, 1, 1, 1)",
                &[&workspace],
            )
            .await
            .unwrap();
    }
    let pool = db.pool(2);
    let transport = Arc::new(shared::queue::postgres::PostgresTransport::new(
        pool.clone(),
    ));
    let container = shared::lambda::Container::new(pool, transport, shared::clock::Clock::system());
    let auth = SupabaseAuth::start().await.unwrap();
    let config = metrics::api::Config {
        token: service_token.map(|token| token.to_string().into()),
        cors_origins: vec![APP_ORIGIN.into()],
        jwt: shared::jwt::JwtConfig {
            supabase_url: auth.url(),
            legacy_secret: None,
        },
    };
    let router = metrics::api::router(Arc::new(metrics::api::ApiDeps::new(&container, config)));
    Api {
        _db: db,
        auth,
        router,
        a,
        b,
        ada,
        eve,
    }
}

impl Api {
    /// A member's access token as the project's Supabase Auth signs it.
    fn member_token(&self, member: Uuid) -> String {
        self.auth
            .access_token(member, chrono::Utc::now().timestamp())
    }

    async fn get(&self, workspace: Uuid, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::get(format!(
            "/metrics?workspace={workspace}&from=2026-12-01&to=2026-12-01"
        ));
        if let Some(bearer) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        integration_tests::routes::answer(&self.router, request.body(Body::empty()).unwrap()).await
    }
}

#[tokio::test]
async fn members_read_their_workspaces_and_servers_any_with_the_service_token() {
    let api = api(Some(SERVICE_TOKEN)).await;
    let ada = api.member_token(api.ada);
    let eve = api.member_token(api.eve);
    let forged = {
        let mut token = ada.clone();
        token.push('x');
        token
    };
    for (who, workspace, bearer, expected) in [
        (
            "a member, their workspace",
            api.a,
            Some(ada.as_str()),
            StatusCode::OK,
        ),
        (
            "a member, another workspace",
            api.b,
            Some(ada.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "a signed-in non-member",
            api.a,
            Some(eve.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            "the service token",
            api.b,
            Some(SERVICE_TOKEN),
            StatusCode::OK,
        ),
        (
            "a forged token",
            api.a,
            Some(forged.as_str()),
            StatusCode::UNAUTHORIZED,
        ),
        ("no token", api.a, None, StatusCode::UNAUTHORIZED),
    ] {
        let (status, body) = api.get(workspace, bearer).await;
        assert_eq!(status, expected, "{who}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body["workspace"], json!(workspace), "{who}");
            assert_eq!(body["days"].as_array().map(Vec::len), Some(1), "{who}");
        } else {
            assert!(body["error"].is_string(), "{who} gets a reason: {body}");
        }
    }
}

#[tokio::test]
async fn without_a_service_token_only_members_get_in() {
    let api = api(None).await;
    let (status, _) = api.get(api.a, Some(SERVICE_TOKEN)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get(api.a, Some(&api.member_token(api.ada))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn browsers_may_call_from_the_app_origin_only() {
    let api = api(Some(SERVICE_TOKEN)).await;
    for (origin, allowed) in [(APP_ORIGIN, true), ("https://evil.example", false)] {
        let preflight = Request::options("/metrics")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap();
        let response = api.router.clone().oneshot(preflight).await.unwrap();
        let allow = response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|value| value.to_str().unwrap().to_string());
        assert_eq!(allow, allowed.then(|| origin.to_string()), "{origin}");
    }
}
