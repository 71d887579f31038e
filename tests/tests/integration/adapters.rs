//! The Lambda adapters, fed the sample events kept in `infra/events/` (the same files the
//! README uses with `cargo lambda invoke`).

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde::Deserialize;
use shared::lambda::schedule::{TickError, tick_from_event};
use shared::lambda::sqs::{BatchError, handle_batch};
use shared::schedule::OUTBOX_RELAY;

const SQS_FIFO_BATCH: &str = include_str!("../../../infra/events/sqs-fifo-metrics-batch.json");
const SCHEDULED: &str = include_str!("../../../infra/events/eventbridge-outbox-relay.json");
const HTTP_GET_STATUS: &str = include_str!("../../../infra/events/apigw-v2-get-status.json");

#[derive(Deserialize)]
struct Recompute {
    workspace_id: String,
    date: String,
}

fn fifo_batch() -> SqsEvent {
    serde_json::from_str(SQS_FIFO_BATCH).unwrap()
}

fn reported(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect()
}

fn ids(event: &SqsEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|record| record.message_id.clone().unwrap())
        .collect()
}

#[test]
fn the_sample_batch_is_a_fifo_batch() {
    let event = fifo_batch();
    let groups: Vec<&str> = event
        .records
        .iter()
        .map(|r| r.attributes["MessageGroupId"].as_str())
        .collect();
    assert_eq!(groups, vec!["ws-1", "ws-1", "ws-2", "ws-1"]);
    for record in &event.records {
        assert!(record.attributes.contains_key("MessageDeduplicationId"));
        assert!(record.attributes.contains_key("SequenceNumber"));
    }
}

#[tokio::test]
async fn all_succeed_means_no_failures_reported() {
    let event = fifo_batch();
    let response = handle_batch(&event, |_: Recompute| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_failure_reports_it_and_the_rest_of_its_group_only() {
    let event = fifo_batch();
    let all = ids(&event);
    let mut handled = Vec::new();
    let response = handle_batch(&event, |job: Recompute| {
        handled.push(format!("{}/{}", job.workspace_id, job.date));
        let fail = handled.len() == 1;
        async move { if fail { Err("database down") } else { Ok(()) } }
    })
    .await
    .unwrap();
    let failed = reported(&response);
    // ws-1's first message failed: ws-1's later messages are not attempted, ws-2 goes on.
    assert_eq!(failed, vec![all[0].clone(), all[1].clone(), all[3].clone()]);
    assert_eq!(
        handled,
        vec!["ws-1/2026-11-30".to_string(), "ws-2/2026-11-30".to_string()]
    );
    assert!(failed.iter().all(|id| !id.is_empty()));
}

#[tokio::test]
async fn a_malformed_body_fails_alone() {
    let mut event = fifo_batch();
    event.records[2].body = Some("{not json".into());
    let response = handle_batch(&event, |_: Recompute| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    let failed = reported(&response);
    assert_eq!(failed, vec![ids(&event)[2].clone()]);
}

#[tokio::test]
async fn a_record_without_message_id_fails_the_batch_instead_of_reporting_an_empty_id() {
    let mut event = fifo_batch();
    event.records[1].message_id = None;
    let result = handle_batch(&event, |_: Recompute| async { Ok::<(), String>(()) }).await;
    assert_eq!(
        result.unwrap_err(),
        BatchError::MissingMessageId { index: 1 }
    );
    event.records[1].message_id = Some(String::new());
    assert!(
        handle_batch(&event, |_: Recompute| async { Ok::<(), String>(()) })
            .await
            .is_err()
    );
}

#[test]
fn the_scheduled_event_names_its_schedule() {
    let event: EventBridgeEvent = serde_json::from_str(SCHEDULED).unwrap();
    let tick = tick_from_event(&event).unwrap();
    assert_eq!(tick.schedule, &OUTBOX_RELAY);
    assert_eq!(tick.at, event.time.unwrap());

    let mut unknown = event.clone();
    unknown.resources = Some(vec![
        "arn:aws:events:us-east-1:1:rule/stack-something-else".into(),
    ]);
    assert!(matches!(
        tick_from_event(&unknown),
        Err(TickError::UnknownRule(_))
    ));
    let mut not_scheduled = event;
    not_scheduled.detail_type = "Object Created".into();
    assert!(matches!(
        tick_from_event(&not_scheduled),
        Err(TickError::NotScheduled(_))
    ));
}

#[test]
fn the_email_sweep_sample_names_the_email_sweep() {
    let sample = include_str!("../../../infra/events/eventbridge-email-sweep.json");
    let event: EventBridgeEvent = serde_json::from_str(sample).unwrap();
    let tick = tick_from_event(&event).unwrap();
    assert_eq!(tick.schedule, &shared::schedule::EMAIL_SWEEP);
}

#[test]
fn the_http_sample_is_an_http_api_v2_request_for_the_status_route() {
    let event: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_str(HTTP_GET_STATUS).unwrap();
    assert_eq!(event.raw_path.as_deref(), Some("/status.json"));
    assert_eq!(event.request_context.http.method, axum::http::Method::GET);
}
