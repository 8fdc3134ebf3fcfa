-- Leaderboard for one task (latest finished run that ranked it)
SELECT vision_encoder, language_model, score, metric, measured_or_predicted, run_id
FROM leaderboard
WHERE task = 'shapes:count';

-- History of runs, newest first
SELECT run_id, suite_name, strategy, status, started_at, trials_run, trials_reused, best_per_task
FROM history
ORDER BY started_at DESC;

-- Reuse counts per run and kind (results found in the store instead of recomputed)
SELECT run_id, kind, count(*) FILTER (WHERE reused) AS reused, count(*) FILTER (WHERE NOT reused) AS computed
FROM run_uses
GROUP BY run_id, kind
ORDER BY run_id, kind;

-- Compute spent per run, and speedup versus a grid run of the same suite
WITH cost AS (
    SELECT r.run_id, r.suite_name, r.strategy, r.ground_truth,
           coalesce(h.trial_seconds, 0) + coalesce(h.reused_seconds, 0) AS seconds
    FROM runs r JOIN history h USING (run_id)
    WHERE r.status = 'done'
)
SELECT s.run_id, s.strategy, s.seconds, g.seconds / nullif(s.seconds, 0) AS speedup_vs_grid
FROM cost s JOIN cost g ON g.suite_name = s.suite_name AND g.ground_truth
ORDER BY s.run_id;

-- Scores of every finished trial, one row per candidate, task and sample ratio
SELECT t.encoder, t.llm, t.sample_ratio, s.task, s.metric, s.value, t.wall_seconds, t.device
FROM trials t JOIN scores s USING (trial_key)
WHERE t.status = 'done'
ORDER BY s.task, s.value DESC;

-- Early-stopping decisions of a run, rung by rung
SELECT phase, rung, encoder, llm, sample_ratio, score, kept
FROM rungs
WHERE run_id = (SELECT max(run_id) FROM runs)
ORDER BY phase, rung, score DESC;

-- Clusters and their medoids in the latest run that clustered (LLMs once per encoder cluster: context)
SELECT level, context, cluster_id, list(member ORDER BY member) AS members,
       any_value(member) FILTER (WHERE is_medoid) AS medoid
FROM clusters
WHERE run_id = (SELECT max(run_id) FROM clusters)
GROUP BY level, context, cluster_id
ORDER BY level, context, cluster_id;

-- Scaling-law fits and predictions next to each other
SELECT f.encoder, f.llm, f.task, f.predictor, f.a, f.b, f.r2, p.predicted_score
FROM scaling_fits f
LEFT JOIN predictions p USING (run_id, encoder, llm, task, predictor)
ORDER BY f.task, p.predicted_score DESC;
