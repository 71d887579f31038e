//! The account the Stripe stand-in serves: each list's objects, serialised once and kept
//! newest first (`created`, then id, descending, as Stripe lists them), with an index from id
//! to position for `starting_after`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::seeded::{Draw, key};

/// A list endpoint of the stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Customers,
    Products,
    Prices,
    Subscriptions,
    Invoices,
    Charges,
    Refunds,
    PaymentIntents,
    Disputes,
}

impl Resource {
    pub const ALL: [Resource; 9] = [
        Resource::Customers,
        Resource::Products,
        Resource::Prices,
        Resource::Subscriptions,
        Resource::Invoices,
        Resource::Charges,
        Resource::Refunds,
        Resource::PaymentIntents,
        Resource::Disputes,
    ];

    /// The path after `/v1/`.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Customers => "customers",
            Resource::Products => "products",
            Resource::Prices => "prices",
            Resource::Subscriptions => "subscriptions",
            Resource::Invoices => "invoices",
            Resource::Charges => "charges",
            Resource::Refunds => "refunds",
            Resource::PaymentIntents => "payment_intents",
            Resource::Disputes => "disputes",
        }
    }

    /// The objects' `object` field.
    pub fn object(self) -> &'static str {
        match self {
            Resource::Customers => "customer",
            Resource::Products => "product",
            Resource::Prices => "price",
            Resource::Subscriptions => "subscription",
            Resource::Invoices => "invoice",
            Resource::Charges => "charge",
            Resource::Refunds => "refund",
            Resource::PaymentIntents => "payment_intent",
            Resource::Disputes => "dispute",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Resource::ALL.into_iter().find(|r| r.path() == path)
    }

    pub fn from_object(object: &str) -> Option<Self> {
        Resource::ALL.into_iter().find(|r| r.object() == object)
    }
}

struct Listed {
    id: String,
    created: i64,
    /// A canceled subscription: listed only with `status=all`.
    canceled: bool,
    json: String,
}

/// One page of a list.
pub(crate) struct Page<'a> {
    pub(crate) objects: Vec<&'a str>,
    pub(crate) has_more: bool,
    pub(crate) bytes: usize,
}

/// The objects of one Stripe account, and its clock.
pub struct StripeAccount {
    lists: HashMap<Resource, Vec<Listed>>,
    positions: HashMap<(Resource, String), usize>,
    now: i64,
}

impl StripeAccount {
    /// An account holding `objects` (any order) as of `now` (unix seconds). Objects of types
    /// no endpoint lists, without an id, or deleted (Stripe lists no deleted object) are left
    /// out.
    pub fn from_objects(now: i64, objects: impl IntoIterator<Item = Value>) -> Self {
        let mut lists: HashMap<Resource, Vec<Listed>> = HashMap::new();
        for object in objects {
            let Some(resource) = object
                .get("object")
                .and_then(Value::as_str)
                .and_then(Resource::from_object)
            else {
                continue;
            };
            let Some(id) = object.get("id").and_then(Value::as_str) else {
                continue;
            };
            if object.get("deleted").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            lists.entry(resource).or_default().push(Listed {
                id: id.to_string(),
                created: object.get("created").and_then(Value::as_i64).unwrap_or(0),
                canceled: resource == Resource::Subscriptions
                    && matches!(
                        object.get("status").and_then(Value::as_str),
                        Some("canceled" | "incomplete_expired")
                    ),
                json: object.to_string(),
            });
        }
        let mut positions = HashMap::new();
        for (resource, list) in &mut lists {
            list.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
            list.dedup_by(|a, b| a.id == b.id);
            for (index, listed) in list.iter().enumerate() {
                positions.insert((*resource, listed.id.clone()), index);
            }
        }
        Self {
            lists,
            positions,
            now,
        }
    }

    /// A seeded account of `objects` objects (a catalog of products and prices — per-unit,
    /// tiered, volume and metered — then customers, each with a payment intent, a charge, an
    /// invoice and a subscription, some refunds and disputes), all created before `now`. A
    /// pure function of `(seed, objects, now)`.
    pub fn seeded(seed: u64, objects: usize, now: i64) -> Self {
        Self::from_objects(now, seeded_objects(seed, objects, now))
    }

