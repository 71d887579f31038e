//! From Stripe objects to rows of the `stripe` schema.
//!
//! [`route`] says which table an event type writes (or none: the event is kept in the ledger
//! only). [`columns`] reads an object into Stripe-named typed columns, accepting both the 2024
//! object shapes and the 2025 ("basil") ones: subscription periods that moved onto the items,
//! and invoices whose subscription moved under `parent.subscription_details` and whose `paid`
//! flag gave way to `status`.
//!
//! An API read (the backfill's snapshot, typed `api_read.{object}`) routes by its object
//! ([`api_read_route`]) into the same tables and columns as the events of that object.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// A mirrored object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Customers,
    Products,
    Prices,
    Subscriptions,
    Invoices,
    Charges,
    Disputes,
    CheckoutSessions,
    Refunds,
    PaymentIntents,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Products => "products",
            Table::Prices => "prices",
            Table::Subscriptions => "subscriptions",
            Table::Invoices => "invoices",
            Table::Charges => "charges",
            Table::Disputes => "disputes",
            Table::CheckoutSessions => "checkout_sessions",
            Table::Refunds => "refunds",
            Table::PaymentIntents => "payment_intents",
        }
    }

    /// Whether a change to this object changes revenue, and so the metrics.
    pub fn affects_revenue(self) -> bool {
        matches!(
            self,
            Table::Subscriptions
                | Table::Invoices
                | Table::Charges
                | Table::Disputes
                | Table::CheckoutSessions
                | Table::Refunds
        )
    }
}

/// What an event does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub table: Table,
    /// The event removes the object (`*.deleted`: customers, products, prices, draft invoices,
    /// subscriptions).
    pub deletes: bool,
}

/// The event type of an API read of an object of type `object` (`customer`, `subscription`…).
pub fn api_read_type(object: &str) -> String {
    format!("api_read.{object}")
}

/// The table an API read of `object` writes. A read says an object is deleted when Stripe
/// answers it so (`deleted: true`) or, for a subscription, when it is canceled: Stripe sends
/// `customer.subscription.deleted` when it cancels one, so a read of a canceled subscription
/// is what that event would have left.
pub fn api_read_route(event_type: &str, object: &Value) -> Option<Route> {
    let kind = event_type.strip_prefix("api_read.")?;
    let table = match kind {
        "customer" => Table::Customers,
        "product" => Table::Products,
        "price" => Table::Prices,
        "subscription" => Table::Subscriptions,
        "invoice" => Table::Invoices,
        "charge" => Table::Charges,
        "dispute" => Table::Disputes,
        "refund" => Table::Refunds,
        "payment_intent" => Table::PaymentIntents,
        "checkout.session" => Table::CheckoutSessions,
        _ => return None,
    };
    let deleted = object.get("deleted").and_then(Value::as_bool) == Some(true)
        || (table == Table::Subscriptions
            && object.get("status").and_then(Value::as_str) == Some("canceled"));
    Some(Route {
        table,
        deletes: deleted,
    })
}

/// The table an event type writes; `None` for types kept in the ledger only.
pub fn route(event_type: &str) -> Option<Route> {
    let (table, action) = if let Some(action) = event_type.strip_prefix("customer.subscription.") {
        (Table::Subscriptions, action)
    } else if let Some(action) = event_type.strip_prefix("charge.refund.") {
        // `charge.refund.updated` carries a refund, not a charge.
        (Table::Refunds, action)
    } else if let Some(action) = event_type.strip_prefix("charge.dispute.") {
        (Table::Disputes, action)
    } else if let Some(action) = event_type.strip_prefix("checkout.session.") {
        (Table::CheckoutSessions, action)
    } else {
        let (kind, action) = event_type.split_once('.')?;
        let table = match kind {
            "customer" if matches!(action, "created" | "updated" | "deleted") => Table::Customers,
            "product" => Table::Products,
            "price" => Table::Prices,
            // `invoice.upcoming` describes an invoice that does not exist yet (it has no id).
            "invoice" if action != "upcoming" => Table::Invoices,
            "charge" => Table::Charges,
            "refund" => Table::Refunds,
            "payment_intent" => Table::PaymentIntents,
            _ => return None,
        };
        (table, action)
    };
    // A deleted subscription is canceled and final: its row stays, with status `canceled`,
    // marked deleted like any other deleted object.
    let deletes = action == "deleted";
    Some(Route { table, deletes })
}

