//! Which of two events carries the newer state of an object.
//!
//! Stripe does not deliver in order, and it emits several events for one object inside the
//! same second (`invoice.created → finalized → paid`, `customer.subscription.created →
//! updated`), so `created` alone cannot decide. The rule, applied to the incoming event and the
//! event that wrote the stored state:
//!
//! 1. The same event: not newer (a duplicate).
//! 2. A later `created` second wins. For an API read (the backfill's snapshot of an object,
//!    [`is_api_read`]) `created` is the second it was read: the object as of then, so every
//!    event of an earlier second is already in it and loses, and every later event wins.
//! 3. Same second, an API read against an event: the event wins. Nothing says whether the
//!    event happened before or after the read inside that second; if after, it is newer; if
//!    before, its state is the read's or one step of a same-second chain whose later events
//!    Stripe delivers too, and rule 5 then settles the chain among events. A read never
//!    overwrites an event it cannot prove older.
//! 4. Same second, a deletion comes last: nothing happens to an object after it is deleted.
//! 5. Same second, the change chain: an event whose `data.previous_attributes` equal the other
//!    event's object (for every attribute it lists) happened after it.
//! 6. Same second, no chain: lifecycle progress read from the object itself — a status that
//!    cannot go backwards (invoice draft → open → paid/void/uncollectible; subscription
//!    incomplete → trialing/active… → canceled; refund and payment intent pending → final),
//!    then counters that only grow (amount refunded, amount paid).
//! 7. Still tied: the larger event id, so every replica settles on the same state whatever the
//!    delivery order. (Two such events describe the same state as far as we can tell.)
//!
//! Deleted objects are terminal and never replaced; the caller checks that before asking.

use serde_json::Value;

/// One event's view of an object.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub event_id: &'a str,
    pub created: i64,
    pub object: &'a Value,
    pub previous_attributes: Option<&'a Value>,
    /// The event deleted the object.
    pub deletes: bool,
}

/// The id prefix of an API read: `api_read_{second}_{object id}`, so one object read twice
/// in the same second is one read (a duplicate). Stripe's own event ids start `evt_`.
pub const API_READ_PREFIX: &str = "api_read_";

/// Whether the version was read from Stripe's API (a backfill) rather than sent as an event.
pub fn is_api_read(version: &Version<'_>) -> bool {
    version.event_id.starts_with(API_READ_PREFIX)
}

/// Whether `incoming` should replace `stored`.
pub fn is_newer(incoming: &Version<'_>, stored: &Version<'_>) -> bool {
    if incoming.event_id == stored.event_id {
        return false;
    }
    if incoming.created != stored.created {
        return incoming.created > stored.created;
    }
    if is_api_read(incoming) != is_api_read(stored) {
        return !is_api_read(incoming);
    }
    if incoming.deletes != stored.deletes {
        return incoming.deletes;
    }
    if follows(incoming, stored) {
        return true;
    }
    if follows(stored, incoming) {
        return false;
    }
    let (incoming_progress, stored_progress) = (progress(incoming.object), progress(stored.object));
    if incoming_progress != stored_progress {
        return incoming_progress > stored_progress;
    }
    incoming.event_id > stored.event_id
}

/// `later` lists previous attributes, and `earlier`'s object has exactly those values.
fn follows(later: &Version<'_>, earlier: &Version<'_>) -> bool {
    let Some(Value::Object(previous)) = later.previous_attributes else {
        return false;
    };
    !previous.is_empty()
        && previous
            .iter()
            .all(|(key, value)| earlier.object.get(key).unwrap_or(&Value::Null) == value)
}

