//! Lifecycle email goes to members only, tried end to end as an attacker would: addresses
//! posted through a tenant's public token (a `signed_up` with a stranger's address, an
//! `$identify` moving a member's distinct id to the attacker's address) never receive
//! anything, while the member due their D1 gets it — at the address Supabase Auth confirmed,
//! with their workspace's numbers, its best open suggestions and a way into the app.

use std::sync::Arc;
use std::time::Duration;

use analytics::AnalyticsDeps;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use email::campaigns::{Campaign, Rules};
use email::provider::Mailbox;
use email::send::{EmailQueueMessage, SendCampaignEmail, SendOutcome};
use integration_tests::email_fixtures::{sender, user, workspace};
use integration_tests::test_db::TestDb;
use serde_json::{Value, json};
use shared::queue::Transport;
use shared::queue::catalog::EMAIL;
use shared::queue::postgres::PostgresTransport;
use tower::ServiceExt;
use uuid::Uuid;

/// A signup time about a day before `now` for which D1 is due at `now` in UTC.
fn d1_due_signup(rules: &Rules, now: DateTime<Utc>) -> DateTime<Utc> {
    (24..72)
        .map(|hours| now - chrono::Duration::hours(hours))
        .find(|signup| rules.d1.is_due(*signup, chrono_tz::Tz::UTC, now))
        .expect("a signup time due its D1")
}

struct Stack {
    db: TestDb,
    transport: Arc<PostgresTransport>,
    mailbox: std::path::PathBuf,
    workspace: Uuid,
}

impl Stack {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let pool = db.pool(4);
        let workspace = workspace(&db.client().await, "UTC").await;
        db.client()
            .await
            .execute(
                "INSERT INTO workspace_tokens (token, workspace_id, kind)
                 VALUES ('phc_tenant', $1, 'posthog_project')",
                &[&workspace],
            )
            .await
            .unwrap();
        Self {
            transport: Arc::new(PostgresTransport::new(pool)),
            mailbox: std::env::temp_dir().join(format!("mailbox-{}", Uuid::new_v4().simple())),
            db,
            workspace,
        }
    }

    /// Posts `events` to PostHog's `/batch` with the tenant's public token.
    async fn capture(&self, events: Vec<Value>) {
        let pool = self.db.pool(2);
        let container = shared::lambda::Container::new(
            pool,
            self.transport.clone(),
            shared::clock::Clock::system(),
        );
        let config = analytics::Config {
            keys: integration_tests::test_keys(),
        };
        let router = analytics::router(Arc::new(AnalyticsDeps::new(&container, config)));
        let body = json!({"api_key": "phc_tenant", "batch": events}).to_string();
        let response = router
            .oneshot(
                Request::post("/batch")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Runs the sweep at `now` and hands every queued message to the sender; returns what
    /// landed in the mailbox.
    async fn sweep_and_send(&self, now: DateTime<Utc>) -> Vec<Value> {
        let pool = self.db.pool(4);
        email::sweep::sweep(&pool, self.transport.as_ref(), &Rules::default(), now)
            .await
            .unwrap();
        let deps = sender(&pool, Arc::new(Mailbox::new(&self.mailbox)));
        loop {
            let batch = self
                .transport
                .receive(EMAIL.name, 10, Duration::from_secs(60))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let parsed: EmailQueueMessage = serde_json::from_str(&message.body).unwrap();
                email::send::handle(&deps, parsed).await.unwrap();
                self.transport
                    .delete(EMAIL.name, &[message.receipt])
                    .await
                    .unwrap();
            }
        }
        Mailbox::new(&self.mailbox).read_all().unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.mailbox).ok();
    }
}

