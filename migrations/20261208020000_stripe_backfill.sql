-- The Stripe backfill: where each list endpoint's paging stands (so an interrupted run
-- continues after its last stored page), and the two objects the mirror gains with it,
-- refunds and payment intents (written by their webhooks and by the backfill alike).

CREATE TABLE stripe.backfill_cursors (
    -- The list endpoint: `customers`, `subscriptions`, … (the path after /v1/).
    resource        text PRIMARY KEY,
    -- The id of the last object of the last page applied; NULL before the first page.
    starting_after  text,
    pages           bigint NOT NULL DEFAULT 0,
    objects         bigint NOT NULL DEFAULT 0,
    -- The last page (`has_more` false) was applied; a later run starts a new pass.
    complete        boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe.refunds (
    id                  text PRIMARY KEY,
    charge              text,
    payment_intent      text,
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
CREATE INDEX refunds_charge ON stripe.refunds (charge);

CREATE TABLE stripe.payment_intents (
    id                  text PRIMARY KEY,
    customer            text,
    invoice             text,
    latest_charge       text,
    status              text,
    amount              bigint,
    amount_received     bigint,
    currency            text,
    created             timestamptz,
    workspace_id        uuid REFERENCES public.workspaces (id) ON DELETE SET NULL,
    deleted             boolean NOT NULL DEFAULT false,
    raw                 jsonb COMPRESSION lz4 NOT NULL,
    last_event_id       text NOT NULL,
    last_event_created  timestamptz NOT NULL,
    last_event_previous jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_intents_customer ON stripe.payment_intents (customer);

ALTER TABLE stripe.backfill_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe.payment_intents ENABLE ROW LEVEL SECURITY;
