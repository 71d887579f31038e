//! Webhook deliveries as Shopify POSTs them, for tests to send to the webhook endpoint:
//! the order's (or its latest refund's) current JSON — or, for `app/uninstalled` and the
//! compliance topics, the shop or the customer and their orders — signed with `X-Shopify-Hmac-Sha256`,
//! with a webhook and event id that stay the same for a redelivery of the same topic and
//! order state and change with the next change.

use anyhow::Context;
use axum::body::Body;
use axum::http::Method;
use chrono::SecondsFormat;

use super::API_VERSION;
use super::faults::ShopifyFaults;
use crate::seeded::{Draw, hash_str, key};

/// The webhook topics the helper builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopifyTopic {
    OrdersCreate,
    OrdersUpdated,
    OrdersPaid,
    OrdersCancelled,
    /// The body is the order's latest refund, not the order.
    RefundsCreate,
    /// The shop removed the app: the body is the shop.
    AppUninstalled,
    /// The mandatory compliance topics: a customer asks for their data, or to be erased;
    /// a shop's data is to be erased (48 hours after it uninstalled the app).
    CustomersDataRequest,
    CustomersRedact,
    ShopRedact,
}

impl ShopifyTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            ShopifyTopic::OrdersCreate => "orders/create",
            ShopifyTopic::OrdersUpdated => "orders/updated",
            ShopifyTopic::OrdersPaid => "orders/paid",
            ShopifyTopic::OrdersCancelled => "orders/cancelled",
            ShopifyTopic::RefundsCreate => "refunds/create",
            ShopifyTopic::AppUninstalled => "app/uninstalled",
            ShopifyTopic::CustomersDataRequest => "customers/data_request",
            ShopifyTopic::CustomersRedact => "customers/redact",
            ShopifyTopic::ShopRedact => "shop/redact",
        }
    }
}

/// One webhook POST as Shopify would send it.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub topic: ShopifyTopic,
    /// `X-Shopify-*` headers and `Content-Type`.
    pub headers: Vec<(String, String)>,
    /// The raw JSON body the HMAC was computed over.
    pub body: Vec<u8>,
}

impl WebhookDelivery {
    /// A header by name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `X-Shopify-Webhook-Id`: the same for a redelivery of the same event.
    pub fn webhook_id(&self) -> &str {
        self.header("X-Shopify-Webhook-Id").unwrap_or_default()
    }

    /// Sets a header (replacing it, case-insensitively, or adding it). The signature covers
    /// the body only, so it stays valid: this is how a replay rewrites a delivery.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// A `POST uri` request carrying this delivery, e.g. for `Router::oneshot`.
    pub fn request(&self, uri: &str) -> axum::http::Request<Body> {
        let mut request = axum::http::Request::builder().method(Method::POST).uri(uri);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
            .body(Body::from(self.body.clone()))
            .expect("webhook headers are valid")
    }
}

impl ShopifyFaults {
    /// The webhook Shopify would send for the order's current state, signed with
    /// `secret` (the app's client secret).
    pub fn webhook(
        &self,
        shop: &str,
        topic: ShopifyTopic,
        order_id: u64,
        secret: &str,
    ) -> anyhow::Result<WebhookDelivery> {
        let shop = self.shop(shop)?;
        let (body, updated) = {
            let inner = shop.lock();
            let model = shop.order_model(&inner, order_id)?;
            let body = match topic {
                ShopifyTopic::RefundsCreate => {
                    let refund = model
                        .refunds
                        .iter()
                        .max_by_key(|refund| (refund.at, refund.seq))
                        .with_context(|| format!("order {order_id} has no refund"))?;
                    serde_json::to_vec(&shop.refund_json(&model, refund))?
                }
                _ => serde_json::to_vec(&shop.order_json(&model))?,
            };
            (body, model.updated)
        };
        let id_key = key(&[
            self.0.seed,
            shop.key,
            hash_str(topic.as_str()),
            order_id,
            updated as u64,
        ]);
        Ok(self.signed(shop, topic, body, id_key, secret))
    }

