//! Orders as Shopify's REST API spells them: ids as integers, money as strings with two
//! decimals, timestamps in the shop's offset, and the nested customer, line items,
//! shipping line and refunds (with their transactions) a sync reads.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::data::{OrderModel, RefundModel};
use super::shop::Shop;
use crate::money::money;
use crate::seeded::mix64;

const ADJECTIVES: [&str; 8] = [
    "Classic",
    "Organic",
    "Everyday",
    "Premium",
    "Travel",
    "Vintage",
    "Eco",
    "Signature",
];
const NOUNS: [&str; 5] = ["Tee", "Hoodie", "Water Bottle", "Tote Bag", "Candle"];
const FIRST_NAMES: [&str; 10] = [
    "Ava", "Liam", "Mia", "Noah", "Zoe", "Ethan", "Lena", "Omar", "Priya", "Lucas",
];
const LAST_NAMES: [&str; 10] = [
    "Smith", "Garcia", "Chen", "Müller", "Okafor", "Rossi", "Kim", "Novak", "Silva", "Brown",
];

#[derive(Serialize)]
struct Customer {
    id: u64,
    email: String,
    first_name: &'static str,
    last_name: &'static str,
}

#[derive(Serialize)]
struct DiscountCode {
    code: &'static str,
    amount: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct LineItem {
    id: u64,
    product_id: u64,
    variant_id: u64,
    title: String,
    name: String,
    sku: String,
    vendor: &'static str,
    quantity: u64,
    price: String,
    total_discount: String,
    requires_shipping: bool,
    taxable: bool,
}

#[derive(Serialize)]
struct ShippingLine {
    id: u64,
    title: &'static str,
    code: &'static str,
    price: String,
}

#[derive(Serialize)]
struct Transaction {
    id: u64,
    order_id: u64,
    kind: &'static str,
    status: &'static str,
    gateway: &'static str,
    amount: String,
    currency: String,
    created_at: String,
    processed_at: String,
}

#[derive(Serialize)]
struct RefundLineItem {
    id: u64,
    line_item_id: u64,
    quantity: u64,
    subtotal: String,
    total_tax: String,
}

#[derive(Serialize)]
pub(super) struct RefundJson {
    id: u64,
    order_id: u64,
    created_at: String,
    processed_at: String,
    note: Option<&'static str>,
    restock: bool,
    refund_line_items: Vec<RefundLineItem>,
    transactions: Vec<Transaction>,
    order_adjustments: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct Money {
    amount: String,
    currency_code: String,
}

#[derive(Serialize)]
struct MoneySet {
    shop_money: Money,
    presentment_money: Money,
}

#[derive(Serialize)]
pub(super) struct OrderJson {
    id: u64,
    admin_graphql_api_id: String,
    name: String,
    order_number: u64,
    email: String,
    contact_email: String,
    created_at: String,
    updated_at: String,
    processed_at: String,
    cancelled_at: Option<String>,
    cancel_reason: Option<&'static str>,
    closed_at: Option<String>,
    currency: String,
    presentment_currency: String,
    financial_status: &'static str,
    fulfillment_status: Option<&'static str>,
    total_price: String,
    subtotal_price: String,
    total_line_items_price: String,
    total_discounts: String,
    total_tax: String,
    current_total_price: String,
    /// The total in the shop's and the buyer's currency, as every REST order and webhook
    /// carries it.
    total_price_set: MoneySet,
    taxes_included: bool,
    test: bool,
    source_name: &'static str,
    payment_gateway_names: [&'static str; 1],
    tags: &'static str,
    note: Option<String>,
    discount_codes: Vec<DiscountCode>,
    customer: Customer,
    line_items: Vec<LineItem>,
    shipping_lines: Vec<ShippingLine>,
    refunds: Vec<RefundJson>,
}

impl Shop {
    fn timestamp(&self, secs: i64) -> String {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .unwrap_or_default()
            .with_timezone(&self.offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    }

    fn customer(&self, index: u64) -> Customer {
        let first = FIRST_NAMES[(mix64(self.key ^ index ^ 0xF1) % 10) as usize];
        let last = LAST_NAMES[(mix64(self.key ^ index ^ 0x1A) % 10) as usize];
        Customer {
            id: self.ids.customer + index,
            email: format!(
                "{}.{}{}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('ü', "u"),
                index
            ),
            first_name: first,
            last_name: last,
        }
    }

    pub(super) fn refund_json(&self, model: &OrderModel, refund: &RefundModel) -> RefundJson {
        let id = self.ids.refund + model.index * 100 + refund.seq;
        let at = self.timestamp(refund.at);
        RefundJson {
            id,
            order_id: model.id,
            created_at: at.clone(),
            processed_at: at.clone(),
            note: refund.note,
            restock: refund.partial_line,
            refund_line_items: if refund.partial_line {
                vec![RefundLineItem {
                    id: id * 10,
                    line_item_id: self.ids.line + model.index * 10,
                    quantity: 1,
                    subtotal: money(refund.amount_cents),
                    total_tax: money(0),
                }]
            } else {
                Vec::new()
            },
            transactions: vec![Transaction {
                id: self.ids.transaction + model.index * 100 + refund.seq,
                order_id: model.id,
                kind: "refund",
                status: "success",
                gateway: "shopify_payments",
                amount: money(refund.amount_cents),
                currency: self.spec.currency.clone(),
                created_at: at.clone(),
                processed_at: at,
            }],
            order_adjustments: Vec::new(),
        }
    }

    pub(super) fn order_json(&self, model: &OrderModel) -> OrderJson {
        let customer = self.customer(model.customer);
        let currency = self.spec.currency.clone();
        OrderJson {
            id: model.id,
            admin_graphql_api_id: format!("gid://shopify/Order/{}", model.id),
            name: format!("#{}", 1001 + model.index),
            order_number: 1001 + model.index,
            email: customer.email.clone(),
            contact_email: customer.email.clone(),
            created_at: self.timestamp(model.created),
            updated_at: self.timestamp(model.updated),
            processed_at: self.timestamp(model.created),
            cancelled_at: model.cancelled.map(|(at, _)| self.timestamp(at)),
            cancel_reason: model.cancelled.map(|(_, reason)| reason),
            closed_at: model.closed.map(|at| self.timestamp(at)),
            presentment_currency: currency.clone(),
            currency,
            financial_status: model.financial_status(),
            fulfillment_status: (model.closed.is_some() && model.cancelled.is_none())
                .then_some("fulfilled"),
            total_price: money(model.total_cents),
            subtotal_price: money(model.subtotal_cents),
            total_line_items_price: money(model.line_total_cents),
            total_discounts: money(model.discount.map_or(0, |(_, cents)| cents)),
            total_tax: money(model.tax_cents),
            current_total_price: money(model.remaining_cents()),
            total_price_set: MoneySet {
                shop_money: Money {
                    amount: money(model.total_cents),
                    currency_code: self.spec.currency.clone(),
                },
                presentment_money: Money {
                    amount: money(model.total_cents),
                    currency_code: self.spec.currency.clone(),
                },
            },
            taxes_included: false,
            test: false,
            source_name: "web",
            payment_gateway_names: ["shopify_payments"],
            tags: "",
            note: model.note.clone(),
            discount_codes: model
                .discount
                .map(|(code, cents)| DiscountCode {
                    code,
                    amount: money(cents),
                    kind: "percentage",
                })
                .into_iter()
                .collect(),
            customer,
            line_items: model
                .lines
                .iter()
                .enumerate()
                .map(|(n, line)| {
                    let title = format!(
                        "{} {}",
                        ADJECTIVES[(line.product % ADJECTIVES.len() as u64) as usize],
                        NOUNS[(line.product / ADJECTIVES.len() as u64) as usize % NOUNS.len()]
                    );
                    LineItem {
                        id: self.ids.line + model.index * 10 + n as u64,
                        product_id: self.ids.product + line.product,
                        variant_id: self.ids.variant + line.product,
                        sku: format!("SKU-{:04}", line.product + 1),
                        name: title.clone(),
                        title,
                        vendor: "Local Demo Store",
                        quantity: line.quantity,
                        price: money(line.price_cents),
                        total_discount: money(0),
                        requires_shipping: true,
                        taxable: true,
                    }
                })
                .collect(),
            shipping_lines: vec![ShippingLine {
                id: self.ids.line + model.index * 10 + 9,
                title: "Standard Shipping",
                code: "STANDARD",
                price: money(model.shipping_cents),
            }],
            refunds: model
                .refunds
                .iter()
                .map(|refund| self.refund_json(model, refund))
                .collect(),
        }
    }
}
