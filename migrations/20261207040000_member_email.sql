-- Lifecycle email goes to members only, and the product's own analytics stay apart.
--
-- Until now campaigns went to the audience persons of `users`, whose addresses arrive in
-- analytics events under a tenant's public token: anyone could post a `signed_up` with any
-- address. From here on the recipient is a member (`auth.users`, a confirmed address), and
-- audience signups only count in the tenant's metrics.

-- The product's own analytics project: members' actions in the frontend (suggestions shown,
-- accepted, dismissed; sessions) and the outcomes of their emails arrive here, keyed by
-- member id, through the product's own project token. Being its own workspace keeps them out
-- of every tenant's DAU and event counts; it has no members, so no one reads it through RLS.
ALTER TABLE workspaces ADD COLUMN is_product boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX workspaces_one_product ON workspaces (is_product) WHERE is_product;

-- A send is to a member now. Rows sent to audience persons before stay as the record of
-- what went out (user_id); new rows name the member instead.
ALTER TABLE email_sends ALTER COLUMN user_id DROP NOT NULL;
-- A member who left every workspace is recorded as skipped, with no workspace to name.
ALTER TABLE email_sends ALTER COLUMN workspace_id DROP NOT NULL;
ALTER TABLE email_sends ADD COLUMN member_id uuid REFERENCES auth.users (id) ON DELETE CASCADE;
ALTER TABLE email_sends
    ADD CONSTRAINT email_sends_one_recipient CHECK (num_nonnulls(user_id, member_id) = 1);
-- Once per member and campaign, whatever the number of their workspaces.
CREATE UNIQUE INDEX email_sends_member_campaign ON email_sends (member_id, campaign)
    WHERE member_id IS NOT NULL;

-- Members who asked to stop. Lifecycle mail is about the member, not one workspace.
CREATE TABLE member_email_unsubscribes (
    member_id        uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    method           text NOT NULL CHECK (method IN ('link', 'one_click', 'complaint')),
    unsubscribed_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE member_email_unsubscribes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON member_email_unsubscribes FROM anon, authenticated;

-- A member reads the emails sent to them, not those of the other members of a workspace.
DROP POLICY member_reads ON email_sends;
CREATE POLICY member_reads ON email_sends FOR SELECT TO authenticated
    USING (member_id = (SELECT auth.uid()));
