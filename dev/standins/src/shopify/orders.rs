//! The orders endpoints: `GET orders.json` (a listing, paged by `pagination`),
//! `orders/count.json` and `orders/{id}.json`. Each request passes the checks Shopify
//! makes first — the shop, its token, its bucket — and carries the call-limit and version
//! headers once through.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::faults::{ShopifyFaults, ShopifyState};
use super::order_json::OrderJson;
use super::pagination::Direction;
use super::shop::Shop;
use crate::answer::{Answer, serve};
use crate::query::first;
use crate::reply::{json_body, set_header};
use crate::request_log::{Api, Outcome};

pub(crate) fn routes(faults: &ShopifyFaults) -> Router {
    Router::new()
        .route(
            "/shopify/{shop}/admin/api/{version}/orders.json",
            get(list_orders),
        )
        .route(
            "/shopify/{shop}/admin/api/{version}/orders/{file}",
            get(one_order),
        )
        .with_state(faults.clone())
}

/// Shopify's error body: `{"errors": message}`.
fn errors(status: StatusCode, message: &str) -> Response {
    json_body(status, &serde_json::json!({ "errors": message }))
}

/// Shopify's 400 for a parameter it cannot take.
fn bad_request(message: &str) -> Answer {
    Answer::refused(errors(StatusCode::BAD_REQUEST, message), Outcome::Rejected)
}

/// Shopify's 404, for an unknown shop, order or path alike.
fn not_found() -> Answer {
    Answer::refused(
        errors(StatusCode::NOT_FOUND, "Not Found"),
        Outcome::Rejected,
    )
}

async fn list_orders(
    State(faults): State<ShopifyFaults>,
    Path((shop, version)): Path<(String, String)>,
    request: Request,
) -> Response {
    let path = format!("/shopify/{shop}/admin/api/{version}/orders.json");
    faults
        .0
        .serve(&shop, &version, path, &request, |found, query| {
            faults.0.list(found, &version, query)
        })
}

async fn one_order(
    State(faults): State<ShopifyFaults>,
    Path((shop, version, file)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let path = format!("/shopify/{shop}/admin/api/{version}/orders/{file}");
    faults
        .0
        .serve(&shop, &version, path, &request, |found, query| {
            match file.strip_suffix(".json") {
                Some("count") => faults.0.count(found, query),
                Some(id) => faults.0.single(found, id, query),
                None => not_found(),
            }
        })
}

/// An order as listed: whole, or cut down to `fields`.
#[derive(Serialize)]
#[serde(untagged)]
enum OrderOut {
    Full(Box<OrderJson>),
    Selected(serde_json::Value),
}

#[derive(Serialize)]
struct OrdersPage {
    orders: Vec<OrderOut>,
}

/// Keeps only the top-level keys listed in `fields`.
fn select_fields(value: serde_json::Value, fields: Option<&str>) -> serde_json::Value {
    let Some(fields) = fields.filter(|fields| !fields.is_empty()) else {
        return value;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(key, _)| wanted.contains(&key.as_str()))
                .collect(),
        ),
        other => other,
    }
}

impl ShopifyState {
    pub(super) fn shop(&self, name: &str) -> Option<&Shop> {
        self.shops.iter().find(|shop| shop.spec.shop == name)
    }

    /// Serves a request of `shop`'s Admin API: the checks every endpoint shares (the shop,
    /// its token, throttling), then `endpoint`, whose answer carries the call-limit and
    /// version headers Shopify sends with every request it let through.
    fn serve(
        &self,
        shop: &str,
        version: &str,
        path: String,
        request: &Request,
        endpoint: impl FnOnce(&Shop, &[(String, String)]) -> Answer,
    ) -> Response {
        serve(&self.switches, Api::Shopify, path, request, |query| {
            let Some(shop) = self.shop(shop) else {
                return not_found();
            };
            if let Some(refusal) = self.refuse_token(shop, request.headers()) {
                return refusal;
            }
            let call_limit = match self.admit(shop) {
                Ok(call_limit) => call_limit,
                Err(throttled) => return Answer::refused(*throttled, Outcome::Throttled),
            };
            let mut answer = endpoint(shop, query);
            set_header(
                &mut answer.response,
                "x-shopify-shop-api-call-limit",
                &call_limit,
            );
            set_header(&mut answer.response, "x-shopify-api-version", version);
            answer
        })
    }

    fn server_error(&self, page: u32) -> Option<Answer> {
        self.switches.injected_failure(page, || {
            errors(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        })
    }

    fn list(&self, shop: &Shop, version: &str, query: &[(String, String)]) -> Answer {
        let listing = match self.listing(shop, query) {
            Ok(listing) => listing,
            Err(message) => return bad_request(&message),
        };
        if let Some(failure) = self.server_error(listing.page) {
            return failure;
        }
        let (orders, links) = {
            let inner = shop.lock();
            let (found, more) = shop.select(
                &inner,
                &listing.filter,
                listing.direction,
                listing.from,
                listing.limit,
            );
            let orders: Vec<OrderOut> = found
                .iter()
                .filter_map(|(_, id)| shop.find(&inner, *id))
                .map(|model| {
                    let order = shop.order_json(&model);
                    match listing.fields {
                        None => OrderOut::Full(Box::new(order)),
                        Some(fields) => OrderOut::Selected(select_fields(
                            serde_json::to_value(order).unwrap_or_default(),
                            Some(fields),
                        )),
                    }
                })
                .collect();
            let links = self.links(shop, version, &listing, &found, more);
            (orders, links)
        };
        let rows = orders.len();
        let mut response = json_body(StatusCode::OK, &OrdersPage { orders });
        if !links.is_empty() {
            set_header(&mut response, "link", &links.join(", "));
        }
        Answer::served(response, Some(listing.page), rows)
    }

    fn count(&self, shop: &Shop, query: &[(String, String)]) -> Answer {
        let filter = match self.filter(shop, query) {
            Ok(filter) => filter,
            Err(message) => return bad_request(&message),
        };
        if let Some(failure) = self.server_error(0) {
            return failure;
        }
        let count = {
            let inner = shop.lock();
            shop.select(&inner, &filter, Direction::Next, None, usize::MAX - 1)
                .0
                .len()
        };
        Answer::served(
            json_body(StatusCode::OK, &serde_json::json!({ "count": count })),
            None,
            0,
        )
    }

    fn single(&self, shop: &Shop, id: &str, query: &[(String, String)]) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return not_found();
        };
        if let Some(failure) = self.server_error(0) {
            return failure;
        }
        let order = {
            let inner = shop.lock();
            shop.find(&inner, id)
                .and_then(|model| serde_json::to_value(shop.order_json(&model)).ok())
        };
        match order {
            None => not_found(),
            Some(order) => {
                let order = select_fields(order, first(query, "fields"));
                Answer::served(
                    json_body(StatusCode::OK, &serde_json::json!({ "order": order })),
                    None,
                    1,
                )
            }
        }
    }
}
