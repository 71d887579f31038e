//! Messages agents send each other, defined once so producer and consumer agree on the body,
//! the group (what is processed in order) and the deduplication id (what makes two the same).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::queue::{Message, QueueDef, catalog};

/// Seconds per deduplication bucket: SQS FIFO forgets a dedup id after five minutes, so a flood
/// of changes to one workspace and day asks for one recompute per five minutes.
const RECOMPUTE_BUCKET_SECS: i64 = 300;

/// "The inputs of this workspace's metrics for this (UTC) day changed: recompute it."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsRecompute {
    pub workspace_id: Uuid,
    pub date: NaiveDate,
    /// Which agent asked, for the logs.
    pub source: String,
    /// The five-minute bucket the request was made in; part of the deduplication id.
    pub bucket: i64,
}

impl MetricsRecompute {
    pub fn new(workspace_id: Uuid, date: NaiveDate, source: &str, now: DateTime<Utc>) -> Self {
        Self {
            workspace_id,
            date,
            source: source.to_string(),
            bucket: now.timestamp().div_euclid(RECOMPUTE_BUCKET_SECS),
        }
    }
}

impl Message for MetricsRecompute {
    const QUEUE: &'static QueueDef = &catalog::METRICS;

    /// One workspace's recomputes run in order, never two at once.
    fn group_id(&self) -> String {
        self.workspace_id.to_string()
    }

    fn dedup_id(&self) -> String {
        format!(
            "metrics:{}:{}:{}",
            self.workspace_id, self.date, self.bucket
        )
    }
}

/// "This workspace's metrics changed: refresh its suggestions."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestionsRefresh {
    pub workspace_id: Uuid,
    /// The five-minute bucket of the request; part of the deduplication id, so a burst of
    /// recomputes asks for one refresh.
    pub bucket: i64,
}

impl SuggestionsRefresh {
    pub fn new(workspace_id: Uuid, now: DateTime<Utc>) -> Self {
        Self {
            workspace_id,
            bucket: now.timestamp().div_euclid(RECOMPUTE_BUCKET_SECS),
        }
    }
}

impl Message for SuggestionsRefresh {
    const QUEUE: &'static QueueDef = &catalog::SUGGESTIONS;

    fn group_id(&self) -> String {
        self.workspace_id.to_string()
    }

    fn dedup_id(&self) -> String {
        format!("suggestions:{}:{}", self.workspace_id, self.bucket)
    }
}

/// "This user signed up": starts the email agent's D1/D7/D30 clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSignedUp {
    pub workspace_id: Uuid,
    pub distinct_id: String,
    pub signed_up_at: DateTime<Utc>,
}

impl Message for UserSignedUp {
    const QUEUE: &'static QueueDef = &catalog::EMAIL;

    /// One user's emails are decided in order.
    fn group_id(&self) -> String {
        format!("{}:{}", self.workspace_id, self.distinct_id)
    }

    /// A user signs up once.
    fn dedup_id(&self) -> String {
        format!("signup:{}:{}", self.workspace_id, self.distinct_id)
    }
}

/// "This member signed up": a Supabase Auth user was created. Written to the outbox by the
/// trigger on `auth.users` (migration `members`), in the transaction that creates the user;
/// it starts the member's D1/D7/D30 clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSignedUp {
    pub member_id: Uuid,
    pub signed_up_at: DateTime<Utc>,
}

impl Message for MemberSignedUp {
    const QUEUE: &'static QueueDef = &catalog::EMAIL;

    /// The group and deduplication id the trigger writes; a member signs up once.
    fn group_id(&self) -> String {
        format!("member:{}", self.member_id)
    }

    fn dedup_id(&self) -> String {
        format!("member-signup:{}", self.member_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn requests_within_five_minutes_share_a_deduplication_id() {
        let workspace = Uuid::from_u128(7);
        let date = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let at = |minute, second| {
            Utc.with_ymd_and_hms(2026, 12, 1, 10, minute, second)
                .unwrap()
        };
        let first = MetricsRecompute::new(workspace, date, "billing", at(0, 1))
            .to_outgoing()
            .unwrap();
        let same_bucket = MetricsRecompute::new(workspace, date, "analytics", at(4, 59))
            .to_outgoing()
            .unwrap();
        let next_bucket = MetricsRecompute::new(workspace, date, "billing", at(5, 0))
            .to_outgoing()
            .unwrap();
        assert_eq!(first.dedup_id, same_bucket.dedup_id);
        assert_ne!(first.dedup_id, next_bucket.dedup_id);
        assert_eq!(first.group_id, workspace.to_string());
        assert_eq!(first.queue, "metrics.fifo");
    }
}
