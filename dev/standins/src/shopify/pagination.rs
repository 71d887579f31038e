//! Paging through a shop's orders as Shopify does: a first request states its filters
//! (`status`, `updated_at_*`, `created_at_*`); its answer links the next and previous pages
//! by `page_info` cursors that carry those filters and the last order seen, and a
//! follow-up request may send only `page_info`, `limit` and `fields`. Orders come by
//! `(updated_at, id)`, so a listing stays in order while orders change under it.

use std::ops::Bound;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use super::faults::ShopifyState;
use super::shop::{Shop, ShopInner};
use crate::query::{encode_query, first};

/// The filters of a listing, carried inside `page_info` as Shopify does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Filter {
    pub(super) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) updated_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) updated_max: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) created_min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) created_max: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Direction {
    Next,
    #[serde(rename = "prev")]
    Previous,
}

/// The decoded `page_info`: base64url JSON, like Shopify's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    direction: Direction,
    last_id: u64,
    last_value: i64,
    page: u32,
    filter: Filter,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
    }
}

/// One listing request, checked: its filters, where it starts (the direction, and the
/// last order seen — none on a first request), its 1-based page number, and how many
/// orders it asks for with which `fields`.
pub(super) struct Listing<'q> {
    pub(super) filter: Filter,
    pub(super) direction: Direction,
    pub(super) from: Option<(i64, u64)>,
    pub(super) page: u32,
    pub(super) limit: usize,
    pub(super) fields: Option<&'q str>,
}

fn parse_time(value: &str, offset: FixedOffset) -> Option<i64> {
    // An unencoded `+` in an offset arrives as a space.
    let value = value.trim().replace(' ', "+");
    if let Ok(time) = DateTime::parse_from_rfc3339(&value) {
        return Some(time.timestamp());
    }
    let local = NaiveDateTime::parse_from_str(&value, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&value, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
        })?;
    local
        .and_local_timezone(offset)
        .single()
        .map(|time| time.timestamp())
}

impl ShopifyState {
    /// A listing request, from its `page_info` or from a first request's parameters;
    /// `Err` is the 400 message.
    pub(super) fn listing<'q>(
        &self,
        shop: &Shop,
        query: &'q [(String, String)],
    ) -> Result<Listing<'q>, String> {
        let limit = match first(query, "limit") {
            None => 50,
            Some(value) => match value.parse::<usize>() {
                Ok(limit) if limit > 0 => limit.min(250),
                _ => return Err("limit: expected a positive integer".into()),
            },
        };
        let fields = first(query, "fields");
        let (filter, direction, from, page) = match first(query, "page_info") {
            Some(page_info) => {
                if query
                    .iter()
                    .any(|(key, _)| !matches!(key.as_str(), "page_info" | "limit" | "fields"))
                {
                    return Err(
                        "page_info: only limit and fields may be sent with page_info; the other parameters are inside it".into(),
                    );
                }
                let Some(cursor) = Cursor::decode(page_info) else {
                    return Err("page_info: invalid value".into());
                };
                (
                    cursor.filter,
                    cursor.direction,
                    Some((cursor.last_value, cursor.last_id)),
                    cursor.page,
                )
            }
            None => {
                if first(query, "order").is_some_and(|order| order != "updated_at asc") {
                    return Err("order: the Shopify stand-in lists by updated_at asc only".into());
                }
                (self.filter(shop, query)?, Direction::Next, None, 1)
            }
        };
        Ok(Listing {
            filter,
            direction,
            from,
            page,
            limit,
            fields,
        })
    }

    /// The listing filters of a first request; `Err` is the 400 message.
    pub(super) fn filter(&self, shop: &Shop, query: &[(String, String)]) -> Result<Filter, String> {
        let status = first(query, "status").unwrap_or("open");
        if !matches!(status, "open" | "closed" | "cancelled" | "any") {
            return Err("status: expected one of open, closed, cancelled, any".into());
        }
        let time = |name: &str| -> Result<Option<i64>, String> {
            first(query, name)
                .map(|value| {
                    parse_time(value, shop.offset)
                        .ok_or_else(|| format!("{name}: invalid date {value}"))
                })
                .transpose()
        };
        Ok(Filter {
            status: status.to_string(),
            updated_min: time("updated_at_min")?,
            updated_max: time("updated_at_max")?,
            created_min: time("created_at_min")?,
            created_max: time("created_at_max")?,
        })
    }

    /// The `Link` header parts of the page of `listing` that holds `found` (`more`: whether
    /// orders follow in its direction), each repeating `limit` and `fields`.
    pub(super) fn links(
        &self,
        shop: &Shop,
        version: &str,
        listing: &Listing<'_>,
        found: &[(i64, u64)],
        more: bool,
    ) -> Vec<String> {
        let (has_previous, has_next) = match listing.direction {
            Direction::Next => (listing.from.is_some(), more),
            Direction::Previous => (more, true),
        };
        let link = |direction: Direction, entry: &(i64, u64), page: u32| {
            let cursor = Cursor {
                direction,
                last_id: entry.1,
                last_value: entry.0,
                page,
                filter: listing.filter.clone(),
            }
            .encode();
            let limit = listing.limit.to_string();
            let mut pairs = vec![("limit", limit.as_str())];
            if let Some(fields) = listing.fields {
                pairs.push(("fields", fields));
            }
            pairs.push(("page_info", &cursor));
            format!(
                "<{}/{}/admin/api/{version}/orders.json?{}>",
                self.base_url,
                shop.spec.shop,
                encode_query(pairs)
            )
        };
        let mut links = Vec::new();
        if let (true, Some(first_entry)) = (has_previous, found.first()) {
            links.push(format!(
                "{}; rel=\"previous\"",
                link(
                    Direction::Previous,
                    first_entry,
                    listing.page.saturating_sub(1).max(1)
                )
            ));
        }
        if let (true, Some(last_entry)) = (has_next, found.last()) {
            links.push(format!(
                "{}; rel=\"next\"",
                link(Direction::Next, last_entry, listing.page + 1)
            ));
        }
        links
    }
}

