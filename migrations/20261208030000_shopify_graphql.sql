-- Shopify on the GraphQL Admin API (functions/etl/src/shopify/graphql.rs, bulk.rs).
--
-- Orders keep the buyer's currency beside the shop's (multi-currency shops charge in the
-- presentment currency; reports are in the shop's).
ALTER TABLE orders
    ADD COLUMN presentment_currency    text,
    ADD COLUMN presentment_total_price numeric(18, 4);

-- What a shop's mandatory compliance webhooks asked of us and what we did
-- (customers/data_request, customers/redact, shop/redact), kept as the record Shopify
-- expects an app to hold.
CREATE TABLE shopify_compliance_requests (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    shop         text NOT NULL,
    topic        text NOT NULL CHECK (topic IN ('customers/data_request', 'customers/redact', 'shop/redact')),
    -- X-Shopify-Event-Id: the same across redeliveries of one request.
    event_id     text NOT NULL,
    customer_id  bigint,
    payload      jsonb NOT NULL,
    -- What was done: e.g. {"orders_redacted": 3} or {"orders_deleted": 120, "refunds_deleted": 9}.
    outcome      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop, event_id)
);
ALTER TABLE shopify_compliance_requests ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON shopify_compliance_requests FROM anon, authenticated;
