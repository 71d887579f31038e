-- Members: the Supabase Auth users who use the product, and what they may read directly.
--
-- A member is a row of `auth.users` (Supabase Auth owns it); `workspace_members` says which
-- workspaces each belongs to and with which role. The frontend reads through PostgREST as
-- the `authenticated` role with the member's claims, so every tenant table gets a policy that
-- shows exactly the rows of the member's workspaces; `anon` reads nothing; the client writes
-- nothing directly (every write goes through an agent's API, which checks and records it).
--
-- This migration needs Supabase's `auth` schema. It never creates it: on Supabase it exists;
-- on plain PostgreSQL the tests and the local stack create the same definitions first.

-- Owners are who create a workspace (onboarding); admins manage it; members read it.
ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_role_check;
ALTER TABLE workspace_members
    ADD CONSTRAINT workspace_members_role_check CHECK (role IN ('owner', 'admin', 'member'));
-- NOT VALID: memberships recorded before members were Auth users keep their rows (nothing is
-- lost); every new membership must name a real user, and deleting the user removes it.
ALTER TABLE workspace_members
    ADD CONSTRAINT workspace_members_user_fkey
    FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE NOT VALID;

-- Helpers policies call live in a schema PostgREST does not expose, so no client can call
-- them through /rpc; `security definer` with an empty search_path lets a policy read the
-- memberships without recursing into their own policy, and without being steered by
-- objects a caller could put earlier on the path.
CREATE SCHEMA private;
REVOKE ALL ON SCHEMA private FROM PUBLIC;
GRANT USAGE ON SCHEMA private TO authenticated;

-- The workspaces the signed-in member belongs to. Policies call it as
-- `IN (SELECT private.member_workspaces())`, which PostgreSQL evaluates once per statement
-- rather than once per row, as Supabase recommends.
CREATE FUNCTION private.member_workspaces() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
    SELECT m.workspace_id FROM public.workspace_members m WHERE m.user_id = (SELECT auth.uid())
$$;
REVOKE ALL ON FUNCTION private.member_workspaces() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.member_workspaces() TO authenticated;

-- A member's signup reaches the product in the transaction that creates the user: the outbox
-- row commits with it (the relay sends it to email.fifo), or neither happens. Kept to one
-- INSERT so it can never make a signup fail. The body is `shared::messages::MemberSignedUp`.
CREATE FUNCTION private.member_signed_up() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    INSERT INTO public.outbox (queue, group_id, dedup_id, body)
    VALUES ('email.fifo',
            'member:' || NEW.id,
            'member-signup:' || NEW.id,
            jsonb_build_object('member_id', NEW.id,
                               'signed_up_at', coalesce(NEW.created_at, now()))::text);
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION private.member_signed_up() FROM PUBLIC;
CREATE TRIGGER member_signed_up AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION private.member_signed_up();

-- No table is written from the client, and `anon` reads nothing.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public
    FROM anon, authenticated;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM anon;

-- Tables about the running system, not a workspace: no member reads them.
REVOKE ALL ON agent_runs, leases, outbox, quarantine, queue_dead_letters, queue_dedup,
              queue_messages, models, email_events, email_suppressions, email_unsubscribes,
              shopify_webhook_deliveries
    FROM authenticated;
-- Ingestion tokens are credentials (their hashes included); issued and listed through the API.
REVOKE ALL ON workspace_tokens FROM authenticated;
-- A connection's access token, sealed or not, and its sync cursor never leave the server.
REVOKE ALL ON connections FROM authenticated;
GRANT SELECT (id, workspace_id, platform, external_account_id, status, last_synced_at,
              created_at, updated_at, timezone, currency)
    ON connections TO authenticated;

-- The tenant tables a member reads: exactly their workspaces' rows.
CREATE POLICY member_reads ON workspaces FOR SELECT TO authenticated
    USING (id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON workspace_members FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON connections FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON ad_insights FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON daily_ad_metrics FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON daily_metrics FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON events FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON users FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON orders FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON suggestions FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
CREATE POLICY member_reads ON email_sends FOR SELECT TO authenticated
    USING (workspace_id IN (SELECT private.member_workspaces()));
-- Tables keyed through a parent: the parent's own policy does the filtering.
CREATE POLICY member_reads ON suggestion_feedback FOR SELECT TO authenticated
    USING (suggestion_id IN (SELECT s.id FROM suggestions s));
CREATE POLICY member_reads ON etl_runs FOR SELECT TO authenticated
    USING (connection_id IN (SELECT c.id FROM connections c));
CREATE POLICY member_reads ON order_refunds FOR SELECT TO authenticated
    USING ((shop, order_id) IN (SELECT o.shop, o.order_id FROM orders o));

-- The Stripe mirror lives in a schema PostgREST does not expose; the frontend reads its
-- numbers from daily_metrics.
REVOKE ALL ON SCHEMA stripe FROM anon, authenticated;