/// A typed column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Text(Option<String>),
    Bool(Option<bool>),
    Int(Option<i64>),
    Time(Option<DateTime<Utc>>),
    Uuid(Option<Uuid>),
    Json(Option<Value>),
}

impl Field {
    /// SQL for this value, numbering its parameters from `next`, and the parameters.
    pub fn render(
        &self,
        next: &mut usize,
        params: &mut Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
    ) -> String {
        let mut push = |value: Box<dyn ToSql + Sync + Send>, kind: Type| {
            params.push((value, kind));
            *next += 1;
            format!("${}", *next)
        };
        match self {
            Field::Text(value) => push(Box::new(value.clone()), Type::TEXT),
            Field::Bool(value) => push(Box::new(*value), Type::BOOL),
            Field::Int(value) => push(Box::new(*value), Type::INT8),
            Field::Time(value) => push(Box::new(*value), Type::TIMESTAMPTZ),
            Field::Uuid(value) => push(Box::new(*value), Type::UUID),
            Field::Json(value) => push(Box::new(value.clone()), Type::JSONB),
        }
    }
}

fn text(object: &Value, key: &str) -> Field {
    Field::Text(object.get(key).and_then(Value::as_str).map(str::to_string))
}

/// A reference that Stripe sends either as an id or as the expanded object.
fn reference(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) => Some(id.clone()),
        Value::Object(expanded) => expanded
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn id_of(object: &Value, key: &str) -> Field {
    Field::Text(reference(object.get(key)))
}

fn boolean(object: &Value, key: &str) -> Field {
    Field::Bool(object.get(key).and_then(Value::as_bool))
}

fn int(object: &Value, key: &str) -> Field {
    Field::Int(object.get(key).and_then(Value::as_i64))
}

pub fn timestamp(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

fn time(value: Option<&Value>) -> Field {
    Field::Time(value.and_then(Value::as_i64).and_then(timestamp))
}

/// Where an object's workspace comes from: its own `metadata.workspace_id` (if that
/// workspace exists), else its customer's workspace. `None` for tables without a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRef {
    pub metadata: Option<Uuid>,
    pub customer: Option<String>,
}

