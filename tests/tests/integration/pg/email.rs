//! The email agent against a real database, the Postgres queue and a Resend stand-in: who the
//! sweep picks (day boundaries, timezones, exclusions, activity), sending once under
//! concurrency, retries and crashes, provider errors, unsubscribe and suppression, and the
//! Svix-signed webhook.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use email::campaigns::{Campaign, Rules};
use email::provider::Resend;
use email::send::{EmailQueueMessage, SendCampaignEmail, SendOutcome, SenderDeps};
use email::unsubscribe::TokenSigner;
use integration_tests::email_fixtures::{
    BASE_URL, UNSUBSCRIBE_SECRET, sender, user, workspace, workspace_with_ada,
};
use integration_tests::resend_standin::{API_KEY, ResendStandIn};
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use shared::db::Pool;
use shared::queue::Transport;
use shared::queue::catalog::EMAIL;
use shared::queue::postgres::PostgresTransport;
use tokio_postgres::types::Type;
use tower::ServiceExt;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec_dGVzdC1yZXNlbmQtd2ViaG9vay1zZWNyZXQ=";
fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn resend(standin: &ResendStandIn) -> Arc<dyn email::provider::EmailProvider> {
    Arc::new(Resend::new(standin.base_url(), API_KEY).unwrap())
}

fn request(workspace: Uuid, user: Uuid, campaign: Campaign) -> SendCampaignEmail {
    SendCampaignEmail {
        workspace_id: workspace,
        user_id: user,
        campaign,
        due_at: Utc::now() - chrono::Duration::hours(1),
    }
}

