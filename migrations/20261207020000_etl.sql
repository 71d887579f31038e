-- Shopify webhooks (docs/etl.md): Shopify's order ids are unique across shops, so a delivery
-- naming shop B whose order id is already stored for shop A was re-sent under B's domain and
-- is refused. That look-up is by order id alone, on every delivery.
CREATE INDEX orders_by_order_id ON orders (order_id);
