-- The Postgres queue's operations as server-side functions.
--
-- The client sends only unnamed statements (a transaction pooler would lose named ones), so
-- every call used to be parsed and planned from scratch; for these multi-CTE statements the
-- planning cost as much as the work. PL/pgSQL caches each function's plans per backend, which
-- is invisible to the pooler, and a call like `SELECT queue.send(...)` is trivial to plan.
--
-- They live in their own schema, with EXECUTE revoked from PUBLIC, because Supabase exposes
-- functions of `public` to its REST API (/rpc) for the anon and authenticated roles.

CREATE SCHEMA queue;
REVOKE ALL ON SCHEMA queue FROM PUBLIC;

-- Inserts the messages whose (queue, dedup id) was not seen within the window. The dedup
-- row is claimed first, so two senders of the same id race on its primary key and one loses.
-- Returns how many were accepted.
CREATE FUNCTION queue.send(p_queues text[], p_groups text[], p_dedup_ids text[], p_bodies text[], p_window_secs float8,
                           p_inside_caller_transaction boolean)
RETURNS integer
LANGUAGE plpgsql
-- Plans are cached per backend and first built when the tables are empty; without this, a
-- plan chosen for an empty table (a sequential scan of queue_dedup) would stay as it grows.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    accepted integer;
BEGIN
    WITH input AS (
        SELECT * FROM unnest(p_queues, p_groups, p_dedup_ids, p_bodies) WITH ORDINALITY
                 AS m(queue, group_id, dedup_id, body, position)
    ), unseen AS (
        -- Inside a caller's transaction, a plain read first: when a committed, live dedup row
        -- exists (the common case for a flood of identical requests) nothing is inserted, so
        -- concurrent writers do not queue on that row's lock until their commits. A sender
        -- on its own commits at once and skips the extra probe.
        SELECT * FROM input i
         WHERE NOT p_inside_caller_transaction
            OR NOT EXISTS (SELECT 1 FROM public.queue_dedup seen
                            WHERE seen.queue = i.queue AND seen.dedup_id = i.dedup_id
                              AND seen.expires_at >= now())
    ), fresh AS (
        INSERT INTO public.queue_dedup AS d (queue, dedup_id, expires_at)
        SELECT queue, dedup_id, now() + make_interval(secs => p_window_secs) FROM unseen
        ON CONFLICT (queue, dedup_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
         WHERE d.expires_at < now()
        RETURNING queue, dedup_id
    )
    INSERT INTO public.queue_messages (queue, group_id, dedup_id, body)
    SELECT i.queue, i.group_id, i.dedup_id, i.body
      FROM unseen i JOIN fresh f USING (queue, dedup_id)
     ORDER BY i.position;
    GET DIAGNOSTICS accepted = ROW_COUNT;
    RETURN accepted;
END $$;

-- Claims up to p_max deliverable messages: visible, and no older message of their group still
-- present (it is in flight or due for a retry, and must go first). SKIP LOCKED lets
-- concurrent receivers take different groups instead of waiting on one another. A claimed
-- message already delivered p_max_receives times moves to the dead letters instead.
--
-- The claim commits asynchronously: if the server crashes right after, the claim is lost and
-- the message is delivered again, which at-least-once delivery allows.
CREATE FUNCTION queue.receive(p_queue text, p_max integer, p_visibility_secs float8, p_max_receives integer)
RETURNS TABLE (id bigint, receipt uuid, group_id text, dedup_id text, body text, receive_count integer)
LANGUAGE plpgsql
-- Pinned to index paths for the same reason as queue.send, and no hash or merge joins: the
-- claim is a walk of the queue's index with a probe per candidate.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    WITH picked AS (
        SELECT m.id FROM public.queue_messages m
         WHERE m.queue = p_queue AND m.visible_at <= now()
           -- the head of its group; a correlated subquery, so always a parameterised index probe
           AND m.id = (SELECT min(head.id) FROM public.queue_messages head
                        WHERE head.queue = m.queue AND head.group_id = m.group_id)
         ORDER BY m.id
         LIMIT p_max
         FOR UPDATE SKIP LOCKED
    ), exhausted AS (
        DELETE FROM public.queue_messages m USING picked p
         WHERE m.id = p.id AND m.receive_count >= p_max_receives
        RETURNING m.*
    ), buried AS (
        INSERT INTO public.queue_dead_letters (id, queue, group_id, dedup_id, body, sent_at, receive_count)
        SELECT e.id, e.queue, e.group_id, e.dedup_id, e.body, e.sent_at, e.receive_count FROM exhausted e
    ), claimed AS (
        UPDATE public.queue_messages m
           SET visible_at = now() + make_interval(secs => p_visibility_secs),
               receive_count = m.receive_count + 1,
               receipt = gen_random_uuid()
          FROM picked p
         WHERE m.id = p.id AND m.receive_count < p_max_receives
        RETURNING m.id, m.receipt, m.group_id, m.dedup_id, m.body, m.receive_count
    )
    SELECT * FROM claimed ORDER BY id;
END $$;

-- Deletes messages by (id, receipt). A receipt from an earlier delivery no longer matches, so
-- a consumer whose visibility expired cannot delete the copy someone else now holds.
-- Commits asynchronously: a lost delete means one more delivery, never a lost message.
CREATE FUNCTION queue.delete(p_queue text, p_ids bigint[], p_receipts uuid[])
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    deleted integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Receipts are random UUIDs minted per delivery, so matching each list on its own is as
    -- exact as matching pairs, and `= ANY` keeps the plan a primary-key lookup.
    DELETE FROM public.queue_messages m
     WHERE m.id = ANY (p_ids) AND m.receipt = ANY (p_receipts) AND m.queue = p_queue;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA queue FROM PUBLIC;