/// (distinct id, campaign) of every message the sweep queued.
async fn queued(
    transport: &PostgresTransport,
    client: &tokio_postgres::Client,
) -> Vec<(String, Campaign)> {
    let mut found = Vec::new();
    loop {
        let batch = transport
            .receive(EMAIL.name, 10, Duration::from_secs(60))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let send: SendCampaignEmail = serde_json::from_str(&message.body).unwrap();
            let distinct: String = client
                .query_typed_one(
                    "SELECT distinct_id FROM users WHERE id = $1",
                    &[(&send.user_id, Type::UUID)],
                )
                .await
                .unwrap()
                .get(0);
            found.push((distinct, send.campaign));
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn the_sweep_picks_exactly_the_users_due_in_their_timezone() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let utc = workspace(&client, "UTC").await;
    let tokyo_workspace = workspace(&client, "Asia/Tokyo").await;
    // The sweep runs at 09:02 UTC on 1 December; campaigns go out from 09:00 local time.
    let now = at("2026-12-01T09:02:00Z");
    user(&client, utc, "d1-morning", "2026-11-30T10:00:00Z", None).await;
    user(&client, utc, "d1-last-minute", "2026-11-30T23:59:00Z", None).await;
    user(&client, utc, "d1-tomorrow", "2026-12-01T00:01:00Z", None).await;
    // 01:00 on 1 December in Tokyo: its day 1 is tomorrow, though it is 30 Nov in UTC.
    user(
        &client,
        utc,
        "tokyo-not-yet",
        "2026-11-30T16:00:00Z",
        Some("Asia/Tokyo"),
    )
    .await;
    // The same through the workspace's timezone.
    user(
        &client,
        tokyo_workspace,
        "tokyo-workspace",
        "2026-11-30T16:00:00Z",
        None,
    )
    .await;
    // 17:00 on 29 Nov in New York: due since 09:00 EST on 30 Nov (14:00 UTC), until 14:00
    // UTC today, though in UTC its window closed at 09:00.
    user(
        &client,
        utc,
        "new-york",
        "2026-11-29T22:00:00Z",
        Some("America/New_York"),
    )
    .await;
    user(&client, utc, "d1-expired", "2026-11-29T10:00:00Z", None).await;
    let sent = user(&client, utc, "d1-sent", "2026-11-30T11:00:00Z", None).await;
    let unsubscribed = user(
        &client,
        utc,
        "d1-unsubscribed",
        "2026-11-30T11:00:00Z",
        None,
    )
    .await;
    user(&client, utc, "d1-bounced", "2026-11-30T11:00:00Z", None).await;
    let no_address = user(&client, utc, "d1-no-address", "2026-11-30T11:00:00Z", None).await;
    user(
        &client,
        utc,
        "bad-timezone",
        "2026-11-30T11:00:00Z",
        Some("Mars/Olympus"),
    )
    .await;
    user(&client, utc, "d7-due", "2026-11-24T12:00:00Z", None).await;
    user(&client, utc, "d7-active", "2026-11-24T12:00:00Z", None).await;
    user(&client, utc, "d7-opened-only", "2026-11-24T12:00:00Z", None).await;
    user(&client, utc, "d30-due", "2026-11-01T08:00:00Z", None).await;
    client
        .batch_execute(&format!(
            "INSERT INTO email_sends (workspace_id, user_id, campaign, status, due_at)
                 VALUES ('{utc}', '{sent}', 'd1', 'sent', now());
             INSERT INTO email_unsubscribes (user_id, method) VALUES ('{unsubscribed}', 'link');
             INSERT INTO email_suppressions (address, reason) VALUES ('d1-bounced@example.com', 'bounced');
             UPDATE users SET email = NULL WHERE id = '{no_address}';
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp) VALUES
                 (gen_random_uuid(), '{utc}', 'posthog', 'd7-active', 'pageview', '2026-12-01T07:00:00Z'),
                 (gen_random_uuid(), '{utc}', 'email', 'd7-opened-only', 'email_opened', '2026-12-01T07:00:00Z'),
                 (gen_random_uuid(), '{utc}', 'posthog', 'd7-opened-only', 'pageview', '2026-11-29T07:00:00Z');"
        ))
        .await
        .unwrap();

    let pool = db.pool(2);
    let transport = PostgresTransport::new(pool.clone());
    let rules = Rules::default();
    let report = email::sweep::sweep(&pool, &transport, &rules, now)
        .await
        .unwrap();
    let expected: Vec<(String, Campaign)> = vec![
        ("bad-timezone".into(), Campaign::D1),
        ("d1-last-minute".into(), Campaign::D1),
        ("d1-morning".into(), Campaign::D1),
        ("d30-due".into(), Campaign::D30),
        ("d7-due".into(), Campaign::D7),
        ("d7-opened-only".into(), Campaign::D7),
        ("new-york".into(), Campaign::D1),
    ];
    assert_eq!(queued(&transport, &client).await, expected);
    assert_eq!(report.skipped_active[&Campaign::D7], 1, "{report:?}");
    assert_eq!(report.enqueued[&Campaign::D1], 4);

    // A second sweep in the same hour queues nothing new: the dedup ids match.
    email::sweep::sweep(&pool, &transport, &rules, now)
        .await
        .unwrap();
    assert_eq!(transport.depth(EMAIL.name).await.unwrap().visible, 0);

    // Boundaries: one minute before the send hour nobody in UTC is due D1; the New York user
    // still is until 14:00 UTC and not after; Tokyo's day comes at 00:00 UTC on 2 December.
    let d1 = rules.get(Campaign::D1);
    let due_at = |now: &str| {
        let pool = pool.clone();
        let now = at(now);
        async move {
            let (due, _) = email::sweep::due_users(&pool, Campaign::D1, d1, now)
                .await
                .unwrap();
            let mut ids: Vec<Uuid> = due.iter().map(|send| send.user_id).collect();
            ids.sort();
            let mut names = Vec::new();
            for id in ids {
                let client = pool.get().await.unwrap();
                names.push(
                    client
                        .query_typed_one(
                            "SELECT distinct_id FROM users WHERE id = $1",
                            &[(&id, Type::UUID)],
                        )
                        .await
                        .unwrap()
                        .get::<_, String>(0),
                );
            }
            names.sort();
            names
        }
    };
    assert_eq!(
        due_at("2026-12-01T08:59:00Z").await,
        vec!["d1-expired", "new-york"]
    );
    assert_eq!(
        due_at("2026-12-01T13:59:00Z").await,
        vec!["bad-timezone", "d1-last-minute", "d1-morning", "new-york"]
    );
    assert_eq!(
        due_at("2026-12-01T14:00:00Z").await,
        vec!["bad-timezone", "d1-last-minute", "d1-morning"]
    );
    assert_eq!(
        due_at("2026-12-02T00:00:00Z").await,
        vec![
            "bad-timezone",
            "d1-last-minute",
            "d1-morning",
            "tokyo-not-yet",
            "tokyo-workspace"
        ]
    );

    // A disabled campaign is not swept.
    let mut without_d30 = Rules::default();
    without_d30.get_mut(Campaign::D30).enabled = false;
    let report = email::sweep::sweep(&pool, &transport, &without_d30, now)
        .await
        .unwrap();
    assert!(!report.enqueued.contains_key(&Campaign::D30));
}

