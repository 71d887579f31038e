//! Demo mode: a fresh local stack that shows every agent doing its job within a minute or two.
//!
//! [`seed`] prepares the local workspace: Meta, TikTok and Shopify connections pointing at the
//! stand-ins (mounted on the stack's own port), a member who gives feedback, and three people
//! who signed up about a day ago (through the analytics writer, as if PostHog had sent their
//! `signed_up` events) so their D1 email is due at once. Seeding twice changes nothing.
//!
//! [`drive`] then plays the outside world against the stack's real routes, the way the
//! platforms would: it fires each ETL dispatch, the email sweep and a relay pass at once, sends a stream of PostHog
//! events and signed Stripe webhooks, one signed Shopify order webhook, reads `GET /metrics`,
//! reports each D1 email delivered (and some opened) through signed Resend webhooks, judges
//! the suggestions the metrics produce through the feedback API (two in three accepted) and
//! retrains the ranker once they are judged. After that burst it keeps a trickle of events
//! and payments flowing until the stack stops.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::db::{DbContext, Pool};
use shared::lambda::schedule::Tick;
use shared::queue::outbox::Outbox;
use shared::schedule::{
    EMAIL_SWEEP, ETL_META, ETL_SHOPIFY, ETL_TIKTOK, OUTBOX_RELAY, SUGGESTIONS_RETRAIN, Schedule,
};
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::LOCAL_POSTHOG_TOKEN;
use standins::meta::{DEFAULT_META_ACCOUNT, DEFAULT_META_TOKEN};
use standins::shopify::{DEFAULT_SHOP, DEFAULT_SHOPIFY_TOKEN};
use standins::tiktok::{DEFAULT_TIKTOK_ADVERTISER, DEFAULT_TIKTOK_TOKEN};
use standins::{Handles, ShopifyTopic};

/// The members who sign up for the product in the demo, joining the demo workspace; each is
/// due their D1 email.
pub const DEMO_PEOPLE: &[(&str, &str, &str)] = &[
    ("demo-ada", "Ada Lovelace", "ada@demo.growth-agents.local"),
    (
        "demo-grace",
        "Grace Hopper",
        "grace@demo.growth-agents.local",
    ),
    ("demo-alan", "Alan Turing", "alan@demo.growth-agents.local"),
];

/// The workspace member whose JWT judges suggestions in the demo.
pub const DEMO_MEMBER: Uuid = Uuid::from_u128(0x9d3e_61b0_2a7c_4c55_8f14_c0de_de30_00aa);
/// Their confirmed address, where their lifecycle emails go.
pub const DEMO_MEMBER_EMAIL: &str = "owner@demo.growth-agents.local";

