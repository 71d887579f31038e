//! Demo mode: data that makes every agent visibly do its job in a fresh local stack.
//!
//! So far: a handful of people who signed up about a day ago, recorded through the analytics
//! agent's own writer (as if PostHog had sent their `signed_up` events), timed so that their
//! D1 email is due now; the first email sweep then queues their D1 emails and the mailbox
//! folder fills. Seeding twice changes nothing: event ids are derived from the person, and
//! the earliest signup wins.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use shared::db::{DbContext, Pool};
use shared::queue::outbox::Outbox;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::LOCAL_POSTHOG_TOKEN;

/// Who signs up in the demo.
pub const DEMO_PEOPLE: &[(&str, &str, &str)] = &[
    ("demo-ada", "Ada Lovelace", "ada@demo.growth-agents.local"),
    (
        "demo-grace",
        "Grace Hopper",
        "grace@demo.growth-agents.local",
    ),
    ("demo-alan", "Alan Turing", "alan@demo.growth-agents.local"),
];

/// Namespace of the demo's event ids.
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x9d3e_61b0_2a7c_4c55_8f14_c0de_de30_0001);

/// What was seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub workspace: Uuid,
    pub signups: usize,
}

/// Seeds the demo into the local workspace (the one holding the local PostHog token, else the
/// oldest).
pub async fn seed(
    pool: &Pool,
    outbox: &Outbox,
    campaigns: &email::campaigns::Rules,
    now: DateTime<Utc>,
) -> anyhow::Result<Seeded> {
    let workspace: Uuid = {
        let client = pool.get().await.context("check out a connection")?;
        client
            .query_typed_one(
                "SELECT COALESCE(
                     (SELECT workspace_id FROM workspace_tokens WHERE token = $1),
                     (SELECT id FROM workspaces ORDER BY created_at, id LIMIT 1))",
                &[(&LOCAL_POSTHOG_TOKEN, Type::TEXT)],
            )
            .await
            .context("find the local workspace")?
            .try_get(0)
            .map_err(|_| anyhow::anyhow!("no workspace to seed the demo into"))?
    };
    let signed_up_at = d1_due_signup(campaigns, now);
    let events: Vec<analytics::events::Event> = DEMO_PEOPLE
        .iter()
        .map(|(distinct_id, name, address)| analytics::events::Event {
            id: Uuid::new_v5(&DEMO_NAMESPACE, distinct_id.as_bytes()),
            distinct_id: (*distinct_id).to_string(),
            name: "signed_up".into(),
            timestamp: signed_up_at,
            properties: json!({ "$set": { "email": address, "name": name } }),
            token: None,
        })
        .collect();
    let (stored, pending) = analytics::store::store(
        pool,
        outbox,
        workspace,
        analytics::events::Source::Posthog,
        &events,
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
        .map(|hours| now - Duration::hours(hours))
        .find(|signup| rule.is_due(*signup, chrono_tz::Tz::UTC, now))
        .unwrap_or(now - Duration::hours(24))
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
