//! The queue contract: what every [`Transport`] must do, written once. The integration tests
//! run it against the Postgres queue (`pg::queue_contract`) and against SQS on moto
//! (`sqs::queue_contract`), through [`queue_contract_tests!`](crate::queue_contract_tests).
//!
//! Visibility timeouts are whole seconds because SQS counts in seconds; the waits are real,
//! so the suite keeps them few and short.

use std::collections::HashMap;
use std::time::Duration;

use shared::queue::catalog::METRICS;
use shared::queue::{OutgoingMessage, ReceivedMessage, Transport};

const QUEUE: &str = METRICS.name;
const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(1);

fn message(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage::new(QUEUE, group.into(), dedup.into(), body.into())
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
    messages
        .iter()
        .map(|message| message.body.as_str())
        .collect()
}

async fn receive_all(transport: &dyn Transport, visibility: Duration) -> Vec<ReceivedMessage> {
    transport
        .receive(QUEUE, 10, visibility)
        .await
        .expect("receive")
}

async fn delete(transport: &dyn Transport, messages: &[ReceivedMessage]) {
    let receipts: Vec<String> = messages
        .iter()
        .map(|message| message.receipt.clone())
        .collect();
    transport.delete(QUEUE, &receipts).await.expect("delete");
}

/// Waits past a visibility timeout of [`SHORT`].
async fn outlast_visibility() {
    tokio::time::sleep(Duration::from_millis(1600)).await;
}

/// Sent messages arrive with their ids and body; deleted ones are gone for good.
pub async fn send_receive_delete(transport: &dyn Transport) {
    transport
        .send(&[
            message("a", "d-a", "A"),
            message("b", "d-b", "B"),
            message("c", "d-c", "C"),
        ])
        .await
        .expect("send");
    let received = receive_all(transport, LONG).await;
    let mut got = bodies(&received);
    got.sort();
    assert_eq!(got, vec!["A", "B", "C"]);
    let a = received.iter().find(|m| m.body == "A").unwrap();
    assert_eq!(
        (a.group_id.as_str(), a.dedup_id.as_str(), a.receive_count),
        ("a", "d-a", 1)
    );
    assert!(
        received
            .iter()
            .all(|m| !m.message_id.is_empty() && !m.receipt.is_empty())
    );

    let depth = transport.depth(QUEUE).await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, 3));
    delete(transport, &received).await;
    let depth = transport.depth(QUEUE).await.expect("depth");
    assert_eq!(
        (depth.visible, depth.in_flight, depth.dead_letters),
        (0, 0, 0)
    );
    assert!(receive_all(transport, LONG).await.is_empty());
}

/// A deduplication id seen within the window is dropped, even with another body, even inside
/// one batch.
pub async fn duplicates_are_dropped(transport: &dyn Transport) {
    transport
        .send(&[message("g", "same", "first")])
        .await
        .expect("send");
    transport
        .send(&[message("g", "same", "second")])
        .await
        .expect("send");
    transport
        .send(&[
            message("h", "twice", "x"),
            message("h", "twice", "y"),
            message("h", "other", "z"),
        ])
        .await
        .expect("send");
    let mut all = Vec::new();
    for _ in 0..4 {
        let batch = receive_all(transport, LONG).await;
        delete(transport, &batch).await;
        all.extend(batch);
    }
    let mut got = bodies(&all);
    got.sort();
    assert_eq!(got, vec!["first", "x", "z"]);
}

