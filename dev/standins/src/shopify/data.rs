//! The seeded orders of a shop: when each was created and what happened to it before
//! "today" ([`Timeline`]: about 3 % cancelled, 4 % fully and 4 % partially refunded, 2 %
//! pending, older ones closed), and what it holds ([`OrderModel`]: line items, discount,
//! shipping, tax, refunds), all drawn from the shop's key and the order's index, with the
//! run-time changes of its [`Patch`] laid over.

use super::changes::Patch;
use super::shop::Shop;
use crate::seeded::{Draw, key, mix64};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefundKind {
    Full,
    /// One unit of the first line item (at most half the order).
    Partial,
}

/// What the seed says happened to an order before "today".
pub(super) struct Timeline {
    pub(super) created: i64,
    pub(super) updated: i64,
    pub(super) closed: Option<i64>,
    pub(super) cancelled: Option<(i64, &'static str)>,
    refund: Option<(i64, RefundKind)>,
    pub(super) pending: bool,
}

pub(super) struct Line {
    pub(super) product: u64,
    pub(super) quantity: u64,
    pub(super) price_cents: i64,
}

pub(super) struct RefundModel {
    pub(super) seq: u64,
    pub(super) at: i64,
    pub(super) amount_cents: i64,
    pub(super) partial_line: bool,
    pub(super) note: Option<&'static str>,
}

/// Everything about one order, before it is formatted.
pub(super) struct OrderModel {
    pub(super) index: u64,
    pub(super) id: u64,
    pub(super) created: i64,
    pub(super) updated: i64,
    pub(super) closed: Option<i64>,
    pub(super) cancelled: Option<(i64, &'static str)>,
    pub(super) pending: bool,
    pub(super) note: Option<String>,
    pub(super) customer: u64,
    pub(super) lines: Vec<Line>,
    pub(super) discount: Option<(&'static str, i64)>,
    pub(super) shipping_cents: i64,
    pub(super) tax_cents: i64,
    pub(super) line_total_cents: i64,
    pub(super) subtotal_cents: i64,
    pub(super) total_cents: i64,
    pub(super) refunds: Vec<RefundModel>,
}

impl OrderModel {
    pub(super) fn refunded_cents(&self) -> i64 {
        self.refunds.iter().map(|refund| refund.amount_cents).sum()
    }

    pub(super) fn remaining_cents(&self) -> i64 {
        (self.total_cents - self.refunded_cents()).max(0)
    }

    pub(super) fn financial_status(&self) -> &'static str {
        let refunded = self.refunded_cents();
        if self.pending {
            if self.cancelled.is_some() {
                "voided"
            } else {
                "pending"
            }
        } else if refunded >= self.total_cents {
            "refunded"
        } else if refunded > 0 {
            "partially_refunded"
        } else {
            "paid"
        }
    }
}

const CANCEL_REASONS: [&str; 4] = ["customer", "inventory", "fraud", "declined"];
pub(super) const PRODUCTS: u64 = 40;
pub(super) const DAY: i64 = 86_400;

impl Shop {
    pub(super) fn timeline(&self, index: u64) -> Timeline {
        let mut draw = Draw::new(key(&[self.key, index, 0x71]));
        let created =
            self.start + index as i64 * self.spacing + draw.below(self.spacing as u64) as i64;
        let mut updated = created + 30 + draw.below(600) as i64;
        let kind = draw.unit();
        let (mut closed, mut cancelled, mut refund, mut pending) = (None, None, None, false);
        if kind < 0.03 {
            let at = created + 3_600 + draw.below(47 * 3_600) as i64;
            if at < self.anchor {
                let reason = CANCEL_REASONS[draw.below(CANCEL_REASONS.len() as u64) as usize];
                cancelled = Some((at, reason));
                closed = Some(at);
                updated = at;
                // A few cancelled orders were never paid.
                pending = draw.unit() < 0.2;
            }
        } else if kind < 0.05 {
            pending = true;
        } else {
            if kind < 0.13 {
                let at = created + 2 * DAY + draw.below(18 * DAY as u64) as i64;
                if at < self.anchor {
                    let refund_kind = if kind < 0.09 {
                        RefundKind::Full
                    } else {
                        RefundKind::Partial
                    };
                    refund = Some((at, refund_kind));
                    updated = updated.max(at);
                }
            }
            let close_at = created + 3 * DAY + draw.below(4 * DAY as u64) as i64;
            if close_at < self.anchor {
                closed = Some(close_at);
                updated = updated.max(close_at);
            }
        }
        Timeline {
            created,
            updated,
            closed,
            cancelled,
            refund,
            pending,
        }
    }

    fn product_price(&self, product: u64) -> i64 {
        1_499 + 100 * (mix64(self.key ^ product ^ 0x9B) % 100) as i64
    }

