//! Every queue in the system, defined once. `infra/template.yaml` declares the same queues
//! (a test compares the two), the local stack starts a consumer for each, and settings read
//! each queue's URL from the variable named here.

use std::time::Duration;

use crate::agents::Agent;

#[derive(Debug, PartialEq, Eq)]
pub struct QueueDef {
    /// The queue's name; in AWS it is prefixed with the stack name.
    pub name: &'static str,
    /// The function that consumes it.
    pub consumer: Agent,
    /// How long the consumer may run for one batch.
    pub consumer_timeout: Duration,
    /// How long a received message stays hidden: at least six times the consumer's timeout,
    /// as AWS recommends for Lambda event sources, so a slow batch is not delivered twice.
    pub visibility_timeout: Duration,
    /// Deliveries before a message goes to the dead letters.
    pub max_receives: u32,
    pub url_variable: &'static str,
    pub dead_letter_url_variable: &'static str,
}

pub const ETL: QueueDef = QueueDef {
    name: "etl.fifo",
    consumer: Agent::Etl,
    consumer_timeout: Duration::from_secs(900),
    visibility_timeout: Duration::from_secs(5400),
    max_receives: 3,
    url_variable: "ETL_QUEUE_URL",
    dead_letter_url_variable: "ETL_DLQ_URL",
};

pub const METRICS: QueueDef = QueueDef {
    name: "metrics.fifo",
    consumer: Agent::Metrics,
    consumer_timeout: Duration::from_secs(60),
    visibility_timeout: Duration::from_secs(360),
    max_receives: 3,
    url_variable: "METRICS_QUEUE_URL",
    dead_letter_url_variable: "METRICS_DLQ_URL",
};

pub const SUGGESTIONS: QueueDef = QueueDef {
    name: "suggestions.fifo",
    consumer: Agent::Suggestions,
    consumer_timeout: Duration::from_secs(60),
    visibility_timeout: Duration::from_secs(360),
    max_receives: 3,
    url_variable: "SUGGESTIONS_QUEUE_URL",
    dead_letter_url_variable: "SUGGESTIONS_DLQ_URL",
};

pub const EMAIL: QueueDef = QueueDef {
    name: "email.fifo",
    consumer: Agent::Email,
    consumer_timeout: Duration::from_secs(60),
    visibility_timeout: Duration::from_secs(360),
    max_receives: 3,
    url_variable: "EMAIL_QUEUE_URL",
    dead_letter_url_variable: "EMAIL_DLQ_URL",
};

pub const QUEUES: &[&QueueDef] = &[&ETL, &METRICS, &SUGGESTIONS, &EMAIL];

/// Looks a queue up by name.
pub fn find(name: &str) -> Option<&'static QueueDef> {
    QUEUES.iter().copied().find(|queue| queue.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_is_at_least_six_times_the_consumer_timeout() {
        for queue in QUEUES {
            assert!(
                queue.visibility_timeout >= queue.consumer_timeout * 6,
                "{}",
                queue.name
            );
            assert!(queue.name.ends_with(".fifo"));
            assert_eq!(find(queue.name), Some(*queue));
        }
    }
}
