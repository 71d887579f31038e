-- Operations: every agent's run log, behind the status page's "last run, success rate,
-- errors" and the webhook success KPI. One row per handled request, queue message or schedule
-- tick; kept for 30 days (the relay prunes older rows).

CREATE TABLE agent_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent        text NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('http', 'queue', 'schedule')),
    started_at   timestamptz NOT NULL,
    duration_ms  integer NOT NULL CHECK (duration_ms >= 0),
    -- rejected: the caller's fault (a bad signature, a malformed payload), answered 4xx;
    -- failed: ours (a database or provider failure), answered 5xx or retried by the queue.
    outcome      text NOT NULL CHECK (outcome IN ('ok', 'rejected', 'failed')),
    detail       text
);
CREATE INDEX agent_runs_by_agent ON agent_runs (agent, started_at DESC);
CREATE INDEX agent_runs_by_start ON agent_runs (started_at);

ALTER TABLE agent_runs ENABLE ROW LEVEL SECURITY;