    pub(super) fn model(
        &self,
        index: u64,
        patch: Option<&Patch>,
        added: &[i64],
    ) -> Option<OrderModel> {
        let base_count = self.spec.orders as u64;
        let timeline = if index < base_count {
            self.timeline(index)
        } else {
            let created = *added.get(usize::try_from(index - base_count).ok()?)?;
            Timeline {
                created,
                updated: created,
                closed: None,
                cancelled: None,
                refund: None,
                pending: false,
            }
        };
        let mut draw = Draw::new(key(&[self.key, index, 0xEC]));
        let line_count = match draw.unit() {
            u if u < 0.6 => 1,
            u if u < 0.9 => 2,
            _ => 3,
        };
        let lines: Vec<Line> = (0..line_count)
            .map(|_| {
                let product = draw.below(PRODUCTS);
                Line {
                    product,
                    quantity: if draw.unit() < 0.8 { 1 } else { 2 },
                    price_cents: self.product_price(product),
                }
            })
            .collect();
        let line_total_cents: i64 = lines
            .iter()
            .map(|line| line.price_cents * line.quantity as i64)
            .sum();
        let discount = (draw.unit() < 0.15).then_some(("WELCOME10", line_total_cents / 10));
        let subtotal_cents = line_total_cents - discount.map_or(0, |(_, cents)| cents);
        let shipping_cents = if subtotal_cents >= 5_000 { 0 } else { 595 };
        let tax_cents = subtotal_cents * i64::from(self.spec.tax_rate_bp) / 10_000;
        let total_cents = subtotal_cents + shipping_cents + tax_cents;
        let customers = (self.spec.orders as u64 * 2 / 3).max(1);
        let customer = draw.below(customers);

        let mut refunds = Vec::new();
        if let Some((at, _)) = timeline.cancelled
            && !timeline.pending
        {
            refunds.push(RefundModel {
                seq: 0,
                at,
                amount_cents: total_cents,
                partial_line: false,
                note: Some("Order canceled"),
            });
        }
        if let Some((at, kind)) = timeline.refund {
            refunds.push(RefundModel {
                seq: 0,
                at,
                amount_cents: match kind {
                    RefundKind::Full => total_cents,
                    // One unit of the first line, never more than half the order.
                    RefundKind::Partial => lines[0].price_cents.min(total_cents / 2),
                },
                partial_line: kind == RefundKind::Partial,
                note: None,
            });
        }
        let mut model = OrderModel {
            index,
            id: self.order_id(index),
            created: timeline.created,
            updated: timeline.updated,
            closed: timeline.closed,
            cancelled: timeline.cancelled,
            pending: timeline.pending,
            note: None,
            customer,
            lines,
            discount,
            shipping_cents,
            tax_cents,
            line_total_cents,
            subtotal_cents,
            total_cents,
            refunds,
        };
        if let Some(patch) = patch {
            model.updated = patch.updated_at;
            if let Some(at) = patch.cancelled_at {
                model.cancelled = Some((at, "customer"));
                model.closed = Some(at);
            }
            for (n, refund) in patch.refunds.iter().enumerate() {
                model.refunds.push(RefundModel {
                    seq: n as u64 + 1,
                    at: refund.at,
                    amount_cents: refund.amount_cents,
                    partial_line: false,
                    note: Some(refund.note),
                });
            }
            model.note.clone_from(&patch.note);
        }
        Some(model)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{TOKEN, config, orders_uri, walk};
    use super::super::{API_VERSION, DEFAULT_SHOP};
    use crate::router;
    use crate::test_support::get;

    #[tokio::test]
    async fn status_defaults_to_open_and_the_seed_mixes_refunds_and_cancellations() {
        let (router, handles) = router(&config(2_000), "http://standins.test");
        let (open, _) = walk(&router, orders_uri(&[("limit", "250")])).await;
        let (all, _) = walk(&router, orders_uri(&[("status", "any"), ("limit", "250")])).await;
        assert_eq!(all.len(), 2_000);
        assert!(open.len() < all.len() / 2, "{} open", open.len());
        assert!(
            open.iter()
                .all(|order| order["closed_at"].is_null() && order["cancelled_at"].is_null())
        );
        let count = |status: &str| {
            all.iter()
                .filter(|order| order["financial_status"] == status)
                .count()
        };
        let cancelled = all
            .iter()
            .filter(|order| !order["cancelled_at"].is_null())
            .count();
        assert!((30..=90).contains(&cancelled), "{cancelled} cancelled");
        assert!(count("refunded") > 60, "{} refunded", count("refunded"));
        assert!(
            count("partially_refunded") > 40,
            "{}",
            count("partially_refunded")
        );
        assert!(count("pending") > 10, "{}", count("pending"));
        assert!(count("paid") > 1_500);
        let (_, _, body) = get(
            &router,
            &format!(
                "/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders/count.json?status=any"
            ),
            &[TOKEN],
        )
        .await;
        assert_eq!(body["count"], 2_000);
        let totals = handles.shopify.expected_totals(DEFAULT_SHOP);
        assert_eq!(totals.cancelled, cancelled);
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_orders() {
        let uri = orders_uri(&[("status", "any"), ("limit", "100")]);
        let (a, _) = router(&config(300), "http://standins.test");
        let (b, _) = router(&config(300), "http://standins.test");
        let mut other = config(300);
        other.seed += 1;
        let (c, _) = router(&other, "http://standins.test");
        let (orders_a, _) = walk(&a, uri.clone()).await;
        assert_eq!(orders_a, walk(&b, uri.clone()).await.0);
        assert_ne!(orders_a, walk(&c, uri).await.0);
    }
}