/// How far along its lifecycle an object is, by fields that never move backwards.
fn progress(object: &Value) -> (u8, i64, i64) {
    let status = object
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rank = match (object.get("object").and_then(Value::as_str), status) {
        (Some("invoice"), "draft") => 0,
        (Some("invoice"), "open") => 1,
        (Some("invoice"), "paid" | "void" | "uncollectible") => 2,
        (Some("subscription"), "incomplete") => 0,
        (Some("subscription"), "trialing") => 1,
        (Some("subscription"), "active" | "past_due" | "unpaid" | "paused") => 2,
        (Some("subscription"), "canceled" | "incomplete_expired") => 3,
        (Some("charge"), "pending") => 0,
        (Some("charge"), "succeeded" | "failed") => 1,
        (Some("checkout.session"), "open") => 0,
        (Some("checkout.session"), "complete" | "expired") => 1,
        (Some("refund"), "pending" | "requires_action") => 0,
        (Some("refund"), "succeeded" | "failed" | "canceled") => 1,
        (Some("payment_intent"), "requires_payment_method") => 0,
        (Some("payment_intent"), "requires_confirmation") => 1,
        (Some("payment_intent"), "requires_action") => 2,
        (Some("payment_intent"), "processing") => 3,
        (Some("payment_intent"), "requires_capture") => 4,
        (Some("payment_intent"), "succeeded" | "canceled") => 5,
        _ => 0,
    };
    let counter = |name: &str| object.get(name).and_then(Value::as_i64).unwrap_or(0);
    (rank, counter("amount_refunded"), counter("amount_paid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version<'a>(
        id: &'a str,
        created: i64,
        object: &'a Value,
        previous: Option<&'a Value>,
    ) -> Version<'a> {
        Version {
            event_id: id,
            created,
            object,
            previous_attributes: previous,
            deletes: false,
        }
    }

    #[test]
    fn later_seconds_win_and_duplicates_do_not() {
        let object = json!({"object": "customer"});
        assert!(is_newer(
            &version("evt_b", 11, &object, None),
            &version("evt_a", 10, &object, None)
        ));
        assert!(!is_newer(
            &version("evt_a", 10, &object, None),
            &version("evt_b", 11, &object, None)
        ));
        assert!(!is_newer(
            &version("evt_a", 10, &object, None),
            &version("evt_a", 10, &object, None)
        ));
    }

    #[test]
    fn same_second_chains_follow_previous_attributes_both_ways() {
        let created = json!({"object": "subscription", "status": "active", "quantity": 1});
        let updated = json!({"object": "subscription", "status": "active", "quantity": 2});
        let previous = json!({"quantity": 1});
        // Event ids are chosen so that the id tie-break alone would get it wrong.
        let first = version("evt_z", 10, &created, None);
        let second = version("evt_a", 10, &updated, Some(&previous));
        assert!(is_newer(&second, &first));
        assert!(!is_newer(&first, &second));
    }

    #[test]
    fn same_second_invoices_move_forward_by_status() {
        let draft = json!({"object": "invoice", "status": "draft"});
        let open = json!({"object": "invoice", "status": "open"});
        let paid = json!({"object": "invoice", "status": "paid", "amount_paid": 500});
        let (d, o, p) = (
            version("evt_3", 5, &draft, None),
            version("evt_2", 5, &open, None),
            version("evt_1", 5, &paid, None),
        );
        assert!(is_newer(&o, &d) && is_newer(&p, &o) && is_newer(&p, &d));
        assert!(!is_newer(&d, &p) && !is_newer(&o, &p) && !is_newer(&d, &o));
    }

    #[test]
    fn a_same_second_deletion_is_last() {
        let object = json!({"object": "customer", "email": "a@x.io"});
        let tombstone = json!({"object": "customer", "deleted": true});
        let update = version("evt_z", 5, &object, None);
        let deletion = Version {
            deletes: true,
            ..version("evt_a", 5, &tombstone, None)
        };
        assert!(is_newer(&deletion, &update));
        assert!(!is_newer(&update, &deletion));
    }

    #[test]
    fn refunds_only_grow() {
        let charged = json!({"object": "charge", "status": "succeeded", "amount_refunded": 0});
        let refunded = json!({"object": "charge", "status": "succeeded", "amount_refunded": 300});
        assert!(is_newer(
            &version("evt_a", 5, &refunded, None),
            &version("evt_b", 5, &charged, None)
        ));
    }

    #[test]
    fn an_api_read_replaces_only_events_of_earlier_seconds() {
        let read_object = json!({"object": "customer", "email": "read@x.io"});
        let event_object = json!({"object": "customer", "email": "event@x.io"});
        let read = version("api_read_100_cus_1", 100, &read_object, None);
        // An event of an earlier second is in the read already.
        let older = version("evt_z", 99, &event_object, None);
        assert!(is_newer(&read, &older));
        assert!(!is_newer(&older, &read));
        // A later event is newer than the read, whichever arrives first.
        let later = version("evt_a", 101, &event_object, None);
        assert!(is_newer(&later, &read));
        assert!(!is_newer(&read, &later));
    }

    #[test]
    fn a_same_second_event_beats_the_read_whatever_the_ids_and_progress() {
        // The read shows more progress and sorts after the event's id; the event still wins,
        // because the read cannot prove it happened after the event.
        let read_object = json!({"object": "invoice", "status": "paid", "amount_paid": 500});
        let event_object = json!({"object": "invoice", "status": "open", "amount_paid": 0});
        let read = version("api_read_100_in_1", 100, &read_object, None);
        let event = version("evt_0", 100, &event_object, None);
        assert!(is_newer(&event, &read));
        assert!(!is_newer(&read, &event));
        let deletion = Version {
            deletes: true,
            ..version("evt_1", 100, &event_object, None)
        };
        assert!(is_newer(&deletion, &read));
    }

    #[test]
    fn two_reads_order_by_second_and_one_read_is_a_duplicate() {
        let object = json!({"object": "customer"});
        let first = version("api_read_100_cus_1", 100, &object, None);
        let second = version("api_read_200_cus_1", 200, &object, None);
        assert!(is_newer(&second, &first));
        assert!(!is_newer(&first, &second));
        assert!(!is_newer(&first, &first));
        assert!(is_api_read(&first) && !is_api_read(&version("evt_1", 1, &object, None)));
    }

    #[test]
    fn indistinguishable_events_settle_on_the_larger_id_in_any_order() {
        let object = json!({"object": "invoice", "status": "paid"});
        let (a, b) = (
            version("evt_a", 5, &object, None),
            version("evt_b", 5, &object, None),
        );
        assert!(is_newer(&b, &a));
        assert!(!is_newer(&a, &b));
    }
}
