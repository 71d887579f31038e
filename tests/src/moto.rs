//! SQS FIFO queues on the moto server (an AWS emulator from PyPI) that the test command
//! starts and names in `MOTO_ENDPOINT`. Each test creates its own uniquely prefixed set of
//! queues, each with a FIFO dead-letter queue and `maxReceiveCount` taken from the catalog,
//! as `infra/template.yaml` declares them.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use shared::queue::catalog::QUEUES;
use shared::queue::sqs::SqsTransport;
use shared::settings::SqsQueueUrls;

pub async fn client() -> Client {
    let endpoint = std::env::var("MOTO_ENDPOINT").expect(
        "MOTO_ENDPOINT is not set: run the tests with ./scripts/test.sh, which starts moto server",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await;
    Client::new(&config)
}

async fn create_fifo(client: &Client, name: &str, redrive_to: Option<(&str, u32)>) -> String {
    let mut request = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
    if let Some((dead_letter_arn, max_receives)) = redrive_to {
        request = request.attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":"{max_receives}"}}"#),
        );
    }
    request
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

/// Creates every catalog queue under a fresh prefix and returns a transport over them.
pub async fn transport() -> SqsTransport {
    let client = client().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut queues = Vec::new();
    for queue in QUEUES {
        let stem = queue.name.trim_end_matches(".fifo");
        let dead_letter_url =
            create_fifo(&client, &format!("{prefix}-{stem}-dlq.fifo"), None).await;
        let attributes = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dead-letter queue arn");
        let arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .expect("arn")
            .clone();
        let url = create_fifo(
            &client,
            &format!("{prefix}-{}", queue.name),
            Some((&arn, queue.max_receives)),
        )
        .await;
        queues.push((queue.name.to_string(), url, dead_letter_url));
    }
    SqsTransport::new(client, SqsQueueUrls { queues })
}