    /// The account's clock: reads are "as of" this second (the `Date` header).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// How many objects a full listing returns.
    pub fn count(&self, resource: Resource, include_canceled: bool) -> usize {
        self.lists.get(&resource).map_or(0, |list| {
            list.iter()
                .filter(|listed| include_canceled || !listed.canceled)
                .count()
        })
    }

    /// Every object a full listing returns, in list order.
    pub fn objects(&self, resource: Resource) -> Vec<Value> {
        self.lists
            .get(&resource)
            .into_iter()
            .flatten()
            .filter_map(|listed| serde_json::from_str(&listed.json).ok())
            .collect()
    }

    /// Up to `limit` objects after `starting_after`; `Err(id)` if that id is not in the list.
    pub(crate) fn page(
        &self,
        resource: Resource,
        starting_after: Option<&str>,
        limit: usize,
        include_canceled: bool,
    ) -> Result<Page<'_>, String> {
        let list = self
            .lists
            .get(&resource)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let start = match starting_after {
            None => 0,
            Some(id) => {
                self.positions
                    .get(&(resource, id.to_string()))
                    .ok_or_else(|| id.to_string())?
                    + 1
            }
        };
        let mut listed = list[start.min(list.len())..]
            .iter()
            .filter(|listed| include_canceled || !listed.canceled);
        let objects: Vec<&str> = listed
            .by_ref()
            .take(limit)
            .map(|l| l.json.as_str())
            .collect();
        let has_more = listed.next().is_some();
        let bytes = objects.iter().map(|json| json.len() + 1).sum();
        Ok(Page {
            objects,
            has_more,
            bytes,
        })
    }
}

const DAY: i64 = 86_400;

