//! A seeded generator of realistic Stripe webhook traffic, and the state it must leave behind.
//!
//! [`generate`] simulates a Stripe account (a product catalog, then one lifecycle per customer:
//! checkout or trial or API sign-up, renewals, failed payments and dunning, seat changes, plan
//! swaps, refunds, disputes, cancellations, customer deletions) and renders every change as a
//! v1 snapshot event, exactly as Stripe sends it to a webhook endpoint. It returns the bodies in
//! a realistic *delivery* order — chunks permuted within windows, a few events delivered very
//! late, some events delivered twice, and deletions overtaken by older updates — together with
//! the [`ExpectedState`]: what the `stripe` mirror must hold once every delivery was processed,
//! i.e. the state of each object's newest event in true order.
//!
//! # What makes it hard (on purpose)
//!
//! * **Same-second chains.** Stripe emits several events for one object inside one second
//!   (`invoice.created → invoice.finalized → invoice.paid → invoice.payment_succeeded`,
//!   `customer.subscription.created → customer.subscription.updated`,
//!   `customer.created → customer.updated → customer.updated`, `charge.succeeded →
//!   charge.updated`, sometimes two seat changes in a row), so `created` cannot order them.
//!   The generator keeps them orderable for a correct consumer: every `*.updated` event carries
//!   `data.previous_attributes` holding exactly the changed top-level fields with their values
//!   in the object's previous event (true order, rendered at the event's own API version);
//!   invoice status only moves forward inside a second; a `*.created` event precedes the
//!   updates of its second; no state repeats inside a same-second chain (no A → B → A).
//! * **Indistinguishable pairs.** `invoice.paid` and `invoice.payment_succeeded` carry the same
//!   object in the same second; either may be the stored `last_event_id`
//!   ([`LastEvent::equivalent`]).
//! * **Two API shapes.** Some customers' events render at `2024-06-20`, some at
//!   `2025-03-31.basil`, and some switch from one to the other mid-life (an endpoint upgrade),
//!   always at a second boundary, so a same-second chain never mixes shapes. Basil moves the
//!   subscription period onto each item, replaces an invoice's `subscription`/`paid`/`charge`
//!   with `parent.subscription_details` and `payments`, and drops `Charge.invoice` (a basil
//!   charge names its invoice only through the payment intent) — see [`ExpectedCharge`].
//! * **Deletions are terminal.** A deleted product, price, subscription or customer is
//!   sometimes followed in delivery order by an *older* update of itself, which must not
//!   revive it. A deleted customer's event may carry only `{"id","object","deleted":true}`.
//! * **Types we do not model** (`customer.tax_id.created`,
//!   `payment_method.attached`, `setup_intent.succeeded`, `invoice.upcoming` — whose invoice
//!   has no id) must reach the ledger only, with outcome `unsupported`.
//!
//! Everything derives from the seed through ChaCha8, so a seed names one exact stream.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

pub const API_2024: &str = "2024-06-20";
pub const API_BASIL: &str = "2025-03-31.basil";

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2025-01-01T00:00:00Z: customers sign up over the 90 days after it.
const T0: i64 = 1_735_689_600;
/// The default workspace every generated customer points at.
pub const DEFAULT_WORKSPACE: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00b1);

/// Knobs of the simulated traffic. `Default` gives the mix described in the module docs.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Customers simulated (each with one subscription lifecycle). The catalog grows with it.
    pub customers: usize,
    /// Put into every customer's `metadata.workspace_id`; the row must exist in
    /// `public.workspaces` before delivery.
    pub workspace_id: Uuid,
    /// Share of events delivered twice (the copy arrives 1..=`duplicate_distance` deliveries
    /// after the first).
    pub duplicate_share: f64,
    pub duplicate_distance: usize,
    /// The true order is cut into windows of this many events; each window is cut into chunks
    /// of 1..=`reorder_chunk_max` events and the chunks are delivered in a random order.
    pub reorder_window: usize,
    pub reorder_chunk_max: usize,
    /// Share of events held back (a failed delivery retried later) by 1..=`late_distance`.
    pub late_share: f64,
    pub late_distance: usize,
    /// Share of customers whose events all render at the basil API version.
    pub basil_share: f64,
    /// Share of customers whose events switch from 2024 to basil mid-life.
    pub upgrade_share: f64,
    /// Chance, at each opportunity, of an event type the mirror does not model.
    pub unmodeled_share: f64,
    /// Chance that a seat or email change is followed by a second one in the same second.
    pub double_update_share: f64,
    /// Chance that such a double change gets a third change of the same field in the same
    /// second (A → B → C → D). Pairwise comparison of two events cannot order B and D (neither
    /// lists the other's state as previous); only the whole chain can. Off by default.
    pub triple_update_share: f64,
    /// Share of customers deleted at the end of their life.
    pub customer_delete_share: f64,
    /// Share of customer deletions whose event carries only `{"id","object","deleted":true}`.
    pub stub_deleted_customer_share: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            customers: 50,
            workspace_id: DEFAULT_WORKSPACE,
            duplicate_share: 0.10,
            duplicate_distance: 300,
            reorder_window: 60,
            reorder_chunk_max: 6,
            late_share: 0.02,
            late_distance: 400,
            basil_share: 0.35,
            upgrade_share: 0.30,
            unmodeled_share: 0.15,
            double_update_share: 0.15,
            triple_update_share: 0.0,
            customer_delete_share: 0.12,
            stub_deleted_customer_share: 0.5,
        }
    }
}

/// The generated traffic.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Event JSON bodies in delivery order, duplicates included.
    pub deliveries: Vec<String>,
    /// What the mirror must hold afterwards.
    pub expected: ExpectedState,
    /// Every distinct event in true order (for diagnostics).
    pub events: Vec<EventMeta>,
    /// For each delivery, the index in [`Generated::events`] of the event it carries.
    pub delivery_order: Vec<usize>,
}

/// One event, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub id: String,
    pub event_type: String,
    /// `data.object.id` (none for `invoice.upcoming`).
    pub object_id: Option<String>,
    pub created: i64,
    pub api_version: &'static str,
}

/// Which event wrote an object's expected state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastEvent {
    /// The newest event of the object in true order.
    pub id: String,
    /// Earlier events of the same second carrying the very same object (e.g. `invoice.paid`
    /// before `invoice.payment_succeeded`): nothing orders them, so any of them may be stored.
    pub equivalent: Vec<String>,
    /// Its `created` (unix seconds).
    pub created: i64,
}

