-- One row per finished request (issue 12). request_id is the idempotency key: a batch written twice counts once.
CREATE TABLE usage_ledger (
    request_id text PRIMARY KEY,
    ts timestamptz NOT NULL,
    team text NOT NULL,
    key_id text,
    model text NOT NULL,
    route text,
    backend text,
    endpoint text,
    status smallint NOT NULL,
    prompt_tokens integer NOT NULL,
    completion_tokens integer NOT NULL,
    cost_usd numeric(18, 8) NOT NULL,
    latency_ms double precision,
    ttft_ms double precision,
    attempts smallint NOT NULL,
    fallback boolean NOT NULL
);

-- Month-to-date per team (the restart restore, the limit store's rebuild) and the spend report by team.
CREATE INDEX usage_ledger_team_ts ON usage_ledger (team, ts);