    /// The delivery of a shop-level topic ([`ShopifyTopic::AppUninstalled`] and the
    /// compliance topics), with the body Shopify sends: for `customers/*` the customer of
    /// `order_id` and `orders` as the orders to redact or report.
    pub fn shop_webhook(
        &self,
        shop: &str,
        topic: ShopifyTopic,
        order_id: Option<u64>,
        orders: &[u64],
        secret: &str,
    ) -> anyhow::Result<WebhookDelivery> {
        let shop = self.shop(shop)?;
        let shop_id = 900_000 + shop.key % 100_000;
        let customer = match order_id {
            Some(id) => {
                let inner = shop.lock();
                let model = shop.order_model(&inner, id)?;
                let order = serde_json::to_value(shop.order_json(&model))?;
                serde_json::json!({"id": order["customer"]["id"], "email": order["customer"]["email"],
                                   "phone": null})
            }
            None => serde_json::Value::Null,
        };
        let domain = shop.spec.domain();
        let body = match topic {
            ShopifyTopic::AppUninstalled => serde_json::json!({
                "id": shop_id, "name": shop.spec.shop, "domain": domain,
                "myshopify_domain": domain, "currency": shop.spec.currency,
            }),
            ShopifyTopic::CustomersRedact => serde_json::json!({
                "shop_id": shop_id, "shop_domain": domain, "customer": customer,
                "orders_to_redact": orders,
            }),
            ShopifyTopic::CustomersDataRequest => serde_json::json!({
                "shop_id": shop_id, "shop_domain": domain, "customer": customer,
                "orders_requested": orders, "data_request": {"id": 9_000 + orders.len()},
            }),
            ShopifyTopic::ShopRedact => {
                serde_json::json!({"shop_id": shop_id, "shop_domain": domain})
            }
            other => anyhow::bail!("{} carries an order: use `webhook`", other.as_str()),
        };
        let body = serde_json::to_vec(&body)?;
        let id_key = key(&[
            self.0.seed,
            shop.key,
            hash_str(topic.as_str()),
            crate::seeded::hash_str(&String::from_utf8_lossy(&body)),
        ]);
        Ok(self.signed(shop, topic, body, id_key, secret))
    }