/// Within a group, messages arrive in the order sent, and none arrives while an earlier one of
/// its group is in flight. Other groups are not held up.
pub async fn groups_keep_their_order(transport: &dyn Transport) {
    let sent = [
        ("a", "a1"),
        ("a", "a2"),
        ("b", "b1"),
        ("a", "a3"),
        ("b", "b2"),
    ];
    let outgoing: Vec<OutgoingMessage> = sent
        .iter()
        .map(|(group, body)| message(group, body, body))
        .collect();
    transport.send(&outgoing).await.expect("send");

    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    let mut rounds = 0;
    while order.values().map(Vec::len).sum::<usize>() < sent.len() {
        rounds += 1;
        assert!(rounds <= 10, "messages missing after 10 rounds: {order:?}");
        let batch = receive_all(transport, LONG).await;
        assert!(
            !batch.is_empty(),
            "a group with pending messages was not served: {order:?}"
        );
        // Everything delivered is in flight now: no group may be served again until deleted.
        assert!(
            receive_all(transport, LONG).await.is_empty(),
            "a group was served while its head was in flight"
        );
        for received in &batch {
            order
                .entry(received.group_id.clone())
                .or_default()
                .push(received.body.clone());
        }
        delete(transport, &batch).await;
    }
    assert_eq!(order["a"], vec!["a1", "a2", "a3"]);
    assert_eq!(order["b"], vec!["b1", "b2"]);
}

/// A message received and not deleted comes back after its visibility timeout, counted.
pub async fn unacknowledged_messages_come_back(transport: &dyn Transport) {
    transport
        .send(&[message("g", "d", "again")])
        .await
        .expect("send");
    let first = receive_all(transport, SHORT).await;
    assert_eq!(bodies(&first), vec!["again"]);
    assert!(
        receive_all(transport, SHORT).await.is_empty(),
        "hidden while in flight"
    );
    outlast_visibility().await;
    let second = receive_all(transport, LONG).await;
    assert_eq!(bodies(&second), vec!["again"]);
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
}

/// Changing the visibility to zero hands the message out again at once.
pub async fn visibility_can_be_changed(transport: &dyn Transport) {
    transport
        .send(&[message("g", "d", "retry-me")])
        .await
        .expect("send");
    let first = receive_all(transport, LONG).await;
    transport
        .change_visibility(QUEUE, &first[0].receipt, Duration::ZERO)
        .await
        .expect("change visibility");
    let second = receive_all(transport, LONG).await;
    assert_eq!(bodies(&second), vec!["retry-me"]);
}

/// After `max_receives` deliveries without a delete, a message moves to the dead letters and
/// stops blocking its group; re-drive brings it back.
pub async fn poison_messages_are_dead_lettered_and_redriven(transport: &dyn Transport) {
    transport
        .send(&[
            message("g", "poison", "poison"),
            message("g", "next", "next"),
        ])
        .await
        .expect("send");
    // One at a time: SQS may hand out a group's later messages in the same batch as its head.
    for attempt in 1..=METRICS.max_receives {
        let batch = transport.receive(QUEUE, 1, SHORT).await.expect("receive");
        assert_eq!(bodies(&batch), vec!["poison"], "delivery {attempt}");
        outlast_visibility().await;
    }
    let mut next = Vec::new();
    for _ in 0..3 {
        next = transport.receive(QUEUE, 1, LONG).await.expect("receive");
        if !next.is_empty() {
            break;
        }
        outlast_visibility().await;
    }
    assert_eq!(
        bodies(&next),
        vec!["next"],
        "the poison message must leave the group's head"
    );
    delete(transport, &next).await;
    assert_eq!(transport.depth(QUEUE).await.expect("depth").dead_letters, 1);

    assert_eq!(transport.redrive(QUEUE).await.expect("redrive"), 1);
    assert_eq!(transport.depth(QUEUE).await.expect("depth").dead_letters, 0);
    let back = receive_all(transport, LONG).await;
    assert_eq!(bodies(&back), vec!["poison"]);
}

/// Declares one `#[tokio::test]` per contract function, each on a fresh transport made by
/// `$transport` (an async expression).
#[macro_export]
macro_rules! queue_contract_tests {
    ($transport:expr) => {
        $crate::queue_contract_tests!(@tests $transport;
            send_receive_delete,
            duplicates_are_dropped,
            groups_keep_their_order,
            unacknowledged_messages_come_back,
            visibility_can_be_changed,
            poison_messages_are_dead_lettered_and_redriven);
    };
    (@tests $transport:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $crate::contract::$name(&$transport).await;
            }
        )*
    };
}