/// The seeded account's objects, oldest first.
fn seeded_objects(seed: u64, total: usize, now: i64) -> Vec<Value> {
    let mut out = Vec::with_capacity(total);
    let start = now - 365 * DAY;
    let products = (total / 500).max(3);
    let mut prices: Vec<Value> = Vec::new();
    for p in 0..products {
        if out.len() >= total {
            return out;
        }
        let created = start + p as i64 * 60;
        let product = format!("prod_s{seed}p{p:05}");
        out.push(json!({"id": product, "object": "product", "active": true, "name": format!("Plan {p}"),
            "created": created, "livemode": false, "default_price": format!("price_s{seed}p{p:05}a"),
            "metadata": {}}));
        for (suffix, shape) in ["a", "b", "c"].into_iter().zip(0..) {
            let mut draw = Draw::new(key(&[seed, p as u64, shape]));
            let amount = 500 + 100 * draw.below(40) as i64;
            let interval = if draw.below(4) == 0 { "year" } else { "month" };
            let mut price = json!({"id": format!("price_s{seed}p{p:05}{suffix}"), "object": "price",
                "active": true, "currency": "usd", "product": product, "type": "recurring",
                "created": created + 1, "livemode": false, "metadata": {},
                "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"},
                "billing_scheme": "per_unit", "unit_amount": amount,
                "unit_amount_decimal": amount.to_string(), "tiers_mode": null});
            match (p % 4, shape) {
                (1, 2) => {
                    price["billing_scheme"] = json!("tiered");
                    price["tiers_mode"] = json!("graduated");
                    price["unit_amount"] = Value::Null;
                    price["unit_amount_decimal"] = Value::Null;
                    price["tiers"] = json!([
                        {"up_to": 5, "unit_amount": amount, "flat_amount": 0},
                        {"up_to": null, "unit_amount": amount / 2, "flat_amount": 0}]);
                }
                (2, 2) => {
                    price["billing_scheme"] = json!("tiered");
                    price["tiers_mode"] = json!("volume");
                    price["unit_amount"] = Value::Null;
                    price["unit_amount_decimal"] = Value::Null;
                    price["tiers"] = json!([
                        {"up_to": 10, "unit_amount": amount, "flat_amount": 1000},
                        {"up_to": null, "unit_amount": amount * 3 / 4, "flat_amount": 0}]);
                }
                (3, 2) => price["recurring"]["usage_type"] = json!("metered"),
                _ => {}
            }
            out.push(price.clone());
            prices.push(price);
        }
    }
    let catalog_end = start + products as i64 * 60 + 60;
    let span = (now - 60 - catalog_end).max(1);
    let mut c = 0u64;
    while out.len() < total {
        let mut draw = Draw::new(key(&[seed, 0xC057, c]));
        let created = catalog_end + (c as i64 * 7_919) % span;
        let customer = format!("cus_s{seed}c{c:07}");
        let price = &prices[draw.below(prices.len() as u64) as usize];
        let quantity = 1 + draw.below(12) as i64;
        let amount = price["unit_amount"].as_i64().unwrap_or(1_000) * quantity;
        let status = match draw.below(20) {
            0..=13 => "active",
            14..=15 => "trialing",
            16 => "past_due",
            _ => "canceled",
        };
        let intent = format!("pi_s{seed}c{c:07}");
        let charge = format!("ch_s{seed}c{c:07}");
        let invoice = format!("in_s{seed}c{c:07}");
        let subscription = format!("sub_s{seed}c{c:07}");
        let refunded = if draw.below(10) == 0 { amount / 2 } else { 0 };
        let period_end = created + 30 * DAY;
        let discounts = if draw.below(8) == 0 {
            json!([{"id": format!("di_s{seed}c{c:07}"), "object": "discount",
                    "coupon": {"id": "SAVE10", "object": "coupon", "percent_off": 10.0, "amount_off": null}}])
        } else {
            json!([])
        };
        let mut unit = vec![
            json!({"id": customer, "object": "customer", "email": format!("customer{c}@example.com"),
                "name": format!("Customer {c}"), "created": created, "currency": "usd",
                "delinquent": status == "past_due", "livemode": false, "metadata": {}}),
            json!({"id": intent, "object": "payment_intent", "amount": amount, "amount_received": amount,
                "currency": "usd", "customer": customer, "status": "succeeded",
                "latest_charge": charge, "created": created, "livemode": false, "metadata": {}}),
            json!({"id": charge, "object": "charge", "amount": amount, "amount_captured": amount,
                "amount_refunded": refunded, "refunded": refunded == amount, "captured": true,
                "currency": "usd", "customer": customer, "invoice": invoice, "payment_intent": intent,
                "paid": true, "status": "succeeded", "disputed": false, "created": created,
                "livemode": false, "metadata": {}}),
            json!({"id": invoice, "object": "invoice", "customer": customer, "subscription": subscription,
                "status": "paid", "paid": true, "amount_due": amount, "amount_paid": amount,
                "amount_remaining": 0, "currency": "usd", "period_start": created,
                "period_end": created, "created": created, "livemode": false, "metadata": {}}),
            json!({"id": subscription, "object": "subscription", "customer": customer, "status": status,
                "currency": "usd", "created": created, "start_date": created,
                "current_period_start": created, "current_period_end": period_end,
                "cancel_at_period_end": false,
                "canceled_at": if status == "canceled" { json!(created + DAY) } else { Value::Null },
                "ended_at": if status == "canceled" { json!(created + DAY) } else { Value::Null },
                "trial_end": if status == "trialing" { json!(period_end) } else { Value::Null },
                "discounts": discounts, "livemode": false, "metadata": {},
                "items": {"object": "list", "has_more": false, "total_count": 1,
                    "url": format!("/v1/subscription_items?subscription={subscription}"),
                    "data": [{"id": format!("si_s{seed}c{c:07}"), "object": "subscription_item",
                        "created": created, "quantity": quantity, "price": price,
                        "subscription": subscription,
                        "current_period_start": created, "current_period_end": period_end}]}}),
        ];
        if refunded > 0 {
            unit.push(json!({"id": format!("re_s{seed}c{c:07}"), "object": "refund", "amount": refunded,
                "charge": charge, "payment_intent": intent, "currency": "usd", "status": "succeeded",
                "reason": "requested_by_customer", "created": created + 1, "metadata": {}}));
        }
        if draw.below(50) == 0 {
            unit.push(
                json!({"id": format!("dp_s{seed}c{c:07}"), "object": "dispute", "amount": amount,
                "charge": charge, "payment_intent": intent, "currency": "usd",
                "status": "needs_response", "reason": "fraudulent", "created": created + 2,
                "livemode": false, "metadata": {}}),
            );
        }
        let room = total - out.len();
        out.extend(unit.into_iter().take(room));
        c += 1;
    }
    out
}
