//! The Shopify stand-in's state and its run-time handle, [`ShopifyFaults`]: the shops,
//! the scenario's token, the platforms' clock and the throttling knobs, and the ground
//! truth a test compares a sync against. The handle's helpers that change orders are in
//! `changes`; those that build webhooks in `webhooks`.

use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::graphql::{BulkOperations, CostPlan};
use super::shop::Shop;
use super::throttle::Throttling;
use crate::config::StandinConfig;
use crate::faults::{Switches, fault_handle};

/// Order sums over a shop, as a sync of every order must find them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShopTotals {
    pub orders: usize,
    pub cancelled: usize,
    /// Orders with at least one refund.
    pub refunded_orders: usize,
    /// Sum of `total_price`.
    pub gross_cents: i64,
    /// Sum of refund transactions.
    pub refunded_cents: i64,
    /// Sum of `current_total_price` (gross minus refunds).
    pub net_cents: i64,
}

pub(super) struct ShopifyState {
    /// What `Link` headers start with, before the shop's name.
    pub(super) base_url: String,
    pub(super) seed: u64,
    /// The token of shops without their own.
    pub(super) token: String,
    /// When webhooks say they were triggered.
    pub(super) clock: shared::clock::Clock,
    pub(super) shops: Vec<Shop>,
    pub(super) throttling: Throttling,
    pub(super) switches: Switches,
    /// GraphQL: the shops' cost bucket, the bulk operations, and how many polls one takes.
    pub(super) cost_plan: Mutex<CostPlan>,
    pub(super) bulk: Mutex<BulkOperations>,
    pub(super) bulk_polls: Mutex<u32>,
}

fault_handle! {
    /// The run-time handle of the Shopify stand-in; dereferences to its [`Switches`].
    ShopifyFaults(ShopifyState)
}

impl ShopifyFaults {
    pub(crate) fn new(config: &StandinConfig, base_url: &str) -> Self {
        let scenario = &config.shopify;
        ShopifyFaults(Arc::new(ShopifyState {
            base_url: base_url.to_string(),
            seed: config.seed,
            token: scenario.access_token.clone(),
            clock: config.clock.clone(),
            shops: scenario
                .shops
                .iter()
                .map(|spec| Shop::new(config.seed, config.today, spec, scenario.cost_plan))
                .collect(),
            throttling: Throttling::new(scenario),
            switches: Switches::default(),
            cost_plan: Mutex::new(scenario.cost_plan),
            bulk: Mutex::new(BulkOperations::default()),
            bulk_polls: Mutex::new(scenario.bulk_polls),
        }))
    }

    /// Stands for `https://{shop}.myshopify.com`.
    pub fn base_url(&self, shop: &str) -> String {
        format!("{}/{shop}", self.0.base_url)
    }

    pub(super) fn shop(&self, shop: &str) -> anyhow::Result<&Shop> {
        self.0
            .shop(shop)
            .with_context(|| format!("no stand-in shop {shop}"))
    }

    /// The order as `GET orders/{id}.json` would return it.
    pub fn order(&self, shop: &str, order_id: u64) -> Option<serde_json::Value> {
        let shop = self.0.shop(shop)?;
        let inner = shop.lock();
        let model = shop.find(&inner, order_id)?;
        serde_json::to_value(shop.order_json(&model)).ok()
    }

    /// Every order id of a shop, ascending (creation order).
    pub fn order_ids(&self, shop: &str) -> Vec<u64> {
        let Some(shop) = self.0.shop(shop) else {
            return Vec::new();
        };
        let inner = shop.lock();
        let mut ids: Vec<u64> = inner.index.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// Sums over every order as it stands now.
    pub fn expected_totals(&self, shop: &str) -> ShopTotals {
        let Some(shop) = self.0.shop(shop) else {
            return ShopTotals::default();
        };
        let inner = shop.lock();
        let mut totals = ShopTotals::default();
        for (_, id) in &inner.index {
            let Some(model) = shop.find(&inner, *id) else {
                continue;
            };
            let refunded = model.refunded_cents();
            totals.orders += 1;
            totals.cancelled += usize::from(model.cancelled.is_some());
            totals.refunded_orders += usize::from(!model.refunds.is_empty());
            totals.gross_cents += model.total_cents;
            totals.refunded_cents += refunded;
            totals.net_cents += model.remaining_cents();
        }
        totals
    }
}
