//! The email agent against a real database, the Postgres queue and a Resend stand-in: who the
//! sweep picks (day boundaries, timezones, exclusions, activity), sending once under
//! concurrency, retries and crashes, provider errors, unsubscribe and suppression, and the
//! Svix-signed webhook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use email::EmailError;
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
use tokio_postgres::types::{FromSql, ToSql, Type};
use tower::ServiceExt;
use uuid::Uuid;

const WEBHOOK_SECRET: &str = "whsec_dGVzdC1yZXNlbmQtd2ViaG9vay1zZWNyZXQ=";
fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn resend(standin: &ResendStandIn) -> Arc<dyn email::provider::EmailProvider> {
    Arc::new(Resend::new(standin.base_url(), API_KEY).unwrap())
}

fn request(member: Uuid, campaign: Campaign) -> SendCampaignEmail {
    SendCampaignEmail {
        member_id: member,
        campaign,
        due_at: Utc::now() - chrono::Duration::hours(1),
    }
}

/// The first column of the one row `sql` selects (it panics on none or more).
async fn one<T: for<'row> FromSql<'row>>(
    client: &tokio_postgres::Client,
    sql: &str,
    args: &[(&(dyn ToSql + Sync), Type)],
) -> T {
    client.query_typed_one(sql, args).await.unwrap().get(0)
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    one(client, sql, &[]).await
}

/// Checks that `sql` selects exactly `expected`, two text columns a row, in that order.
async fn assert_pairs(client: &tokio_postgres::Client, sql: &str, expected: &[(&str, &str)]) {
    let rows = client.query_typed(sql, &[]).await.unwrap();
    let found: Vec<(&str, &str)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(found, expected, "{sql}");
}

/// The handle a member signed up with (`{handle}@example.com`).
async fn distinct_id(client: &tokio_postgres::Client, member: Uuid) -> String {
    let sql = "SELECT split_part(email, '@', 1) FROM auth.users WHERE id = $1";
    one(client, sql, &[(&member, Type::UUID)]).await
}

/// The email agent handling `message` now, as a queue delivery would.
async fn deliver(
    deps: &SenderDeps,
    message: &SendCampaignEmail,
) -> Result<SendOutcome, EmailError> {
    email::send::send_campaign(deps, message, Utc::now()).await
}

/// What most tests start from: a fresh database with a UTC workspace and the product's own
/// analytics workspace, and the email agent on a pool of `pool_size` sending through a
/// Resend stand-in.
struct Sending {
    db: TestDb,
    client: tokio_postgres::Client,
    workspace: Uuid,
    /// Where members' email outcomes become analytics events.
    product: Uuid,
    pool: Pool,
    standin: ResendStandIn,
    deps: SenderDeps,
}

async fn sending(pool_size: usize) -> Sending {
    let db = TestDb::new().await;
    let client = db.client().await;
    let workspace = workspace(&client, "UTC").await;
    let product = integration_tests::fixtures::product_workspace(&client).await;
    let pool = db.pool(pool_size);
    let standin = ResendStandIn::start().await;
    let deps = sender(&pool, resend(&standin));
    Sending {
        db,
        client,
        workspace,
        product,
        pool,
        standin,
        deps,
    }
}

impl Sending {
    /// A user of the workspace who signed up on 2026-11-30 at 10:00 UTC.
    async fn user(&self, name: &str) -> Uuid {
        user(
            &self.client,
            self.workspace,
            name,
            "2026-11-30T10:00:00Z",
            None,
        )
        .await
    }

    /// Sends `campaign` to `user` now and returns the outcome; an error fails the test.
    async fn send(&self, user: Uuid, campaign: Campaign) -> SendOutcome {
        let message = request(user, campaign);
        deliver(&self.deps, &message).await.unwrap()
    }

