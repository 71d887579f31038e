//! What tests change in a shop at run time: new orders, refunds, cancellations and edits.
//! Each takes a fresh `updated_at` after every earlier one ([`Shop::tick`]) and moves the
//! order in the index, so an incremental sync by `updated_at_min` sees it; the change
//! itself is kept as the order's [`Patch`], laid over the seeded order when it is built.

use anyhow::bail;
use chrono::Utc;

use super::MAX_ORDERS;
use super::data::OrderModel;
use super::faults::ShopifyFaults;
use super::shop::{Shop, ShopInner};

/// A refund made at run time.
#[derive(Debug, Clone)]
pub(super) struct ExtraRefund {
    pub(super) at: i64,
    pub(super) amount_cents: i64,
    pub(super) note: &'static str,
}

/// What happened to one order at run time.
#[derive(Debug, Clone, Default)]
pub(super) struct Patch {
    pub(super) updated_at: i64,
    pub(super) cancelled_at: Option<i64>,
    pub(super) refunds: Vec<ExtraRefund>,
    pub(super) note: Option<String>,
}

impl Shop {
    /// A new `updated_at`: now, but always after every earlier one.
    pub(super) fn tick(inner: &mut ShopInner) -> i64 {
        let at = Utc::now().timestamp().max(inner.clock + 1);
        inner.clock = at;
        at
    }

    /// Applies `change` to an order's patch, moving it in the index.
    fn mutate(
        &self,
        id: u64,
        change: impl FnOnce(&OrderModel, &mut Patch, i64) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut inner = self.lock();
        let model = self.order_model(&inner, id)?;
        let mut patch = inner.patches.get(&id).cloned().unwrap_or_default();
        let at = Self::tick(&mut inner);
        change(&model, &mut patch, at)?;
        patch.updated_at = at;
        inner.index.remove(&(model.updated, id));
        inner.index.insert((at, id));
        inner.patches.insert(id, patch);
        Ok(())
    }
}

impl ShopifyFaults {
    /// Creates `count` paid orders now; returns their ids.
    pub fn add_orders(&self, shop: &str, count: usize) -> anyhow::Result<Vec<u64>> {
        let shop = self.shop(shop)?;
        let mut inner = shop.lock();
        if shop.spec.orders + inner.added.len() + count > MAX_ORDERS {
            bail!("a stand-in shop holds at most {MAX_ORDERS} orders");
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let at = Shop::tick(&mut inner);
            let index = (shop.spec.orders + inner.added.len()) as u64;
            inner.added.push(at);
            let id = shop.order_id(index);
            inner.index.insert((at, id));
            ids.push(id);
        }
        Ok(ids)
    }

    /// Refunds `amount_cents` of an order (everything still paid when `None`); returns the
    /// refund id.
    pub fn refund_order(
        &self,
        shop: &str,
        order_id: u64,
        amount_cents: Option<i64>,
    ) -> anyhow::Result<u64> {
        let shop = self.shop(shop)?;
        let mut seq = 0;
        shop.mutate(order_id, |model, patch, at| {
            let remaining = model.remaining_cents();
            if model.pending {
                bail!("order {order_id} is not paid; nothing to refund");
            }
            let amount = amount_cents.unwrap_or(remaining);
            if amount <= 0 || amount > remaining {
                bail!("order {order_id}: cannot refund {amount} cents of {remaining} remaining");
            }
            patch.refunds.push(ExtraRefund {
                at,
                amount_cents: amount,
                note: "Refund",
            });
            seq = patch.refunds.len() as u64;
            Ok(())
        })?;
        let index = shop.index_of(order_id).unwrap_or_default();
        Ok(shop.ids.refund + index * 100 + seq)
    }

    /// Cancels an order now, refunding whatever was still paid.
    pub fn cancel_order(&self, shop: &str, order_id: u64) -> anyhow::Result<()> {
        self.shop(shop)?.mutate(order_id, |model, patch, at| {
            if model.cancelled.is_some() {
                bail!("order {order_id} is already cancelled");
            }
            patch.cancelled_at = Some(at);
            let remaining = model.remaining_cents();
            if !model.pending && remaining > 0 {
                patch.refunds.push(ExtraRefund {
                    at,
                    amount_cents: remaining,
                    note: "Order canceled",
                });
            }
            Ok(())
        })
    }

    /// Edits an order (its note) without changing money: only `updated_at` moves.
    pub fn touch_order(&self, shop: &str, order_id: u64) -> anyhow::Result<()> {
        self.shop(shop)?.mutate(order_id, |_, patch, at| {
            patch.note = Some(format!("edited at {at}"));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_SHOP;
    use super::super::test_support::{config, orders_uri, walk};
    use crate::router;

    #[tokio::test]
    async fn incremental_sync_sees_new_refunded_cancelled_and_edited_orders() {
        let (router, handles) = router(&config(500), "http://standins.test");
        let shopify = &handles.shopify;
        let (all, _) = walk(&router, orders_uri(&[("status", "any"), ("limit", "250")])).await;
        let cursor = all.last().unwrap()["updated_at"]
            .as_str()
            .unwrap()
            .to_string();
        let before = shopify.expected_totals(DEFAULT_SHOP);

        let paid: Vec<u64> = all
            .iter()
            .filter(|order| order["financial_status"] == "paid")
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        let new = shopify.add_orders(DEFAULT_SHOP, 3).unwrap();
        let refund_id = shopify
            .refund_order(DEFAULT_SHOP, paid[0], Some(500))
            .unwrap();
        shopify.cancel_order(DEFAULT_SHOP, paid[1]).unwrap();
        shopify.touch_order(DEFAULT_SHOP, paid[2]).unwrap();
        assert!(shopify.cancel_order(DEFAULT_SHOP, paid[1]).is_err());
        assert!(shopify.refund_order(DEFAULT_SHOP, 1, None).is_err());

        shopify.clear_requests();
        let (changed, _) = walk(
            &router,
            orders_uri(&[
                ("status", "any"),
                ("limit", "250"),
                ("updated_at_min", &cursor),
            ]),
        )
        .await;
        assert_eq!(
            shopify.requests()[0].param("updated_at_min"),
            Some(cursor.as_str())
        );
        // updated_at_min is inclusive: the last order seen comes again, then the six changes.
        let ids: Vec<u64> = changed
            .iter()
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(
            ids[1..],
            [new[0], new[1], new[2], paid[0], paid[1], paid[2]]
        );
        let by_id = |id: u64| changed.iter().find(|order| order["id"] == id).unwrap();
        let refunded = by_id(paid[0]);
        assert_eq!(refunded["financial_status"], "partially_refunded");
        let last_refund = refunded["refunds"].as_array().unwrap().last().unwrap();
        assert_eq!(last_refund["id"], refund_id);
        assert_eq!(last_refund["transactions"][0]["amount"], "5.00");
        let cancelled = by_id(paid[1]);
        assert_eq!(cancelled["financial_status"], "refunded");
        assert_eq!(cancelled["current_total_price"], "0.00");
        assert!(!cancelled["cancelled_at"].is_null());
        assert!(!by_id(paid[2])["note"].is_null());
        assert_eq!(by_id(new[0])["financial_status"], "paid");

        let after = shopify.expected_totals(DEFAULT_SHOP);
        assert_eq!(after.orders, before.orders + 3);
        assert_eq!(after.cancelled, before.cancelled + 1);
        assert!(after.refunded_cents > before.refunded_cents + 500);
        assert_eq!(after.gross_cents - after.refunded_cents, after.net_cents);
    }
}
