-- Shopify orders, pulled by the ETL poller and pushed by Shopify's webhooks into the same
-- rows: keyed by (shop, order_id), and whichever copy carries the newer `updated_at` wins
-- (docs/architecture.md, "Rules of the shared state"), so a webhook and a poll of the same
-- order leave one row.

CREATE TABLE orders (
    -- The shop handle: the `{shop}` of `{shop}.myshopify.com`.
    shop              text NOT NULL,
    order_id          bigint NOT NULL,
    workspace_id      uuid REFERENCES workspaces (id) ON DELETE CASCADE,
    name              text,
    created_at        timestamptz NOT NULL,
    -- Shopify's own `updated_at`: the version that decides which copy is newer.
    updated_at        timestamptz NOT NULL,
    processed_at      timestamptz,
    cancelled_at      timestamptz,
    currency          text NOT NULL,
    -- Money as exact decimals in the shop's currency.
    total_price       numeric(18, 4) NOT NULL DEFAULT 0,
    subtotal_price    numeric(18, 4),
    total_tax         numeric(18, 4),
    total_discounts   numeric(18, 4),
    -- The sum of every refund of this order we know of (`order_refunds`, by refund id), so a
    -- refund seen first in a `refunds/create` webhook and then again in a poll counts once.
    refunded_amount   numeric(18, 4) NOT NULL DEFAULT 0,
    financial_status  text,
    -- What the shop keeps: the total less refunds; a cancelled order keeps what was not
    -- refunded (Shopify refunds a paid order on cancellation, so that is usually 0), and a
    -- voided one (the payment was never captured) keeps nothing.
    net_revenue       numeric(18, 4) GENERATED ALWAYS AS (
                          CASE WHEN financial_status = 'voided' THEN 0
                               ELSE GREATEST(total_price - refunded_amount, 0) END) STORED,
    customer_id       bigint,
    customer_email    text,
    raw               jsonb COMPRESSION lz4 NOT NULL,
    -- The ETL run that last wrote the row (NULL when a webhook did).
    run_id            uuid,
    source            text NOT NULL CHECK (source IN ('poll', 'webhook')),
    stored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, order_id)
);
CREATE INDEX orders_workspace_processed ON orders (workspace_id, processed_at);

-- Every refund seen, from an order's `refunds` array or a `refunds/create` webhook. A refund
-- whose order is not stored yet waits here and counts as soon as the order arrives.
CREATE TABLE order_refunds (
    shop        text NOT NULL,
    refund_id   bigint NOT NULL,
    order_id    bigint NOT NULL,
    -- The sum of the refund's successful `refund` transactions.
    amount      numeric(18, 4) NOT NULL,
    created_at  timestamptz,
    raw         jsonb COMPRESSION lz4 NOT NULL,
    source      text NOT NULL CHECK (source IN ('poll', 'webhook')),
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop, refund_id)
);
CREATE INDEX order_refunds_by_order ON order_refunds (shop, order_id);

-- Webhook deliveries already handled, by `X-Shopify-Webhook-Id` (stable across Shopify's
-- retries): inserted in the transaction that applies the delivery, so a redelivery is a no-op.
CREATE TABLE shopify_webhook_deliveries (
    webhook_id   text PRIMARY KEY,
    topic        text NOT NULL,
    shop         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE shopify_webhook_deliveries ENABLE ROW LEVEL SECURITY;
