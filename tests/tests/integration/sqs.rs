//! The queue contract against SQS FIFO, emulated by moto server.

mod queue_contract {
    integration_tests::queue_contract_tests!(integration_tests::moto::transport().await);
}

/// The email agent's AWS path: the sweep queues on SQS FIFO, and the Lambda's batch handler
/// sends what SQS delivers (group = user, dedup = user + campaign).
mod email_agent {
    use std::sync::Arc;

    use aws_lambda_events::event::sqs::SqsEvent;
    use email::send::EmailQueueMessage;
    use integration_tests::email_fixtures::{sender, user, workspace};
    use integration_tests::test_db::TestDb;
    use serde_json::json;
    use shared::queue::Transport;
    use shared::queue::catalog::EMAIL;
    use uuid::Uuid;

    #[tokio::test]
    async fn the_sweep_queues_on_sqs_and_the_lambda_handler_sends_each_once() {
        let db = TestDb::new().await;
        let client = db.client().await;
        let workspace = workspace(&client, "UTC").await;
        let now: chrono::DateTime<chrono::Utc> = "2026-12-01T09:02:00Z".parse().unwrap();
        user(&client, workspace, "ada", "2026-11-30T10:00:00Z", None).await;
        user(&client, workspace, "grace", "2026-11-24T10:00:00Z", None).await;
        let pool = db.pool(2);
        let transport = integration_tests::moto::transport().await;
        let rules = email::campaigns::Rules::default();
        email::sweep::sweep(&pool, &transport, &rules, now)
            .await
            .unwrap();
        // A retried tick: SQS drops the same dedup ids.
        email::sweep::sweep(&pool, &transport, &rules, now)
            .await
            .unwrap();

        let mut received = Vec::new();
        for _ in 0..5 {
            received.extend(
                transport
                    .receive(EMAIL.name, 10, std::time::Duration::from_secs(30))
                    .await
                    .unwrap(),
            );
            if received.len() >= 2 {
                break;
            }
        }
        assert_eq!(received.len(), 2, "one message per due user and campaign");
        let records: Vec<_> = received
            .iter()
            .map(|message| {
                json!({
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt,
                    "body": message.body,
                    "attributes": {
                        "MessageGroupId": message.group_id,
                        "MessageDeduplicationId": message.dedup_id,
                        "ApproximateReceiveCount": message.receive_count.to_string(),
                    },
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        assert!(received.iter().all(|m| m.dedup_id.starts_with("email:")));

        let mailbox = std::env::temp_dir().join(format!("mailbox-{}", Uuid::new_v4().simple()));
        // The consumer reads the same clock as the sweep: a minute after it, whatever the
        // wall clock says, so the messages are still inside their due window.
        let mut deps = sender(&pool, Arc::new(email::provider::Mailbox::new(&mailbox)));
        deps.clock = shared::clock::Clock::fixed(now + chrono::Duration::minutes(1));
        let deps = Arc::new(deps);
        let handler = |message: EmailQueueMessage| {
            let deps = deps.clone();
            async move { email::send::handle(&deps, message).await }
        };
        for _ in 0..2 {
            // The second time is a redelivery of the same batch: nothing more is sent.
            let response = shared::lambda::sqs::handle_batch(&event, handler)
                .await
                .unwrap();
            assert!(response.batch_item_failures.is_empty());
        }
        let sent = email::provider::Mailbox::new(&mailbox).read_all().unwrap();
        let mut campaigns: Vec<(String, String)> = sent
            .iter()
            .map(|email| {
                (
                    email["to"][0].as_str().unwrap().to_string(),
                    email["tags"][0]["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        campaigns.sort();
        assert_eq!(
            campaigns,
            vec![
                ("ada@example.com".to_string(), "d1".to_string()),
                ("grace@example.com".to_string(), "d7".to_string()),
            ]
        );
        std::fs::remove_dir_all(&mailbox).ok();
    }
}