    /// Sends D1 to a new user through the stand-in; returns (user, Resend email id).
    async fn sent_email(&self, name: &str) -> (Uuid, String) {
        let user = self.user(name).await;
        match self.send(user, Campaign::D1).await {
            SendOutcome::Sent {
                provider_message_id: Some(id),
            } => {
                assert_eq!(self.standin.accepted().last().unwrap().id, id);
                (user, id)
            }
            other => panic!("{other:?}"),
        }
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
            found.push((distinct_id(client, send.member_id).await, send.campaign));
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
    let product = integration_tests::fixtures::product_workspace(&client).await;
    // The sweep runs at 09:02 UTC on 1 December; campaigns go out from 09:00 local time.
    let now = at("2026-12-01T09:02:00Z");
    // (distinct id, signed up at, the user's own timezone), in the UTC workspace.
    for (name, signed_up_at, timezone) in [
        ("d1-morning", "2026-11-30T10:00:00Z", None),
        ("d1-last-minute", "2026-11-30T23:59:00Z", None),
        ("d1-tomorrow", "2026-12-01T00:01:00Z", None),
        // 01:00 on 1 December in Tokyo: its day 1 is tomorrow, though it is 30 Nov in UTC.
        ("tokyo-not-yet", "2026-11-30T16:00:00Z", Some("Asia/Tokyo")),
        // 17:00 on 29 Nov in New York: due since 09:00 EST on 30 Nov (14:00 UTC), until 14:00
        // UTC today, though in UTC its window closed at 09:00.
        ("new-york", "2026-11-29T22:00:00Z", Some("America/New_York")),
        ("d1-expired", "2026-11-29T10:00:00Z", None),
        ("d1-sent", "2026-11-30T11:00:00Z", None),
        ("d1-unsubscribed", "2026-11-30T11:00:00Z", None),
        ("d1-bounced", "2026-11-30T11:00:00Z", None),
        ("d1-no-address", "2026-11-30T11:00:00Z", None),
        ("bad-timezone", "2026-11-30T11:00:00Z", Some("Mars/Olympus")),
        ("d7-due", "2026-11-24T12:00:00Z", None),
        ("d7-active", "2026-11-24T12:00:00Z", None),
        ("d7-opened-only", "2026-11-24T12:00:00Z", None),
        ("d30-due", "2026-11-01T08:00:00Z", None),
    ] {
        user(&client, utc, name, signed_up_at, timezone).await;
    }
    // Like tokyo-not-yet, through the workspace's timezone.
    user(
        &client,
        tokyo_workspace,
        "tokyo-workspace",
        "2026-11-30T16:00:00Z",
        None,
    )
    .await;
    // The reasons not to send, attached to the users by distinct id.
    client
        .batch_execute(&format!(
            "INSERT INTO email_sends (workspace_id, member_id, campaign, status, due_at)
                 SELECT '{utc}', id, 'd1', 'sent', now() FROM auth.users WHERE email = 'd1-sent@example.com';
             INSERT INTO member_email_unsubscribes (member_id, method)
                 SELECT id, 'link' FROM auth.users WHERE email = 'd1-unsubscribed@example.com';
             INSERT INTO email_suppressions (address, reason) VALUES ('d1-bounced@example.com', 'bounced');
             UPDATE auth.users SET email = NULL WHERE email = 'd1-no-address@example.com';
             -- Members' activity is the product's own analytics, keyed by member id; an event
             -- of the tenant's audience under the same id is not the member's visit.
             INSERT INTO events (id, workspace_id, source, distinct_id, event, timestamp)
             SELECT gen_random_uuid(), w, source, u.id::text, event, at::timestamptz
               FROM (VALUES ('{product}'::uuid, 'posthog', 'd7-active', 'pageview', '2026-12-01T07:00:00Z'),
                            ('{product}', 'email', 'd7-opened-only', 'email_opened', '2026-12-01T07:00:00Z'),
                            ('{product}', 'posthog', 'd7-opened-only', 'pageview', '2026-11-29T07:00:00Z'),
                            ('{utc}', 'posthog', 'd7-due', 'pageview', '2026-12-01T07:00:00Z'))
                    AS e(w, source, handle, event, at)
               JOIN auth.users u ON u.email = e.handle || '@example.com';"
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
    for (now, expected) in [
        ("2026-12-01T08:59:00Z", vec!["d1-expired", "new-york"]),
        (
            "2026-12-01T13:59:00Z",
            vec!["bad-timezone", "d1-last-minute", "d1-morning", "new-york"],
        ),
        (
            "2026-12-01T14:00:00Z",
            vec!["bad-timezone", "d1-last-minute", "d1-morning"],
        ),
        (
            "2026-12-02T00:00:00Z",
            vec![
                "bad-timezone",
                "d1-last-minute",
                "d1-morning",
                "tokyo-not-yet",
                "tokyo-workspace",
            ],
        ),
    ] {
        let (due, _) = email::sweep::due_users(&pool, Campaign::D1, d1, at(now))
            .await
            .unwrap();
        let mut names = Vec::new();
        for send in due {
            names.push(distinct_id(&client, send.member_id).await);
        }
        names.sort();
        assert_eq!(names, expected, "due for D1 at {now}");
    }

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
            "SELECT status, attempts, provider_message_id, error FROM email_sends WHERE member_id = $1 AND campaign = $2",
            &[(&user, Type::UUID), (&campaign.as_str(), Type::TEXT)],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn concurrent_consumers_and_redeliveries_send_one_email() {
    let t = sending(10).await;
    let user = t.user("ada").await;
    t.standin.delay(Duration::from_millis(300));
    let message = request(user, Campaign::D1);
    let deps = Arc::new(t.deps);
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (deps, message) = (deps.clone(), message.clone());
        consumers.spawn(async move { deliver(&deps, &message).await });
    }
    let (mut sent, mut elsewhere) = (0, 0);
    while let Some(result) = consumers.join_next().await {
        match result.unwrap() {
            Ok(SendOutcome::Sent { .. }) => sent += 1,
            Err(EmailError::ClaimedElsewhere) => elsewhere += 1,
            Ok(SendOutcome::AlreadyDone { .. }) => elsewhere += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((sent, elsewhere), (1, 7));
    assert_eq!(t.standin.requests(), 1, "one provider call");
    // A redelivery after success sends nothing.
    assert_eq!(
        deliver(&deps, &message).await.unwrap(),
        SendOutcome::AlreadyDone {
            status: "sent".into()
        }
    );
    assert_eq!(t.standin.requests(), 1);

    let accepted = t.standin.accepted();
    assert_eq!(accepted.len(), 1);
    let (status, attempts, message_id, _) = send_row(&t.client, user, Campaign::D1).await;
    assert_eq!((status.as_str(), attempts), ("sent", 1));
    assert_eq!(message_id.as_deref(), Some(accepted[0].id.as_str()));
    let body = &accepted[0].body;
    assert_eq!(body["to"], json!(["ada@example.com"]));
    assert_eq!(body["subject"], "Ada, your first day with Growth Agents");
    assert!(body["text"].as_str().unwrap().contains("Hi Ada,"));
    assert!(body["html"].as_str().unwrap().contains("<p>Hi Ada,</p>"));
    assert_eq!(body["tags"][0], json!({"name": "campaign", "value": "d1"}));
    let send_id: Uuid = one(
        &t.client,
        "SELECT id FROM email_sends WHERE member_id = $1",
        &[(&user, Type::UUID)],
    )
    .await;
    assert_eq!(
        accepted[0].idempotency_key.as_deref(),
        Some(format!("email-send/{send_id}").as_str())
    );
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_taken_over_without_a_second_email() {
    let t = sending(2).await;
    let user = t.user("ada").await;
    let message = request(user, Campaign::D1);
    deliver(&t.deps, &message).await.unwrap();
    let first_id = t.standin.accepted()[0].id.clone();
    // As if the consumer had died after Resend accepted the email and before recording it;
    // meanwhile the workspace's numbers changed, which must not change the payload.
    t.client
        .batch_execute(&format!(
            "UPDATE email_sends SET status = 'claimed', provider_message_id = NULL, sent_at = NULL,
                    claimed_at = now() - interval '1 hour' WHERE member_id = '{user}';
             INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks, conversions, conversion_value,
                    orders, gross_revenue, refunds, net_revenue, new_customers, subscription_revenue, mrr, new_mrr,
                    expansion_mrr, contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                    events, dau, wau, mau, signups)
             VALUES ('{}', current_date, 'USD', 10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 5, 1, 1, 1, 1);",
            t.workspace
        ))
        .await
        .unwrap();
    assert_eq!(
        deliver(&t.deps, &message).await.unwrap(),
        SendOutcome::Sent {
            provider_message_id: Some(first_id.clone())
        }
    );
    assert_eq!(t.standin.requests(), 2, "the takeover asked again");
    assert_eq!(
        t.standin.accepted().len(),
        1,
        "and Resend answered with the first email"
    );
    let (status, attempts, message_id, _) = send_row(&t.client, user, Campaign::D1).await;
    assert_eq!(
        (status.as_str(), attempts, message_id),
        ("sent", 2, Some(first_id))
    );

    // A fresh claim (a consumer still working) is not taken over.
    t.client
        .batch_execute(&format!(
            "UPDATE email_sends SET status = 'claimed', claimed_at = now() WHERE member_id = '{user}'"
        ))
        .await
        .unwrap();
    let busy = deliver(&t.deps, &message).await;
    assert!(
        matches!(busy, Err(EmailError::ClaimedElsewhere)),
        "{busy:?}"
    );
}

#[tokio::test]
async fn provider_errors_are_retried_with_backoff_then_dead_lettered() {
    let t = sending(3).await;
    let flaky_user = t.user("flaky").await;
    let down_user = t.user("down").await;
    let invalid_user = t.user("invalid").await;
    t.client
        .batch_execute(&format!(
            "UPDATE auth.users SET email = 'invalid@localhost' WHERE id = '{invalid_user}'"
        ))
        .await
        .unwrap();

    // Two transient failures (a 503, then a 429 with Retry-After), then success: one email.
    t.standin.fail_next(&[(503, None), (429, Some(0))]);
    let outcome = t.send(flaky_user, Campaign::D1).await;
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "{outcome:?}");
    assert_eq!((t.standin.requests(), t.standin.accepted().len()), (3, 1));

    // A permanent refusal is recorded and not retried.
    let outcome = t.send(invalid_user, Campaign::D1).await;
    assert!(
        matches!(outcome, SendOutcome::Rejected { .. }),
        "{outcome:?}"
    );
    assert_eq!(t.standin.requests(), 4);
    let (status, _, _, error) = send_row(&t.client, invalid_user, Campaign::D1).await;
    assert_eq!(status, "rejected");
    assert!(error.unwrap().contains("validation_error"));

    // Resend down: each delivery retries in-process, then fails the message; after the
    // queue's three deliveries the message is a dead letter, and the send is recorded failed.
    let down = ResendStandIn::start().await;
    down.fail_always(503);
    let deps = Arc::new(sender(&t.pool, resend(&down)));
    let transport = PostgresTransport::new(t.pool.clone());
    let message = request(down_user, Campaign::D1);
    transport
        .send(&[shared::queue::Message::to_outgoing(&message).unwrap()])
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
    let (status, attempts, _, error) = send_row(&t.client, down_user, Campaign::D1).await;
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
    count(client, "SELECT count(*) FROM member_email_unsubscribes").await
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

/// The mailbox provider's one-click unsubscribe (RFC 8058) to the link at `path`.
fn one_click(path: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("List-Unsubscribe=One-Click"))
        .unwrap()
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
    let (head, body) = router.clone().oneshot(request).await.unwrap().into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (head.status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn webhooks_are_verified_deduplicated_and_become_events_and_rates() {
    let t = sending(3).await;
    let mut sends = Vec::new();
    for name in ["ada", "grace", "alan", "edsger"] {
        sends.push(t.sent_email(name).await);
    }
    let router = api_router(&t.pool);
    let now = Utc::now().timestamp();

    // Forged, stale, missing headers, or signed but not an event: 400 with the reason, and
    // nothing stored.
    let delivered = resend_event("email.delivered", &sends[0].1, json!({}));
    let forged = svix_request("msg_1", &delivered, "whsec_d3Jvbmc=", now);
    let stale = svix_request("msg_1", &delivered, WEBHOOK_SECRET, now - 301);
    let unsigned = Request::post("/webhooks/resend")
        .body(Body::from(delivered.to_string()))
        .unwrap();
    let not_an_event = json!({"type": "email.opened"});
    let not_an_event = svix_request("msg_bad", &not_an_event, WEBHOOK_SECRET, now);
    for (case, request, reason) in [
        ("forged", forged, "signature"),
        ("stale", stale, "signature"),
        ("unsigned", unsigned, "signature"),
        ("not an event", not_an_event, "created_at"),
    ] {
        let (status, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert!(body.contains(reason), "{case}: {body}");
    }
    assert_eq!(
        count(&t.client, "SELECT count(*) FROM email_events").await,
        0
    );

    // Applied once; the redelivery (same svix-id) is a duplicate.
    for outcome in ["applied", "duplicate"] {
        let request = svix_request("msg_1", &delivered, WEBHOOK_SECRET, now);
        let (status, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::OK, "{outcome}: {body}");
        assert!(body.contains(&format!("\"{outcome}\"")), "{body}");
    }

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

    // Each applied event is an event of the product's own analytics, keyed by the member,
    // once; none lands in the tenant's workspace.
    let analytics = format!(
        "SELECT split_part(u.email, '@', 1), e.event
           FROM events e JOIN auth.users u ON u.id::text = e.distinct_id
          WHERE e.source = 'email' AND e.workspace_id = '{}'
          ORDER BY e.event, u.email",
        t.product
    );
    assert_pairs(
        &t.client,
        &analytics,
        &[
            ("edsger", "email_bounced"),
            ("ada", "email_clicked"),
            ("alan", "email_complained"),
            ("ada", "email_delivered"),
            ("alan", "email_delivered"),
            ("grace", "email_delivered"),
            ("edsger", "email_delivery_delayed"),
            ("ada", "email_opened"),
            ("grace", "email_opened"),
        ],
    )
    .await;
    let other_campaign = "SELECT count(*) FROM events WHERE source = 'email'
                          AND properties->>'campaign' IS DISTINCT FROM 'd1'";
    assert_eq!(count(&t.client, other_campaign).await, 0, "each names D1");
    let in_tenant = format!(
        "SELECT count(*) FROM events WHERE workspace_id = '{}'",
        t.workspace
    );
    assert_eq!(
        count(&t.client, &in_tenant).await,
        0,
        "not the tenant's events"
    );
    // …and the metrics agent is asked to recompute.
    let metrics_depth = PostgresTransport::new(t.pool.clone())
        .depth("metrics.fifo")
        .await
        .unwrap();
    assert!(metrics_depth.visible >= 1, "{metrics_depth:?}");

    // The metrics agent counts them as events of the day, not as active users.
    let today = Utc::now().date_naive();
    metrics::handle(
        &metrics::MetricsDeps::new(&container_of(&t.pool)),
        &shared::messages::MetricsRecompute::new(t.product, today, "test", Utc::now()),
    )
    .await
    .unwrap();
    let day: Vec<i64> = one(
        &t.client,
        "SELECT ARRAY[events, dau, mau] FROM daily_metrics WHERE workspace_id = $1 AND date = $2",
        &[(&t.product, Type::UUID), (&today, Type::DATE)],
    )
    .await;
    assert_eq!(day, [9, 0, 0], "events, dau, mau");

    // The bounce and the complaint suppress their addresses; the complaint unsubscribes.
    let suppressed = "SELECT address, reason FROM email_suppressions ORDER BY address";
    let expected = [
        ("alan@example.com", "complained"),
        ("edsger@example.com", "bounced"),
    ];
    assert_pairs(&t.client, suppressed, &expected).await;
    let method: String = one(
        &t.client,
        "SELECT method FROM member_email_unsubscribes WHERE member_id = $1",
        &[(&sends[2].0, Type::UUID)],
    )
    .await;
    assert_eq!(method, "complaint");

    // Rates: 4 sent, 3 delivered, 1 bounced -> 75 %; 2 of 3 delivered opened; 1 clicked.
    let rates = email::stats::campaign_rates(&t.client, 30).await.unwrap();
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
            &container_of(&t.pool),
            status::Config {
                token: "t".to_string().into(),
                ..status::Config::local()
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

    // Suppressed and complaining users are not sent their next campaign; a complaint is
    // also an unsubscribe, which is the reason given first.
    for (user, reason) in [
        (sends[2].0, "unsubscribed"),
        (sends[3].0, "address suppressed after a bounce or complaint"),
    ] {
        assert_eq!(
            t.send(user, Campaign::D7).await,
            SendOutcome::Skipped {
                reason: reason.into()
            }
        );
    }
    assert_eq!(t.standin.requests(), 4, "no email to them");
}

#[tokio::test]
async fn a_soft_bounce_does_not_suppress() {
    let t = sending(2).await;
    let (_, email_id) = t.sent_email("ada").await;
    let bounce = resend_event(
        "email.bounced",
        &email_id,
        json!({"bounce": {"type": "Transient", "subType": "MailboxFull"}}),
    );
    let request = svix_request("msg_soft", &bounce, WEBHOOK_SECRET, Utc::now().timestamp());
    let (status, _) = call(&api_router(&t.pool), request).await;
    assert_eq!(status, StatusCode::OK);
    let suppressed = count(&t.client, "SELECT count(*) FROM email_suppressions").await;
    assert_eq!(suppressed, 0);
}

#[tokio::test]
async fn one_click_unsubscribe_from_the_sent_headers_is_honoured_and_idempotent() {
    let t = sending(2).await;
    let (user, _) = t.sent_email("ada").await;
    let headers = t.standin.accepted()[0].body["headers"].clone();
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
    let router = api_router(&t.pool);

    // Opening the link (or a scanner fetching it) only shows the confirmation.
    let (status, page) = call(&router, Request::get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(unsubscribes(&t.client).await, 0);

    // The mailbox provider's one-click POST, twice: the second finds it done.
    for (attempt, answer) in [("first", "unsubscribed"), ("second", "already")] {
        let (status, page) = call(&router, one_click(path)).await;
        assert_eq!(status, StatusCode::OK, "{attempt}");
        assert!(page.contains(answer), "{attempt}: {page}");
    }
    assert_eq!(unsubscribes(&t.client).await, 1);
    let method: String = one(
        &t.client,
        "SELECT method FROM member_email_unsubscribes",
        &[],
    )
    .await;
    assert_eq!(method, "one_click");

    // Damaged, forged or missing tokens are refused with the reason.
    let tampered = format!("{path}x");
    let forged = TokenSigner::new(vec!["not-our-secret".into()]).token(user);
    for (case, request, reason) in [
        ("damaged", Request::post(tampered.as_str()), "damaged"),
        (
            "forged",
            Request::get(format!("/email/unsubscribe?token={forged}")),
            "not issued by us",
        ),
        (
            "missing",
            Request::post("/email/unsubscribe"),
            "has no token",
        ),
    ] {
        let (status, page) = call(&router, request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
        assert!(page.contains(reason), "{case}: {page}");
    }

    // Their next campaign is skipped, and the sweep no longer picks them.
    assert_eq!(
        t.send(user, Campaign::D7).await,
        SendOutcome::Skipped {
            reason: "unsubscribed".into()
        }
    );
    assert_eq!(t.standin.requests(), 1);
    t.client
        .batch_execute(&format!(
            "UPDATE auth.users SET created_at = '2026-11-24T12:00:00Z' WHERE id = '{user}'"
        ))
        .await
        .unwrap();
    let (due, _) = email::sweep::due_users(
        &t.pool,
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
    let t = sending(2).await;
    let user = user(&t.client, t.workspace, "ada", "2026-11-20T10:00:00Z", None).await;
    let mut late = request(user, Campaign::D1);
    late.due_at = Utc::now() - chrono::Duration::days(9);
    assert_eq!(
        deliver(&t.deps, &late).await.unwrap(),
        SendOutcome::Skipped {
            reason: "more than 48 hours past due".into()
        }
    );
    assert_eq!(t.standin.requests(), 0);
    assert_eq!(send_row(&t.client, user, Campaign::D1).await.0, "skipped");
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
    let sent = count(&client, "SELECT count(*) FROM email_sends").await;
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

#[tokio::test]
async fn resend_deliveries_that_cannot_be_stored_are_quarantined_and_acknowledged() {
    let t = sending(3).await;
    let (_, email_id) = t.sent_email("ada").await;
    let router = api_router(&t.pool);
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
    let kept = t.db.quarantined().await;
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
    assert_eq!(
        count(&t.client, "SELECT count(*) FROM email_events").await,
        0
    );
    assert_eq!(
        count(&t.client, "SELECT count(*) FROM email_sends WHERE delivered_at IS NOT NULL OR opened_at IS NOT NULL").await,
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
    let subject: String = one(
        &t.client,
        "SELECT payload->'data'->>'subject' FROM email_events",
        &[],
    )
    .await;
    assert_eq!(subject, "🦀 Hi Ada");
    assert_eq!(
        count(
            &t.client,
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
    let t = sending(3).await;
    let (user, email_id) = t.sent_email("ada").await;
    let router = api_router(&t.pool);
    let budget = Duration::from_secs(10);

    // A stuck transaction elsewhere holds the send row and the user row.
    let mut holder = t.db.client().await;
    let holding = holder.transaction().await.unwrap();
    for lock in [
        "SELECT 1 FROM email_sends WHERE member_id = $1 FOR UPDATE",
        "SELECT 1 FROM auth.users WHERE id = $1 FOR UPDATE",
    ] {
        holding
            .execute_typed(lock, &[(&user, Type::UUID)])
            .await
            .unwrap();
    }

    // The two writers of those rows: (what, its request, what it answers once it gets
    // through). Each call builds the requests afresh, as a sender's retry would.
    let delivered = resend_event("email.delivered", &email_id, json!({}));
    let path = format!(
        "/email/unsubscribe?token={}",
        t.deps.composer.signer.token(user)
    );
    let writers = || {
        let timestamp = Utc::now().timestamp();
        [
            (
                "webhook",
                svix_request("msg_locked", &delivered, WEBHOOK_SECRET, timestamp),
                "applied",
            ),
            ("one-click unsubscribe", one_click(&path), "unsubscribed"),
        ]
    };
    for (writer, request, _) in writers() {
        let started = Instant::now();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{writer}"
        );
        assert_eq!(response.headers()["retry-after"], "5", "{writer}");
        assert!(
            started.elapsed() < budget,
            "{writer}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(unsubscribes(&t.client).await, 0);

    // Once the lock is gone, the senders' retries go through.
    holding.rollback().await.unwrap();
    for (writer, request, answer) in writers() {
        let (status, body) = call(&router, request).await;
        assert_eq!(status, StatusCode::OK, "{writer}: {body}");
        assert!(body.contains(answer), "{writer}: {body}");
    }
    assert_eq!(unsubscribes(&t.client).await, 1);
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
    let t = sending(2).await;
    let user = t.user("ada").await;
    let body = json!({"member_id": user, "campaign": "d1", "due_at": DateTime::<Utc>::MAX_UTC});
    let message: EmailQueueMessage = serde_json::from_value(body).unwrap();
    email::send::handle(&t.deps, message).await.unwrap();
    assert_eq!(t.standin.requests(), 1, "not past due: sent once");
}