    /// `body` as Shopify delivers it: signed, with ids drawn from `id_key`.
    fn signed(
        &self,
        shop: &super::shop::Shop,
        topic: ShopifyTopic,
        body: Vec<u8>,
        id_key: u64,
        secret: &str,
    ) -> WebhookDelivery {
        let uuid = |salt: u64| {
            let mut draw = Draw::new(id_key ^ salt);
            let (a, b) = (draw.next_u64(), draw.next_u64());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | ((b >> 48) & 0x3fff),
                b & 0xffff_ffff_ffff
            )
        };
        let triggered = self
            .0
            .clock
            .now()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Shopify-Topic".into(), topic.as_str().into()),
            (
                "X-Shopify-Hmac-Sha256".into(),
                shared::webhook::sign_shopify(&body, secret),
            ),
            ("X-Shopify-Shop-Domain".into(), shop.spec.domain()),
            ("X-Shopify-API-Version".into(), API_VERSION.into()),
            ("X-Shopify-Webhook-Id".into(), uuid(1)),
            ("X-Shopify-Event-Id".into(), uuid(2)),
            ("X-Shopify-Triggered-At".into(), triggered),
        ];
        WebhookDelivery {
            topic,
            headers,
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use chrono::{DateTime, Utc};

    use super::super::test_support::{TOKEN, config};
    use super::super::{API_VERSION, DEFAULT_SHOP, ShopSpec};
    use super::*;
    use crate::router;
    use crate::test_support::get;

    #[tokio::test]
    async fn webhooks_are_signed_and_their_ids_change_with_the_event() {
        let (router, handles) = router(&config(50), "http://standins.test");
        let shopify = &handles.shopify;
        let id = shopify.order_ids(DEFAULT_SHOP)[7];
        let secret = "shpss_local";
        let delivery = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        shared::webhook::verify_shopify(
            &delivery.body,
            delivery.header("x-shopify-hmac-sha256"),
            secret,
        )
        .unwrap();
        assert!(
            shared::webhook::verify_shopify(
                &delivery.body,
                delivery.header("x-shopify-hmac-sha256"),
                "other"
            )
            .is_err()
        );
        assert_eq!(delivery.header("X-Shopify-Topic"), Some("orders/updated"));
        assert_eq!(
            delivery.header("X-Shopify-Shop-Domain"),
            Some("demo-store.myshopify.com")
        );
        assert_eq!(delivery.header("X-Shopify-API-Version"), Some(API_VERSION));
        assert!(
            delivery
                .header("X-Shopify-Triggered-At")
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(delivery.webhook_id().len(), 36);
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(Some(&body), shopify.order(DEFAULT_SHOP, id).as_ref());

        // The same event again is a redelivery; an update is a new event with the polled state.
        let again = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        assert_eq!(again.webhook_id(), delivery.webhook_id());
        assert_eq!(again.body, delivery.body);
        shopify.refund_order(DEFAULT_SHOP, id, Some(100)).unwrap();
        let refund = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::RefundsCreate, id, secret)
            .unwrap();
        assert_ne!(refund.webhook_id(), delivery.webhook_id());
        let refund_body: serde_json::Value = serde_json::from_slice(&refund.body).unwrap();
        assert_eq!(refund_body["order_id"], id);
        assert_eq!(refund_body["transactions"][0]["amount"], "1.00");
        let request = refund.request("/webhooks/shopify");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["x-shopify-topic"], "refunds/create");

        let (status, _, polled) = get(
            &router,
            &format!("/shopify/{DEFAULT_SHOP}/admin/api/{API_VERSION}/orders/{id}.json"),
            &[TOKEN],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let updated = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersUpdated, id, secret)
            .unwrap();
        let updated: serde_json::Value = serde_json::from_slice(&updated.body).unwrap();
        assert_eq!(polled["order"], updated);
    }

    #[tokio::test]
    async fn webhooks_stamp_the_clock_and_shops_have_their_own_tokens() {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let mut config = config(20);
        config.clock = shared::clock::Clock::fixed(at);
        config.shopify.shops.push(ShopSpec {
            access_token: Some("shpat_other".into()),
            ..ShopSpec::new("other-store", 5)
        });
        let (router, handles) = router(&config, "http://standins.test");
        let shopify = &handles.shopify;
        let id = shopify.order_ids(DEFAULT_SHOP)[0];
        let mut delivery = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id, "s")
            .unwrap();
        assert_eq!(
            delivery.header("X-Shopify-Triggered-At"),
            Some("2026-12-07T10:00:00.000Z")
        );
        let event = delivery.header("X-Shopify-Event-Id").unwrap().to_string();
        let again = shopify
            .webhook(DEFAULT_SHOP, ShopifyTopic::OrdersCreate, id, "s")
            .unwrap();
        assert_eq!(again.header("X-Shopify-Event-Id"), Some(event.as_str()));
        delivery.set_header("x-shopify-shop-domain", "other-store.myshopify.com");
        assert_eq!(
            delivery.header("X-Shopify-Shop-Domain"),
            Some("other-store.myshopify.com")
        );
        assert_eq!(
            delivery
                .headers
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case("x-shopify-shop-domain"))
                .count(),
            1
        );

        let path = |shop: &str, id: u64| {
            format!("/shopify/{shop}/admin/api/{API_VERSION}/orders/{id}.json")
        };
        let own = ("X-Shopify-Access-Token", "shpat_other");
        let other = shopify.order_ids("other-store")[0];
        let (status, _, _) = get(&router, &path("other-store", other), &[TOKEN]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "another shop's token");
        let (status, _, body) = get(&router, &path("other-store", other), &[own]).await;
        assert_eq!(
            (status, body["order"]["id"].as_u64()),
            (StatusCode::OK, Some(other))
        );
        let (status, _, _) = get(&router, &path("other-store", id), &[own]).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "the default shop's order is not here"
        );
    }
}
