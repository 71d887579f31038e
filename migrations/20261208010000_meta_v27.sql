-- Meta v27 and TikTok contracts (docs/etl.md): a connection whose token the platform refused
-- waits for a new one, and a Meta connection may choose its attribution windows.

-- `needs_reauth`: the platform refused the token (Meta 190, TikTok 40001/40104/40105);
-- dispatch passes the connection over until a new token is stored. `status_reason` says why
-- (redacted, as every stored error).
ALTER TABLE connections DROP CONSTRAINT connections_status_check;
ALTER TABLE connections ADD CONSTRAINT connections_status_check
    CHECK (status IN ('active', 'paused', 'revoked', 'needs_reauth'));
ALTER TABLE connections ADD COLUMN status_reason text;

-- Meta's `action_attribution_windows` for this connection; NULL means the default
-- (7d_click, 1d_view). Only the windows Meta still serves: 7d_view and 28d_view are not
-- returned since 2026-01-12.
ALTER TABLE connections ADD COLUMN attribution_windows text[]
    CHECK (attribution_windows <@ ARRAY['1d_click', '7d_click', '28d_click', '1d_ev', '1d_view']::text[]);
