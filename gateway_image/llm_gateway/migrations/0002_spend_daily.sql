-- Spend per UTC day, team and model: what the spend report and the "Spend by team" dashboard add up.
-- A plain view (no materialisation to refresh): the (team, ts) index serves its date-range scans.
CREATE VIEW spend_daily AS
SELECT
    (ts AT TIME ZONE 'UTC')::date AS day,
    team,
    model,
    count(*) AS requests,
    count(*) FILTER (WHERE status >= 400) AS errors,
    sum(prompt_tokens)::bigint AS prompt_tokens,
    sum(completion_tokens)::bigint AS completion_tokens,
    sum(cost_usd) AS cost_usd
FROM usage_ledger
GROUP BY 1, 2, 3;