/// An access token of [`DEMO_MEMBER`] as the local Supabase project signs it (HS256 with its
/// legacy secret), valid for `ttl` from `now`.
pub fn member_token(
    secret: &str,
    issuer: &str,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = json!({
        "sub": DEMO_MEMBER, "aud": "authenticated", "role": "authenticated",
        "email": DEMO_MEMBER_EMAIL, "iss": issuer,
        "iat": now.timestamp(), "exp": (now + ttl).timestamp(),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Namespace of the demo's event ids.
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x9d3e_61b0_2a7c_4c55_8f14_c0de_de30_0001);

/// How long the burst may take, counted from the end of the kick-off (which on a loaded
/// machine can itself take a while), before the driver settles into its trickle.
const BURST: Duration = Duration::from_secs(240);

/// What was seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub workspace: Uuid,
    /// Signups of the workspace's audience: they count in its metrics and get no email.
    pub signups: usize,
}

/// The workspace's audience: visitors of the tenant's shop who sign up there. Their
/// addresses arrive in analytics events, so nothing is ever sent to them.
pub const DEMO_AUDIENCE: &[(&str, &str)] = &[
    ("visitor-1", "visitor-1@shop.demo.growth-agents.local"),
    ("visitor-2", "visitor-2@shop.demo.growth-agents.local"),
    ("visitor-3", "visitor-3@shop.demo.growth-agents.local"),
];

/// Everything the driver talks to.
pub struct Demo {
    /// `http://127.0.0.1:port` of the stack itself.
    pub origin: String,
    pub pool: Pool,
    /// The same schedule handlers the stack's own timers call.
    pub schedules: Arc<crate::Schedules>,
    pub standins: Handles,
    pub workspace: Uuid,
    pub stripe_secret: String,
    pub shopify_secret: String,
    pub resend_secret: String,
    pub jwt_secret: String,
    /// The `iss` of the project's access tokens.
    pub jwt_issuer: String,
    /// The stack's clock: what the outside world's timestamps and signatures are made with.
    pub clock: shared::clock::Clock,
}

/// Seeds the demo into the local workspace (the one holding the local PostHog token, else the
/// oldest).
pub async fn seed(
    pool: &Pool,
    outbox: &Outbox,
    campaigns: &email::campaigns::Rules,
    keys: &shared::crypto::Keys,
    now: DateTime<Utc>,
) -> anyhow::Result<Seeded> {
    let client = pool.get().await.context("check out a connection")?;
    let workspace: Uuid = client
        .query_typed_one(
            "SELECT COALESCE(
                 (SELECT workspace_id FROM workspace_tokens WHERE token = $1),
                 (SELECT id FROM workspaces WHERE NOT is_product ORDER BY created_at, id LIMIT 1))",
            &[(&LOCAL_POSTHOG_TOKEN, Type::TEXT)],
        )
        .await
        .context("find the local workspace")?
        .try_get(0)
        .map_err(|_| anyhow::anyhow!("no workspace to seed the demo into"))?;
    let connected = client
        .query_typed(
            "INSERT INTO connections (workspace_id, platform, external_account_id, currency)
             VALUES ($1, 'meta', $2, 'USD'), ($1, 'tiktok', $3, 'USD'), ($1, 'shopify', $4, 'USD')
             ON CONFLICT (platform, external_account_id) DO NOTHING
             RETURNING id, platform",
            &[
                (&workspace, Type::UUID),
                (&DEFAULT_META_ACCOUNT, Type::TEXT),
                (&DEFAULT_TIKTOK_ADVERTISER, Type::TEXT),
                (&DEFAULT_SHOP, Type::TEXT),
            ],
        )
        .await
        .context("connect the demo ad accounts and shop")?;
    // Tokens are stored sealed, as every token is (etl::tokens).
    for row in &connected {
        let token = match row.get::<_, &str>(1) {
            "meta" => DEFAULT_META_TOKEN,
            "tiktok" => DEFAULT_TIKTOK_TOKEN,
            _ => DEFAULT_SHOPIFY_TOKEN,
        };
        let stored = etl::tokens::store(&**client, keys, row.get(0), token).await;
        anyhow::Context::context(stored, "store a demo access token")?;
    }
    // The demo member signs up as Supabase Auth records a confirmed signup.
    client
        .execute_typed(
            "INSERT INTO auth.users (id, aud, role, email, email_confirmed_at, created_at, updated_at)
             VALUES ($1, 'authenticated', 'authenticated', $2, now(), now(), now())
             ON CONFLICT DO NOTHING",
            &[(&DEMO_MEMBER, Type::UUID), (&DEMO_MEMBER_EMAIL, Type::TEXT)],
        )
        .await
        .context("sign the demo member up")?;
    client
        .execute_typed(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, 'owner')
             ON CONFLICT DO NOTHING",
            &[(&workspace, Type::UUID), (&DEMO_MEMBER, Type::UUID)],
        )
        .await
        .context("add the demo member")?;
    // The members sign up through Supabase Auth (here: its row as Auth writes it, whose
    // trigger announces the signup) about a day ago, and join the workspace.
    let signed_up_at = d1_due_signup(campaigns, now);
    for (handle, name, address) in DEMO_PEOPLE {
        let member = Uuid::new_v5(&DEMO_NAMESPACE, handle.as_bytes());
        client
            .execute_typed(
                "WITH member AS (
                     INSERT INTO auth.users (id, aud, role, email, email_confirmed_at,
                                             raw_user_meta_data, created_at, updated_at)
                     VALUES ($1, 'authenticated', 'authenticated', $2, $4,
                             jsonb_build_object('name', $3::text), $4, $4)
                     ON CONFLICT DO NOTHING
                     RETURNING id)
                 INSERT INTO workspace_members (workspace_id, user_id, role)
                 SELECT $5, id, 'member' FROM member",
                &[
                    (&member, Type::UUID),
                    (address, Type::TEXT),
                    (name, Type::TEXT),
                    (&signed_up_at, Type::TIMESTAMPTZ),
                    (&workspace, Type::UUID),
                ],
            )
            .await
            .context("sign a demo member up")?;
    }
    drop(client);
    let events: Vec<analytics::events::Event> = DEMO_AUDIENCE
        .iter()
        .map(|(distinct_id, address)| analytics::events::Event {
            id: Uuid::new_v5(&DEMO_NAMESPACE, distinct_id.as_bytes()),
            distinct_id: (*distinct_id).to_string(),
            name: "signed_up".into(),
            timestamp: signed_up_at,
            properties: json!({ "$set": { "email": address } }),
            token: None,
        })
        .collect();
    let (stored, pending) = analytics::store::store(
        pool,
        outbox,
        workspace,
        analytics::events::Source::Posthog,
        &events,
        now,
    )
    .await?;
    outbox.dispatch(&pending).await?;
    Ok(Seeded {
        workspace,
        signups: stored.signups,
    })
}

