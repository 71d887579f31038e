//! One stand-in shop: its spec and seed key, where its seeded orders fall in time, the id
//! ranges of its records, and — behind one lock — the `(updated_at, id)` index every
//! listing walks, with what has changed at run time. An order itself is never stored: it
//! is generated from its index and its patch ([`Shop::find`]) whenever it is asked for.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use chrono::{FixedOffset, NaiveDate};

use super::changes::Patch;
use super::data::{DAY, OrderModel};
use super::graphql::{CostLevel, CostPlan};
use super::throttle::BucketLevel;
use super::{MAX_ORDERS, ShopSpec};
use crate::config::today_at;
use crate::lock;
use crate::seeded::{hash_str, key, mix64};

/// Id bases of one shop (13-14 digit integers, like Shopify's).
pub(super) struct IdBase {
    pub(super) order: u64,
    pub(super) customer: u64,
    pub(super) line: u64,
    pub(super) product: u64,
    pub(super) variant: u64,
    pub(super) refund: u64,
    pub(super) transaction: u64,
}

/// What changes at run time, behind the shop's lock.
pub(super) struct ShopInner {
    /// `(updated_at, id)` of every order: the listing order.
    pub(super) index: BTreeSet<(i64, u64)>,
    /// The run-time changes of each changed order, by id.
    pub(super) patches: HashMap<u64, Patch>,
    /// `created_at` of orders added at run time (indices `spec.orders..`).
    pub(super) added: Vec<i64>,
    /// The latest `updated_at` handed out.
    pub(super) clock: i64,
}

/// One shop; see the module documentation.
pub(super) struct Shop {
    pub(super) spec: ShopSpec,
    pub(super) key: u64,
    pub(super) offset: FixedOffset,
    /// The shop's today at midnight: seeded orders are before it.
    pub(super) anchor: i64,
    /// When the seeded history starts, and how far apart its orders are (seconds).
    pub(super) start: i64,
    pub(super) spacing: i64,
    pub(super) ids: IdBase,
    pub(super) inner: Mutex<ShopInner>,
    /// How full its leaky bucket is.
    pub(super) bucket: Mutex<BucketLevel>,
    /// How full its GraphQL cost bucket is.
    pub(super) cost: Mutex<CostLevel>,
}

impl Shop {
    pub(super) fn new(
        seed: u64,
        today: Option<NaiveDate>,
        spec: &ShopSpec,
        cost_plan: CostPlan,
    ) -> Self {
        assert!(
            spec.orders <= MAX_ORDERS,
            "a stand-in shop holds at most {MAX_ORDERS} orders"
        );
        let key = key(&[seed, hash_str("shopify"), hash_str(&spec.shop)]);
        let offset = FixedOffset::east_opt(spec.utc_offset_minutes * 60)
            .unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
        let today = today_at(today, spec.utc_offset_minutes);
        let anchor = today
            .and_hms_opt(0, 0, 0)
            .and_then(|midnight| midnight.and_local_timezone(offset).single())
            .map_or(0, |midnight| midnight.timestamp());
        let history = i64::from(spec.history_days.max(1)) * DAY;
        let spacing = (history / spec.orders.max(1) as i64).max(1);
        let part = (key % 900) * 1_000_000_000;
        let ids = IdBase {
            order: 5_000_000_000_000 + part,
            customer: 6_000_000_000_000 + part,
            line: 13_000_000_000_000 + part * 10,
            product: 8_000_000_000_000 + part,
            variant: 44_000_000_000_000 + part,
            refund: 900_000_000_000 + part,
            transaction: 7_000_000_000_000 + part * 10,
        };
        let mut shop = Shop {
            spec: spec.clone(),
            key,
            offset,
            anchor,
            start: anchor - history,
            spacing,
            ids,
            inner: Mutex::new(ShopInner {
                index: BTreeSet::new(),
                patches: HashMap::new(),
                added: Vec::new(),
                clock: anchor,
            }),
            bucket: Mutex::new(BucketLevel::empty()),
            cost: Mutex::new(CostLevel::full(cost_plan)),
        };
        let mut clock = anchor;
        let index: BTreeSet<(i64, u64)> = (0..spec.orders as u64)
            .map(|i| {
                let timeline = shop.timeline(i);
                clock = clock.max(timeline.updated);
                (timeline.updated, shop.order_id(i))
            })
            .collect();
        let inner = shop.inner.get_mut().expect("fresh mutex");
        inner.index = index;
        inner.clock = clock;
        shop
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, ShopInner> {
        lock::unpoisoned(&self.inner)
    }

    pub(super) fn order_id(&self, index: u64) -> u64 {
        self.ids.order + index * 1000 + mix64(self.key ^ index) % 1000
    }

    pub(super) fn index_of(&self, id: u64) -> Option<u64> {
        let index = id.checked_sub(self.ids.order)? / 1000;
        (self.order_id(index) == id).then_some(index)
    }

    /// The model of an order by id, under the lock.
    pub(super) fn find(&self, inner: &ShopInner, id: u64) -> Option<OrderModel> {
        let index = self.index_of(id)?;
        self.model(index, inner.patches.get(&id), &inner.added)
    }

    /// [`Shop::find`] for the helpers of [`ShopifyFaults`](super::ShopifyFaults), whose error names the order.
    pub(super) fn order_model(&self, inner: &ShopInner, id: u64) -> anyhow::Result<OrderModel> {
        self.find(inner, id)
            .with_context(|| format!("shop {} has no order {id}", self.spec.shop))
    }
}
