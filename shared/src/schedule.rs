//! The schedules, defined once. In AWS each is an EventBridge rule declared in
//! `infra/template.yaml` (a test checks the two agree); the local stack fires the same
//! schedules in-process using [`Schedule::next_after`].
//!
//! Expressions use EventBridge's syntax: `rate(5 minutes)` or
//! `cron(minutes hours day-of-month month day-of-week year)`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::agents::Agent;

#[derive(Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The rule's name (prefixed with the stack name in AWS).
    pub name: &'static str,
    pub expression: &'static str,
    /// The function it invokes.
    pub target: Agent,
}

/// Sends outbox messages whose immediate dispatch did not happen, and forgets expired
/// deduplication ids.
pub const OUTBOX_RELAY: Schedule = Schedule {
    name: "outbox-relay",
    expression: "rate(1 minute)",
    target: Agent::Relay,
};

/// Each platform's ETL dispatch: one run per active connection, re-reading the platform's
/// lookback window. Ad platforms restate slowly (every six hours is plenty); orders change
/// all day.
pub const ETL_META: Schedule = Schedule {
    name: "etl-meta",
    expression: "cron(15 */6 * * ? *)",
    target: Agent::Etl,
};
pub const ETL_TIKTOK: Schedule = Schedule {
    name: "etl-tiktok",
    expression: "cron(45 */6 * * ? *)",
    target: Agent::Etl,
};
pub const ETL_SHOPIFY: Schedule = Schedule {
    name: "etl-shopify",
    expression: "rate(15 minutes)",
    target: Agent::Etl,
};

/// Refits the suggestions ranker on the day's verdicts, at night (UTC) when no one is judging.
pub const SUGGESTIONS_RETRAIN: Schedule = Schedule {
    name: "suggestions-retrain",
    expression: "cron(30 3 * * ? *)",
    target: Agent::SuggestionsRetrain,
};

/// The email agent's sweep for users due a D1/D7/D30 email. Hourly, because a campaign is due
/// from a local hour that differs by timezone; two minutes past, so a send hour that has
/// just begun is not missed by a clock running slightly early.
pub const EMAIL_SWEEP: Schedule = Schedule {
    name: "email-sweep",
    expression: "cron(2 * * * ? *)",
    target: Agent::EmailSweep,
};

pub const SCHEDULES: &[&Schedule] = &[
    &OUTBOX_RELAY,
    &ETL_META,
    &ETL_TIKTOK,
    &ETL_SHOPIFY,
    &SUGGESTIONS_RETRAIN,
    &EMAIL_SWEEP,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("schedule expression {expression:?}: {reason}")]
pub struct ExpressionError {
    expression: String,
    reason: String,
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Cadence {
    Rate(Duration),
    Cron(Box<cron::Schedule>),
}

impl Cadence {
    pub fn parse(expression: &str) -> Result<Self, ExpressionError> {
        let error = |reason: &str| ExpressionError {
            expression: expression.to_string(),
            reason: reason.to_string(),
        };
        if let Some(inner) = expression
            .strip_prefix("rate(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let (amount, unit) = inner
                .split_once(' ')
                .ok_or_else(|| error("expected `rate(<n> <unit>)`"))?;
            let amount: u64 = amount
                .parse()
                .map_err(|_| error("the amount is not a whole number"))?;
            let seconds = match (unit, amount) {
                ("minute", 1) | ("minutes", 2..) => 60,
                ("hour", 1) | ("hours", 2..) => 3600,
                ("day", 1) | ("days", 2..) => 86_400,
                _ => {
                    return Err(error(
                        "unit must be minute(s), hour(s) or day(s), singular exactly for 1",
                    ));
                }
            };
            return Ok(Self::Rate(Duration::from_secs(amount * seconds)));
        }
        if let Some(inner) = expression
            .strip_prefix("cron(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            if fields.len() != 6 {
                return Err(error(
                    "cron needs 6 fields: minutes hours day-of-month month day-of-week year",
                ));
            }
            if fields[2] != "?" && fields[4] != "?" {
                return Err(error("one of day-of-month and day-of-week must be `?`"));
            }
            // The cron crate wants seconds first and reads `?` as `*`.
            let translated = format!("0 {}", fields.join(" ").replace('?', "*"));
            let parsed =
                cron::Schedule::from_str(&translated).map_err(|e| error(&e.to_string()))?;
            return Ok(Self::Cron(Box::new(parsed)));
        }
        Err(error("expected rate(...) or cron(...)"))
    }

    /// The next firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Rate(period) => Some(after + chrono::Duration::from_std(*period).ok()?),
            Self::Cron(schedule) => schedule.after(&after).next(),
        }
    }
}

impl Schedule {
    pub fn cadence(&self) -> Result<Cadence, ExpressionError> {
        Cadence::parse(self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn every_defined_schedule_parses() {
        for schedule in SCHEDULES {
            schedule.cadence().unwrap();
        }
    }

    #[test]
    fn rates() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let next = Cadence::parse("rate(5 minutes)")
            .unwrap()
            .next_after(at)
            .unwrap();
        assert_eq!(next, at + chrono::Duration::minutes(5));
        assert!(Cadence::parse("rate(1 minutes)").is_err());
        assert!(Cadence::parse("rate(2 minute)").is_err());
        assert!(Cadence::parse("every minute").is_err());
    }

    #[test]
    fn cron_expressions_in_eventbridge_syntax() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 7, 30).unwrap();
        let hourly = Cadence::parse("cron(0 * * * ? *)").unwrap();
        assert_eq!(
            hourly.next_after(at).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 11, 0, 0).unwrap()
        );
        let daily = Cadence::parse("cron(30 3 * * ? *)").unwrap();
        assert_eq!(
            daily.next_after(at).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 2, 3, 30, 0).unwrap()
        );
        assert!(
            Cadence::parse("cron(0 * * * * *)").is_err(),
            "both day fields set"
        );
        assert!(Cadence::parse("cron(0 * * *)").is_err());
    }
}