pub fn workspace_ref(table: Table, object: &Value) -> Option<WorkspaceRef> {
    if matches!(
        table,
        Table::Products | Table::Prices | Table::Disputes | Table::Refunds
    ) {
        return None;
    }
    let metadata = object
        .pointer("/metadata/workspace_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok());
    let customer = if table == Table::Customers {
        None
    } else {
        reference(object.get("customer"))
    };
    Some(WorkspaceRef { metadata, customer })
}

/// The subscription items of a subscription snapshot.
pub fn items(subscription: &Value) -> &[Value] {
    subscription
        .pointer("/items/data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// An item's period, or (2024 shape) its subscription's.
fn item_period(item: &Value, subscription: &Value, key: &str) -> Option<i64> {
    item.get(key)
        .or_else(|| subscription.get(key))
        .and_then(Value::as_i64)
}

/// A subscription's current period: top-level in the 2024 shape, per item (earliest start,
/// latest end) since 2025.
fn subscription_period(subscription: &Value, key: &str) -> Field {
    if let Some(value) = subscription.get(key).filter(|value| !value.is_null()) {
        return time(Some(value));
    }
    let per_item = items(subscription)
        .iter()
        .filter_map(|item| item.get(key).and_then(Value::as_i64));
    let chosen = if key.ends_with("start") {
        per_item.min()
    } else {
        per_item.max()
    };
    Field::Time(chosen.and_then(timestamp))
}

/// The typed columns of `object` for `table` (without `id` and the bookkeeping columns).
pub fn columns(table: Table, object: &Value) -> Vec<(&'static str, Field)> {
    let created = ("created", time(object.get("created")));
    match table {
        Table::Customers => vec![
            ("email", text(object, "email")),
            ("name", text(object, "name")),
            ("delinquent", boolean(object, "delinquent")),
            ("currency", text(object, "currency")),
            created,
        ],
        Table::Products => vec![
            ("name", text(object, "name")),
            ("active", boolean(object, "active")),
            ("default_price", id_of(object, "default_price")),
            created,
        ],
        Table::Prices => vec![
            ("product", id_of(object, "product")),
            ("active", boolean(object, "active")),
            ("currency", text(object, "currency")),
            ("unit_amount", int(object, "unit_amount")),
            ("type", text(object, "type")),
            (
                "recurring_interval",
                Field::Text(
                    object
                        .pointer("/recurring/interval")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
            ),
            (
                "recurring_interval_count",
                Field::Int(
                    object
                        .pointer("/recurring/interval_count")
                        .and_then(Value::as_i64),
                ),
            ),
            created,
        ],
        Table::Subscriptions => vec![
            ("customer", id_of(object, "customer")),
            ("status", text(object, "status")),
            (
                "current_period_start",
                subscription_period(object, "current_period_start"),
            ),
            (
                "current_period_end",
                subscription_period(object, "current_period_end"),
            ),
            (
                "cancel_at_period_end",
                boolean(object, "cancel_at_period_end"),
            ),
            ("canceled_at", time(object.get("canceled_at"))),
            ("ended_at", time(object.get("ended_at"))),
            ("trial_end", time(object.get("trial_end"))),
            ("currency", text(object, "currency")),
            created,
        ],
        Table::Invoices => {
            let subscription = reference(object.get("subscription"))
                .or_else(|| reference(object.pointer("/parent/subscription_details/subscription")));
            let status = object.get("status").and_then(Value::as_str);
            let paid = object
                .get("paid")
                .and_then(Value::as_bool)
                .or(status.map(|status| status == "paid"));
            vec![
                ("customer", id_of(object, "customer")),
                ("subscription", Field::Text(subscription)),
                ("status", text(object, "status")),
                ("paid", Field::Bool(paid)),
                ("amount_due", int(object, "amount_due")),
                ("amount_paid", int(object, "amount_paid")),
                ("amount_remaining", int(object, "amount_remaining")),
                ("currency", text(object, "currency")),
                ("period_start", time(object.get("period_start"))),
                ("period_end", time(object.get("period_end"))),
                created,
            ]
        }
        Table::Charges => vec![
            ("customer", id_of(object, "customer")),
            ("invoice", id_of(object, "invoice")),
            ("payment_intent", id_of(object, "payment_intent")),
            ("status", text(object, "status")),
            ("amount", int(object, "amount")),
            ("amount_refunded", int(object, "amount_refunded")),
            ("refunded", boolean(object, "refunded")),
            ("disputed", boolean(object, "disputed")),
            ("currency", text(object, "currency")),
            created,
        ],
        Table::Disputes => vec![
            ("charge", id_of(object, "charge")),
            ("amount", int(object, "amount")),
            ("currency", text(object, "currency")),
            ("status", text(object, "status")),
            ("reason", text(object, "reason")),
            created,
        ],
        Table::Refunds => vec![
            ("charge", id_of(object, "charge")),
            ("payment_intent", id_of(object, "payment_intent")),
            ("amount", int(object, "amount")),
            ("currency", text(object, "currency")),
            ("status", text(object, "status")),
            ("reason", text(object, "reason")),
            created,
        ],
        Table::PaymentIntents => vec![
            ("customer", id_of(object, "customer")),
            ("invoice", id_of(object, "invoice")),
            ("latest_charge", id_of(object, "latest_charge")),
            ("status", text(object, "status")),
            ("amount", int(object, "amount")),
            ("amount_received", int(object, "amount_received")),
            ("currency", text(object, "currency")),
            created,
        ],
        Table::CheckoutSessions => vec![
            ("customer", id_of(object, "customer")),
            ("subscription", id_of(object, "subscription")),
            ("payment_intent", id_of(object, "payment_intent")),
            ("mode", text(object, "mode")),
            ("status", text(object, "status")),
            ("payment_status", text(object, "payment_status")),
            ("amount_total", int(object, "amount_total")),
            ("currency", text(object, "currency")),
            created,
        ],
    }
}

/// An item's columns (without `id` and bookkeeping), given its subscription's snapshot.
pub fn item_columns(
    item: &Value,
    subscription_id: &str,
    subscription: &Value,
) -> Vec<(&'static str, Field)> {
    vec![
        (
            "subscription",
            Field::Text(Some(subscription_id.to_string())),
        ),
        (
            "price",
            Field::Text(reference(item.get("price")).or_else(|| reference(item.get("plan")))),
        ),
        (
            "quantity",
            Field::Int(Some(
                item.get("quantity").and_then(Value::as_i64).unwrap_or(1),
            )),
        ),
        (
            "current_period_start",
            Field::Time(
                item_period(item, subscription, "current_period_start").and_then(timestamp),
            ),
        ),
        (
            "current_period_end",
            Field::Time(item_period(item, subscription, "current_period_end").and_then(timestamp)),
        ),
        ("created", time(item.get("created"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value<'a>(columns: &'a [(&'static str, Field)], name: &str) -> &'a Field {
        &columns
            .iter()
            .find(|(column, _)| *column == name)
            .unwrap()
            .1
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("customer.updated"),
            Some(Route {
                table: Table::Customers,
                deletes: false
            })
        );
        assert_eq!(
            route("customer.deleted"),
            Some(Route {
                table: Table::Customers,
                deletes: true
            })
        );
        assert_eq!(
            route("customer.subscription.deleted"),
            Some(Route {
                table: Table::Subscriptions,
                deletes: true
            })
        );
        assert_eq!(
            route("charge.dispute.created").map(|r| r.table),
            Some(Table::Disputes)
        );
        assert_eq!(
            route("charge.refunded").map(|r| r.table),
            Some(Table::Charges)
        );
        assert_eq!(
            route("checkout.session.completed").map(|r| r.table),
            Some(Table::CheckoutSessions)
        );
        assert_eq!(
            route("charge.refund.updated").map(|r| r.table),
            Some(Table::Refunds)
        );
        assert_eq!(
            route("refund.created").map(|r| r.table),
            Some(Table::Refunds)
        );
        assert_eq!(
            route("payment_intent.succeeded").map(|r| r.table),
            Some(Table::PaymentIntents)
        );
        assert_eq!(route("api_read.customer"), None);
        assert_eq!(
            route("invoice.payment_succeeded").map(|r| r.table),
            Some(Table::Invoices)
        );
        for ignored in [
            "invoice.upcoming",
            "customer.tax_id.created",
            "customer.discount.created",
            "weird",
        ] {
            assert_eq!(route(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn api_reads_route_by_object_and_a_canceled_subscription_is_deleted() {
        let customer = json!({"object": "customer"});
        assert_eq!(
            api_read_route(&api_read_type("customer"), &customer),
            Some(Route {
                table: Table::Customers,
                deletes: false
            })
        );
        let canceled = json!({"object": "subscription", "status": "canceled"});
        assert_eq!(
            api_read_route(&api_read_type("subscription"), &canceled),
            Some(Route {
                table: Table::Subscriptions,
                deletes: true
            })
        );
        let refund = json!({"object": "refund"});
        assert_eq!(
            api_read_route("api_read.refund", &refund).map(|r| r.table),
            Some(Table::Refunds)
        );
        assert_eq!(api_read_route("api_read.balance", &refund), None);
        assert_eq!(api_read_route("customer.updated", &customer), None);
    }

    #[test]
    fn both_subscription_shapes_land_in_the_same_columns() {
        let old = json!({"object": "subscription", "current_period_start": 100, "current_period_end": 200, "items": {"data": []}});
        let basil = json!({"object": "subscription", "items": {"data": [
            {"current_period_start": 100, "current_period_end": 150},
            {"current_period_start": 120, "current_period_end": 200}
        ]}});
        for shape in [old, basil] {
            let columns = columns(Table::Subscriptions, &shape);
            assert_eq!(
                value(&columns, "current_period_start"),
                &Field::Time(timestamp(100))
            );
            assert_eq!(
                value(&columns, "current_period_end"),
                &Field::Time(timestamp(200))
            );
        }
    }

    #[test]
    fn both_invoice_shapes_land_in_the_same_columns() {
        let old =
            json!({"object": "invoice", "subscription": "sub_1", "paid": true, "status": "paid"});
        let basil = json!({"object": "invoice", "status": "paid",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}}});
        for shape in [old, basil] {
            let columns = columns(Table::Invoices, &shape);
            assert_eq!(
                value(&columns, "subscription"),
                &Field::Text(Some("sub_1".into()))
            );
            assert_eq!(value(&columns, "paid"), &Field::Bool(Some(true)));
        }
    }

    #[test]
    fn references_may_be_expanded() {
        let price = json!({"object": "price", "product": {"id": "prod_1", "object": "product"}, "recurring": {"interval": "year", "interval_count": 1}});
        let columns = columns(Table::Prices, &price);
        assert_eq!(
            value(&columns, "product"),
            &Field::Text(Some("prod_1".into()))
        );
        assert_eq!(
            value(&columns, "recurring_interval"),
            &Field::Text(Some("year".into()))
        );
    }
}
