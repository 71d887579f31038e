//! The hourly sweep: who is due which campaign now.
//!
//! The recipients are members (Supabase Auth users with a confirmed address and a
//! workspace), never the audience persons whose addresses arrive in analytics events. For
//! each enabled campaign the database narrows signups to a coarse range around the
//! campaign's day and leaves out members with an address problem or an earlier send row;
//! the exact decision — the due window in the member's timezone (their profile's, else their
//! workspace's), and the campaign's activity condition — is [`CampaignRule::is_due`] in
//! Rust. Each chosen member becomes a [`SendCampaignEmail`] on `email.fifo`, deduplicated by
//! member and campaign, so sweeps that
//! overlap (a retried tick, two hours catching up) queue one message. Each campaign's read
//! is a transaction under [`Budget::BACKGROUND`]: a statement that cannot finish in time fails
//! the tick, and the next hour's sweep catches up.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::agents::Agent;
use shared::db::{Budget, DbContext, Pool};
use shared::entry::OnTick;
use shared::lambda::Container;
use shared::lambda::schedule::Tick;
use shared::queue::{Message, OutgoingMessage, Transport};
use shared::runs::RunLog;
use shared::settings::{Env, SettingsError};
use tokio_postgres::types::Type;

use crate::EmailError;
use crate::campaigns::{Campaign, CampaignRule, Rules, timezone_of};
use crate::send::{PRIMARY_WORKSPACE, SendCampaignEmail};

/// The `email-sweep` function's settings: the campaign rules (`EMAIL_CAMPAIGNS_FILE`, else
/// the shipped `campaigns.toml`).
#[derive(Debug, Clone)]
pub struct Config {
    pub rules: Rules,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        let rules = Rules::from_lookup(env.0).map_err(|error| SettingsError::Malformed {
            name: "EMAIL_CAMPAIGNS_FILE",
            reason: error.to_string(),
        })?;
        Ok(Self { rules })
    }

    /// The shipped rules.
    pub fn local() -> Self {
        Self {
            rules: Rules::default(),
        }
    }
}

/// What the sweep reads and where it queues.
pub struct SweepDeps {
    pub pool: Pool,
    pub transport: Arc<dyn Transport>,
    pub rules: Rules,
}

impl SweepDeps {
    pub fn new(container: &Container, config: Config) -> Self {
        Self {
            pool: container.pool.clone(),
            transport: container.transport.clone(),
            rules: config.rules,
        }
    }
}

/// The `email-sweep` schedule, recorded in the run log.
pub fn on_tick(deps: Arc<SweepDeps>) -> OnTick {
    let runs = RunLog::new(deps.pool.clone(), Agent::EmailSweep);
    OnTick::new(runs, move |tick: Tick| {
        let deps = deps.clone();
        async move { sweep(&deps.pool, deps.transport.as_ref(), &deps.rules, tick.at).await }
    })
}

/// What one sweep did, per campaign.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub enqueued: BTreeMap<Campaign, usize>,
    /// Due, but left out by the campaign's activity condition.
    pub skipped_active: BTreeMap<Campaign, usize>,
}

/// Finds the members due a campaign at `now` and queues one message each.
pub async fn sweep(
    pool: &Pool,
    transport: &dyn Transport,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<SweepReport, EmailError> {
    let mut report = SweepReport::default();
    let mut messages: Vec<OutgoingMessage> = Vec::new();
    for campaign in Campaign::ALL {
        let rule = rules.get(campaign);
        if !rule.enabled {
            continue;
        }
        let (due, active) = due_users(pool, campaign, rule, now).await?;
        report.enqueued.insert(campaign, due.len());
        report.skipped_active.insert(campaign, active);
        for message in due {
            messages.push(message.to_outgoing()?);
        }
    }
    transport.send(&messages).await?;
    Ok(report)
}

/// The members due `campaign` at `now`, and how many due members its activity condition
/// left out.
pub async fn due_users(
    pool: &Pool,
    campaign: Campaign,
    rule: &CampaignRule,
    now: DateTime<Utc>,
) -> Result<(Vec<SendCampaignEmail>, usize), EmailError> {
    let mut client = pool.get().await.context("check out a connection")?;
    let transaction = shared::db::begin(&mut client, Budget::BACKGROUND).await?;
    let (low, high) = rule.signup_range(now);
    let active_since: Option<DateTime<Utc>> = rule
        .skip_if_active_within_hours
        .map(|hours| now - chrono::Duration::hours(i64::from(hours)));
    // Activity is what the member did in the app, as the product's own analytics recorded
    // it (keyed by member id); the email agent's own events (opens, clicks) are not a visit.
    // Members are few next to events, and auth.users has no index of ours: the range is
    // filtered in a scan of it.
    let rows = transaction
        .query_typed(
            &format!(
                "SELECT u.id, u.created_at, u.raw_user_meta_data->>'timezone', w.timezone,
                        $4::timestamptz IS NOT NULL AND EXISTS (
                            SELECT 1 FROM events e
                             WHERE e.workspace_id = (SELECT p.id FROM workspaces p WHERE p.is_product)
                               AND e.distinct_id = u.id::text
                               AND e.timestamp > $4 AND e.timestamp <= $5 AND e.source <> 'email')
                   FROM auth.users u CROSS JOIN LATERAL ({PRIMARY_WORKSPACE}) w
                  WHERE u.created_at > $1 AND u.created_at <= $2
                    AND u.email_confirmed_at IS NOT NULL AND u.email LIKE '%@%'
                    AND u.deleted_at IS NULL AND NOT u.is_anonymous
                    AND NOT EXISTS (SELECT 1 FROM email_sends s WHERE s.member_id = u.id AND s.campaign = $3)
                    AND NOT EXISTS (SELECT 1 FROM member_email_unsubscribes x WHERE x.member_id = u.id)
                    AND NOT EXISTS (SELECT 1 FROM email_suppressions p WHERE p.address = lower(u.email))
                  ORDER BY u.created_at, u.id"
            ),
            &[
                (&low, Type::TIMESTAMPTZ),
                (&high, Type::TIMESTAMPTZ),
                (&campaign.as_str(), Type::TEXT),
                (&active_since, Type::TIMESTAMPTZ),
                (&now, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("find members due a campaign")?;
    transaction
        .commit()
        .await
        .context("end the read of due members")?;
    let mut due = Vec::new();
    let mut skipped_active = 0;
    for row in rows {
        let signed_up_at: DateTime<Utc> = row.get(1);
        let timezone = timezone_of(row.get::<_, Option<&str>>(2), row.get::<_, Option<&str>>(3));
        let (start, end) = rule.due_window(signed_up_at, timezone);
        if !(start <= now && now < end) {
            continue;
        }
        if row.get::<_, bool>(4) {
            skipped_active += 1;
            continue;
        }
        due.push(SendCampaignEmail {
            member_id: row.get(0),
            campaign,
            due_at: start,
        });
    }
    Ok((due, skipped_active))
}
