//! The generated Stripe history ([`crate::stripe_events`]) cut in two at one second: what
//! Stripe's API shows of the account at that second (what a backfill reads), the webhooks of
//! the changes after it, and the state the mirror must hold once both were applied.
//!
//! The API shows each object as its newest event before the cut left it, except what Stripe
//! no longer lists (deleted customers, products, prices and draft invoices); a subscription
//! deleted before the cut is listed as canceled. Events from the cut's second on are "later
//! changes", delivered in the generator's delivery order.
//!
//! The expected state is the generator's, restricted to what a backfill can know: objects
//! deleted before the cut (never listed, no later event) are left out, with their events; an
//! object whose newest event is older than the cut is expected as the backfill's API read
//! wrote it (`last_event_id` `api_read_{cut}_{id}`, `last_event_created` the cut), the same
//! values; and the ledger holds the later events and one API read per object listed.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::stripe_events::{ExpectedState, Generated, LastEvent};

/// One cut of a generated history.
pub struct AccountAtCut {
    /// The second the API is read at (the stand-in's clock).
    pub read_at: i64,
    /// Every object the API lists at `read_at`, any order.
    pub objects: Vec<Value>,
    /// Deliveries (event bodies) of the changes from `read_at` on, in delivery order.
    pub later_deliveries: Vec<String>,
    /// What the mirror must hold after the backfill and the later deliveries.
    pub expected: ExpectedState,
}

/// Cuts `generated` at the second `cut`.
pub fn cut(generated: &Generated, cut: i64) -> AccountAtCut {
    let bodies: HashMap<&str, Value> = generated
        .delivery_order
        .iter()
        .zip(&generated.deliveries)
        .map(|(&index, body)| {
            (
                generated.events[index].id.as_str(),
                serde_json::from_str(body).unwrap_or_default(),
            )
        })
        .collect();
    // Each object as its newest event before the cut left it (true order).
    let mut before: HashMap<String, (String, Value)> = HashMap::new();
    for event in generated.events.iter().filter(|event| event.created < cut) {
        let (Some(object_id), Some(body)) = (&event.object_id, bodies.get(event.id.as_str()))
        else {
            continue;
        };
        before.insert(
            object_id.clone(),
            (event.event_type.clone(), body["data"]["object"].clone()),
        );
    }
    let listable = [
        "customer",
        "product",
        "price",
        "subscription",
        "invoice",
        "charge",
        "dispute",
        "refund",
        "payment_intent",
    ];
    let objects: Vec<Value> = before
        .into_values()
        .filter(|(event_type, object)| {
            let kind = object["object"].as_str().unwrap_or_default();
            let removed = event_type.ends_with(".deleted") && kind != "subscription";
            !removed
                && object.get("deleted").and_then(Value::as_bool) != Some(true)
                && listable.contains(&kind)
        })
        .map(|(_, object)| object)
        .collect();
    let listed: HashSet<String> = objects
        .iter()
        .filter_map(|object| object["id"].as_str().map(str::to_string))
        .collect();

    let later_events: HashSet<&str> = generated
        .events
        .iter()
        .filter(|event| event.created >= cut)
        .map(|event| event.id.as_str())
        .collect();
    let later_deliveries: Vec<String> = generated
        .delivery_order
        .iter()
        .zip(&generated.deliveries)
        .filter(|&(&index, _)| later_events.contains(generated.events[index].id.as_str()))
        .map(|(_, body)| body.clone())
        .collect();
    let changed_later: HashSet<&str> = generated
        .events
        .iter()
        .filter(|event| event.created >= cut)
        .filter_map(|event| event.object_id.as_deref())
        .collect();
    // Items some snapshot the mirror sees lists: the API's, or a later event's.
    let mut items_seen: HashSet<String> = HashSet::new();
    let snapshots = objects.iter().chain(
        later_events
            .iter()
            .filter_map(|id| bodies.get(id))
            .map(|body| &body["data"]["object"]),
    );
    for object in snapshots {
        for item in object["items"]["data"].as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                items_seen.insert(id.to_string());
            }
        }
    }

    let mut expected = generated.expected.clone();
    let read_id = |id: &str| format!("{}{cut}_{id}", billing::ordering::API_READ_PREFIX);
    let keep = |id: &str| listed.contains(id) || changed_later.contains(id);
    let attribute = |id: &str, last: &mut LastEvent| {
        if last.created < cut {
            *last = LastEvent {
                id: read_id(id),
                equivalent: Vec::new(),
                created: cut,
            };
        }
    };
    macro_rules! restrict {
        ($map:expr) => {
            $map.retain(|id, _| keep(id));
            for (id, object) in $map.iter_mut() {
                attribute(id, &mut object.last_event);
            }
        };
    }
    restrict!(expected.customers);
    restrict!(expected.products);
    restrict!(expected.prices);
    restrict!(expected.subscriptions);
    restrict!(expected.invoices);
    restrict!(expected.charges);
    restrict!(expected.disputes);
    restrict!(expected.checkout_sessions);
    expected
        .subscription_items
        .retain(|id, item| keep(&item.subscription) && items_seen.contains(id));
    let ledger: BTreeSet<String> = later_events
        .iter()
        .map(|id| id.to_string())
        .chain(listed.iter().map(|id| read_id(id)))
        .collect();
    expected
        .unmodeled_event_ids
        .retain(|id| ledger.contains(id));
    expected.event_ids = ledger;
    AccountAtCut {
        read_at: cut,
        objects,
        later_deliveries,
        expected,
    }
}
