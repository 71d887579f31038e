//! Scheduled functions: an EventBridge rule delivers a "Scheduled Event" naming the rule in
//! `resources`. The handler gets the schedule's name as defined in [`crate::schedule`], so
//! the same handler runs when the local stack fires that schedule in-process.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::{LambdaEvent, service_fn};

use super::LambdaError;
use crate::entry::OnTick;
use crate::schedule::{SCHEDULES, Schedule};

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub schedule: &'static Schedule,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TickError {
    #[error("not a scheduled event: detail-type {0:?}")]
    NotScheduled(String),
    #[error("no schedule matches rule {0:?}")]
    UnknownRule(String),
}

/// Finds the schedule an EventBridge event was fired by. Deployed rule names are prefixed
/// with the stack name, so the match is on the suffix.
pub fn tick_from_event(event: &EventBridgeEvent) -> Result<Tick, TickError> {
    if event.detail_type != "Scheduled Event" {
        return Err(TickError::NotScheduled(event.detail_type.clone()));
    }
    let rule = event
        .resources
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_default();
    let rule_name = rule.rsplit('/').next().unwrap_or_default();
    let schedule = SCHEDULES
        .iter()
        .find(|schedule| {
            rule_name == schedule.name || rule_name.ends_with(&format!("-{}", schedule.name))
        })
        .ok_or_else(|| TickError::UnknownRule(rule.clone()))?;
    Ok(Tick {
        schedule,
        at: event.time.unwrap_or_else(Utc::now),
    })
}

/// Runs a scheduled Lambda.
pub async fn serve(on_tick: OnTick) -> Result<(), LambdaError> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let on_tick = on_tick.clone();
        async move { on_tick.call(tick_from_event(&event.payload)?).await }
    }))
    .await
}