impl Shop {
    pub(super) fn matches(
        &self,
        inner: &ShopInner,
        id: u64,
        updated: i64,
        filter: &Filter,
    ) -> bool {
        if filter.updated_max.is_some_and(|max| updated > max) {
            return false;
        }
        let Some(index) = self.index_of(id) else {
            return false;
        };
        let patch = inner.patches.get(&id);
        let (created, mut cancelled, mut closed) = if index < self.spec.orders as u64 {
            let timeline = self.timeline(index);
            (
                timeline.created,
                timeline.cancelled.is_some(),
                timeline.closed.is_some(),
            )
        } else {
            let added = usize::try_from(index - self.spec.orders as u64)
                .ok()
                .and_then(|at| inner.added.get(at).copied())
                .unwrap_or_default();
            (added, false, false)
        };
        if patch.is_some_and(|patch| patch.cancelled_at.is_some()) {
            cancelled = true;
            closed = true;
        }
        let status = match filter.status.as_str() {
            "open" => !closed && !cancelled,
            "closed" => closed,
            "cancelled" => cancelled,
            _ => true,
        };
        status
            && filter.created_min.is_none_or(|min| created >= min)
            && filter.created_max.is_none_or(|max| created <= max)
    }

    /// Up to `limit` order ids in listing order from a position, and whether more follow
    /// in that direction.
    pub(super) fn select(
        &self,
        inner: &ShopInner,
        filter: &Filter,
        direction: Direction,
        from: Option<(i64, u64)>,
        limit: usize,
    ) -> (Vec<(i64, u64)>, bool) {
        let floor = Bound::Included((filter.updated_min.unwrap_or(i64::MIN), 0));
        let mut found: Vec<(i64, u64)> = Vec::with_capacity(limit.min(250) + 1);
        let keep = |entry: &&(i64, u64)| self.matches(inner, entry.1, entry.0, filter);
        match direction {
            Direction::Next => {
                let lower = from.map_or(floor, Bound::Excluded);
                found.extend(
                    inner
                        .index
                        .range((lower, Bound::Unbounded))
                        .take_while(|(updated, _)| {
                            filter.updated_max.is_none_or(|max| *updated <= max)
                        })
                        .filter(keep)
                        .take(limit + 1),
                );
            }
            Direction::Previous => {
                let upper = from.map_or(Bound::Unbounded, Bound::Excluded);
                found.extend(
                    inner
                        .index
                        .range((floor, upper))
                        .rev()
                        .filter(keep)
                        .take(limit + 1),
                );
            }
        }
        let more = found.len() > limit;
        found.truncate(limit);
        if direction == Direction::Previous {
            found.reverse();
        }
        (found, more)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::StatusCode;
    use chrono::{DateTime, FixedOffset};

    use super::super::DEFAULT_SHOP;
    use super::super::test_support::{TOKEN, cents, config, link, orders_uri, second_page, walk};
    use super::parse_time;
    use crate::router;
    use crate::test_support::{get, path_of};

    #[tokio::test]
    async fn link_pagination_walks_every_order_once_by_updated_at() {
        let (router, handles) = router(&config(430), "http://standins.test");
        let (orders, pages) =
            walk(&router, orders_uri(&[("status", "any"), ("limit", "50")])).await;
        assert_eq!(orders.len(), 430);
        assert_eq!(pages, 9);
        let ids: BTreeSet<u64> = orders
            .iter()
            .map(|order| order["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 430);
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            handles.shopify.order_ids(DEFAULT_SHOP)
        );
        let updated: Vec<i64> = orders
            .iter()
            .map(|order| {
                DateTime::parse_from_rfc3339(order["updated_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp()
            })
            .collect();
        assert!(updated.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(
            orders[0]["created_at"]
                .as_str()
                .unwrap()
                .ends_with("-05:00")
        );

        // Money adds up, and the totals helper agrees with what was served.
        let totals = handles.shopify.expected_totals(DEFAULT_SHOP);
        let mut gross = 0;
        let mut net = 0;
        let mut refunded = 0;
        for order in &orders {
            let total = cents(&order["total_price"]);
            assert_eq!(
                total,
                cents(&order["subtotal_price"])
                    + cents(&order["total_tax"])
                    + cents(&order["shipping_lines"][0]["price"])
            );
            gross += total;
            net += cents(&order["current_total_price"]);
            for refund in order["refunds"].as_array().unwrap() {
                for transaction in refund["transactions"].as_array().unwrap() {
                    assert_eq!(transaction["kind"], "refund");
                    refunded += cents(&transaction["amount"]);
                }
            }
        }
        assert_eq!(totals.orders, 430);
        assert_eq!(
            (gross, net, refunded),
            (totals.gross_cents, totals.net_cents, totals.refunded_cents)
        );
        assert_eq!(gross - refunded, net);

        let requests = handles.shopify.requests();
        assert_eq!(requests.len(), 9);
        assert_eq!(requests[0].param("status"), Some("any"));
        assert!(requests[1].param("page_info").is_some());
        assert_eq!(requests[8].page, Some(9));
    }

    #[tokio::test]
    async fn follow_up_pages_take_only_page_info_limit_and_fields() {
        let (router, _) = router(&config(120), "http://standins.test");
        let next = second_page(&router, "50").await;
        assert!(next.contains("limit=50"));
        assert!(!next.contains("status"));
        let (status, _, body) = get(&router, &format!("{next}&status=any"), &[TOKEN]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["errors"].as_str().unwrap().contains("page_info"));

        // The second page links back, and the previous page is the first one again.
        let (_, headers, second) = get(&router, &next, &[TOKEN]).await;
        let previous = path_of(&link(&headers, "previous").unwrap());
        let (_, _, first_again) = get(&router, &previous, &[TOKEN]).await;
        let (_, _, first) = get(
            &router,
            &orders_uri(&[("status", "any"), ("limit", "50")]),
            &[TOKEN],
        )
        .await;
        assert_eq!(first_again, first);
        assert_ne!(second, first);

        // fields cuts each order down.
        let (_, _, body) = get(
            &router,
            &orders_uri(&[
                ("status", "any"),
                ("limit", "2"),
                ("fields", "id,updated_at"),
            ]),
            &[TOKEN],
        )
        .await;
        let keys: Vec<&String> = body["orders"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "updated_at"]);
    }

    #[tokio::test]
    async fn a_page_fails_once_with_a_500() {
        let (router, handles) = router(&config(100), "http://standins.test");
        handles.shopify.fail_at_page(2);
        let next = second_page(&router, "40").await;
        let (status, _, _) = get(&router, &next, &[TOKEN]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _, body) = get(&router, &next, &[TOKEN]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["orders"].as_array().unwrap().len(), 40);
    }

    #[test]
    fn times_parse_with_offsets_dates_and_unencoded_plus() {
        let offset = FixedOffset::west_opt(5 * 3600).unwrap();
        let utc = parse_time("2026-11-01T05:00:00Z", offset).unwrap();
        assert_eq!(parse_time("2026-11-01T00:00:00-05:00", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01T00:00:00", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01", offset), Some(utc));
        assert_eq!(parse_time("2026-11-01T10:00:00 05:00", offset), Some(utc));
        assert_eq!(parse_time("yesterday", offset), None);
    }
}