impl LastEvent {
    /// Every id acceptable as `last_event_id`.
    pub fn accepted(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.equivalent.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedCustomer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub workspace_id: Option<Uuid>,
    pub deleted: bool,
    /// The deletion event carried only `{"id","object","deleted":true}`: email, name and
    /// workspace may have been kept from the previous state or cleared.
    pub deleted_as_stub: bool,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedProduct {
    pub name: String,
    pub active: bool,
    pub deleted: bool,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedPrice {
    pub product: String,
    pub active: bool,
    pub unit_amount: i64,
    pub currency: String,
    pub recurring_interval: String,
    pub recurring_interval_count: i64,
    pub deleted: bool,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedSubscription {
    pub customer: String,
    pub status: String,
    pub cancel_at_period_end: bool,
    pub current_period_end: i64,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// `customer.subscription.deleted` was its last event.
    pub deleted: bool,
    pub last_event: LastEvent,
}

/// An item of a subscription snapshot. One missing from the subscription's newest snapshot was
/// removed or replaced; every item of a deleted subscription is deleted too. Price and
/// quantity are those of the newest snapshot that still listed the item.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedSubscriptionItem {
    pub subscription: String,
    pub price: String,
    pub quantity: i64,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedInvoice {
    pub customer: String,
    pub subscription: Option<String>,
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedCharge {
    pub customer: String,
    /// The invoice the charge paid.
    pub invoice: Option<String>,
    /// Whether the newest event's charge object has the `invoice` field (2024 shape). A basil
    /// charge does not; then the stored `invoice` may also be NULL.
    pub invoice_in_final_shape: bool,
    pub status: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub refunded: bool,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedDispute {
    pub charge: String,
    pub amount: i64,
    pub status: String,
    pub last_event: LastEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedCheckoutSession {
    pub customer: String,
    pub subscription: String,
    pub payment_status: String,
    pub last_event: LastEvent,
}

/// The `stripe` schema after every delivery, keyed by object id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedState {
    pub workspace_id: Uuid,
    /// Every distinct event id: the ledger must hold exactly these.
    pub event_ids: BTreeSet<String>,
    /// Events of types the mirror does not model (ledger outcome `unsupported`).
    pub unmodeled_event_ids: BTreeSet<String>,
    pub customers: BTreeMap<String, ExpectedCustomer>,
    pub products: BTreeMap<String, ExpectedProduct>,
    pub prices: BTreeMap<String, ExpectedPrice>,
    pub subscriptions: BTreeMap<String, ExpectedSubscription>,
    pub subscription_items: BTreeMap<String, ExpectedSubscriptionItem>,
    pub invoices: BTreeMap<String, ExpectedInvoice>,
    pub charges: BTreeMap<String, ExpectedCharge>,
    pub disputes: BTreeMap<String, ExpectedDispute>,
    pub checkout_sessions: BTreeMap<String, ExpectedCheckoutSession>,
}

impl Generated {
    /// The events of one object in true order, each with the delivery positions it took: what
    /// to look at when the mirror disagrees about that object. A subscription item is shown
    /// through its subscription's events, with the item as each snapshot lists it.
    pub fn describe(&self, object_id: &str) -> String {
        let mut positions: HashMap<usize, Vec<usize>> = HashMap::new();
        for (position, &event) in self.delivery_order.iter().enumerate() {
            positions.entry(event).or_default().push(position);
        }
        let item = self.expected.subscription_items.get(object_id);
        let owner = item.map_or(object_id, |item| item.subscription.as_str());
        let mut out = String::new();
        if item.is_some() {
            out.push_str(&format!("  (item of {owner})\n"));
        }
        for (index, event) in self.events.iter().enumerate() {
            if event.object_id.as_deref() != Some(owner) {
                continue;
            }
            let delivered = positions.get(&index).cloned().unwrap_or_default();
            let detail = match (item, delivered.first()) {
                (Some(_), Some(&first)) => {
                    let body: Value =
                        serde_json::from_str(&self.deliveries[first]).unwrap_or_default();
                    let listed = body["data"]["object"]["items"]["data"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|listed| listed["id"] == object_id);
                    match listed {
                        Some(listed) => format!(
                            "  item: quantity {} price {}",
                            listed["quantity"], listed["price"]["id"]
                        ),
                        None => "  item: not listed".to_string(),
                    }
                }
                _ => String::new(),
            };
            out.push_str(&format!(
                "  true #{index:<6} created {} {:<38} {} {:<17} delivered at {:?}{detail}\n",
                event.created, event.event_type, event.id, event.api_version, delivered
            ));
        }
        out
    }

    /// The events of one object in the order they were delivered (first copies only).
    pub fn delivered_sequence(&self, object_id: &str) -> Vec<&EventMeta> {
        let mut seen = HashSet::new();
        self.delivery_order
            .iter()
            .filter(|&&index| self.events[index].object_id.as_deref() == Some(object_id))
            .filter(|&&index| seen.insert(index))
            .map(|&index| &self.events[index])
            .collect()
    }
}

/// Generates about `deliveries` deliveries: `config.customers` is scaled from a first run.
pub fn generate_deliveries(seed: u64, deliveries: usize, config: &GeneratorConfig) -> Generated {
    let probe = GeneratorConfig {
        customers: 50,
        ..config.clone()
    };
    let per_customer = generate(seed, &probe).deliveries.len() as f64 / 50.0;
    let customers = ((deliveries as f64 / per_customer).round() as usize).max(1);
    generate(
        seed,
        &GeneratorConfig {
            customers,
            ..config.clone()
        },
    )
}

/// Simulates the account and returns its webhook traffic and the state it must produce.
pub fn generate(seed: u64, config: &GeneratorConfig) -> Generated {
    let mut world = World::new(seed, config);
    let catalog_lane = Lane {
        stream: 0,
        basil_from: if config.basil_share >= 1.0 {
            Some(i64::MIN)
        } else if config.basil_share + config.upgrade_share <= 0.0 {
            None
        } else {
            Some(T0)
        },
    };
    build_catalog(&mut world, catalog_lane);
    for customer in 0..config.customers {
        let start = T0 + world.range(0, 90 * DAY);
        let draw: f64 = world.rng.random();
        let basil_from = if draw < config.basil_share {
            Some(i64::MIN)
        } else if draw < config.basil_share + config.upgrade_share {
            Some(start + world.range(0, 150 * DAY))
        } else {
            None
        };
        customer_life(
            &mut world,
            Lane {
                stream: customer + 1,
                basil_from,
            },
            start,
        );
    }
    world.finish()
}

// ---------------------------------------------------------------------------------------------
// The simulated objects and how each renders at an API version.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    V2024,
    Basil,
}

impl Shape {
    fn api_version(self) -> &'static str {
        match self {
            Shape::V2024 => API_2024,
            Shape::Basil => API_BASIL,
        }
    }
}

/// One timeline (the catalog, or one customer): its events' `created` never decrease, and it
/// renders at basil from `basil_from` on.
#[derive(Debug, Clone, Copy)]
struct Lane {
    stream: usize,
    basil_from: Option<i64>,
}

impl Lane {
    fn shape(&self, t: i64) -> Shape {
        match self.basil_from {
            Some(from) if t >= from => Shape::Basil,
            _ => Shape::V2024,
        }
    }
}

#[derive(Debug, Clone)]
struct Product {
    id: String,
    name: String,
    active: bool,
    created: i64,
    updated: i64,
    default_price: Option<String>,
    description: Option<String>,
}

impl Product {
    fn render(&self) -> Value {
        json!({
            "id": self.id, "object": "product", "active": self.active, "attributes": [],
            "created": self.created, "default_price": self.default_price,
            "description": self.description, "images": [], "livemode": false,
            "marketing_features": [], "metadata": {}, "name": self.name,
            "package_dimensions": null, "shippable": null, "statement_descriptor": null,
            "tax_code": null, "type": "service", "unit_label": null, "updated": self.updated,
            "url": null
        })
    }
}

#[derive(Debug, Clone)]
struct Price {
    id: String,
    product: String,
    active: bool,
    currency: &'static str,
    unit_amount: i64,
    interval: &'static str,
    interval_count: i64,
    created: i64,
    nickname: Option<String>,
    lookup_key: Option<String>,
}

impl Price {
    fn render(&self, shape: Shape) -> Value {
        let mut recurring = json!({
            "interval": self.interval, "interval_count": self.interval_count, "meter": null,
            "trial_period_days": null, "usage_type": "licensed"
        });
        if shape == Shape::V2024 {
            recurring["aggregate_usage"] = Value::Null;
        }
        json!({
            "id": self.id, "object": "price", "active": self.active, "billing_scheme": "per_unit",
            "created": self.created, "currency": self.currency, "custom_unit_amount": null,
            "livemode": false, "lookup_key": self.lookup_key, "metadata": {},
            "nickname": self.nickname, "product": self.product, "recurring": recurring,
            "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
            "type": "recurring", "unit_amount": self.unit_amount,
            "unit_amount_decimal": self.unit_amount.to_string()
        })
    }
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    address: Option<Value>,
    created: i64,
    currency: Option<&'static str>,
    delinquent: bool,
    default_payment_method: Option<String>,
    invoice_prefix: String,
    workspace: Uuid,
}

impl Customer {
    fn render(&self) -> Value {
        json!({
            "id": self.id, "object": "customer", "address": self.address, "balance": 0,
            "created": self.created, "currency": self.currency, "default_source": null,
            "delinquent": self.delinquent, "description": null, "discount": null,
            "email": self.email, "invoice_prefix": self.invoice_prefix,
            "invoice_settings": {
                "custom_fields": null, "default_payment_method": self.default_payment_method,
                "footer": null, "rendering_options": null
            },
            "livemode": false, "metadata": {"workspace_id": self.workspace.to_string()},
            "name": self.name, "phone": self.phone, "preferred_locales": [],
            "shipping": null, "tax_exempt": "none", "test_clock": null
        })
    }
}

#[derive(Debug, Clone)]
struct Coupon {
    id: String,
    percent_off: i64,
    created: i64,
    discount_id: String,
}

#[derive(Debug, Clone)]
struct Item {
    id: String,
    price: usize,
    quantity: i64,
    created: i64,
}

#[derive(Debug, Clone)]
struct Subscription {
    id: String,
    customer: String,
    status: &'static str,
    items: Vec<Item>,
    cancel_at_period_end: bool,
    cancel_at: Option<i64>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    cancellation_reason: Option<&'static str>,
    trial_start: Option<i64>,
    trial_end: Option<i64>,
    currency: &'static str,
    interval: (&'static str, i64),
    created: i64,
    billing_cycle_anchor: i64,
    period_start: i64,
    period_end: i64,
    latest_invoice: Option<String>,
    default_payment_method: Option<String>,
    coupon: Option<Coupon>,
    workspace: Uuid,
}

impl Subscription {
    fn subtotal(&self, prices: &[Price]) -> i64 {
        self.items
            .iter()
            .map(|item| prices[item.price].unit_amount * item.quantity)
            .sum()
    }

    fn discount_on(&self, subtotal: i64) -> i64 {
        self.coupon
            .as_ref()
            .map_or(0, |coupon| subtotal * coupon.percent_off / 100)
    }

    fn render(&self, shape: Shape, prices: &[Price]) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|item| {
                let mut rendered = json!({
                    "id": item.id, "object": "subscription_item", "created": item.created,
                    "discounts": [], "metadata": {},
                    "price": prices[item.price].render(shape), "quantity": item.quantity,
                    "subscription": self.id, "tax_rates": []
                });
                if shape == Shape::Basil {
                    rendered["current_period_start"] = json!(self.period_start);
                    rendered["current_period_end"] = json!(self.period_end);
                }
                rendered
            })
            .collect();
        let discount = self.coupon.as_ref().map(|coupon| {
            json!({
                "id": coupon.discount_id, "object": "discount",
                "coupon": {
                    "id": coupon.id, "object": "coupon", "amount_off": null,
                    "created": coupon.created, "currency": null, "duration": "forever",
                    "duration_in_months": null, "livemode": false, "max_redemptions": null,
                    "metadata": {}, "name": format!("{}% off", coupon.percent_off),
                    "percent_off": coupon.percent_off as f64, "redeem_by": null,
                    "times_redeemed": 1, "valid": true
                },
                "customer": self.customer, "end": null, "invoice": null,
                "invoice_item": null, "promotion_code": null, "start": self.created,
                "subscription": self.id
            })
        });
        let discounts: Vec<&str> = self
            .coupon
            .iter()
            .map(|coupon| coupon.discount_id.as_str())
            .collect();
        let mut rendered = json!({
            "id": self.id, "object": "subscription", "application": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": self.billing_cycle_anchor, "cancel_at": self.cancel_at,
            "cancel_at_period_end": self.cancel_at_period_end, "canceled_at": self.canceled_at,
            "cancellation_details": {
                "comment": null, "feedback": null, "reason": self.cancellation_reason
            },
            "collection_method": "charge_automatically", "created": self.created,
            "currency": self.currency, "customer": self.customer, "days_until_due": null,
            "default_payment_method": self.default_payment_method, "description": null,
            "discount": discount, "discounts": discounts, "ended_at": self.ended_at,
            "items": {
                "object": "list", "data": items, "has_more": false,
                "total_count": self.items.len(),
                "url": format!("/v1/subscription_items?subscription={}", self.id)
            },
            "latest_invoice": self.latest_invoice, "livemode": false,
            "metadata": {"workspace_id": self.workspace.to_string()},
            "pause_collection": null, "start_date": self.created, "status": self.status,
            "trial_end": self.trial_end, "trial_start": self.trial_start
        });
        if shape == Shape::V2024 {
            rendered["current_period_start"] = json!(self.period_start);
            rendered["current_period_end"] = json!(self.period_end);
        }
        rendered
    }
}

#[derive(Debug, Clone)]
struct Line {
    id: String,
    amount: i64,
    description: String,
    quantity: i64,
    price: Option<usize>,
    subscription_item: Option<String>,
    period: (i64, i64),
}

#[derive(Debug, Clone)]
struct Invoice {
    /// None for the preview an `invoice.upcoming` event carries.
    id: Option<String>,
    customer: String,
    customer_email: Option<String>,
    customer_name: Option<String>,
    subscription: Option<String>,
    status: &'static str,
    billing_reason: &'static str,
    subtotal: i64,
    amount_due: i64,
    amount_paid: i64,
    currency: &'static str,
    created: i64,
    period: (i64, i64),
    lines: Vec<Line>,
    number: Option<String>,
    attempt_count: i64,
    attempted: bool,
    next_payment_attempt: Option<i64>,
    finalized_at: Option<i64>,
    paid_at: Option<i64>,
    voided_at: Option<i64>,
    uncollectible_at: Option<i64>,
    charge: Option<String>,
    payment_intent: Option<String>,
    payment_record_id: Option<String>,
    payment_created: Option<i64>,
    discount_id: Option<String>,
}

impl Invoice {
    fn render(&self, shape: Shape, prices: &[Price]) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .map(|line| {
                let mut rendered = json!({
                    "id": line.id, "object": "line_item", "amount": line.amount,
                    "currency": self.currency, "description": line.description,
                    "discountable": true, "discounts": [], "invoice": self.id,
                    "livemode": false, "metadata": {},
                    "period": {"end": line.period.1, "start": line.period.0},
                    "quantity": line.quantity
                });
                match shape {
                    Shape::V2024 => {
                        rendered["price"] = line
                            .price
                            .map_or(Value::Null, |price| prices[price].render(shape));
                        rendered["subscription"] = json!(self.subscription);
                        rendered["subscription_item"] = json!(line.subscription_item);
                        rendered["proration"] = json!(false);
                        rendered["type"] = json!(if line.subscription_item.is_some() {
                            "subscription"
                        } else {
                            "invoiceitem"
                        });
                    }
                    Shape::Basil => {
                        rendered["parent"] = match &line.subscription_item {
                            Some(item) => json!({
                                "type": "subscription_item_details",
                                "subscription_item_details": {
                                    "invoice_item": null, "proration": false,
                                    "proration_details": {"credited_items": null},
                                    "subscription": self.subscription, "subscription_item": item
                                },
                                "invoice_item_details": null
                            }),
                            None => Value::Null,
                        };
                        rendered["pricing"] = match line.price {
                            Some(price) => json!({
                                "type": "price_details",
                                "price_details": {
                                    "price": prices[price].id,
                                    "product": prices[price].product
                                },
                                "unit_amount_decimal": prices[price].unit_amount.to_string()
                            }),
                            None => Value::Null,
                        };
                    }
                }
                rendered
            })
            .collect();
        let paid = self.status == "paid";
        let mut rendered = json!({
            "object": "invoice", "account_country": "US", "account_name": "Growth Agents Inc.",
            "amount_due": self.amount_due, "amount_paid": self.amount_paid,
            "amount_remaining": self.amount_due - self.amount_paid, "attempt_count": self.attempt_count,
            "attempted": self.attempted, "auto_advance": !matches!(self.status, "paid" | "void" | "uncollectible"),
            "billing_reason": self.billing_reason,
            "collection_method": "charge_automatically", "created": self.created,
            "currency": self.currency, "customer": self.customer,
            "customer_email": self.customer_email, "customer_name": self.customer_name,
            "default_payment_method": null, "description": null,
            "hosted_invoice_url": self.number.as_ref().map(|n| format!("https://invoice.stripe.com/i/acct_1Growth/{n}")),
            "lines": {
                "object": "list", "data": lines, "has_more": false,
                "total_count": self.lines.len(),
                "url": format!("/v1/invoices/{}/lines", self.id.as_deref().unwrap_or("upcoming"))
            },
            "livemode": false, "metadata": {},
            "next_payment_attempt": self.next_payment_attempt, "number": self.number,
            "period_end": self.period.1, "period_start": self.period.0,
            "status": self.status,
            "status_transitions": {
                "finalized_at": self.finalized_at, "marked_uncollectible_at": self.uncollectible_at,
                "paid_at": self.paid_at, "voided_at": self.voided_at
            },
            "subtotal": self.subtotal, "total": self.amount_due,
            "total_discount_amounts": match &self.discount_id {
                Some(discount) => json!([{"amount": self.subtotal - self.amount_due, "discount": discount}]),
                None => json!([]),
            }
        });
        if let Some(id) = &self.id {
            rendered["id"] = json!(id);
        }
        match shape {
            Shape::V2024 => {
                rendered["subscription"] = json!(self.subscription);
                rendered["subscription_details"] =
                    json!(self.subscription.as_ref().map(|_| json!({"metadata": {}})));
                rendered["paid"] = json!(paid);
                rendered["charge"] = json!(self.charge);
                rendered["payment_intent"] = json!(self.payment_intent);
                rendered["discount"] = Value::Null;
            }
            Shape::Basil => {
                rendered["parent"] = match &self.subscription {
                    Some(subscription) => json!({
                        "type": "subscription_details", "quote_details": null,
                        "subscription_details": {"metadata": {}, "subscription": subscription}
                    }),
                    None => Value::Null,
                };
                let payments: Vec<Value> = match (&self.payment_record_id, &self.payment_intent) {
                    (Some(record), Some(intent)) => vec![json!({
                        "id": record, "object": "invoice_payment",
                        "amount_paid": if paid { Some(self.amount_paid) } else { None },
                        "amount_requested": self.amount_due,
                        "created": self.payment_created, "currency": self.currency,
                        "invoice": self.id, "is_default": true, "livemode": false,
                        "payment": {"type": "payment_intent", "payment_intent": intent},
                        "status": match self.status {
                            "paid" => "paid",
                            "void" | "uncollectible" => "canceled",
                            _ => "open",
                        },
                        "status_transitions": {"canceled_at": self.voided_at, "paid_at": self.paid_at}
                    })],
                    _ => Vec::new(),
                };
                rendered["payments"] = json!({
                    "object": "list", "data": payments, "has_more": false,
                    "total_count": payments.len(), "url": "/v1/invoice_payments"
                });
            }
        }
        rendered
    }
}

#[derive(Debug, Clone)]
struct Charge {
    id: String,
    customer: String,
    customer_email: Option<String>,
    invoice: Option<String>,
    payment_intent: String,
    payment_method: String,
    amount: i64,
    amount_refunded: i64,
    currency: &'static str,
    succeeded: bool,
    created: i64,
    disputed: bool,
    balance_transaction: Option<String>,
    description: &'static str,
}

impl Charge {
    fn render(&self, shape: Shape) -> Value {
        let mut rendered = json!({
            "id": self.id, "object": "charge", "amount": self.amount,
            "amount_captured": if self.succeeded { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded,
            "balance_transaction": self.balance_transaction,
            "billing_details": {"address": null, "email": self.customer_email, "name": null, "phone": null},
            "captured": self.succeeded, "created": self.created, "currency": self.currency,
            "customer": self.customer, "description": self.description,
            "disputed": self.disputed,
            "failure_code": if self.succeeded { Value::Null } else { json!("card_declined") },
            "failure_message": if self.succeeded { Value::Null } else { json!("Your card was declined.") },
            "livemode": false, "metadata": {},
            "outcome": if self.succeeded {
                json!({"network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                       "seller_message": "Payment complete.", "type": "authorized"})
            } else {
                json!({"network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
                       "seller_message": "The bank did not return any further details with this decline.",
                       "type": "issuer_declined"})
            },
            "paid": self.succeeded, "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030}},
            "receipt_email": self.customer_email,
            "refunded": self.amount_refunded == self.amount && self.amount > 0,
            "status": if self.succeeded { "succeeded" } else { "failed" }
        });
        if shape == Shape::V2024 {
            rendered["invoice"] = json!(self.invoice);
        }
        rendered
    }

    fn refunded(&self) -> bool {
        self.amount_refunded == self.amount && self.amount > 0
    }
}

// ---------------------------------------------------------------------------------------------
// The world: rng, ids, the event log and the expected state, updated as events are emitted.

struct RawEvent {
    seq: usize,
    created: i64,
    meta: EventMeta,
    body: String,
}

/// Per object, the newest emitted event: to detect indistinguishable same-second repeats.
struct Latest {
    created: i64,
    object: Value,
    last_event: LastEvent,
}

struct World<'c> {
    config: &'c GeneratorConfig,
    rng: ChaCha8Rng,
    ids: HashSet<String>,
    raw: Vec<RawEvent>,
    stream_clock: HashMap<usize, i64>,
    latest: HashMap<String, Latest>,
    expected: ExpectedState,
    /// (older event seq, anchor event seq): deliver the older one after the anchor.
    forced_late: Vec<(usize, usize)>,
    products: Vec<Product>,
    prices: Vec<Price>,
    base_products: Vec<usize>,
    addon_products: Vec<usize>,
    price_index: HashMap<(usize, &'static str, &'static str, i64), usize>,
    subscription_items_seen: HashMap<String, Vec<String>>,
}

/// What `emit` hands back.
#[derive(Debug, Clone)]
struct Emitted {
    seq: usize,
    id: String,
    created: i64,
    object: Value,
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl<'c> World<'c> {
    fn new(seed: u64, config: &'c GeneratorConfig) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            ids: HashSet::new(),
            raw: Vec::new(),
            stream_clock: HashMap::new(),
            latest: HashMap::new(),
            expected: ExpectedState {
                workspace_id: config.workspace_id,
                ..ExpectedState::default()
            },
            forced_late: Vec::new(),
            products: Vec::new(),
            prices: Vec::new(),
            base_products: Vec::new(),
            addon_products: Vec::new(),
            price_index: HashMap::new(),
            subscription_items_seen: HashMap::new(),
        }
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        self.rng.random_range(low..=high)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// A Stripe-looking id: `prefix_` and 14–24 alphanumerics (24 for events), never repeated.
    fn id(&mut self, prefix: &str) -> String {
        loop {
            let len = if prefix == "evt" {
                24
            } else {
                self.rng.random_range(14..=24)
            };
            let tail: String = (0..len)
                .map(|_| ALPHANUMERIC[self.rng.random_range(0..ALPHANUMERIC.len())] as char)
                .collect();
            let id = format!("{prefix}_{tail}");
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    /// Emits one event. `before` (the object's previous state rendered at the same version)
    /// gives `previous_attributes` to `*.updated` events: the changed top-level fields with
    /// their previous values.
    fn emit(
        &mut self,
        lane: Lane,
        created: i64,
        event_type: &str,
        object: Value,
        before: Option<&Value>,
        from_request: bool,
    ) -> Emitted {
        let clock = self.stream_clock.entry(lane.stream).or_insert(i64::MIN);
        assert!(
            created >= *clock,
            "stream {} went back in time: {event_type} at {created} after {clock}",
            lane.stream
        );
        *clock = created;
        let shape = lane.shape(created);
        let id = self.id("evt");
        let mut data = json!({ "object": object });
        if event_type.ends_with(".updated") {
            let before = before.unwrap_or_else(|| panic!("{event_type} needs the previous state"));
            let previous = previous_attributes(before, &object);
            assert!(
                !previous.is_empty(),
                "{event_type} of {:?} changes nothing",
                object.get("id")
            );
            data["previous_attributes"] = Value::Object(previous);
        }
        let request = if from_request {
            let key = self.uuid();
            json!({"id": self.id("req"), "idempotency_key": key.to_string()})
        } else {
            json!({"id": null, "idempotency_key": null})
        };
        let body = json!({
            "id": id, "object": "event", "api_version": shape.api_version(),
            "created": created, "data": data, "livemode": false, "pending_webhooks": 1,
            "request": request, "type": event_type
        });
        let seq = self.raw.len();
        self.raw.push(RawEvent {
            seq,
            created,
            meta: EventMeta {
                id: id.clone(),
                event_type: event_type.to_string(),
                object_id: object.get("id").and_then(Value::as_str).map(str::to_string),
                created,
                api_version: shape.api_version(),
            },
            body: body.to_string(),
        });
        self.expected.event_ids.insert(id.clone());
        Emitted {
            seq,
            id,
            created,
            object,
        }
    }

    /// Records `emitted` as the newest event of its object and returns its [`LastEvent`].
    fn note(&mut self, emitted: &Emitted) -> LastEvent {
        let object_id = emitted
            .object
            .get("id")
            .and_then(Value::as_str)
            .expect("a mirrored object has an id")
            .to_string();
        let equivalent = match self.latest.get(&object_id) {
            Some(latest)
                if latest.created == emitted.created && latest.object == emitted.object =>
            {
                let mut equivalent = latest.last_event.equivalent.clone();
                equivalent.push(latest.last_event.id.clone());
                equivalent
            }
            _ => Vec::new(),
        };
        let last_event = LastEvent {
            id: emitted.id.clone(),
            equivalent,
            created: emitted.created,
        };
        self.latest.insert(
            object_id,
            Latest {
                created: emitted.created,
                object: emitted.object.clone(),
                last_event: last_event.clone(),
            },
        );
        last_event
    }

    fn unmodeled(&mut self, lane: Lane, t: i64, event_type: &str, object: Value) -> Emitted {
        let emitted = self.emit(lane, t, event_type, object, None, false);
        self.expected.unmodeled_event_ids.insert(emitted.id.clone());
        emitted
    }

    // --- one method per mirrored object kind: render, emit, record the expected row --------

    fn product_event(
        &mut self,
        lane: Lane,
        t: i64,
        event_type: &str,
        product: &Product,
        before: Option<&Product>,
    ) -> Emitted {
        let (object, before) = (product.render(), before.map(Product::render));
        let emitted = self.emit(lane, t, event_type, object, before.as_ref(), true);
        let last_event = self.note(&emitted);
        self.expected.products.insert(
            product.id.clone(),
            ExpectedProduct {
                name: product.name.clone(),
                active: product.active,
                deleted: event_type == "product.deleted",
                last_event,
            },
        );
        emitted
    }

    fn price_event(&mut self, lane: Lane, t: i64, event_type: &str, price: usize) -> Emitted {
        let shape = lane.shape(t);
        let object = self.prices[price].render(shape);
        let emitted = self.emit(lane, t, event_type, object, None, true);
        let last_event = self.note(&emitted);
        let price = &self.prices[price];
        self.expected.prices.insert(
            price.id.clone(),
            ExpectedPrice {
                product: price.product.clone(),
                active: price.active,
                unit_amount: price.unit_amount,
                currency: price.currency.to_string(),
                recurring_interval: price.interval.to_string(),
                recurring_interval_count: price.interval_count,
                deleted: event_type == "price.deleted",
                last_event,
            },
        );
        emitted
    }

    fn customer_event(
        &mut self,
        lane: Lane,
        t: i64,
        event_type: &str,
        customer: &Customer,
        before: Option<&Customer>,
    ) -> Emitted {
        let (object, before) = (customer.render(), before.map(Customer::render));
        let emitted = self.emit(lane, t, event_type, object, before.as_ref(), true);
        let last_event = self.note(&emitted);
        self.expected.customers.insert(
            customer.id.clone(),
            ExpectedCustomer {
                email: customer.email.clone(),
                name: customer.name.clone(),
                workspace_id: Some(customer.workspace),
                deleted: event_type == "customer.deleted",
                deleted_as_stub: false,
                last_event,
            },
        );
        emitted
    }

    fn customer_deleted_stub(&mut self, lane: Lane, t: i64, customer: &Customer) -> Emitted {
        let object = json!({"id": customer.id, "object": "customer", "deleted": true});
        let emitted = self.emit(lane, t, "customer.deleted", object, None, true);
        let last_event = self.note(&emitted);
        self.expected.customers.insert(
            customer.id.clone(),
            ExpectedCustomer {
                email: customer.email.clone(),
                name: customer.name.clone(),
                workspace_id: Some(customer.workspace),
                deleted: true,
                deleted_as_stub: true,
                last_event,
            },
        );
        emitted
    }

    fn subscription_event(
        &mut self,
        lane: Lane,
        t: i64,
        event_type: &str,
        subscription: &Subscription,
        before: Option<&Subscription>,
        from_request: bool,
    ) -> Emitted {
        let shape = lane.shape(t);
        let object = subscription.render(shape, &self.prices);
        let before = before.map(|before| before.render(shape, &self.prices));
        let emitted = self.emit(lane, t, event_type, object, before.as_ref(), from_request);
        let last_event = self.note(&emitted);
        let deleted = event_type == "customer.subscription.deleted";
        self.expected.subscriptions.insert(
            subscription.id.clone(),
            ExpectedSubscription {
                customer: subscription.customer.clone(),
                status: subscription.status.to_string(),
                cancel_at_period_end: subscription.cancel_at_period_end,
                current_period_end: subscription.period_end,
                canceled_at: subscription.canceled_at,
                ended_at: subscription.ended_at,
                deleted,
                last_event,
            },
        );
        let seen = self
            .subscription_items_seen
            .entry(subscription.id.clone())
            .or_default();
        for item in &subscription.items {
            if !seen.contains(&item.id) {
                seen.push(item.id.clone());
            }
        }
        for item_id in seen.clone() {
            match subscription.items.iter().find(|item| item.id == item_id) {
                Some(item) => {
                    self.expected.subscription_items.insert(
                        item.id.clone(),
                        ExpectedSubscriptionItem {
                            subscription: subscription.id.clone(),
                            price: self.prices[item.price].id.clone(),
                            quantity: item.quantity,
                            deleted,
                        },
                    );
                }
                None => {
                    if let Some(expected) = self.expected.subscription_items.get_mut(&item_id) {
                        expected.deleted = true;
                    }
                }
            }
        }
        emitted
    }

    fn invoice_event(
        &mut self,
        lane: Lane,
        t: i64,
        event_type: &str,
        invoice: &Invoice,
    ) -> Emitted {
        let shape = lane.shape(t);
        let object = invoice.render(shape, &self.prices);
        let emitted = self.emit(lane, t, event_type, object, None, false);
        let last_event = self.note(&emitted);
        self.expected.invoices.insert(
            invoice.id.clone().expect("a real invoice has an id"),
            ExpectedInvoice {
                customer: invoice.customer.clone(),
                subscription: invoice.subscription.clone(),
                status: invoice.status.to_string(),
                amount_due: invoice.amount_due,
                amount_paid: invoice.amount_paid,
                currency: invoice.currency.to_string(),
                last_event,
            },
        );
        emitted
    }

    fn charge_event(
        &mut self,
        lane: Lane,
        t: i64,
        event_type: &str,
        charge: &Charge,
        before: Option<&Charge>,
    ) -> Emitted {
        let shape = lane.shape(t);
        let (object, before) = (charge.render(shape), before.map(|b| b.render(shape)));
        let emitted = self.emit(lane, t, event_type, object, before.as_ref(), false);
        let last_event = self.note(&emitted);
        self.expected.charges.insert(
            charge.id.clone(),
            ExpectedCharge {
                customer: charge.customer.clone(),
                invoice: charge.invoice.clone(),
                invoice_in_final_shape: shape == Shape::V2024,
                status: if charge.succeeded {
                    "succeeded"
                } else {
                    "failed"
                }
                .to_string(),
                amount: charge.amount,
                amount_refunded: charge.amount_refunded,
                refunded: charge.refunded(),
                last_event,
            },
        );
        emitted
    }

    fn finish(self) -> Generated {
        let World {
            config,
            mut rng,
            mut raw,
            forced_late,
            expected,
            ..
        } = self;
        // True order: by second, then by emission (which is causal within each timeline).
        raw.sort_by_key(|event| (event.created, event.seq));
        let mut index_of_seq = vec![0; raw.len()];
        for (index, event) in raw.iter().enumerate() {
            index_of_seq[event.seq] = index;
        }
        let forced: Vec<(usize, usize)> = forced_late
            .iter()
            .map(|&(older, anchor)| (index_of_seq[older], index_of_seq[anchor]))
            .collect();
        let delivery_order = delivery_order(&mut rng, raw.len(), config, &forced);
        let deliveries = delivery_order
            .iter()
            .map(|&index| raw[index].body.clone())
            .collect();
        Generated {
            deliveries,
            expected,
            events: raw.into_iter().map(|event| event.meta).collect(),
            delivery_order,
        }
    }
}

/// The top-level fields whose values differ, with their values in `before` (null when absent).
fn previous_attributes(before: &Value, after: &Value) -> serde_json::Map<String, Value> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return serde_json::Map::new();
    };
    let mut changed = serde_json::Map::new();
    for (key, value) in before {
        if after.get(key) != Some(value) {
            changed.insert(key.clone(), value.clone());
        }
    }
    for key in after.keys() {
        if !before.contains_key(key) {
            changed.insert(key.clone(), Value::Null);
        }
    }
    changed
}

/// Permutes the true order into a delivery order: chunks shuffled within windows, some events
/// held back, forced late pairs, duplicates.
fn delivery_order(
    rng: &mut ChaCha8Rng,
    n: usize,
    config: &GeneratorConfig,
    forced: &[(usize, usize)],
) -> Vec<usize> {
    let window = config.reorder_window.max(1);
    let chunk_max = config.reorder_chunk_max.max(1);
    let mut order = Vec::with_capacity(n + n / 5);
    let mut start = 0;
    while start < n {
        let end = (start + window).min(n);
        let mut chunks = Vec::new();
        let mut at = start;
        while at < end {
            let len = rng.random_range(1..=chunk_max).min(end - at);
            chunks.push(at..at + len);
            at += len;
        }
        chunks.shuffle(rng);
        for chunk in chunks {
            order.extend(chunk);
        }
        start = end;
    }
    let position = |order: &[usize], event: usize| {
        order
            .iter()
            .position(|&e| e == event)
            .expect("every event is delivered")
    };
    let late = (n as f64 * config.late_share).round() as usize;
    for _ in 0..late {
        if order.len() < 2 {
            break;
        }
        let from = rng.random_range(0..order.len());
        let event = order.remove(from);
        let to = (from + rng.random_range(1..=config.late_distance.max(1))).min(order.len());
        order.insert(to, event);
    }
    for &(older, anchor) in forced {
        let (at_older, at_anchor) = (position(&order, older), position(&order, anchor));
        if at_older < at_anchor {
            let event = order.remove(at_older);
            let to = (at_anchor + rng.random_range(0..=20)).min(order.len());
            order.insert(to, event);
        }
    }
    let mut events: Vec<usize> = (0..n).collect();
    events.shuffle(rng);
    events.truncate((n as f64 * config.duplicate_share).round() as usize);
    for event in events {
        let at = position(&order, event);
        let to = (at + 1 + rng.random_range(0..=config.duplicate_distance)).min(order.len());
        order.insert(to, event);
    }
    order
}

// ---------------------------------------------------------------------------------------------
// The catalog.

const PLAN_NAMES: &[&str] = &["Starter", "Growth", "Scale", "Pro", "Business", "Agency"];
const ADDON_NAMES: &[&str] = &[
    "Extra seats",
    "Creative analytics",
    "Attribution add-on",
    "Priority support",
];
const INTERVALS: &[(&str, i64)] = &[("month", 1), ("month", 3), ("year", 1)];
const CURRENCIES: &[&str] = &["usd", "eur"];

fn period_len(interval: (&str, i64)) -> i64 {
    match interval {
        ("year", count) => 365 * DAY * count,
        (_, count) => 30 * DAY * count,
    }
}

/// One product with its six prices (two currencies × monthly, quarterly, yearly), created the
/// way the dashboard does it: product, prices, then the product's `default_price`, in one
/// second.
fn create_product(world: &mut World, lane: Lane, t: i64, name: String, monthly: i64) -> usize {
    let mut product = Product {
        id: world.id("prod"),
        name,
        active: true,
        created: t,
        updated: t,
        default_price: None,
        description: None,
    };
    world.product_event(lane, t, "product.created", &product, None);
    let index = world.products.len();
    world.products.push(product.clone());
    let mut first_price = None;
    for &currency in CURRENCIES {
        for &(interval, count) in INTERVALS {
            let usd = match (interval, count) {
                ("year", _) => monthly * 10,
                (_, 3) => monthly * 3 * 95 / 100,
                _ => monthly,
            };
            let unit_amount = if currency == "eur" {
                (usd * 92 / 100).div_euclid(100).max(1) * 100
            } else {
                usd
            };
            let price = Price {
                id: world.id("price"),
                product: product.id.clone(),
                active: true,
                currency,
                unit_amount,
                interval,
                interval_count: count,
                created: t,
                nickname: Some(format!("{} {interval}×{count} {currency}", product.name)),
                lookup_key: None,
            };
            let price_index = world.prices.len();
            world.prices.push(price);
            world
                .price_index
                .insert((index, currency, interval, count), price_index);
            world.price_event(lane, t, "price.created", price_index);
            first_price.get_or_insert(price_index);
        }
    }
    let before = product.clone();
    product.default_price = Some(world.prices[first_price.unwrap()].id.clone());
    world.product_event(lane, t, "product.updated", &product, Some(&before));
    world.products[index] = product;
    index
}

fn build_catalog(world: &mut World, lane: Lane) {
    let plans = (world.config.customers / 10).clamp(3, 12);
    let addons = (world.config.customers / 25).clamp(1, ADDON_NAMES.len() * 3);
    let mut t = T0 - 40 * DAY;
    for k in 0..plans + addons {
        t += world.range(MINUTE, HOUR);
        let (name, monthly) = if k < plans {
            let base = PLAN_NAMES[k % PLAN_NAMES.len()];
            let name = match k / PLAN_NAMES.len() {
                0 => base.to_string(),
                round => format!("{base} {}", round + 1),
            };
            let monthly = *world.pick(&[900, 1_900, 2_900, 4_900, 7_900, 9_900, 14_900, 29_900]);
            (name, monthly)
        } else {
            let base = ADDON_NAMES[(k - plans) % ADDON_NAMES.len()];
            (base.to_string(), world.range(3, 20) * 100)
        };
        let index = create_product(world, lane, t, name, monthly);
        if k < plans {
            world.base_products.push(index);
        } else {
            world.addon_products.push(index);
        }
    }
    // Renames of live products, weeks later (prices never embed the product's name).
    let mut t = T0 - 5 * DAY;
    let live: Vec<usize> = world.base_products.clone();
    for index in live {
        if world.chance(0.3) {
            t += world.range(HOUR, 4 * DAY);
            let before = world.products[index].clone();
            let mut product = before.clone();
            product.name = format!("{} (2025)", before.name);
            product.updated = t;
            product.description = Some(format!("{} plan", before.name));
            world.product_event(lane, t, "product.updated", &product, Some(&before));
            world.products[index] = product;
        }
    }
    // Legacy products: created, renamed, archived, then their prices and themselves deleted.
    // The rename is delivered after the deletion, and sometimes a price's creation after its
    // deletion: neither may revive anything.
    let legacy = (world.config.customers / 25).max(1);
    for k in 0..legacy {
        t += world.range(HOUR, 3 * DAY);
        let name = format!("Legacy plan {}", k + 1);
        let monthly = world.range(5, 50) * 100;
        let index = create_product(world, lane, t, name, monthly);
        t += world.range(DAY, 10 * DAY);
        let before = world.products[index].clone();
        let mut product = before.clone();
        product.name = format!("{} (retired)", before.name);
        product.updated = t;
        let rename = world.product_event(lane, t, "product.updated", &product, Some(&before));
        t += world.range(HOUR, 5 * DAY);
        let before = product.clone();
        product.active = false;
        product.updated = t;
        world.product_event(lane, t, "product.updated", &product, Some(&before));
        t += world.range(MINUTE, DAY);
        let prices: Vec<usize> = (0..world.prices.len())
            .filter(|&p| world.prices[p].product == product.id)
            .collect();
        let mut price_deletions = Vec::new();
        for &price in &prices {
            world.prices[price].active = false;
            let deleted = world.price_event(lane, t, "price.deleted", price);
            price_deletions.push((price, deleted.seq));
        }
        let deleted = world.product_event(lane, t, "product.deleted", &product, None);
        world.products[index] = product;
        world.forced_late.push((rename.seq, deleted.seq));
        for (price, deletion) in price_deletions {
            if world.chance(0.3) {
                let created = world
                    .raw
                    .iter()
                    .find(|event| {
                        event.meta.event_type == "price.created"
                            && event.meta.object_id.as_deref() == Some(&world.prices[price].id)
                    })
                    .map(|event| event.seq)
                    .expect("the price was created");
                world.forced_late.push((created, deletion));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A customer's life.

const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi",
    "Lena", "Mateo", "Noor", "Olga", "Priya", "Quinn", "Rafael", "Sofia", "Tariq",
];
const LAST_NAMES: &[&str] = &[
    "Andersen", "Baptiste", "Chen", "Dubois", "Eze", "Fischer", "García", "Haddad", "Ito",
    "Jansen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Patel", "Rossi", "Schmidt",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "shop.example",
    "brand.example",
    "store.example",
];

struct Life {
    lane: Lane,
    customer: Customer,
    customer_updates: Vec<Emitted>,
    subscription: Subscription,
    subscription_updates: Vec<Emitted>,
    payment_method: String,
    /// Successful charges, for refunds and disputes.
    charges: Vec<Charge>,
    ended: bool,
}

fn customer_life(world: &mut World, lane: Lane, start: i64) {
    let first = *world.pick(FIRST_NAMES);
    let last = *world.pick(LAST_NAMES);
    let domain = *world.pick(DOMAINS);
    let number = world.range(1, 9_999);
    let full_name = format!("{first} {last}");
    let email = format!(
        "{}.{}{number}@{domain}",
        ascii_lower(first),
        ascii_lower(last)
    );
    let mut customer = Customer {
        id: world.id("cus"),
        email: Some(email),
        name: world.chance(0.5).then(|| full_name.clone()),
        phone: None,
        address: None,
        created: start,
        currency: None,
        delinquent: false,
        default_payment_method: None,
        invoice_prefix: world.id("x")[2..10].to_uppercase(),
        workspace: world.config.workspace_id,
    };
    let mut t = start;
    let mut customer_updates = Vec::new();
    world.customer_event(lane, t, "customer.created", &customer, None);
    if customer.name.is_none() || world.chance(0.3) {
        // Checkout fills in the name and address right after creating the customer.
        let before = customer.clone();
        customer.name = Some(full_name.clone());
        customer.address = Some(json!({
            "city": "Berlin", "country": "DE", "line1": format!("Hauptstraße {number}"),
            "line2": null, "postal_code": "10115", "state": null
        }));
        customer_updates.push(world.customer_event(
            lane,
            t,
            "customer.updated",
            &customer,
            Some(&before),
        ));
    }

    // The subscription: same second as the customer half of the time (checkout), else later.
    if world.chance(0.5) {
        t += world.range(1, 2 * HOUR);
    }
    let currency = if world.chance(0.7) { "usd" } else { "eur" };
    let interval = {
        let draw: f64 = world.rng.random();
        if draw < 0.6 {
            INTERVALS[0]
        } else if draw < 0.75 {
            INTERVALS[1]
        } else {
            INTERVALS[2]
        }
    };
    let bases = world.base_products.clone();
    let base = *world.pick(&bases);
    let base_price = world.price_index[&(base, currency, interval.0, interval.1)];
    let mut items = vec![Item {
        id: world.id("si"),
        price: base_price,
        quantity: if world.chance(0.4) {
            world.range(2, 12)
        } else {
            1
        },
        created: t,
    }];
    if world.chance(0.3) {
        let addons = world.addon_products.clone();
        let addon = *world.pick(&addons);
        items.push(Item {
            id: world.id("si"),
            price: world.price_index[&(addon, currency, interval.0, interval.1)],
            quantity: world.range(1, 5),
            created: t,
        });
    }
    let trial = world.chance(0.25);
    let checkout = world.chance(0.6);
    let coupon = if world.chance(0.2) {
        Some(Coupon {
            id: world.id("x")[2..10].to_uppercase(),
            percent_off: *world.pick(&[10, 20, 25, 50]),
            created: t - world.range(DAY, 30 * DAY),
            discount_id: world.id("di"),
        })
    } else {
        None
    };
    let period_end = if trial {
        t + 14 * DAY
    } else {
        t + period_len(interval)
    };
    let mut subscription = Subscription {
        id: world.id("sub"),
        customer: customer.id.clone(),
        status: if trial {
            "trialing"
        } else if checkout {
            "incomplete"
        } else {
            "active"
        },
        items,
        cancel_at_period_end: false,
        cancel_at: None,
        canceled_at: None,
        ended_at: None,
        cancellation_reason: None,
        trial_start: trial.then_some(t),
        trial_end: trial.then_some(t + 14 * DAY),
        currency,
        interval,
        created: t,
        billing_cycle_anchor: period_end,
        period_start: t,
        period_end,
        latest_invoice: None,
        default_payment_method: None,
        coupon,
        workspace: world.config.workspace_id,
    };
    let subtotal = if trial {
        0
    } else {
        subscription.subtotal(&world.prices)
    };
    let mut invoice = new_invoice(
        world,
        &customer,
        Some(&subscription),
        t,
        "subscription_create",
        subtotal,
        (t, t),
    );
    subscription.latest_invoice = invoice.id.clone();
    let payment_method = world.id("pm");
    if customer.currency.is_none() {
        let before = customer.clone();
        customer.currency = Some(currency);
        customer.default_payment_method = Some(payment_method.clone());
        customer_updates.push(world.customer_event(
            lane,
            t,
            "customer.updated",
            &customer,
            Some(&before),
        ));
    }
    let mut life = Life {
        lane,
        customer,
        customer_updates,
        subscription_updates: Vec::new(),
        subscription,
        payment_method,
        charges: Vec::new(),
        ended: false,
    };
    let sub = life.subscription.clone();
    world.subscription_event(lane, t, "customer.subscription.created", &sub, None, true);
    world.invoice_event(lane, t, "invoice.created", &invoice);
    finalize(world, &life, &mut invoice, t);
    if invoice.payment_intent.is_some() && world.chance(world.config.unmodeled_share) {
        let intent = payment_intent_object(&life, &invoice, t);
        // Mirrored (`stripe.payment_intents`), but not part of the expected state: the
        // checker reads the tables the generator models.
        world.emit(lane, t, "payment_intent.created", intent, None, false);
    }
    if invoice.amount_due > 0 {
        charge_invoice(world, &mut life, &mut invoice, t);
    } else {
        mark_paid(world, &life, &mut invoice, t);
    }
    let before = life.subscription.clone();
    if life.subscription.status == "incomplete" {
        life.subscription.status = "active";
    }
    life.subscription.default_payment_method = Some(life.payment_method.clone());
    subscription_updated(world, &mut life, t, &before, true);
    if checkout {
        let session = json!({
            "id": world.id("cs"), "object": "checkout.session", "after_expiration": null,
            "allow_promotion_codes": null, "amount_subtotal": invoice.subtotal,
            "amount_total": invoice.amount_due, "billing_address_collection": null,
            "cancel_url": "https://app.example.com/billing", "client_reference_id": null,
            "created": t - world.range(30, 600), "currency": life.subscription.currency,
            "customer": life.customer.id, "customer_creation": "always",
            "customer_details": {"email": life.customer.email, "name": life.customer.name, "phone": null, "tax_exempt": "none"},
            "customer_email": null, "expires_at": t + DAY, "invoice": invoice.id,
            "livemode": false, "locale": null,
            "metadata": {"workspace_id": world.config.workspace_id.to_string()},
            "mode": "subscription", "payment_intent": null, "payment_method_types": ["card"],
            "payment_status": if invoice.amount_due > 0 { "paid" } else { "no_payment_required" },
            "status": "complete", "submit_type": null, "subscription": life.subscription.id,
            "success_url": "https://app.example.com/billing?session_id={CHECKOUT_SESSION_ID}",
            "total_details": {"amount_discount": invoice.subtotal - invoice.amount_due, "amount_shipping": 0, "amount_tax": 0},
            "url": null
        });
        let emitted = world.emit(
            lane,
            t,
            "checkout.session.completed",
            session.clone(),
            None,
            false,
        );
        let last_event = world.note(&emitted);
        world.expected.checkout_sessions.insert(
            session["id"].as_str().unwrap().to_string(),
            ExpectedCheckoutSession {
                customer: life.customer.id.clone(),
                subscription: life.subscription.id.clone(),
                payment_status: session["payment_status"].as_str().unwrap().to_string(),
                last_event,
            },
        );
    }
    if world.chance(world.config.unmodeled_share) {
        let object = json!({
            "id": world.id("txi"), "object": "tax_id", "country": "DE", "created": t,
            "customer": life.customer.id, "livemode": false, "type": "eu_vat",
            "value": format!("DE{}", world.range(100_000_000, 999_999_999)),
            "verification": {"status": "pending", "verified_address": null, "verified_name": null}
        });
        world.unmodeled(lane, t, "customer.tax_id.created", object);
    }

    // Periods: renewals with mid-period changes, until the customer leaves or the story ends.
    let periods = match interval {
        ("year", _) => world.range(1, 2),
        (_, 3) => world.range(1, 3),
        _ => world.range(1, 8),
    } + i64::from(trial);
    let ending: f64 = world.rng.random();
    let delete_customer = world.chance(world.config.customer_delete_share);
    let mut busy_until = t;
    for period in 0..periods {
        let last_period = period == periods - 1;
        let period_end = life.subscription.period_end;
        let window = (busy_until + HOUR, period_end - 4 * DAY);
        if window.1 > window.0 {
            mid_period(world, &mut life, window);
        }
        if last_period && ending < 0.30 {
            // Cancel at period end (sometimes changing one's mind first).
            let at = world.range(period_end - 3 * DAY, period_end - 2 * DAY);
            let before = life.subscription.clone();
            life.subscription.cancel_at_period_end = true;
            life.subscription.cancel_at = Some(period_end);
            life.subscription.canceled_at = Some(at);
            life.subscription.cancellation_reason = Some("cancellation_requested");
            subscription_updated(world, &mut life, at, &before, true);
            if world.chance(0.2) {
                let at = at + world.range(MINUTE, DAY);
                let before = life.subscription.clone();
                life.subscription.cancel_at_period_end = false;
                life.subscription.cancel_at = None;
                life.subscription.canceled_at = None;
                life.subscription.cancellation_reason = None;
                subscription_updated(world, &mut life, at, &before, true);
                break;
            }
            delete_subscription(world, &mut life, period_end, period_end, false);
            break;
        }
        if last_period && ending < 0.45 {
            let at = world.range(period_end - 2 * DAY, period_end - DAY);
            life.subscription.canceled_at = Some(at);
            life.subscription.cancellation_reason = Some("cancellation_requested");
            delete_subscription(world, &mut life, at, at, true);
            break;
        }
        if last_period {
            break;
        }
        if world.chance(world.config.unmodeled_share) {
            upcoming_invoice(world, &life, period_end - 3 * DAY);
        }
        match renew(world, &mut life, period_end) {
            Some(until) => busy_until = until,
            None => break,
        }
    }

    if delete_customer {
        let at = life.lane_time(world)
            + if world.chance(0.5) {
                0
            } else {
                world.range(HOUR, 3 * DAY)
            };
        if !life.ended {
            life.subscription.canceled_at = Some(at);
            life.subscription.cancellation_reason = Some("cancellation_requested");
            delete_subscription(world, &mut life, at, at, true);
        }
        let deletion = if world.chance(world.config.stub_deleted_customer_share) {
            world.customer_deleted_stub(lane, at, &life.customer)
        } else {
            world.customer_event(lane, at, "customer.deleted", &life.customer, None)
        };
        // An older update delivered after the deletion must not revive the customer.
        let older: Vec<usize> = life
            .customer_updates
            .iter()
            .filter(|update| update.created < at)
            .map(|update| update.seq)
            .collect();
        if !older.is_empty() && world.chance(0.6) {
            let pick = *world.pick(&older);
            world.forced_late.push((pick, deletion.seq));
        }
    }
}

fn ascii_lower(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'é' => 'e',
            'í' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl Life {
    /// The latest time this customer's timeline reached.
    fn lane_time(&self, world: &World) -> i64 {
        world.stream_clock[&self.lane.stream]
    }
}

fn subscription_updated(
    world: &mut World,
    life: &mut Life,
    t: i64,
    before: &Subscription,
    from_request: bool,
) -> Emitted {
    let sub = life.subscription.clone();
    let emitted = world.subscription_event(
        life.lane,
        t,
        "customer.subscription.updated",
        &sub,
        Some(before),
        from_request,
    );
    life.subscription_updates.push(emitted.clone());
    emitted
}

fn customer_updated(world: &mut World, life: &mut Life, t: i64, before: &Customer) {
    let customer = life.customer.clone();
    let emitted = world.customer_event(life.lane, t, "customer.updated", &customer, Some(before));
    life.customer_updates.push(emitted);
}

/// `customer.subscription.deleted`: canceled now (at `ended_at`), items gone with it. An older
/// update is sometimes delivered after it.
fn delete_subscription(
    world: &mut World,
    life: &mut Life,
    t: i64,
    ended_at: i64,
    from_request: bool,
) {
    life.subscription.status = "canceled";
    life.subscription.ended_at = Some(ended_at);
    if life.subscription.canceled_at.is_none() {
        life.subscription.canceled_at = Some(ended_at);
    }
    let sub = life.subscription.clone();
    let deletion = world.subscription_event(
        life.lane,
        t,
        "customer.subscription.deleted",
        &sub,
        None,
        from_request,
    );
    life.ended = true;
    let older: Vec<usize> = life
        .subscription_updates
        .iter()
        .filter(|update| update.created < t)
        .map(|update| update.seq)
        .collect();
    if !older.is_empty() && world.chance(0.6) {
        let pick = *world.pick(&older);
        world.forced_late.push((pick, deletion.seq));
    }
}

fn new_invoice(
    world: &mut World,
    customer: &Customer,
    subscription: Option<&Subscription>,
    t: i64,
    billing_reason: &'static str,
    subtotal: i64,
    period: (i64, i64),
) -> Invoice {
    let currency = subscription.map_or(customer.currency.unwrap_or("usd"), |s| s.currency);
    let discount = subscription.map_or(0, |s| s.discount_on(subtotal));
    let lines = match subscription {
        Some(subscription) => subscription
            .items
            .iter()
            .map(|item| {
                let price = &world.prices[item.price];
                let product = world
                    .products
                    .iter()
                    .find(|p| p.id == price.product)
                    .map_or("Plan", |p| p.name.as_str());
                Line {
                    id: String::new(),
                    amount: if subtotal == 0 {
                        0
                    } else {
                        price.unit_amount * item.quantity
                    },
                    description: format!("{} × {product}", item.quantity),
                    quantity: item.quantity,
                    price: Some(item.price),
                    subscription_item: Some(item.id.clone()),
                    period: (subscription.period_start, subscription.period_end),
                }
            })
            .collect(),
        None => vec![Line {
            id: String::new(),
            amount: subtotal,
            description: "Onboarding and account setup".to_string(),
            quantity: 1,
            price: None,
            subscription_item: None,
            period: (t, t),
        }],
    };
    let lines = lines
        .into_iter()
        .map(|line| Line {
            id: world.id("il"),
            ..line
        })
        .collect();
    Invoice {
        id: Some(world.id("in")),
        customer: customer.id.clone(),
        customer_email: customer.email.clone(),
        customer_name: customer.name.clone(),
        subscription: subscription.map(|s| s.id.clone()),
        status: "draft",
        billing_reason,
        subtotal,
        amount_due: subtotal - discount,
        amount_paid: 0,
        currency,
        created: t,
        period,
        lines,
        number: None,
        attempt_count: 0,
        attempted: false,
        next_payment_attempt: None,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
        uncollectible_at: None,
        charge: None,
        payment_intent: None,
        payment_record_id: None,
        payment_created: None,
        discount_id: subscription
            .and_then(|s| s.coupon.as_ref())
            .filter(|_| discount > 0)
            .map(|coupon| coupon.discount_id.clone()),
    }
}

fn finalize(world: &mut World, life: &Life, invoice: &mut Invoice, t: i64) {
    invoice.status = "open";
    invoice.finalized_at = Some(t);
    invoice.number = Some(format!(
        "{}-{:04}",
        life.customer.invoice_prefix,
        world.expected.invoices.len() % 10_000
    ));
    if invoice.amount_due > 0 {
        invoice.payment_intent = Some(world.id("pi"));
        invoice.payment_record_id = Some(world.id("inpay"));
        invoice.payment_created = Some(t);
        invoice.next_payment_attempt = Some(t + HOUR);
    }
    world.invoice_event(life.lane, t, "invoice.finalized", invoice);
}

/// `invoice.paid` and `invoice.payment_succeeded`: the same object, the same second.
fn mark_paid(world: &mut World, life: &Life, invoice: &mut Invoice, t: i64) {
    invoice.status = "paid";
    invoice.amount_paid = invoice.amount_due;
    invoice.paid_at = Some(t);
    invoice.next_payment_attempt = None;
    world.invoice_event(life.lane, t, "invoice.paid", invoice);
    world.invoice_event(life.lane, t, "invoice.payment_succeeded", invoice);
}

fn new_charge(
    world: &mut World,
    life: &Life,
    invoice: &Invoice,
    t: i64,
    succeeded: bool,
) -> Charge {
    Charge {
        id: world.id("ch"),
        customer: life.customer.id.clone(),
        customer_email: life.customer.email.clone(),
        invoice: invoice.id.clone(),
        payment_intent: invoice
            .payment_intent
            .clone()
            .expect("a finalized invoice with an amount has a payment intent"),
        payment_method: life.payment_method.clone(),
        amount: invoice.amount_due,
        amount_refunded: 0,
        currency: invoice.currency,
        succeeded,
        created: t,
        disputed: false,
        balance_transaction: None,
        description: match invoice.billing_reason {
            "subscription_create" => "Subscription creation",
            "subscription_cycle" => "Subscription update",
            _ => "Payment for Invoice",
        },
    }
}

/// A successful payment: `charge.succeeded` (sometimes `charge.updated` as the balance
/// transaction lands), then the invoice's paid pair — all in second `t`.
fn charge_invoice(world: &mut World, life: &mut Life, invoice: &mut Invoice, t: i64) {
    let mut charge = new_charge(world, life, invoice, t, true);
    world.charge_event(life.lane, t, "charge.succeeded", &charge, None);
    if world.chance(0.35) {
        let before = charge.clone();
        charge.balance_transaction = Some(world.id("txn"));
        world.charge_event(life.lane, t, "charge.updated", &charge, Some(&before));
    }
    invoice.attempt_count += 1;
    invoice.attempted = true;
    invoice.charge = Some(charge.id.clone());
    life.charges.push(charge);
    mark_paid(world, life, invoice, t);
}

fn payment_intent_object(life: &Life, invoice: &Invoice, t: i64) -> Value {
    json!({
        "id": invoice.payment_intent,
        "object": "payment_intent", "amount": invoice.amount_due, "amount_received": 0,
        "capture_method": "automatic", "created": t, "currency": invoice.currency,
        "customer": life.customer.id, "livemode": false, "metadata": {},
        "payment_method": null, "payment_method_types": ["card"],
        "status": "requires_payment_method"
    })
}

/// `invoice.upcoming`: a preview, without an id; ledger only.
fn upcoming_invoice(world: &mut World, life: &Life, t: i64) {
    let subtotal = life.subscription.subtotal(&world.prices);
    let mut preview = new_invoice(
        world,
        &life.customer,
        Some(&life.subscription),
        t,
        "upcoming",
        subtotal,
        (life.subscription.period_start, life.subscription.period_end),
    );
    preview.id = None;
    let shape = life.lane.shape(t);
    let object = preview.render(shape, &world.prices);
    world.unmodeled(life.lane, t, "invoice.upcoming", object);
}

/// The renewal at `t` (the period's end): the subscription moves to the next period, its
/// invoice is created, finalized (at once or an hour later) and paid — or fails, is retried,
/// and is then paid or given up on. Returns when the dunning is over, or None when the
/// subscription ended.
fn renew(world: &mut World, life: &mut Life, t: i64) -> Option<i64> {
    let before = life.subscription.clone();
    let old_period = (before.period_start, before.period_end);
    life.subscription.period_start = t;
    life.subscription.period_end = t + period_len(life.subscription.interval);
    if life.subscription.status == "trialing" {
        life.subscription.status = "active";
    }
    let subtotal = life.subscription.subtotal(&world.prices);
    let mut invoice = new_invoice(
        world,
        &life.customer,
        Some(&life.subscription),
        t,
        "subscription_cycle",
        subtotal,
        old_period,
    );
    life.subscription.latest_invoice = invoice.id.clone();
    subscription_updated(world, life, t, &before, false);
    world.invoice_event(life.lane, t, "invoice.created", &invoice);
    let finalized_at = if world.chance(0.5) { t } else { t + HOUR };
    finalize(world, life, &mut invoice, finalized_at);
    if invoice.amount_due == 0 {
        mark_paid(world, life, &mut invoice, finalized_at);
        return Some(finalized_at);
    }
    if world.chance(0.85) {
        charge_invoice(world, life, &mut invoice, finalized_at);
        return Some(finalized_at);
    }
    // Dunning: a declined card, the customer marked delinquent, the subscription past due.
    let mut at = finalized_at + world.range(1, 3);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let charge = new_charge(world, life, &invoice, at, false);
        world.charge_event(life.lane, at, "charge.failed", &charge, None);
        invoice.attempt_count += 1;
        invoice.attempted = true;
        invoice.next_payment_attempt = Some(at + if attempt == 1 { 3 * DAY } else { 5 * DAY });
        invoice.charge = Some(charge.id.clone());
        world.invoice_event(life.lane, at, "invoice.payment_failed", &invoice);
        if !life.customer.delinquent {
            let before = life.customer.clone();
            life.customer.delinquent = true;
            customer_updated(world, life, at, &before);
        }
        if life.subscription.status != "past_due" {
            let before = life.subscription.clone();
            life.subscription.status = "past_due";
            subscription_updated(world, life, at, &before, false);
        }
        let retry = at + if attempt == 1 { 3 * DAY } else { 5 * DAY } + world.range(0, 600);
        if attempt == 1 && world.chance(0.6) {
            charge_invoice(world, life, &mut invoice, retry);
            let before = life.subscription.clone();
            life.subscription.status = "active";
            subscription_updated(world, life, retry, &before, false);
            let before = life.customer.clone();
            life.customer.delinquent = false;
            customer_updated(world, life, retry, &before);
            return Some(retry);
        }
        if attempt == 2 {
            invoice.next_payment_attempt = None;
            if world.chance(0.5) {
                invoice.status = "uncollectible";
                invoice.uncollectible_at = Some(retry);
                world.invoice_event(life.lane, retry, "invoice.marked_uncollectible", &invoice);
                let before = life.subscription.clone();
                life.subscription.status = "unpaid";
                subscription_updated(world, life, retry, &before, false);
                life.ended = false;
            } else {
                invoice.status = "void";
                invoice.voided_at = Some(retry);
                world.invoice_event(life.lane, retry, "invoice.voided", &invoice);
                life.subscription.cancellation_reason = Some("payment_failed");
                life.subscription.canceled_at = Some(retry);
                delete_subscription(world, life, retry, retry, false);
            }
            return None;
        }
        at = retry;
    }
}

/// Between renewals: seat changes, plan swaps, add-ons, email changes, refunds, disputes, a
/// one-off invoice, and events of types the mirror does not model — each at its own second,
/// except the deliberate double updates.
fn mid_period(world: &mut World, life: &mut Life, window: (i64, i64)) {
    let count = world.range(0, 3) as usize;
    let mut times: Vec<i64> = (0..count)
        .map(|_| world.range(window.0, window.1))
        .collect();
    times.sort_unstable();
    times.dedup();
    for t in times {
        let draw: f64 = world.rng.random();
        if draw < 0.30 {
            change_quantity(world, life, t);
        } else if draw < 0.42 {
            replace_base_item(world, life, t);
        } else if draw < 0.50 {
            toggle_addon(world, life, t);
        } else if draw < 0.64 {
            change_email(world, life, t);
        } else if draw < 0.74 {
            refund(world, life, t);
        } else if draw < 0.78 {
            dispute(world, life, t);
        } else if draw < 0.83 {
            one_off_invoice(world, life, t);
        } else {
            let unmodeled_share = world.config.unmodeled_share;
            if world.chance((unmodeled_share * 4.0).min(1.0)) {
                unmodeled_noise(world, life, t);
            }
        }
    }
}

fn change_quantity(world: &mut World, life: &mut Life, t: i64) {
    let which = world.rng.random_range(0..life.subscription.items.len());
    let original = life.subscription.items[which].quantity;
    let first = loop {
        let q = world.range(1, 20);
        if q != original {
            break q;
        }
    };
    let before = life.subscription.clone();
    life.subscription.items[which].quantity = first;
    subscription_updated(world, life, t, &before, true);
    if world.chance(world.config.double_update_share) {
        // A second change in the same second: distinct from both earlier states.
        let second = loop {
            let q = world.range(1, 20);
            if q != original && q != first {
                break q;
            }
        };
        let before = life.subscription.clone();
        life.subscription.items[which].quantity = second;
        subscription_updated(world, life, t, &before, true);
        if world.chance(world.config.triple_update_share) {
            let third = loop {
                let q = world.range(1, 20);
                if q != original && q != first && q != second {
                    break q;
                }
            };
            let before = life.subscription.clone();
            life.subscription.items[which].quantity = third;
            subscription_updated(world, life, t, &before, true);
        }
    }
}

fn replace_base_item(world: &mut World, life: &mut Life, t: i64) {
    let (currency, interval) = (life.subscription.currency, life.subscription.interval);
    let current = &world.prices[life.subscription.items[0].price].product;
    let candidates: Vec<usize> = world
        .base_products
        .iter()
        .copied()
        .filter(|&p| &world.products[p].id != current)
        .collect();
    if candidates.is_empty() {
        return;
    }
    let product = *world.pick(&candidates);
    let price = world.price_index[&(product, currency, interval.0, interval.1)];
    let before = life.subscription.clone();
    let quantity = life.subscription.items[0].quantity;
    life.subscription.items[0] = Item {
        id: world.id("si"),
        price,
        quantity,
        created: t,
    };
    subscription_updated(world, life, t, &before, true);
}

fn toggle_addon(world: &mut World, life: &mut Life, t: i64) {
    let before = life.subscription.clone();
    if life.subscription.items.len() > 1 {
        life.subscription.items.truncate(1);
    } else {
        let (currency, interval) = (life.subscription.currency, life.subscription.interval);
        let addons = world.addon_products.clone();
        let addon = *world.pick(&addons);
        let item = Item {
            id: world.id("si"),
            price: world.price_index[&(addon, currency, interval.0, interval.1)],
            quantity: world.range(1, 5),
            created: t,
        };
        life.subscription.items.push(item);
    }
    subscription_updated(world, life, t, &before, true);
}

fn change_email(world: &mut World, life: &mut Life, t: i64) {
    let original = life.customer.email.clone();
    let make = |world: &mut World| {
        let domain = *world.pick(DOMAINS);
        format!("billing{}@{domain}", world.range(1, 99_999))
    };
    let first = loop {
        let email = Some(make(world));
        if email != original {
            break email;
        }
    };
    let before = life.customer.clone();
    life.customer.email = first.clone();
    customer_updated(world, life, t, &before);
    if world.chance(world.config.double_update_share) {
        let second = loop {
            let email = Some(make(world));
            if email != original && email != first {
                break email;
            }
        };
        let before = life.customer.clone();
        life.customer.email = second.clone();
        customer_updated(world, life, t, &before);
        if world.chance(world.config.triple_update_share) {
            let third = loop {
                let email = Some(make(world));
                if email != original && email != first && email != second {
                    break email;
                }
            };
            let before = life.customer.clone();
            life.customer.email = third;
            customer_updated(world, life, t, &before);
        }
    }
}

fn refund(world: &mut World, life: &mut Life, t: i64) {
    let candidates: Vec<usize> = (0..life.charges.len())
        .filter(|&c| {
            !life.charges[c].refunded() && !life.charges[c].disputed && life.charges[c].amount > 0
        })
        .collect();
    if candidates.is_empty() {
        return;
    }
    let which = *world.pick(&candidates);
    let charge = &mut life.charges[which];
    let remaining = charge.amount - charge.amount_refunded;
    let amount = if world.rng.random_bool(0.5) || remaining < 100 {
        remaining
    } else {
        (remaining * world.rng.random_range(20..=60) / 100).max(1)
    };
    charge.amount_refunded += amount;
    let charge = charge.clone();
    world.charge_event(life.lane, t, "charge.refunded", &charge, None);
}

fn dispute(world: &mut World, life: &mut Life, t: i64) {
    let candidates: Vec<usize> = (0..life.charges.len())
        .filter(|&c| {
            life.charges[c].amount_refunded == 0
                && !life.charges[c].disputed
                && life.charges[c].amount > 0
        })
        .collect();
    if candidates.is_empty() {
        return;
    }
    let which = *world.pick(&candidates);
    life.charges[which].disputed = true;
    let charge = life.charges[which].clone();
    let reason = *world.pick(&[
        "fraudulent",
        "product_not_received",
        "subscription_canceled",
        "general",
    ]);
    let status = if world.chance(0.2) {
        "warning_needs_response"
    } else {
        "needs_response"
    };
    let object = json!({
        "id": world.id("dp"), "object": "dispute", "amount": charge.amount,
        "balance_transactions": [], "charge": charge.id, "created": t,
        "currency": charge.currency, "evidence": {"customer_email_address": charge.customer_email},
        "evidence_details": {"due_by": t + 9 * DAY, "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": false, "livemode": false, "metadata": {},
        "payment_intent": charge.payment_intent, "reason": reason, "status": status
    });
    let emitted = world.emit(
        life.lane,
        t,
        "charge.dispute.created",
        object.clone(),
        None,
        false,
    );
    let last_event = world.note(&emitted);
    world.expected.disputes.insert(
        object["id"].as_str().unwrap().to_string(),
        ExpectedDispute {
            charge: charge.id.clone(),
            amount: charge.amount,
            status: status.to_string(),
            last_event,
        },
    );
}

/// A one-off invoice (no subscription), paid at once.
fn one_off_invoice(world: &mut World, life: &mut Life, t: i64) {
    if life.ended {
        return;
    }
    let amount = world.range(5, 40) * 1_000;
    let customer = life.customer.clone();
    let mut invoice = new_invoice(world, &customer, None, t, "manual", amount, (t, t));
    invoice.currency = life.subscription.currency;
    world.invoice_event(life.lane, t, "invoice.created", &invoice);
    finalize(world, life, &mut invoice, t);
    charge_invoice(world, life, &mut invoice, t);
}

fn unmodeled_noise(world: &mut World, life: &mut Life, t: i64) {
    let lane = life.lane;
    match world.range(0, 2) {
        0 => {
            let object = json!({
                "id": world.id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
                "billing_details": {"address": null, "email": life.customer.email, "name": life.customer.name, "phone": null},
                "card": {"brand": "mastercard", "country": "DE", "exp_month": world.range(1, 12), "exp_year": world.range(2026, 2032), "funding": "credit", "last4": format!("{:04}", world.range(0, 9_999))},
                "created": t, "customer": life.customer.id, "livemode": false, "metadata": {},
                "type": "card"
            });
            world.unmodeled(lane, t, "payment_method.attached", object);
        }
        1 => {
            let object = json!({
                "id": world.id("seti"), "object": "setup_intent", "cancellation_reason": null,
                "created": t, "customer": life.customer.id, "livemode": false, "metadata": {},
                "payment_method": life.payment_method, "payment_method_types": ["card"],
                "status": "succeeded", "usage": "off_session"
            });
            world.unmodeled(lane, t, "setup_intent.succeeded", object);
        }
        _ => {
            let object = json!({
                "id": world.id("txi"), "object": "tax_id", "country": "FR", "created": t,
                "customer": life.customer.id, "livemode": false, "type": "eu_vat",
                "value": format!("FR{}", world.range(10_000_000_000, 99_999_999_999)),
                "verification": {"status": "pending", "verified_address": null, "verified_name": null}
            });
            world.unmodeled(lane, t, "customer.tax_id.created", object);
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(generated: &Generated) -> HashMap<String, Value> {
        generated
            .deliveries
            .iter()
            .map(|body| {
                let event: Value = serde_json::from_str(body).expect("valid JSON");
                (event["id"].as_str().unwrap().to_string(), event)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_stream_other_seed_another() {
        let config = GeneratorConfig::default();
        let a = generate(7, &config);
        let b = generate(7, &config);
        assert_eq!(a.deliveries, b.deliveries);
        assert_eq!(a.expected, b.expected);
        let c = generate(8, &config);
        assert_ne!(a.deliveries, c.deliveries);
        assert!(
            (1_500..3_000).contains(&a.deliveries.len()),
            "about 2,000 deliveries for 50 customers, got {}",
            a.deliveries.len()
        );
    }

    #[test]
    fn every_event_is_delivered_and_some_twice() {
        let generated = generate(11, &GeneratorConfig::default());
        let distinct: BTreeSet<String> = parsed(&generated).into_keys().collect();
        assert_eq!(distinct, generated.expected.event_ids);
        assert_eq!(distinct.len(), generated.events.len());
        let duplicates = generated.deliveries.len() - distinct.len();
        let share = duplicates as f64 / distinct.len() as f64;
        assert!((0.08..0.12).contains(&share), "duplicate share {share}");
        for event in &generated.expected.unmodeled_event_ids {
            assert!(distinct.contains(event));
        }
        assert!(generated.expected.unmodeled_event_ids.len() > 10);
    }

    /// Every `*.updated` event lists exactly the changed top-level fields, with the values of
    /// the object's previous event (when both render at the same API version).
    #[test]
    fn previous_attributes_match_the_previous_event() {
        previous_attributes_are_consistent(&generate(3, &GeneratorConfig::default()));
    }

    #[test]
    fn triple_chains_stay_consistent_and_distinct() {
        let config = GeneratorConfig {
            double_update_share: 1.0,
            triple_update_share: 1.0,
            ..GeneratorConfig::default()
        };
        let generated = generate(4, &config);
        previous_attributes_are_consistent(&generated);
        let mut chains: HashMap<(&str, i64), usize> = HashMap::new();
        for event in &generated.events {
            if event.event_type.ends_with(".updated") {
                *chains
                    .entry((event.object_id.as_deref().unwrap(), event.created))
                    .or_default() += 1;
            }
        }
        assert!(chains.values().filter(|&&n| n >= 3).count() > 10);
        // No state repeats inside a second: every update of a chain carries another object.
        let bodies = parsed(&generated);
        let mut seen: HashMap<(&str, i64), Vec<&Value>> = HashMap::new();
        for event in &generated.events {
            if let Some(object) = event.object_id.as_deref() {
                let state = &bodies[&event.id]["data"]["object"];
                let states = seen.entry((object, event.created)).or_default();
                if event.event_type.ends_with(".updated") {
                    assert!(!states.contains(&state), "{} repeats a state", event.id);
                }
                states.push(state);
            }
        }
    }

    fn previous_attributes_are_consistent(generated: &Generated) {
        let bodies = parsed(generated);
        let mut previous: HashMap<&str, &Value> = HashMap::new();
        let mut checked = 0;
        for meta in &generated.events {
            let event = &bodies[&meta.id];
            let Some(object_id) = meta.object_id.as_deref() else {
                continue;
            };
            let object = &event["data"]["object"];
            let has_previous = event["data"].get("previous_attributes").is_some();
            assert_eq!(
                has_previous,
                meta.event_type.ends_with(".updated"),
                "{}",
                meta.event_type
            );
            if let (true, Some(before)) = (has_previous, previous.get(object_id)) {
                let attributes = event["data"]["previous_attributes"].as_object().unwrap();
                assert!(!attributes.is_empty());
                if before["api_version"] == event["api_version"] {
                    let before_object = before["data"]["object"].as_object().unwrap();
                    for (key, value) in attributes {
                        assert_eq!(
                            before_object.get(key).unwrap_or(&Value::Null),
                            value,
                            "{key} of {}",
                            meta.id
                        );
                        assert_ne!(
                            object.get(key).unwrap_or(&Value::Null),
                            value,
                            "{key} of {} did not change",
                            meta.id
                        );
                    }
                    for (key, value) in object.as_object().unwrap() {
                        if !attributes.contains_key(key) {
                            assert_eq!(
                                before_object.get(key),
                                Some(value),
                                "{key} of {} changed unlisted",
                                meta.id
                            );
                        }
                    }
                    checked += 1;
                }
            }
            previous.insert(object_id, event);
        }
        assert!(checked > 200, "checked {checked}");
    }

    #[test]
    fn same_second_chains_and_late_deliveries_exist() {
        let generated = generate(5, &GeneratorConfig::default());
        let mut chains: HashMap<(&str, i64), Vec<&str>> = HashMap::new();
        for event in &generated.events {
            if let Some(object) = event.object_id.as_deref() {
                chains
                    .entry((object, event.created))
                    .or_default()
                    .push(&event.event_type);
            }
        }
        let long = chains.values().filter(|chain| chain.len() >= 3).count();
        assert!(long > 50, "{long} same-second chains of 3+");
        assert!(chains.values().any(|chain| chain
            == &[
                "invoice.created",
                "invoice.finalized",
                "invoice.paid",
                "invoice.payment_succeeded"
            ]));
        assert!(chains.values().any(|chain| chain.starts_with(&[
            "customer.subscription.created",
            "customer.subscription.updated"
        ])));
        // Within a second, invoice status never goes back.
        let bodies = parsed(&generated);
        let rank = |status: &str| match status {
            "draft" => 0,
            "open" => 1,
            _ => 2,
        };
        let mut last: HashMap<(&str, i64), i32> = HashMap::new();
        for event in &generated.events {
            if event.event_type.starts_with("invoice.") && event.object_id.is_some() {
                let status = bodies[&event.id]["data"]["object"]["status"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let key = (event.object_id.as_deref().unwrap(), event.created);
                let r = rank(&status);
                assert!(last.get(&key).is_none_or(|&before| before <= r));
                last.insert(key, r);
            }
        }
        // Some object's newer event is delivered before an older one of the same second.
        let mut position = HashMap::new();
        for (at, &index) in generated.delivery_order.iter().enumerate() {
            position.entry(index).or_insert(at);
        }
        let same_second_pairs = generated
            .events
            .windows(2)
            .filter(|pair| {
                pair[0].object_id.is_some()
                    && pair[0].object_id == pair[1].object_id
                    && pair[0].created == pair[1].created
            })
            .count();
        assert!(same_second_pairs > 100);
        let mut reversed_same_second = 0;
        for (i, a) in generated.events.iter().enumerate() {
            for b in generated.events[i + 1..].iter().take(40) {
                if a.object_id.is_some() && a.object_id == b.object_id && a.created == b.created {
                    let (pa, pb) = (
                        position[&i],
                        position[&generated.events.iter().position(|e| e.id == b.id).unwrap()],
                    );
                    if pb < pa {
                        reversed_same_second += 1;
                    }
                }
            }
        }
        assert!(reversed_same_second > 20, "{reversed_same_second}");
    }

    #[test]
    fn deletions_are_overtaken_by_older_updates() {
        let generated = generate(9, &GeneratorConfig::default());
        let mut revived_attempts = 0;
        for (id, product) in &generated.expected.products {
            if !product.deleted {
                continue;
            }
            assert!(!product.active);
            let sequence = generated.delivered_sequence(id);
            let deleted_at = sequence
                .iter()
                .position(|e| e.event_type == "product.deleted")
                .unwrap();
            if sequence[deleted_at + 1..]
                .iter()
                .any(|e| e.event_type == "product.updated")
            {
                revived_attempts += 1;
            }
        }
        assert!(revived_attempts >= 1);
        let deleted_subscriptions = generated
            .expected
            .subscriptions
            .values()
            .filter(|s| s.deleted)
            .count();
        assert!(deleted_subscriptions > 5);
        for item in generated.expected.subscription_items.values() {
            if generated.expected.subscriptions[&item.subscription].deleted {
                assert!(item.deleted);
            }
        }
        assert!(
            generated
                .expected
                .subscription_items
                .values()
                .any(|i| i.deleted && !generated.expected.subscriptions[&i.subscription].deleted),
            "a replaced item"
        );
    }

    #[test]
    fn both_api_shapes_render_as_stripe_does() {
        let generated = generate(13, &GeneratorConfig::default());
        let bodies = parsed(&generated);
        let (mut basil, mut old) = (0, 0);
        for event in bodies.values() {
            let object = &event["data"]["object"];
            let basil_shape = event["api_version"] == API_BASIL;
            match object["object"].as_str() {
                Some("subscription") => {
                    let item = &object["items"]["data"][0];
                    assert_eq!(object.get("current_period_end").is_none(), basil_shape);
                    assert_eq!(item.get("current_period_end").is_some(), basil_shape);
                    if basil_shape { basil += 1 } else { old += 1 }
                }
                Some("invoice") if object.get("id").is_some() => {
                    assert_eq!(object.get("subscription").is_none(), basil_shape);
                    assert_eq!(object.get("paid").is_none(), basil_shape);
                    assert_eq!(object.get("charge").is_none(), basil_shape);
                    assert_eq!(object.get("parent").is_some(), basil_shape);
                    assert_eq!(object.get("payments").is_some(), basil_shape);
                }
                Some("charge") => assert_eq!(object.get("invoice").is_none(), basil_shape),
                _ => {}
            }
        }
        assert!(basil > 50 && old > 50, "basil {basil}, 2024 {old}");
        for customer in generated.expected.customers.values() {
            assert_eq!(customer.workspace_id, Some(DEFAULT_WORKSPACE));
        }
    }

    #[test]
    fn expected_last_events_exist_and_ties_are_identical() {
        let generated = generate(21, &GeneratorConfig::default());
        let bodies = parsed(&generated);
        let check = |last: &LastEvent, id: &str| {
            let newest = &bodies[&last.id];
            assert_eq!(newest["data"]["object"]["id"], id);
            assert_eq!(newest["created"], last.created);
            for other in &last.equivalent {
                assert_eq!(bodies[other]["data"]["object"], newest["data"]["object"]);
            }
        };
        for (id, c) in &generated.expected.customers {
            check(&c.last_event, id)
        }
        for (id, p) in &generated.expected.products {
            check(&p.last_event, id)
        }
        for (id, p) in &generated.expected.prices {
            check(&p.last_event, id)
        }
        for (id, s) in &generated.expected.subscriptions {
            check(&s.last_event, id)
        }
        for (id, i) in &generated.expected.invoices {
            check(&i.last_event, id)
        }
        for (id, c) in &generated.expected.charges {
            check(&c.last_event, id)
        }
        for (id, d) in &generated.expected.disputes {
            check(&d.last_event, id)
        }
        for (id, s) in &generated.expected.checkout_sessions {
            check(&s.last_event, id)
        }
        assert!(
            generated
                .expected
                .invoices
                .values()
                .any(|i| !i.last_event.equivalent.is_empty())
        );
        assert!(!generated.expected.disputes.is_empty());
        assert!(generated.expected.charges.values().any(|c| c.refunded));
        assert!(
            generated
                .expected
                .charges
                .values()
                .any(|c| c.status == "failed")
        );
        assert!(
            generated
                .expected
                .invoices
                .values()
                .any(|i| i.status == "void" || i.status == "uncollectible")
        );
        assert!(generated.expected.customers.values().any(|c| c.deleted));
    }

    #[test]
    fn scales_to_a_delivery_target() {
        let generated = generate_deliveries(1, 6_000, &GeneratorConfig::default());
        let n = generated.deliveries.len();
        assert!((4_500..7_500).contains(&n), "{n}");
    }
}