/// A signup time, about a day before `now`, for which D1 is due now in UTC (the demo
/// workspace's timezone) under the configured send hour.
fn d1_due_signup(campaigns: &email::campaigns::Rules, now: DateTime<Utc>) -> DateTime<Utc> {
    let rule = &campaigns.d1;
    (24..72)
        .map(|hours| now - chrono::Duration::hours(hours))
        .find(|signup| rule.is_due(*signup, chrono_tz::Tz::UTC, now))
        .unwrap_or(now - chrono::Duration::hours(24))
}

/// What the burst still has to do.
#[derive(Debug, Default)]
struct Progress {
    emails_reported: bool,
    suggestions_judged: bool,
    retrained: bool,
}

impl Progress {
    fn done(&self) -> bool {
        self.emails_reported && self.suggestions_judged && self.retrained
    }
}

/// Plays the outside world until `stop`.
pub async fn drive(demo: Demo, stop: CancellationToken) {
    let http = reqwest::Client::new();
    let kick_off = async {
        demo.dispatch_etl().await;
        demo.fire(&EMAIL_SWEEP).await;
        demo.fire(&OUTBOX_RELAY).await;
        demo.send_posthog(&http, 120, 0).await;
        demo.send_stripe(&http, 0..5).await;
        demo.send_shopify_order(&http).await;
    };
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = kick_off => {}
    }
    let started = tokio::time::Instant::now();
    let mut progress = Progress::default();
    let mut round = 0_u64;
    loop {
        round += 1;
        let pause = if progress.done() || started.elapsed() > BURST {
            // The trickle: a few events and a payment now and then.
            demo.send_posthog(&http, 5, round).await;
            if round.is_multiple_of(6) {
                demo.send_stripe(&http, round..round + 1).await;
            }
            Duration::from_secs(10)
        } else {
            if !progress.emails_reported {
                progress.emails_reported = demo.report_email_outcomes(&http).await;
            }
            if !progress.suggestions_judged {
                progress.suggestions_judged = demo.judge_suggestions(&http).await;
            }
            if progress.suggestions_judged && !progress.retrained {
                progress.retrained = demo.fire(&SUGGESTIONS_RETRAIN).await;
                demo.read_metrics(&http).await;
            }
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Logs a failed step of the demo; the demo goes on.
fn warn_on_error<T, E: std::fmt::Display>(step: &str, result: Result<T, E>) -> Option<T> {
    result
        .map_err(|error| tracing::warn!(step, %error, "demo step failed"))
        .ok()
}

impl Demo {
    /// Fires `schedule` now rather than at its next tick, through the handler its timer
    /// calls; true when it succeeded.
    async fn fire(&self, schedule: &'static Schedule) -> bool {
        let tick = Tick {
            schedule,
            at: self.clock.now(),
        };
        warn_on_error(schedule.name, self.schedules.fire(tick).await).is_some()
    }

    async fn dispatch_etl(&self) {
        for schedule in [&ETL_META, &ETL_TIKTOK, &ETL_SHOPIFY] {
            self.fire(schedule).await;
        }
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Option<Value> {
        let mut request = http.post(format!("{}{path}", self.origin)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = warn_on_error(path, request.send().await)?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            tracing::warn!(path, %status, %answer, "demo request refused");
            return None;
        }
        Some(answer)
    }

    /// `count` events from visitors, through PostHog's batch capture API.
    async fn send_posthog(&self, http: &reqwest::Client, count: usize, round: u64) {
        let now = self.clock.now();
        let names = [
            "$pageview",
            "$pageview",
            "$pageview",
            "clicked_cta",
            "added_to_cart",
        ];
        let batch: Vec<Value> = (0..count)
            .map(|i| {
                json!({
                    "event": names[i % names.len()],
                    "distinct_id": format!("demo-visitor-{}", (i as u64 + round * 7) % 40),
                    "uuid": Uuid::new_v4().to_string(),
                    "timestamp": now.to_rfc3339(),
                    "properties": {"$current_url": "https://shop.example/demo"},
                })
            })
            .collect();
        let body = json!({ "api_key": LOCAL_POSTHOG_TOKEN, "batch": batch }).to_string();
        self.post(
            http,
            "/batch/",
            &[("content-type", "application/json".into())],
            body,
        )
        .await;
    }

    /// For each `n`: a customer of the workspace, a $49/month subscription and its payment,
    /// signed as Stripe signs them.
    async fn send_stripe(&self, http: &reqwest::Client, customers: std::ops::Range<u64>) {
        for n in customers {
            let customer = format!("cus_demo{n}");
            let objects = [
                (
                    "customer.created",
                    json!({"id": customer, "object": "customer", "email": format!("buyer{n}@demo.growth-agents.local"),
                           "metadata": {"workspace_id": self.workspace.to_string()}}),
                ),
                (
                    "customer.subscription.created",
                    json!({"id": format!("sub_demo{n}"), "object": "subscription", "customer": customer,
                           "status": "active", "currency": "usd",
                           "items": {"data": [{"id": format!("si_demo{n}"), "quantity": 1,
                               "price": {"id": "price_demo_pro", "unit_amount": 4900, "currency": "usd",
                                         "recurring": {"interval": "month", "interval_count": 1}}}]}}),
                ),
                (
                    "charge.succeeded",
                    json!({"id": format!("ch_demo{n}"), "object": "charge", "customer": customer,
                           "amount": 4900, "amount_refunded": 0, "currency": "usd", "paid": true,
                           "status": "succeeded", "created": self.clock.now().timestamp()}),
                ),
            ];
            for (kind, object) in objects {
                let body = json!({
                    "id": format!("evt_demo_{kind}_{n}"), "object": "event", "api_version": "2024-06-20",
                    "created": self.clock.now().timestamp(), "livemode": false, "type": kind,
                    "data": {"object": object},
                })
                .to_string();
                let signature = shared::webhook::sign_stripe(
                    body.as_bytes(),
                    &self.stripe_secret,
                    self.clock.now().timestamp(),
                );
                self.post(
                    http,
                    "/webhooks/stripe",
                    &[("stripe-signature", signature)],
                    body,
                )
                .await;
            }
        }
    }

    /// A new order in the demo shop, announced by its signed `orders/create` webhook.
    async fn send_shopify_order(&self, http: &reqwest::Client) {
        let Some(ids) = warn_on_error(
            "add an order",
            self.standins.shopify.add_orders(DEFAULT_SHOP, 1),
        ) else {
            return;
        };
        for id in ids {
            let delivery = self.standins.shopify.webhook(
                DEFAULT_SHOP,
                ShopifyTopic::OrdersCreate,
                id,
                &self.shopify_secret,
            );
            let Some(delivery) = warn_on_error("sign the order webhook", delivery) else {
                continue;
            };
            let headers: Vec<(&str, String)> = delivery
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone()))
                .collect();
            let body = String::from_utf8_lossy(&delivery.body).into_owned();
            self.post(http, "/webhooks/shopify", &headers, body).await;
        }
    }

    /// Reports every sent email delivered (and every other one opened), as Resend's signed
    /// webhooks; true once every sent email has been reported.
    async fn report_email_outcomes(&self, http: &reqwest::Client) -> bool {
        let Some(client) = warn_on_error("connect", self.pool.get().await) else {
            return false;
        };
        let Some(rows) = warn_on_error(
            "read sends",
            client
                .query_typed(
                    "SELECT provider_message_id, to_address FROM email_sends
                      WHERE status = 'sent' AND provider_message_id IS NOT NULL AND delivered_at IS NULL",
                    &[],
                )
                .await,
        ) else {
            return false;
        };
        drop(client);
        for (index, row) in rows.iter().enumerate() {
            let (email_id, to): (String, Option<String>) = (row.get(0), row.get(1));
            let mut kinds = vec!["email.delivered"];
            if index % 2 == 0 {
                kinds.push("email.opened");
            }
            for kind in kinds {
                let body = json!({
                    "type": kind, "created_at": self.clock.now().to_rfc3339(),
                    "data": {"email_id": email_id, "to": [to], "created_at": self.clock.now().to_rfc3339()},
                })
                .to_string();
                let id = format!("msg_demo_{kind}_{email_id}");
                let timestamp = self.clock.now().timestamp();
                let Some(signature) = warn_on_error(
                    "sign a Resend webhook",
                    shared::webhook::sign_svix(
                        body.as_bytes(),
                        &id,
                        timestamp,
                        &self.resend_secret,
                    ),
                ) else {
                    return false;
                };
                let headers = [
                    ("svix-id", id),
                    ("svix-timestamp", timestamp.to_string()),
                    ("svix-signature", signature),
                    ("content-type", "application/json".into()),
                ];
                self.post(http, "/webhooks/resend", &headers, body).await;
            }
        }
        rows.is_empty() && self.sent_any_email().await
    }

    async fn sent_any_email(&self) -> bool {
        let Some(client) = warn_on_error("connect", self.pool.get().await) else {
            return false;
        };
        client
            .query_typed_one(
                "SELECT EXISTS (SELECT 1 FROM email_sends WHERE status = 'sent')",
                &[],
            )
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false)
    }

    /// The demo member's Supabase access token.
    fn member_token(&self) -> Option<String> {
        warn_on_error(
            "sign the member's token",
            member_token(
                &self.jwt_secret,
                &self.jwt_issuer,
                self.clock.now(),
                chrono::Duration::hours(1),
            ),
        )
    }

    /// Judges every open suggestion through the feedback API (two in three accepted); true
    /// once there were suggestions and none is left unjudged.
    async fn judge_suggestions(&self, http: &reqwest::Client) -> bool {
        let Some(token) = self.member_token() else {
            return false;
        };
        let listed = http
            .get(format!(
                "{}/suggestions?workspace={}",
                self.origin, self.workspace
            ))
            .bearer_auth(&token)
            .send()
            .await;
        let Some(response) = warn_on_error("list suggestions", listed) else {
            return false;
        };
        let listed: Value = response.json().await.unwrap_or(Value::Null);
        let open: Vec<String> = listed["suggestions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|suggestion| suggestion["id"].as_str().map(str::to_string))
            .collect();
        if open.is_empty() {
            return self.judged_any().await;
        }
        for (index, id) in open.iter().enumerate() {
            let verdict = if index % 3 == 2 {
                "rejected"
            } else {
                "accepted"
            };
            let body = json!({ "verdict": verdict, "reason": "demo" }).to_string();
            let headers = [
                ("authorization", format!("Bearer {token}")),
                ("content-type", "application/json".into()),
            ];
            self.post(http, &format!("/suggestions/{id}/feedback"), &headers, body)
                .await;
        }
        false
    }

    async fn judged_any(&self) -> bool {
        let Some(client) = warn_on_error("connect", self.pool.get().await) else {
            return false;
        };
        client
            .query_typed_one("SELECT EXISTS (SELECT 1 FROM suggestion_feedback)", &[])
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false)
    }

    /// Reads the workspace's metrics and its health as the frontend does: as the demo member.
    async fn read_metrics(&self, http: &reqwest::Client) {
        let Some(token) = self.member_token() else {
            return;
        };
        let today = self.clock.now().date_naive();
        let from = today - chrono::Duration::days(29);
        for path in [
            format!(
                "/metrics?workspace={}&from={from}&to={today}",
                self.workspace
            ),
            format!("/status/workspace.json?workspace={}", self.workspace),
        ] {
            let read = http
                .get(format!("{}{path}", self.origin))
                .bearer_auth(&token)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            warn_on_error("read as the member", read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_signups_are_due_their_d1_whatever_the_hour() {
        let rules = email::campaigns::Rules::default();
        for hour in 0..24 {
            let now: DateTime<Utc> = format!("2026-12-01T{hour:02}:30:00Z").parse().unwrap();
            let signup = d1_due_signup(&rules, now);
            assert!(rules.d1.is_due(signup, chrono_tz::Tz::UTC, now), "{now}");
        }
    }
}
