-- Billing: the `stripe` schema mirrors the Stripe account — named and shaped as Stripe's own
-- objects (the Sync Engine's table and column names), so queries written against Stripe's
-- object model keep working — plus the event ledger and the revenue facts the metrics agent
-- reads.
--
-- Every mirror row keeps the whole latest object (`raw`) and which event wrote it
-- (`last_event_*`): the billing agent compares an incoming event with that to decide whether it
-- is newer (see functions/billing/src/ordering.rs). `deleted` is terminal.

CREATE SCHEMA stripe;

-- Every verified event, once, whatever became of it.
CREATE TABLE stripe.events (
    id            text PRIMARY KEY,
    type          text NOT NULL,
    created       timestamptz NOT NULL,
    livemode      boolean NOT NULL,
    account       text,
    api_version   text,
    object_id     text,
    -- lz4: events are a few kilobytes, past the TOAST threshold; pglz compression of
    -- every payload was a measurable share of the ingest CPU.
    payload       jsonb COMPRESSION lz4 NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    -- applied: the mirror took it; stale: a newer state was already stored; unsupported: a type
    -- we keep but do not model.
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'stale', 'unsupported'))
);
CREATE INDEX events_by_object ON stripe.events (object_id, created);
CREATE INDEX events_by_received ON stripe.events (received_at);

CREATE TABLE stripe.customers (
    id                  text PRIMARY KEY,
    email               text,
    name                text,
    delinquent          boolean,
    currency            text,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    workspace_id        uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_workspace ON stripe.customers (workspace_id);

CREATE TABLE stripe.products (
    id                  text PRIMARY KEY,
    name                text,
    active              boolean,
    default_price       text,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe.prices (
    id                       text PRIMARY KEY,
    product                  text,
    active                   boolean,
    currency                 text,
    unit_amount              bigint,
    type                     text,
    recurring_interval       text,
    recurring_interval_count integer,
    created                  timestamptz,
    deleted                  boolean NOT NULL DEFAULT false,
    raw                      jsonb COMPRESSION lz4 NOT NULL,
    last_event_id            text NOT NULL,
    last_event_created       timestamptz NOT NULL,
    last_event_previous      jsonb,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe.subscriptions (
    id                   text PRIMARY KEY,
    customer             text,
    status               text,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean,
    canceled_at          timestamptz,
    ended_at             timestamptz,
    trial_end            timestamptz,
    currency             text,
    created              timestamptz,
    deleted              boolean NOT NULL DEFAULT false,
    workspace_id         uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    raw                  jsonb COMPRESSION lz4 NOT NULL,
    last_event_id        text NOT NULL,
    last_event_created   timestamptz NOT NULL,
    last_event_previous  jsonb,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_customer ON stripe.subscriptions (customer);
CREATE INDEX subscriptions_workspace ON stripe.subscriptions (workspace_id);

-- Items are written only from their subscription's snapshot; one missing from the newest
-- snapshot was removed or replaced, and stays deleted.
CREATE TABLE stripe.subscription_items (
    id                   text PRIMARY KEY,
    subscription         text NOT NULL,
    price                text,
    quantity             bigint,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    created              timestamptz,
    deleted              boolean NOT NULL DEFAULT false,
    raw                  jsonb COMPRESSION lz4 NOT NULL,
    last_event_id        text NOT NULL,
    last_event_created   timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_items_subscription ON stripe.subscription_items (subscription);

CREATE TABLE stripe.invoices (
    id                  text PRIMARY KEY,
    customer            text,
    subscription        text,
    status              text,
    paid                boolean,
    amount_due          bigint,
    amount_paid         bigint,
    amount_remaining    bigint,
    currency            text,
    period_start        timestamptz,
    period_end          timestamptz,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    workspace_id        uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_customer ON stripe.invoices (customer);
CREATE INDEX invoices_workspace_created ON stripe.invoices (workspace_id, created);

CREATE TABLE stripe.charges (
    id                  text PRIMARY KEY,
    customer            text,
    invoice             text,
    payment_intent      text,
    status              text,
    amount              bigint,
    amount_refunded     bigint,
    refunded            boolean,
    disputed            boolean,
    currency            text,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    workspace_id        uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_customer ON stripe.charges (customer);
CREATE INDEX charges_workspace_created ON stripe.charges (workspace_id, created);

CREATE TABLE stripe.disputes (
    id                  text PRIMARY KEY,
    charge              text,
    amount              bigint,
    currency            text,
    status              text,
    reason              text,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe.checkout_sessions (
    id                  text PRIMARY KEY,
    customer            text,
    subscription        text,
    payment_intent      text,
    mode                text,
    status              text,
    payment_status      text,
    amount_total        bigint,
    currency            text,
    created             timestamptz,
    deleted             boolean NOT NULL DEFAULT false,
    workspace_id        uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Revenue facts. MRR is in the currency's minor unit per month, exact (numeric): a yearly
-- price divides by twelve.
CREATE TABLE stripe.subscription_mrr (
    subscription  text PRIMARY KEY,
    customer      text,
    workspace_id  uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    currency      text,
    status        text,
    mrr           numeric(20, 4) NOT NULL,
    -- Whether this subscription ever had MRR: going from 0 back above 0 is a reactivation.
    ever_active   boolean NOT NULL DEFAULT false,
    as_of         timestamptz NOT NULL,
    event_id      text NOT NULL
);
CREATE INDEX subscription_mrr_workspace ON stripe.subscription_mrr (workspace_id);

CREATE TABLE stripe.mrr_changes (
    event_id      text NOT NULL,
    subscription  text NOT NULL,
    customer      text,
    workspace_id  uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    kind          text NOT NULL CHECK (kind IN ('new', 'expansion', 'contraction', 'churn', 'reactivation')),
    mrr_before    numeric(20, 4) NOT NULL,
    mrr_after     numeric(20, 4) NOT NULL,
    delta         numeric(20, 4) NOT NULL,
    currency      text,
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (event_id, subscription)
);
CREATE INDEX mrr_changes_workspace ON stripe.mrr_changes (workspace_id, occurred_at);

ALTER TABLE stripe.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.products ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.prices ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.subscription_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.charges ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.disputes ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.checkout_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.subscription_mrr ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.mrr_changes ENABLE ROW LEVEL SECURITY;
