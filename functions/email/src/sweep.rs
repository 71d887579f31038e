//! The hourly sweep: who is due which campaign now.
//!
//! For each enabled campaign the database narrows signups to a coarse range around the
//! campaign's day (using the signup index) and leaves out users with an address problem or
//! an earlier send row; the exact decision — the due window in the user's timezone, and the
//! campaign's activity condition — is [`CampaignRule::is_due`] in Rust. Each chosen user becomes
//! a [`SendCampaignEmail`] on `email.fifo`, deduplicated by user and campaign, so sweeps that
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
use uuid::Uuid;

use crate::EmailError;
use crate::campaigns::{Campaign, CampaignRule, Rules, timezone_of};
use crate::send::SendCampaignEmail;

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

/// Finds the users due a campaign at `now` and queues one message each.
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

/// The users due `campaign` at `now`, and how many due users its activity condition left out.
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
    // Activity is what the user did in the product: the email agent's own events (opens,
    // clicks) are not a visit.
    let rows = transaction
        .query_typed(
            "SELECT u.id, u.workspace_id, u.signed_up_at, u.timezone, w.timezone,
                    $4::timestamptz IS NOT NULL AND EXISTS (
                        SELECT 1 FROM events e
                         WHERE e.workspace_id = u.workspace_id AND e.distinct_id = u.distinct_id
                           AND e.timestamp > $4 AND e.timestamp <= $5 AND e.source <> 'email')
               FROM users u JOIN workspaces w ON w.id = u.workspace_id
              WHERE u.signed_up_at > $1 AND u.signed_up_at <= $2
                AND u.email LIKE '%@%'
                AND NOT EXISTS (SELECT 1 FROM email_sends s WHERE s.user_id = u.id AND s.campaign = $3)
                AND NOT EXISTS (SELECT 1 FROM email_unsubscribes x WHERE x.user_id = u.id)
                AND NOT EXISTS (SELECT 1 FROM email_suppressions p WHERE p.address = lower(u.email))
              ORDER BY u.signed_up_at, u.id",
            &[
                (&low, Type::TIMESTAMPTZ),
                (&high, Type::TIMESTAMPTZ),
                (&campaign.as_str(), Type::TEXT),
                (&active_since, Type::TIMESTAMPTZ),
                (&now, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .context("find users due a campaign")?;
    transaction
        .commit()
        .await
        .context("end the read of due users")?;
    let mut due = Vec::new();
    let mut skipped_active = 0;
    for row in rows {
        let signed_up_at: DateTime<Utc> = row.get(2);
        let timezone = timezone_of(row.get::<_, Option<&str>>(3), row.get::<_, Option<&str>>(4));
        let (start, end) = rule.due_window(signed_up_at, timezone);
        if !(start <= now && now < end) {
            continue;
        }
        if row.get::<_, bool>(5) {
            skipped_active += 1;
            continue;
        }
        let user_id: Uuid = row.get(0);
        due.push(SendCampaignEmail {
            workspace_id: row.get(1),
            user_id,
            campaign,
            due_at: start,
        });
    }
    Ok((due, skipped_active))
}