#[tokio::test]
async fn addresses_posted_through_a_public_token_never_get_email() {
    let stack = Stack::new().await;
    let now = Utc::now();
    let signed_up_at = d1_due_signup(&Rules::default(), now);
    let ada = user(
        &stack.db.client().await,
        stack.workspace,
        "ada",
        &signed_up_at.to_rfc3339(),
        None,
    )
    .await;
    let at = signed_up_at.to_rfc3339();
    stack
        .capture(vec![
            // A stranger's address signed up under the tenant's token, as anyone can post it.
            json!({"event": "signed_up", "distinct_id": "victim", "timestamp": at,
                   "properties": {"$set": {"email": "victim@example.com", "name": "Victim"}}}),
            // The attacker claims Ada's id, to move her mail to their address.
            json!({"event": "$identify", "distinct_id": ada.to_string(), "timestamp": at,
                   "properties": {"$set": {"email": "attacker@evil.test"}}}),
            json!({"event": "signed_up", "distinct_id": ada.to_string(), "timestamp": at,
                   "properties": {"$set": {"email": "attacker@evil.test"}}}),
        ])
        .await;

    let emails = stack.sweep_and_send(now).await;
    let recipients: Vec<&Value> = emails.iter().map(|email| &email["to"]).collect();
    assert_eq!(
        recipients,
        vec![&json!(["ada@example.com"])],
        "only the member, at the address Auth confirmed"
    );
    let client = stack.db.client().await;
    let sends: i64 = client
        .query_one("SELECT count(*) FROM email_sends", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sends, 1);
    // The audience's signups still count for the tenant.
    let audience_signups: i64 = client
        .query_one(
            "SELECT count(*) FROM users WHERE workspace_id = $1 AND signed_up_at IS NOT NULL",
            &[&stack.workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audience_signups, 2);
}

#[tokio::test]
async fn a_members_d1_shows_their_workspace_and_its_best_open_suggestions() {
    let stack = Stack::new().await;
    let now = Utc::now();
    let signed_up_at = d1_due_signup(&Rules::default(), now);
    let client = stack.db.client().await;
    user(
        &client,
        stack.workspace,
        "ada",
        &signed_up_at.to_rfc3339(),
        None,
    )
    .await;
    client
        .execute(
            "INSERT INTO daily_metrics (workspace_id, date, currency, spend, impressions, clicks,
                    conversions, conversion_value, orders, gross_revenue, refunds, net_revenue,
                    new_customers, subscription_revenue, mrr, new_mrr, expansion_mrr,
                    contraction_mrr, churned_mrr, reactivation_mrr, active_subscriptions, revenue,
                    events, dau, wau, mau, signups)
             VALUES ($1, $2, 'USD', 1234.5, 1, 1, 1, 1, 57, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                     4938, 12408, 1, 1, 1, 1)",
            &[&stack.workspace, &signed_up_at.date_naive()],
        )
        .await
        .unwrap();
    // Four open suggestions and one already judged: the email lists the best three open.
    for (explanation, score, status) in [
        ("Pause ad 7", 0.2, "open"),
        ("Shift budget to Prospecting", 0.9, "open"),
        ("Raise the Brand budget", 0.7, "open"),
        ("Fix the purchase pixel", 0.5, "open"),
        ("Already accepted", 0.99, "accepted"),
    ] {
        client
            .execute(
                "INSERT INTO suggestions (workspace_id, kind, target, explanation, expected_impact,
                                          features, score, model_version, status)
                 VALUES ($1, 'pause_ad', $2, $2, 1, '[]', $3, 'v0', $4)",
                &[&stack.workspace, &explanation, &score, &status],
            )
            .await
            .unwrap();
    }

    let emails = stack.sweep_and_send(now).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let text = emails[0]["text"].as_str().unwrap();
    for expected in [
        "Lovelace Labs",
        "USD 1,234.50",
        "USD 4,938.00",
        "57",
        "https://app.example.test/",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .collect();
    assert_eq!(
        listed,
        [
            "Shift budget to Prospecting",
            "Raise the Brand budget",
            "Fix the purchase pixel"
        ]
    );
    let html = emails[0]["html"].as_str().unwrap();
    assert!(
        html.contains("<li>Shift budget to Prospecting</li>"),
        "{html}"
    );
}

#[tokio::test]
async fn members_the_sender_must_not_write_to_are_skipped_with_the_reason() {
    let stack = Stack::new().await;
    let client = stack.db.client().await;
    let deps = sender(&stack.db.pool(2), Arc::new(Mailbox::new(&stack.mailbox)));
    let signed_up = "2026-11-30T10:00:00Z";
    let unconfirmed = user(&client, stack.workspace, "unconfirmed", signed_up, None).await;
    client
        .execute(
            "UPDATE auth.users SET email_confirmed_at = NULL WHERE id = $1",
            &[&unconfirmed],
        )
        .await
        .unwrap();
    let alone = user(&client, stack.workspace, "alone", signed_up, None).await;
    client
        .execute(
            "DELETE FROM workspace_members WHERE user_id = $1",
            &[&alone],
        )
        .await
        .unwrap();
    let unsubscribed = user(&client, stack.workspace, "unsubscribed", signed_up, None).await;
    client
        .execute(
            "INSERT INTO member_email_unsubscribes (member_id, method) VALUES ($1, 'link')",
            &[&unsubscribed],
        )
        .await
        .unwrap();
    let bounced = user(&client, stack.workspace, "bounced", signed_up, None).await;
    client
        .execute(
            "INSERT INTO email_suppressions (address, reason) VALUES ('bounced@example.com', 'bounced')",
            &[],
        )
        .await
        .unwrap();
    for (member, reason) in [
        (unconfirmed, "no confirmed email address"),
        (alone, "not a member of any workspace"),
        (unsubscribed, "unsubscribed"),
        (bounced, "address suppressed after a bounce or complaint"),
        (Uuid::new_v4(), "member no longer exists"),
    ] {
        let request = SendCampaignEmail {
            member_id: member,
            campaign: Campaign::D1,
            due_at: Utc::now() - chrono::Duration::hours(1),
        };
        assert_eq!(
            email::send::send_campaign(&deps, &request, Utc::now())
                .await
                .unwrap(),
            SendOutcome::Skipped {
                reason: reason.into()
            },
            "{reason}"
        );
    }
    assert!(Mailbox::new(&stack.mailbox).read_all().unwrap().is_empty());
}

#[tokio::test]
async fn a_send_queued_for_an_audience_person_is_acknowledged_and_not_sent() {
    let stack = Stack::new().await;
    let client = stack.db.client().await;
    let person: Uuid = client
        .query_one(
            "INSERT INTO users (workspace_id, distinct_id, email, signed_up_at)
             VALUES ($1, 'visitor', 'visitor@example.com', now() - interval '1 day') RETURNING id",
            &[&stack.workspace],
        )
        .await
        .unwrap()
        .get(0);
    // As the sweep queued it before recipients were members.
    let body = json!({"workspace_id": stack.workspace, "user_id": person, "campaign": "d1",
                      "due_at": Utc::now() - chrono::Duration::hours(1)});
    let message: EmailQueueMessage = serde_json::from_value(body).unwrap();
    let deps = sender(&stack.db.pool(2), Arc::new(Mailbox::new(&stack.mailbox)));
    email::send::handle(&deps, message).await.unwrap();
    assert!(Mailbox::new(&stack.mailbox).read_all().unwrap().is_empty());
    let sends: i64 = client
        .query_one("SELECT count(*) FROM email_sends", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sends, 0);
}