async fn send_row(
    client: &tokio_postgres::Client,
    user: Uuid,
    campaign: Campaign,
) -> (String, i32, Option<String>, Option<String>) {
    let row = client
        .query_typed_one(
            "SELECT status, attempts, provider_message_id, error FROM email_sends WHERE user_id = $1 AND campaign = $2",
            &[(&user, Type::UUID), (&campaign.as_str(), Type::TEXT)],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn concurrent_consumers_and_redeliveries_send_one_email() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (workspace, user) = workspace_with_ada(&client).await;
    let standin = ResendStandIn::start().await;
    standin.delay(Duration::from_millis(300));
    let deps = Arc::new(sender(&db.pool(10), resend(&standin)));
    let message = request(workspace, user, Campaign::D1);
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (deps, message) = (deps.clone(), message.clone());
        consumers
            .spawn(async move { email::send::send_campaign(&deps, &message, Utc::now()).await });
    }
    let (mut sent, mut elsewhere) = (0, 0);
    while let Some(result) = consumers.join_next().await {
        match result.unwrap() {
            Ok(SendOutcome::Sent { .. }) => sent += 1,
            Err(email::EmailError::ClaimedElsewhere) => elsewhere += 1,
            Ok(SendOutcome::AlreadyDone { .. }) => elsewhere += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((sent, elsewhere), (1, 7));
    assert_eq!(standin.requests(), 1, "one provider call");
    // A redelivery after success sends nothing.
    let again = email::send::send_campaign(&deps, &message, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        again,
        SendOutcome::AlreadyDone {
            status: "sent".into()
        }
    );
    assert_eq!(standin.requests(), 1);

    let accepted = standin.accepted();
    assert_eq!(accepted.len(), 1);
    let (status, attempts, message_id, _) = send_row(&client, user, Campaign::D1).await;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    assert_eq!(message_id.as_deref(), Some(accepted[0].id.as_str()));
    let body = &accepted[0].body;
    assert_eq!(body["to"], json!(["ada@example.com"]));
    assert_eq!(body["subject"], "Ada, your first day with Growth Agents");
    assert!(body["text"].as_str().unwrap().contains("Hi Ada,"));
    assert!(body["html"].as_str().unwrap().contains("<p>Hi Ada,</p>"));
    assert_eq!(body["tags"][0], json!({"name": "campaign", "value": "d1"}));
    let send_id: Uuid = client
        .query_typed_one(
            "SELECT id FROM email_sends WHERE user_id = $1",
            &[(&user, Type::UUID)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        accepted[0].idempotency_key.as_deref(),
        Some(format!("email-send/{send_id}").as_str())
    );
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_taken_over_without_a_second_email() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (workspace, user) = workspace_with_ada(&client).await;
    let standin = ResendStandIn::start().await;
    let deps = sender(&db.pool(2), resend(&standin));
    let message = request(workspace, user, Campaign::D1);
    email::send::send_campaign(&deps, &message, Utc::now())
        .await
        .unwrap();
    let first_id = standin.accepted()[0].id.clone();
    // As if the consumer had died after Resend accepted the email and before recording it;
    // meanwhile the workspace's numbers changed, which must not change the payload.
    client
        .batch_execute(&format!(
            "UPDATE email_sends SET status = 'claimed', provider_message_id = NULL, sent_at = NULL,
                    claimed_at = now() - interval '1 hour' WHERE user_id = '{user}';
             INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks, conversions, conversion_value,
                    orders, gross_revenue, refunds, net_revenue, new_customers, subscription_revenue, mrr, new_mrr,
                    expansion_mrr, contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                    events, dau, wau, mau, signups)
             VALUES ('{workspace}', current_date, 'USD', 10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 5, 1, 1, 1, 1);"
        ))
        .await
        .unwrap();
    let outcome = email::send::send_campaign(&deps, &message, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SendOutcome::Sent {
            provider_message_id: Some(first_id.clone())
        }
    );
    assert_eq!(standin.requests(), 2, "the takeover asked again");
    assert_eq!(
        standin.accepted().len(),
        1,
        "and Resend answered with the first email"
    );
    let (status, attempts, message_id, _) = send_row(&client, user, Campaign::D1).await;
    assert_eq!(
        (status.as_str(), attempts, message_id),
        ("sent", 2, Some(first_id))
    );

    // A fresh claim (a consumer still working) is not taken over.
    client
        .batch_execute(&format!(
            "UPDATE email_sends SET status = 'claimed', claimed_at = now() WHERE user_id = '{user}'"
        ))
        .await
        .unwrap();
    let busy = email::send::send_campaign(&deps, &message, Utc::now()).await;
    assert!(
        matches!(busy, Err(email::EmailError::ClaimedElsewhere)),
        "{busy:?}"
    );
}

#[tokio::test]
async fn provider_errors_are_retried_with_backoff_then_dead_lettered() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let flaky_user = user(&client, workspace, "flaky", "2026-11-30T10:00:00Z", None).await;
    let down_user = user(&client, workspace, "down", "2026-11-30T10:00:00Z", None).await;
    let invalid_user = user(&client, workspace, "invalid", "2026-11-30T10:00:00Z", None).await;
    client
        .batch_execute(&format!(
            "UPDATE users SET email = 'invalid@localhost' WHERE id = '{invalid_user}'"
        ))
        .await
        .unwrap();
    let pool = db.pool(3);

    // Two transient failures (a 503, then a 429 with Retry-After), then success: one email.
    let standin = ResendStandIn::start().await;
    standin.fail_next(&[(503, None), (429, Some(0))]);
    let deps = sender(&pool, resend(&standin));
    let outcome = email::send::send_campaign(
        &deps,
        &request(workspace, flaky_user, Campaign::D1),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    assert_eq!((standin.requests(), standin.accepted().len()), (3, 1));

    // A permanent refusal is recorded and not retried.
    let outcome = email::send::send_campaign(
        &deps,
        &request(workspace, invalid_user, Campaign::D1),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, SendOutcome::Rejected { .. }),
        "{outcome:?}"
    );
    assert_eq!(standin.requests(), 4);
    let (status, _, _, error) = send_row(&client, invalid_user, Campaign::D1).await;
    assert_eq!(status, "rejected");
    assert!(error.unwrap().contains("validation_error"));

    // Resend down: each delivery retries in-process, then fails the message; after the
    // queue's three deliveries the message is a dead letter, and the send is recorded failed.
    let down = ResendStandIn::start().await;
    down.fail_always(503);
    let deps = Arc::new(sender(&pool, resend(&down)));
    let transport = PostgresTransport::new(pool.clone());
    transport
        .send(&[
            shared::queue::Message::to_outgoing(&request(workspace, down_user, Campaign::D1))
                .unwrap(),
        ])
        .await
        .unwrap();
    let handler = |message: EmailQueueMessage| {
        let deps = deps.clone();
        async move { email::send::handle(&deps, message).await }
    };
    for delivery in 1..=EMAIL.max_receives {
        let outcome = loop {
            let outcome = shared::queue::consumer::poll_once(&transport, &EMAIL, handler)
                .await
                .unwrap();
            if outcome.received > 0 {
                break outcome;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(outcome.failed, 1, "delivery {delivery}");
    }
    assert_eq!(
        down.requests(),
        4 * EMAIL.max_receives as usize,
        "1 call + 3 retries per delivery"
    );
    let (status, attempts, _, error) = send_row(&client, down_user, Campaign::D1).await;
    assert_eq!((status.as_str(), attempts), ("failed", 3));
    assert!(error.unwrap().contains("503"));
    let mut dead = 0;
    for _ in 0..40 {
        shared::queue::consumer::poll_once(&transport, &EMAIL, handler)
            .await
            .unwrap();
        dead = transport.depth(EMAIL.name).await.unwrap().dead_letters;
        if dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        dead, 1,
        "dead-lettered after {} deliveries",
        EMAIL.max_receives
    );
    assert_eq!(down.requests(), 12, "no fourth delivery");
    assert!(down.accepted().is_empty());
}

async fn unsubscribes(client: &tokio_postgres::Client) -> i64 {
    client
        .query_typed_one("SELECT count(*) FROM email_unsubscribes", &[])
        .await
        .unwrap()
        .get(0)
}

fn svix_request(svix_id: &str, body: &Value, secret: &str, timestamp: i64) -> Request<Body> {
    let payload = serde_json::to_vec(body).unwrap();
    let signature = shared::webhook::sign_svix(&payload, svix_id, timestamp, secret).unwrap();
    Request::post("/webhooks/resend")
        .header("content-type", "application/json")
        .header("svix-id", svix_id)
        .header("svix-timestamp", timestamp.to_string())
        .header("svix-signature", signature)
        .body(Body::from(payload))
        .unwrap()
}

fn resend_event(kind: &str, email_id: &str, extra: Value) -> Value {
    let mut data = json!({
        "email_id": email_id,
        "created_at": "2026-12-01 09:05:00.123+00",
        "from": "Growth Agents <hello@example.test>",
        "to": ["someone@example.com"],
        "subject": "Hello",
    });
    data.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "type": kind, "created_at": Utc::now().to_rfc3339(), "data": data })
}

/// A container on `pool`, the Postgres queue and the system clock.
fn container_of(pool: &Pool) -> shared::lambda::Container {
    let transport: Arc<dyn Transport> = Arc::new(PostgresTransport::new(pool.clone()));
    shared::lambda::Container::new(pool.clone(), transport, shared::clock::Clock::system())
}

fn api_router(pool: &Pool) -> axum::Router {
    let config = email::api::Config {
        unsubscribe_secrets: vec![UNSUBSCRIBE_SECRET.into()],
        webhook_secrets: vec!["whsec_b2xkLXNlY3JldA==".into(), WEBHOOK_SECRET.into()],
        product: "Growth Agents".into(),
    };
    email::api::router(Arc::new(email::api::ApiDeps::new(
        &container_of(pool),
        config,
    )))
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends D1 to a new user through the stand-in; returns (user, Resend email id).
async fn sent_email(
    client: &tokio_postgres::Client,
    deps: &SenderDeps,
    standin: &ResendStandIn,
    workspace: Uuid,
    name: &str,
) -> (Uuid, String) {
    let user = user(client, workspace, name, "2026-11-30T10:00:00Z", None).await;
    match email::send::send_campaign(deps, &request(workspace, user, Campaign::D1), Utc::now())
        .await
        .unwrap()
    {
        SendOutcome::Sent {
            provider_message_id: Some(id),
        } => {
            assert_eq!(standin.accepted().last().unwrap().id, id);
            (user, id)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn webhooks_are_verified_deduplicated_and_become_events_and_rates() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let pool = db.pool(3);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    let mut sends = Vec::new();
    for name in ["ada", "grace", "alan", "edsger"] {
        sends.push(sent_email(&client, &deps, &standin, workspace, name).await);
    }
    let router = api_router(&pool);
    let now = Utc::now().timestamp();

    // Signature checks: forged, stale, missing headers — 400 and nothing stored.
    let delivered = resend_event("email.delivered", &sends[0].1, json!({}));
    let (status, body) = call(
        &router,
        svix_request("msg_1", &delivered, "whsec_d3Jvbmc=", now),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("signature"), "{body}");
    let (status, _) = call(
        &router,
        svix_request("msg_1", &delivered, WEBHOOK_SECRET, now - 301),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unsigned = Request::post("/webhooks/resend")
        .body(Body::from(delivered.to_string()))
        .unwrap();
    assert_eq!(call(&router, unsigned).await.0, StatusCode::BAD_REQUEST);
    let stored: i64 = client
        .query_typed_one("SELECT count(*) FROM email_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);

    // Signed but not an event: 400 with the reason.
    let (status, body) = call(
        &router,
        svix_request(
            "msg_bad",
            &json!({"type": "email.opened"}),
            WEBHOOK_SECRET,
            now,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("created_at"), "{body}");

    // Applied once; the redelivery (same svix-id) is a duplicate.
    let (status, body) = call(
        &router,
        svix_request("msg_1", &delivered, WEBHOOK_SECRET, now),
    )
    .await;
    assert_eq!(
        (status, body.contains("\"applied\"")),
        (StatusCode::OK, true),
        "{body}"
    );
    let (status, body) = call(
        &router,
        svix_request("msg_1", &delivered, WEBHOOK_SECRET, now),
    )
    .await;
    assert_eq!(
        (status, body.contains("\"duplicate\"")),
        (StatusCode::OK, true),
        "{body}"
    );

    let events = [
        ("msg_2", "email.delivered", 1, json!({})),
        ("msg_3", "email.delivered", 2, json!({})),
        ("msg_4", "email.opened", 0, json!({})),
        ("msg_5", "email.opened", 1, json!({})),
        (
            "msg_6",
            "email.clicked",
            0,
            json!({"click": {"link": "https://app.example.test/"}}),
        ),
        ("msg_7", "email.delivery_delayed", 3, json!({})),
        (
            "msg_8",
            "email.bounced",
            3,
            json!({"bounce": {"type": "Permanent", "subType": "General", "message": "no such user"}}),
        ),
        ("msg_9", "email.complained", 2, json!({})),
    ];
    for (id, kind, index, extra) in events {
        let event = resend_event(kind, &sends[index].1, extra);
        let (status, body) = call(&router, svix_request(id, &event, WEBHOOK_SECRET, now)).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {body}");
    }
    // Not one of ours (another sender on the account): stored, nothing else.
    let foreign = resend_event("email.delivered", "someone-elses-email", json!({}));
    let (_, body) = call(
        &router,
        svix_request("msg_10", &foreign, WEBHOOK_SECRET, now),
    )
    .await;
    assert!(body.contains("\"stored\""), "{body}");

    // Each applied event is an analytics event of the user, once.
    let rows = client
        .query_typed(
            "SELECT distinct_id, event, properties->>'campaign' FROM events WHERE source = 'email' ORDER BY event, distinct_id",
            &[],
        )
        .await
        .unwrap();
    let found: Vec<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        found,
        vec![
            ("edsger".into(), "email_bounced".into()),
            ("ada".into(), "email_clicked".into()),
            ("alan".into(), "email_complained".into()),
            ("ada".into(), "email_delivered".into()),
            ("alan".into(), "email_delivered".into()),
            ("grace".into(), "email_delivered".into()),
            ("edsger".into(), "email_delivery_delayed".into()),
            ("ada".into(), "email_opened".into()),
            ("grace".into(), "email_opened".into()),
        ]
    );
    assert!(
        rows.iter()
            .all(|row| row.get::<_, Option<String>>(2).as_deref() == Some("d1"))
    );
    // …and the metrics agent is asked to recompute.
    let metrics_depth = PostgresTransport::new(pool.clone())
        .depth("metrics.fifo")
        .await
        .unwrap();
    assert!(metrics_depth.visible >= 1, "{metrics_depth:?}");

    // The metrics agent counts them as events of the day, not as active users.
    let today = Utc::now().date_naive();
    metrics::handle(
        &metrics::MetricsDeps::new(&container_of(&pool)),
        &shared::messages::MetricsRecompute::new(workspace, today, "test", Utc::now()),
    )
    .await
    .unwrap();
    let day = client
        .query_typed_one(
            "SELECT events, dau, mau FROM daily_metrics WHERE workspace_id = $1 AND date = $2",
            &[(&workspace, Type::UUID), (&today, Type::DATE)],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            day.get::<_, i64>(0),
            day.get::<_, i64>(1),
            day.get::<_, i64>(2)
        ),
        (9, 0, 0)
    );

    // The bounce and the complaint suppress their addresses; the complaint unsubscribes.
    let suppressed = client
        .query_typed(
            "SELECT address, reason FROM email_suppressions ORDER BY address",
            &[],
        )
        .await
        .unwrap();
    let suppressed: Vec<(String, String)> = suppressed
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        suppressed,
        vec![
            ("alan@example.com".into(), "complained".into()),
            ("edsger@example.com".into(), "bounced".into()),
        ]
    );
    let method: String = client
        .query_typed_one(
            "SELECT method FROM email_unsubscribes WHERE user_id = $1",
            &[(&sends[2].0, Type::UUID)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "complaint");

    // Rates: 4 sent, 3 delivered, 1 bounced -> 75 %; 2 of 3 delivered opened; 1 clicked.
    let rates = email::stats::campaign_rates(&client, 30).await.unwrap();
    let d1 = &rates[0];
    assert_eq!(
        (
            d1.campaign.as_str(),
            d1.sent,
            d1.delivered,
            d1.bounced,
            d1.complained
        ),
        ("d1", 4, 3, 1, 1)
    );
    assert_eq!(d1.delivery_rate, Some(0.75));
    assert_eq!(d1.open_rate, Some(2.0 / 3.0));
    assert_eq!(d1.click_rate, Some(1.0 / 3.0));
    assert_eq!(
        (
            rates[1].campaign.as_str(),
            rates[1].sent,
            rates[1].delivery_rate
        ),
        ("d7", 0, None)
    );

    // The status page shows them.
    let status = status::report(
        &status::StatusDeps::new(
            &container_of(&pool),
            status::Config {
                token: "t".to_string().into(),
                jwt: None,
            },
        ),
        None,
    )
    .await;
    let shown = serde_json::to_value(&status).unwrap();
    assert_eq!(
        shown["email_campaigns_30d"][0]["delivery_rate"],
        json!(0.75)
    );

    // Suppressed and complaining users are not sent their next campaign.
    let alan_d7 = email::send::send_campaign(
        &deps,
        &request(workspace, sends[2].0, Campaign::D7),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(
        matches!(alan_d7, SendOutcome::Skipped { .. }),
        "{alan_d7:?}"
    );
    let edsger_d7 = email::send::send_campaign(
        &deps,
        &request(workspace, sends[3].0, Campaign::D7),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        edsger_d7,
        SendOutcome::Skipped {
            reason: "address suppressed after a bounce or complaint".into()
        }
    );
    assert_eq!(standin.requests(), 4, "no email to them");
}

#[tokio::test]
async fn a_soft_bounce_does_not_suppress() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let pool = db.pool(2);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    let (_, email_id) = sent_email(&client, &deps, &standin, workspace, "ada").await;
    let router = api_router(&pool);
    let bounce = resend_event(
        "email.bounced",
        &email_id,
        json!({"bounce": {"type": "Transient", "subType": "MailboxFull"}}),
    );
    let (status, _) = call(
        &router,
        svix_request("msg_soft", &bounce, WEBHOOK_SECRET, Utc::now().timestamp()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let suppressed: i64 = client
        .query_typed_one("SELECT count(*) FROM email_suppressions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(suppressed, 0);
}

#[tokio::test]
async fn one_click_unsubscribe_from_the_sent_headers_is_honoured_and_idempotent() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let pool = db.pool(2);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    let (user, _) = sent_email(&client, &deps, &standin, workspace, "ada").await;
    let headers = standin.accepted()[0].body["headers"].clone();
    assert_eq!(
        headers["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    let link = headers["List-Unsubscribe"].as_str().unwrap();
    let url = link
        .strip_prefix('<')
        .and_then(|link| link.strip_suffix('>'))
        .unwrap();
    let path = url
        .strip_prefix(BASE_URL)
        .expect("an https link to our API");
    assert!(
        !path.contains(&user.to_string()) && !path.contains(&user.simple().to_string()),
        "opaque: {path}"
    );
    let router = api_router(&pool);

    // Opening the link (or a scanner fetching it) only shows the confirmation.
    let (status, page) = call(&router, Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(unsubscribes(&client).await, 0);

    // The mailbox provider's one-click POST, twice.
    let one_click = || {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("List-Unsubscribe=One-Click"))
            .unwrap()
    };
    let (status, page) = call(&router, one_click()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("unsubscribed"), "{page}");
    let (status, page) = call(&router, one_click()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("already"), "{page}");
    assert_eq!(unsubscribes(&client).await, 1);
    let method: String = client
        .query_typed_one("SELECT method FROM email_unsubscribes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "one_click");

    // Damaged or missing tokens are refused with the reason.
    let tampered = format!("{}x", path);
    let (status, page) = call(
        &router,
        Request::post(tampered.as_str())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("damaged"), "{page}");
    let forged = TokenSigner::new(vec!["not-our-secret".into()]).token(user);
    let (status, page) = call(
        &router,
        Request::get(format!("/email/unsubscribe?token={forged}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("not issued by us"), "{page}");
    let (status, _) = call(
        &router,
        Request::post("/email/unsubscribe")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Their next campaign is skipped, and the sweep no longer picks them.
    let d7 = email::send::send_campaign(&deps, &request(workspace, user, Campaign::D7), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        d7,
        SendOutcome::Skipped {
            reason: "unsubscribed".into()
        }
    );
    assert_eq!(standin.requests(), 1);
    client
        .batch_execute(&format!(
            "UPDATE users SET signed_up_at = '2026-11-24T12:00:00Z' WHERE id = '{user}'"
        ))
        .await
        .unwrap();
    let (due, _) = email::sweep::due_users(
        &pool,
        Campaign::D7,
        Rules::default().get(Campaign::D7),
        at("2026-12-01T09:02:00Z"),
    )
    .await
    .unwrap();
    assert!(due.is_empty());
}

#[tokio::test]
async fn a_message_long_past_due_is_skipped_not_sent() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let user = user(&client, workspace, "ada", "2026-11-20T10:00:00Z", None).await;
    let standin = ResendStandIn::start().await;
    let deps = sender(&db.pool(2), resend(&standin));
    let mut late = request(workspace, user, Campaign::D1);
    late.due_at = Utc::now() - chrono::Duration::days(9);
    let outcome = email::send::send_campaign(&deps, &late, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        SendOutcome::Skipped {
            reason: "more than 48 hours past due".into()
        }
    );
    assert_eq!(standin.requests(), 0);
    assert_eq!(send_row(&client, user, Campaign::D1).await.0, "skipped");
}

#[tokio::test]
async fn previews_render_a_users_email_with_their_workspace_numbers() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let user = user(&client, workspace, "ada", "2026-11-24T10:00:00Z", None).await;
    client
        .batch_execute(&format!(
            "INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks, conversions, conversion_value,
                    orders, gross_revenue, refunds, net_revenue, new_customers, subscription_revenue, mrr, new_mrr,
                    expansion_mrr, contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                    events, dau, wau, mau, signups)
             SELECT '{workspace}', current_date - d, 'USD', 100.25, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 401, 1000, 1, 1, 1, 0
               FROM generate_series(0, 9) AS d"
        ))
        .await
        .unwrap();
    let pool = db.pool(1);
    let deps = sender(
        &pool,
        Arc::new(email::provider::Mailbox::new(
            std::env::temp_dir().join("unused"),
        )),
    );
    let rendered = email::send::preview(&pool, &deps.composer, Campaign::D7, user, Utc::now())
        .await
        .unwrap()
        .unwrap();
    // Seven days of the ten: spend 701.75, revenue 2,807, ROAS 4, 21 orders, 7,000 events.
    for line in [
        "Ad spend        USD 701.75",
        "Revenue         USD 2,807.00",
        "ROAS            4.00×",
        "Orders          21",
        "Events tracked  7,000",
    ] {
        assert!(rendered.text.contains(line), "{line}: {}", rendered.text);
    }
    assert_eq!(
        rendered.subject,
        "Lovelace Labs: your first week in numbers"
    );
    assert!(
        email::send::preview(
            &pool,
            &deps.composer,
            Campaign::D1,
            Uuid::new_v4(),
            Utc::now()
        )
        .await
        .unwrap()
        .is_none()
    );
    let sent: i64 = client
        .query_typed_one("SELECT count(*) FROM email_sends", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, 0, "a preview records nothing");
}

#[tokio::test]
async fn resend_answers_are_classified() {
    use email::provider::{EmailProvider, OutgoingEmail, ProviderError};
    use shared::retry::Retryable;
    let standin = ResendStandIn::start().await;
    let resend = Resend::new(standin.base_url(), API_KEY).unwrap();
    let email = |subject: &str| OutgoingEmail {
        from: "Growth Agents <hello@example.test>".into(),
        to: vec!["ada@example.com".into()],
        subject: subject.into(),
        html: "<p>Hi</p>".into(),
        text: "Hi".into(),
        headers: Default::default(),
        tags: vec![],
    };
    let id = resend.send(&email("one"), "key-1").await.unwrap();
    assert_eq!(
        resend.send(&email("one"), "key-1").await.unwrap(),
        id,
        "a replay answers the first email"
    );
    let changed = resend.send(&email("two"), "key-1").await.unwrap_err();
    assert!(
        matches!(changed, ProviderError::AlreadySent { .. }),
        "{changed}"
    );
    assert!(!changed.retry_class().is_transient());

    standin.fail_next(&[(429, Some(7))]);
    let limited = resend.send(&email("three"), "key-3").await.unwrap_err();
    assert_eq!(
        limited.retry_class(),
        shared::retry::RetryClass::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let wrong_key = Resend::new(standin.base_url(), "re_wrong").unwrap();
    let refused = wrong_key.send(&email("four"), "key-4").await.unwrap_err();
    assert!(
        matches!(refused, ProviderError::Rejected { status: 401, .. }),
        "{refused}"
    );
    let unreachable = Resend::new("http://127.0.0.1:9", API_KEY).unwrap();
    let down = unreachable.send(&email("five"), "key-5").await.unwrap_err();
    assert!(down.retry_class().is_transient(), "{down}");
    assert_eq!(standin.accepted().len(), 1);
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_typed_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn resend_deliveries_that_cannot_be_stored_are_quarantined_and_acknowledged() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let pool = db.pool(3);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    let (_, email_id) = sent_email(&client, &deps, &standin, workspace, "ada").await;
    let router = api_router(&pool);
    let now = Utc::now().timestamp();

    // `\u0000` in a field Resend echoes back (the subject we sent, as the recipient's
    // server rewrote it): acknowledged, kept with where it is, nothing else written.
    let nul = resend_event("email.delivered", &email_id, json!({"subject": "Hi\u{0}"}));
    for _ in 0..2 {
        let (status, body) =
            call(&router, svix_request("msg_nul", &nul, WEBHOOK_SECRET, now)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer, json!({"received": true, "outcome": "quarantined"}));
    }
    // A time PostgreSQL cannot hold: the server's reason is kept.
    let mut ancient = resend_event("email.opened", &email_id, json!({}));
    ancient["created_at"] = json!("-5000-01-01 00:00:00+00");
    let (status, body) = call(
        &router,
        svix_request("msg_ancient", &ancient, WEBHOOK_SECRET, now),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("quarantined"), "{body}");
    let kept = db.quarantined().await;
    assert_eq!(kept.len(), 2, "a redelivery is kept once");
    assert_eq!(
        (kept[0].0.as_str(), kept[0].1.as_str()),
        ("resend", "msg_nul")
    );
    assert!(kept[0].2.contains("/data/subject"), "{}", kept[0].2);
    assert_eq!(
        kept[0].3,
        serde_json::to_vec(&nul).unwrap(),
        "byte for byte"
    );
    assert_eq!(kept[1].1, "msg_ancient");
    assert!(kept[1].2.contains("out of range"), "{}", kept[1].2);
    assert_eq!(count(&client, "SELECT count(*) FROM email_events").await, 0);
    assert_eq!(
        count(&client, "SELECT count(*) FROM email_sends WHERE delivered_at IS NOT NULL OR opened_at IS NOT NULL").await,
        0
    );

    // Emoji is just text: stored and applied as sent, once however many copies arrive at once.
    let emoji = resend_event(
        "email.delivered",
        &email_id,
        json!({"subject": "🦀 Hi Ada"}),
    );
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (router, emoji) = (router.clone(), emoji.clone());
            tokio::spawn(async move {
                call(
                    &router,
                    svix_request("msg_emoji", &emoji, WEBHOOK_SECRET, now),
                )
                .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for copy in copies {
        let (status, body) = copy.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        outcomes.push(answer["outcome"].as_str().unwrap().to_string());
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "applied",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate"
        ]
    );
    let subject: String = client
        .query_typed_one("SELECT payload->'data'->>'subject' FROM email_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(subject, "🦀 Hi Ada");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM events WHERE source = 'email'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_oversized_resend_delivery_is_refused_with_413() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let router = api_router(&db.pool(1));
    let huge = resend_event(
        "email.delivered",
        "e-1",
        json!({"subject": "x".repeat(email::api::MAX_BODY_BYTES)}),
    );
    let (status, _) = call(
        &router,
        svix_request("msg_huge", &huge, WEBHOOK_SECRET, Utc::now().timestamp()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(count(&client, "SELECT count(*) FROM email_events").await, 0);
}

#[tokio::test]
async fn held_locks_answer_503_with_retry_after_within_the_budget() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let pool = db.pool(3);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    let (user, email_id) = sent_email(&client, &deps, &standin, workspace, "ada").await;
    let router = api_router(&pool);
    let budget = Duration::from_secs(10);

    // A stuck transaction elsewhere holds the send row and the user row.
    let mut holder = db.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .batch_execute(&format!(
            "SELECT 1 FROM email_sends FOR UPDATE; SELECT 1 FROM users WHERE id = '{user}' FOR UPDATE"
        ))
        .await
        .unwrap();

    let delivered = resend_event("email.delivered", &email_id, json!({}));
    let started = std::time::Instant::now();
    let response = router
        .clone()
        .oneshot(svix_request(
            "msg_locked",
            &delivered,
            WEBHOOK_SECRET,
            Utc::now().timestamp(),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(started.elapsed() < budget, "{:?}", started.elapsed());

    let path = format!(
        "/email/unsubscribe?token={}",
        deps.composer.signer.token(user)
    );
    let started = std::time::Instant::now();
    let response = router
        .clone()
        .oneshot(
            Request::post(path.as_str())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("List-Unsubscribe=One-Click"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(started.elapsed() < budget, "{:?}", started.elapsed());
    assert_eq!(unsubscribes(&client).await, 0);

    // Once the lock is gone, the senders' retries go through.
    holding.rollback().await.unwrap();
    let (status, body) = call(
        &router,
        svix_request(
            "msg_locked",
            &delivered,
            WEBHOOK_SECRET,
            Utc::now().timestamp(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("applied"), "{body}");
    let (status, _) = call(
        &router,
        Request::post(path.as_str())
            .body(Body::from("List-Unsubscribe=One-Click"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unsubscribes(&client).await, 1);
}

#[tokio::test]
async fn tampered_unsubscribe_tokens_are_refused_with_a_reason_and_change_nothing() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let db = TestDb::new().await;
    let client = db.client().await;
    let (_, user) = workspace_with_ada(&client).await;
    let router = api_router(&db.pool(2));
    let token = TokenSigner::new(vec![UNSUBSCRIBE_SECRET.into()]).token(user);
    let flipped = |bit: usize| {
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[bit / 8] ^= 1 << (bit % 8);
        URL_SAFE_NO_PAD.encode(bytes)
    };
    for (tampered, reason) in [
        (flipped(3), "not issued by us"),
        (flipped(200), "not issued by us"),
        (format!("{token}{token}"), "damaged"),
        ("%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_string(), "damaged"),
    ] {
        for request in [
            Request::get(format!("/email/unsubscribe?token={tampered}")),
            Request::post(format!("/email/unsubscribe?token={tampered}")),
        ] {
            let (status, page) = call(&router, request.body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{tampered}");
            assert!(page.contains(reason), "{page}");
            assert!(!page.contains("<script>"), "{page}");
        }
    }
    assert_eq!(unsubscribes(&client).await, 0);
}

#[tokio::test]
async fn a_queue_message_due_at_the_end_of_time_is_handled_not_a_panic() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (workspace, user) = workspace_with_ada(&client).await;
    let standin = ResendStandIn::start().await;
    let deps = sender(&db.pool(2), resend(&standin));
    let body = json!({"workspace_id": workspace, "user_id": user, "campaign": "d1",
        "due_at": DateTime::<Utc>::MAX_UTC});
    let message: EmailQueueMessage = serde_json::from_value(body).unwrap();
    email::send::handle(&deps, message).await.unwrap();
    assert_eq!(standin.requests(), 1, "not past due: sent once");
}
