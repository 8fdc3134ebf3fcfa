"""Named migrations of the store's schema.

Each migration is a function decorated with `@migration`; its name is recorded in the
`_migrations` table when applied. Every time a store opens writable, all pending migrations run,
in order, inside ONE transaction: either the store ends up fully migrated or it is left exactly
as it was.

NEVER edit a migration that has been released, not even a comment on a column: stores in the wild
have already run it, and would silently disagree with a fresh store. Append a new migration
instead (ALTER TABLE, CREATE OR REPLACE VIEW, COMMENT ON ...).

The file reads top to bottom: the machinery (registering and applying migrations), the helpers
migrations write tables with, m001, m002, ... in the order every store applies them (a new one
goes at the end of that section), then the generated documentation.

The schema reference docs/store-schema.md is generated from these functions:

    python -m harness.store.migrations --docs > docs/store-schema.md

Conventions: every result row carries the `run_id` that produced it and the `plugin` and
`plugin_version` that computed it; JSON columns hold configs; timestamps are TIMESTAMPTZ set by
the database (`current_timestamp`); keys named `*_key` are `harness.store.keys.content_key`
hashes, `fingerprint` columns are content hashes of weights/configs/data computed by plugins.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib import resources

import duckdb

from .errors import StoreError

Migration = Callable[[duckdb.DuckDBPyConnection], None]

MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Append fn to MIGRATIONS; its __name__ is its permanent name."""
    if any(m.__name__ == fn.__name__ for m in MIGRATIONS):
        raise ValueError(f"duplicate migration name {fn.__name__!r}")
    MIGRATIONS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
# Applying migrations


def _select(migrations: Sequence[Migration], upto: int | str | None) -> list[Migration]:
    if upto is None:
        return list(migrations)
    if isinstance(upto, int):
        return list(migrations[:upto])
    names = [m.__name__ for m in migrations]
    if upto not in names:
        raise ValueError(f"unknown migration {upto!r}; known: {', '.join(names)}")
    return list(migrations[: names.index(upto) + 1])


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names recorded in _migrations, in the order applied; [] for a blank database."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_migrations' AND schema_name = 'main'"
        " AND database_name = current_database()"
    ).fetchone()[0]
    if not exists:
        return []
    return [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY applied_at, rowid").fetchall()]


def pending_migrations(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] | None = None) -> list[str]:
    done = set(applied_migrations(con))
    return [m.__name__ for m in (MIGRATIONS if migrations is None else migrations) if m.__name__ not in done]


def unknown_migrations(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Migrations recorded in the store that this code does not know (store written by a newer harness)."""
    known = {m.__name__ for m in (MIGRATIONS if migrations is None else migrations)}
    return [n for n in applied_migrations(con) if n not in known]


def migrate(
    con: duckdb.DuckDBPyConnection,
    upto: int | str | None = None,
    *,
    migrations: Sequence[Migration] | None = None,
) -> list[str]:
    """Apply pending migrations in one transaction; return the names applied (idempotent).

    upto: None for all; an int k for the first k; a name for up to and including it.
    Raises StoreError if the store records migrations this code does not know.
    """
    chosen = _select(MIGRATIONS if migrations is None else migrations, upto)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS _migrations ("
            " name VARCHAR PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
        )
        unknown = unknown_migrations(con, MIGRATIONS if migrations is None else migrations)
        if unknown:
            raise StoreError(
                f"this store was written by a newer harness: it has migrations {', '.join(unknown)} "
                "that this version does not know. Upgrade harness (pip install -U harness) to write to it."
            )
        done = set(applied_migrations(con))
        applied = []
        for fn in chosen:
            if fn.__name__ in done:
                continue
            try:
                fn(con)
            except Exception as e:
                raise StoreError(f"migration {fn.__name__} failed: {e}") from e
            con.execute("INSERT INTO _migrations (name) VALUES (?)", [fn.__name__])
            applied.append(fn.__name__)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return applied


# ---------------------------------------------------------------------------------------------
# Writing migrations


# _create and _provenance are part of every migration that calls them: changing what they emit
# changes released migrations. Copy them under a new name instead.
def _create(con: duckdb.DuckDBPyConnection, name: str, doc: str, columns: list[tuple[str, str, str]],
            constraints: Sequence[str] = ()) -> None:
    """CREATE TABLE name with columns (name, type-and-constraints, description) and COMMENT ON each."""
    body = ",\n    ".join([f"{c} {t}" for c, t, _ in columns] + list(constraints))
    con.execute(f"CREATE TABLE {name} (\n    {body}\n)")
    con.execute(f"COMMENT ON TABLE {name} IS {_sql_str(doc)}")
    for c, _, d in columns:
        con.execute(f"COMMENT ON COLUMN {name}.{c} IS {_sql_str(d)}")


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Columns every result table ends with.
def _provenance(what: str = "row") -> list[tuple[str, str, str]]:
    return [
        ("run_id", "VARCHAR NOT NULL", f"run that produced this {what} (runs.run_id)"),
        ("plugin", "VARCHAR NOT NULL", f"plugin that produced this {what} (name as listed by `harness plugins`)"),
        ("plugin_version", "VARCHAR NOT NULL", "version of that plugin's distribution"),
        ("created_at", "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", "when the row was written"),
    ]


# ---------------------------------------------------------------------------------------------
# The migrations, in the order every store applies them (released: never edit one)


@migration
def m001_initial_schema(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "runs", "One row per execution of a suite (`harness run`).", [
        ("run_id", "VARCHAR PRIMARY KEY", "time-sortable id, e.g. 20250101-120000-3fa9c2"),
        ("suite_name", "VARCHAR NOT NULL", "suite's `name`"),
        ("suite_hash", "VARCHAR", "content key of the resolved suite"),
        ("strategy", "VARCHAR", "search strategy name (grid, mordal, ...)"),
        ("seed", "BIGINT", "suite seed"),
        ("config", "JSON", "the resolved suite"),
        ("status", ("VARCHAR NOT NULL DEFAULT 'running' "
                    "CHECK (status IN ('running', 'done', 'failed', 'interrupted'))"),
         "running | done | failed | interrupted (process died; set when the store is next opened)"),
        ("error", "VARCHAR", "why the run failed"),
        ("started_at", "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", "start time"),
        ("finished_at", "TIMESTAMPTZ", "end time (NULL while running)"),
        ("harness_version", "VARCHAR", "harness version that ran it"),
        ("hostname", "VARCHAR", "machine that ran it"),
        ("pid", "INTEGER", "process id that ran it"),
        ("plugin", "VARCHAR", "plugin providing the search strategy"),
        ("plugin_version", "VARCHAR", "version of that plugin"),
    ])
    _create(con, "components", "Vision encoders and language models seen by any run.", [
        ("fingerprint", "VARCHAR PRIMARY KEY", "content hash of the component's weights/config"),
        ("kind", "VARCHAR NOT NULL", "vision_encoder | language_model"),
        ("ref", "VARCHAR NOT NULL", "how the suite names it, e.g. tiny:vit-p8, hf:openai/clip-vit-large-patch14-336"),
        ("config", "JSON", "loader options"),
        *_provenance("component record"),
    ])
    _create(con, "datasets", "Alignment sets and target tasks seen by any run.", [
        ("fingerprint", "VARCHAR PRIMARY KEY", "content hash of the data (items and split)"),
        ("ref", "VARCHAR NOT NULL", "how the suite names it, e.g. shapes:align"),
        ("split", "VARCHAR", "train | test | ..."),
        ("n_items", "BIGINT", "number of items"),
        ("config", "JSON", "loader options"),
        *_provenance("dataset record"),
    ])
    _create(con, "embeddings", "Features of one component on a sample set (for similarity metrics).", [
        ("embedding_key", "VARCHAR PRIMARY KEY",
         "keys.embedding_key(component, dataset, layer, sample_set)"),
        ("component_fingerprint", "VARCHAR NOT NULL", "components.fingerprint"),
        ("dataset_fingerprint", "VARCHAR NOT NULL", "datasets.fingerprint"),
        ("layer", "VARCHAR NOT NULL", "which layer/pooling the features come from"),
        ("sample_set", "JSON", "which items were embedded (e.g. {n, seed})"),
        ("shape", "BIGINT[] NOT NULL", "array shape, e.g. [512, 768]"),
        ("dtype", "VARCHAR NOT NULL", "numpy dtype the array is returned as (e.g. float32)"),
        ("encoding", "VARCHAR NOT NULL", "how data is packed: float16 (little-endian) or float32 if values overflow float16"),
        ("data", "BLOB NOT NULL", "the packed array, C order"),
        *_provenance("embedding"),
    ])
    _create(con, "similarities", "metric(a, b) between two components' embeddings.", [
        ("similarity_key", "VARCHAR PRIMARY KEY", "keys.similarity_key(metric, a_embedding, b_embedding, config)"),
        ("metric", "VARCHAR NOT NULL", "cka | gw | ..."),
        ("a", "VARCHAR NOT NULL", "components.fingerprint of the first component"),
        ("b", "VARCHAR NOT NULL", "components.fingerprint of the second component"),
        ("a_embedding", "VARCHAR", "embeddings.embedding_key used for a"),
        ("b_embedding", "VARCHAR", "embeddings.embedding_key used for b"),
        ("value", "DOUBLE NOT NULL", "the similarity"),
        ("config", "JSON", "metric options"),
        *_provenance("similarity"),
    ])
    _create(con, "clusters", "Clustering of the zoo within a run, with medoids.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("level", "VARCHAR NOT NULL CHECK (level IN ('encoder', 'llm'))", "encoder | llm"),
        ("cluster_id", "INTEGER NOT NULL", "cluster number within the level"),
        ("member", "VARCHAR NOT NULL", "component ref"),
        ("member_fingerprint", "VARCHAR", "components.fingerprint"),
        ("is_medoid", "BOOLEAN NOT NULL", "true for the cluster's representative"),
        ("threshold", "DOUBLE", "similarity threshold used (t_ve / t_llm)"),
        ("linkage", "VARCHAR", "average | complete | single"),
        ("metric", "VARCHAR", "similarity metric used"),
        *_provenance("clustering")[1:],
    ], ["PRIMARY KEY (run_id, level, member)"])
    _create(con, "trials", "One training-and-scoring job; looked up by trial_key before it is run.", [
        ("trial_key", "VARCHAR PRIMARY KEY",
         "keys.trial_key(encoder fp, llm fp, dataset fp, sample_ratio, train_config, seed)"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("encoder_fingerprint", "VARCHAR", "components.fingerprint"),
        ("llm_fingerprint", "VARCHAR", "components.fingerprint"),
        ("dataset_fingerprint", "VARCHAR NOT NULL", "alignment data, datasets.fingerprint"),
        ("sample_ratio", "DOUBLE NOT NULL", "fraction of the alignment data trained on"),
        ("train_config", "JSON", "projector/LoRA/optimiser settings"),
        ("seed", "BIGINT", "training seed"),
        ("status", "VARCHAR NOT NULL CHECK (status IN ('running', 'done', 'failed'))", "running | done | failed"),
        ("error", "VARCHAR", "why it failed"),
        ("wall_seconds", "DOUBLE", "wall-clock seconds of training and scoring"),
        ("samples_seen", "BIGINT", "training samples processed"),
        ("device", "VARCHAR", "cpu or the CUDA device name"),
        ("checkpoint_path", "VARCHAR", "trained projector(+LoRA) files, relative to the store's folder"),
        ("run_id", "VARCHAR NOT NULL", "run that ran (or last re-ran) the trial"),
        ("plugin", "VARCHAR NOT NULL", "executor plugin that ran it"),
        ("plugin_version", "VARCHAR NOT NULL", "version of that plugin"),
        ("created_at", "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", "when it started"),
        ("finished_at", "TIMESTAMPTZ", "when it finished"),
    ])
    _create(con, "run_uses", "Which cached results each run used; reused = found in the store, not recomputed.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("kind", "VARCHAR NOT NULL CHECK (kind IN ('trial', 'embedding', 'similarity'))",
         "trial | embedding | similarity"),
        ("key", "VARCHAR NOT NULL", "trial_key / embedding_key / similarity_key"),
        ("reused", "BOOLEAN NOT NULL", "true when the result came from an earlier run"),
        ("used_at", "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", "when"),
    ], ["PRIMARY KEY (run_id, kind, key)"])
    _create(con, "scores", "Scores of a trial on target tasks.", [
        ("trial_key", "VARCHAR NOT NULL", "trials.trial_key"),
        ("task", "VARCHAR NOT NULL", "target task, e.g. shapes:count"),
        ("metric", "VARCHAR NOT NULL", "accuracy, exact_match, ..."),
        ("value", "DOUBLE NOT NULL", "the score (higher is better)"),
        ("n_items", "BIGINT", "items scored"),
        *_provenance("score"),
    ], ["PRIMARY KEY (trial_key, task, metric)"])
    _create(con, "rungs", "Early-stopping decisions: one row per candidate per rung.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("phase", "VARCHAR NOT NULL CHECK (phase IN ('inter', 'intra'))",
         "inter (between clusters, via medoids) | intra (within a cluster)"),
        ("rung", "INTEGER NOT NULL", "rung index, 0 first"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("task", "VARCHAR", "task the decision used (NULL: aggregate over targets)"),
        ("sample_ratio", "DOUBLE", "fraction of alignment data at this rung"),
        ("budget", "DOUBLE", "training samples allotted at this rung"),
        ("score", "DOUBLE", "score the decision used"),
        ("kept", "BOOLEAN NOT NULL", "promoted to the next rung"),
        ("trial_key", "VARCHAR", "trials.trial_key behind the score"),
        *_provenance("decision")[1:],
    ])
    _create(con, "scaling_points", "Observed (sample ratio, score) points used to fit scaling laws.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("task", "VARCHAR NOT NULL", "target task"),
        ("metric", "VARCHAR", "score metric"),
        ("sample_ratio", "DOUBLE NOT NULL", "fraction of alignment data"),
        ("score", "DOUBLE NOT NULL", "observed score"),
        ("trial_key", "VARCHAR", "trials.trial_key"),
        *_provenance("point")[1:],
    ])
    _create(con, "scaling_fits", "Fitted scaling law per candidate and task.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("task", "VARCHAR NOT NULL", "target task"),
        ("metric", "VARCHAR", "score metric"),
        ("predictor", "VARCHAR NOT NULL", "loglinear | rectified | powerlaw | ..."),
        ("a", "DOUBLE", "first parameter (loglinear: score = a + b * log(ratio))"),
        ("b", "DOUBLE", "second parameter"),
        ("r2", "DOUBLE", "coefficient of determination on the points"),
        ("params", "JSON", "all parameters, for predictors with more than two"),
        ("n_points", "INTEGER", "points fitted"),
        *_provenance("fit")[1:],
    ])
    _create(con, "predictions", "Predicted scores at a sample ratio (1.0 = full data).", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("task", "VARCHAR NOT NULL", "target task"),
        ("metric", "VARCHAR", "score metric"),
        ("sample_ratio", "DOUBLE NOT NULL DEFAULT 1.0", "ratio predicted for"),
        ("predicted_score", "DOUBLE NOT NULL", "the prediction"),
        ("predictor", "VARCHAR NOT NULL", "predictor name"),
        *_provenance("prediction")[1:],
    ])
    _create(con, "rankings", "Final ranking of candidates per task in a run.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("task", "VARCHAR NOT NULL", "target task"),
        ("metric", "VARCHAR", "score metric"),
        ("rank", "INTEGER NOT NULL", "1 = best"),
        ("encoder", "VARCHAR NOT NULL", "vision encoder ref"),
        ("llm", "VARCHAR NOT NULL", "language model ref"),
        ("score", "DOUBLE", "measured or predicted score"),
        ("measured_or_predicted", "VARCHAR NOT NULL CHECK (measured_or_predicted IN ('measured', 'predicted'))",
         "measured (full-data trial) | predicted (scaling law)"),
        ("trial_key", "VARCHAR", "trials.trial_key when measured"),
        *_provenance("ranking")[1:],
    ], ["PRIMARY KEY (run_id, task, encoder, llm)"])


@migration
def m002_leaderboard_and_history_views(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE VIEW leaderboard AS
        WITH latest AS (
            SELECT k.task, k.run_id,
                   row_number() OVER (PARTITION BY k.task ORDER BY r.started_at DESC, k.run_id DESC) AS recency
            FROM (SELECT DISTINCT task, run_id FROM rankings) k
            JOIN runs r USING (run_id)
            WHERE r.status = 'done'
        )
        SELECT k.task, k.encoder AS vision_encoder, k.llm AS language_model, k.score, k.metric,
               k.run_id, k.measured_or_predicted
        FROM rankings k
        JOIN latest l ON l.task = k.task AND l.run_id = k.run_id AND l.recency = 1
        ORDER BY k.task, k.rank, k.encoder, k.llm
    """)
    con.execute("COMMENT ON VIEW leaderboard IS " + _sql_str(
        "Per task, the ranking from the most recent finished (status done) run that ranked it, best first."))
    con.execute("""
        CREATE VIEW history AS
        WITH made AS (
            SELECT run_id, count(*) AS trials_run, sum(wall_seconds) AS trial_seconds,
                   sum(samples_seen) AS samples_seen
            FROM trials GROUP BY run_id
        ),
        reused AS (
            SELECT u.run_id, count(*) AS trials_reused, sum(t.wall_seconds) AS reused_seconds
            FROM run_uses u LEFT JOIN trials t ON t.trial_key = u.key
            WHERE u.kind = 'trial' AND u.reused
            GROUP BY u.run_id
        ),
        best AS (
            SELECT run_id, string_agg(
                       task || ': ' || encoder || ' + ' || llm
                       || coalesce(' (' || printf('%.4f', score) || ', ' || measured_or_predicted || ')', ''),
                       '; ' ORDER BY task, encoder, llm) AS best_per_task
            FROM rankings WHERE rank = 1 GROUP BY run_id
        )
        SELECT r.run_id, r.suite_name, r.strategy, r.seed, r.status, r.started_at, r.finished_at,
               epoch(r.finished_at - r.started_at) AS wall_seconds,
               coalesce(m.trials_run, 0) AS trials_run,
               coalesce(u.trials_reused, 0) AS trials_reused,
               m.trial_seconds, u.reused_seconds, m.samples_seen,
               b.best_per_task, r.error
        FROM runs r
        LEFT JOIN made m USING (run_id)
        LEFT JOIN reused u USING (run_id)
        LEFT JOIN best b USING (run_id)
        ORDER BY r.started_at, r.run_id
    """)
    con.execute("COMMENT ON VIEW history IS " + _sql_str(
        "One row per run: status, trials run vs reused from earlier runs, their seconds, and the "
        "best candidate per task. trial_seconds is compute this run spent; trial_seconds + "
        "reused_seconds is what it would cost from an empty store."))


@migration
def m003_phase_costs(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "phase_costs",
            "Compute a run spent outside trials (e.g. Mordal's embeddings and projector warm-ups), "
            "so a strategy's cost is trials + phases.", [
        ("phase", "VARCHAR NOT NULL", "what the time went to, e.g. cluster-encoders, cluster-llms"),
        ("wall_seconds", "DOUBLE NOT NULL", "wall-clock seconds spent in this run"),
        ("samples_seen", "BIGINT", "training samples consumed (projector warm-ups)"),
        ("reused", "BOOLEAN NOT NULL DEFAULT false", "true if everything came from the store"),
        *_provenance("cost record"),
    ])

@migration
def m004_cluster_context(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE clusters ADD COLUMN context VARCHAR")
    con.execute("COMMENT ON COLUMN clusters.context IS " + _sql_str(
        "for level llm: the medoid encoder whose warmed-up projector produced the LLM embeddings"))


@migration
def m005_ranking_ratio_and_stage(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE rankings ADD COLUMN sample_ratio DOUBLE")
    con.execute("COMMENT ON COLUMN rankings.sample_ratio IS " + _sql_str(
        "sample ratio the score was measured at (1 for grid and predicted scores; the elimination "
        "rung's ratio for candidates a search dropped early)"))
    con.execute("ALTER TABLE rankings ADD COLUMN stage VARCHAR")
    con.execute("COMMENT ON COLUMN rankings.stage IS " + _sql_str(
        "where the rank came from: grid | survivor | eliminated-intra | eliminated-inter"))


@migration
def m006_clusters_keyed_by_context(con: duckdb.DuckDBPyConnection) -> None:
    # LLMs are clustered once per encoder cluster (through its medoid), so one LLM appears once
    # per context: the key must include it. DuckDB cannot alter a primary key: rebuild the table.
    con.execute("ALTER TABLE clusters RENAME TO clusters_m001")
    _create(con, "clusters", "Clustering of the zoo within a run, with medoids.", [
        ("run_id", "VARCHAR NOT NULL", "runs.run_id"),
        ("level", "VARCHAR NOT NULL CHECK (level IN ('encoder', 'llm'))", "encoder | llm"),
        ("context", "VARCHAR NOT NULL DEFAULT ''",
         "for level llm: the medoid encoder whose warmed-up projector produced the LLM embeddings;"
         " '' for encoders"),
        ("cluster_id", "INTEGER NOT NULL", "cluster number within the level and context"),
        ("member", "VARCHAR NOT NULL", "component ref"),
        ("member_fingerprint", "VARCHAR", "components.fingerprint"),
        ("is_medoid", "BOOLEAN NOT NULL", "true for the cluster's representative"),
        ("threshold", "DOUBLE", "distance cut (1 - similarity) used: t_ve / t_llm"),
        ("linkage", "VARCHAR", "scipy linkage method"),
        ("metric", "VARCHAR", "similarity metric used"),
        *_provenance("clustering")[1:],
    ], ["PRIMARY KEY (run_id, level, context, member)"])
    con.execute("""
        INSERT INTO clusters (run_id, level, context, cluster_id, member, member_fingerprint,
                              is_medoid, threshold, linkage, metric, plugin, plugin_version, created_at)
        SELECT run_id, level, coalesce(context, ''), cluster_id, member, member_fingerprint,
               is_medoid, threshold, linkage, metric, plugin, plugin_version, created_at
        FROM clusters_m001""")
    con.execute("DROP TABLE clusters_m001")


@migration
def m007_store_identity_and_imports(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "store_meta", "Facts about this store file itself.", [
        ("key", "VARCHAR PRIMARY KEY", "store_id: a random id given when the store was created"),
        ("value", "VARCHAR NOT NULL", "the value"),
    ])
    con.execute("INSERT INTO store_meta VALUES ('store_id', CAST(uuid() AS VARCHAR))")
    _create(con, "imports", "Each `harness store import` / `merge` into this store: where the rows came from.", [
        ("import_id", "INTEGER PRIMARY KEY", "1, 2, ... in the order imported"),
        ("kind", "VARCHAR NOT NULL", "export (a Parquet folder) | store (another store file)"),
        ("source_path", "VARCHAR NOT NULL", "the folder or file imported"),
        ("source_store", "VARCHAR", "store_meta.store_id of the store the rows were exported from"),
        ("manifest_sha256", "VARCHAR", "sha256 of the export's manifest.json"),
        ("source_harness_version", "VARCHAR", "harness version that wrote the export"),
        ("source_runs", "JSON", "run ids the export holds"),
        ("rows_added", "JSON", "rows added per table (rows already here by content key are not)"),
        ("imported_at", "TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", "when"),
    ])
    _create(con, "imported_rows", "Which import brought each row (rows made here have none).", [
        ("import_id", "INTEGER NOT NULL", "imports.import_id"),
        ("table_name", "VARCHAR NOT NULL", "the table the row went to"),
        ("row_key", "VARCHAR NOT NULL", "the row's primary key (or, without one, its columns) as JSON"),
    ])


@migration
def m008_cost_model(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE components ADD COLUMN n_params BIGINT")
    con.execute("COMMENT ON COLUMN components.n_params IS " + _sql_str(
        "parameters of the loaded component (the FLOP weight of a trial: 2 x encoder + 6 x LLM per sample)"))
    for column, kind, doc in (
            ("cost_seconds", "DOUBLE", "what the phase costs with an empty store: the original seconds of "
             "every feature it used, reused or not, plus this run's other work"),
            ("cost_samples", "BIGINT", "training samples the phase costs with an empty store (projector "
             "warm-ups, charged at their original count when reused)"),
            ("cost_flops", "DOUBLE", "approximate training FLOPs of those samples"),
            ("forward_passes", "BIGINT", "items embedded by encoder/LLM forward passes for the features used")):
        con.execute(f"ALTER TABLE phase_costs ADD COLUMN {column} {kind}")
        con.execute(f"COMMENT ON COLUMN phase_costs.{column} IS " + _sql_str(doc))
    _create(con, "feature_costs", "What computing one stored embedding cost, so a reuse is charged its "
            "original price.", [
        ("embedding_key", "VARCHAR PRIMARY KEY", "embeddings.embedding_key"),
        ("wall_seconds", "DOUBLE NOT NULL", "seconds to compute it (projector warm-up included)"),
        ("train_samples", "BIGINT NOT NULL DEFAULT 0", "training samples it took (an LLM feature's warm-up)"),
        ("train_flops", "DOUBLE", "approximate FLOPs of those samples"),
        ("forward_passes", "BIGINT NOT NULL DEFAULT 0", "items embedded"),
        *_provenance("cost record"),
    ])
    con.execute("""
        CREATE VIEW run_costs AS
        WITH used AS (
            SELECT u.run_id, u.reused, t.*,
                   coalesce(t.samples_seen, 0) * (2.0 * coalesce(e.n_params, 0) + 6.0 * coalesce(l.n_params, 0))
                       AS flops,
                   (SELECT coalesce(sum(n_items), 0) FROM scores s WHERE s.trial_key = t.trial_key) AS eval_items
            FROM run_uses u JOIN trials t ON t.trial_key = u.key
            LEFT JOIN components e ON e.fingerprint = t.encoder_fingerprint
            LEFT JOIN components l ON l.fingerprint = t.llm_fingerprint
            WHERE u.kind = 'trial' AND t.status IN ('done', 'failed')
        ),
        trial AS (
            SELECT run_id, count(*) AS trials,
                   count(*) FILTER (WHERE NOT reused) AS trials_trained,
                   count(*) FILTER (WHERE status = 'failed') AS trials_failed,
                   sum(coalesce(wall_seconds, 0)) AS trial_seconds,
                   sum(coalesce(samples_seen, 0)) AS trial_samples,
                   sum(flops) AS trial_flops, sum(eval_items) AS eval_items,
                   sum(coalesce(wall_seconds, 0)) FILTER (WHERE NOT reused) AS new_trial_seconds,
                   sum(coalesce(samples_seen, 0)) FILTER (WHERE NOT reused) AS new_trial_samples
            FROM used GROUP BY run_id
        ),
        phase AS (
            SELECT run_id, sum(coalesce(cost_seconds, wall_seconds)) AS phase_seconds,
                   sum(coalesce(cost_samples, samples_seen, 0)) AS phase_samples,
                   sum(coalesce(cost_flops, 0)) AS phase_flops,
                   sum(coalesce(forward_passes, 0)) AS forward_passes,
                   sum(wall_seconds) AS new_phase_seconds, sum(coalesce(samples_seen, 0)) AS new_phase_samples
            FROM phase_costs GROUP BY run_id
        )
        SELECT r.run_id, r.strategy,
               coalesce(t.trials, 0) AS trials, coalesce(t.trials_trained, 0) AS trials_trained,
               coalesce(t.trials_failed, 0) AS trials_failed,
               coalesce(t.trial_seconds, 0) AS trial_seconds, coalesce(t.trial_samples, 0) AS trial_samples,
               coalesce(t.trial_flops, 0) AS trial_flops, coalesce(t.eval_items, 0) AS eval_items,
               coalesce(p.phase_seconds, 0) AS phase_seconds, coalesce(p.phase_samples, 0) AS phase_samples,
               coalesce(p.phase_flops, 0) AS phase_flops, coalesce(p.forward_passes, 0) AS forward_passes,
               coalesce(t.trial_samples, 0) + coalesce(p.phase_samples, 0) AS samples,
               coalesce(t.trial_flops, 0) + coalesce(p.phase_flops, 0) AS flops,
               coalesce(t.trial_seconds, 0) + coalesce(p.phase_seconds, 0) AS seconds,
               coalesce(t.new_trial_samples, 0) + coalesce(p.new_phase_samples, 0) AS new_samples,
               coalesce(t.new_trial_seconds, 0) + coalesce(p.new_phase_seconds, 0) AS new_seconds
        FROM runs r LEFT JOIN trial t USING (run_id) LEFT JOIN phase p USING (run_id)
    """)
    con.execute("COMMENT ON VIEW run_costs IS " + _sql_str(
        "One cost model for every run. samples / flops / seconds: what the run would have cost had "
        "nothing been stored (every trial it used, reused or failed, and every feature and warm-up "
        "at its original price): the figure to compare with a grid. new_samples / new_seconds: "
        "what this run computed itself (what reuse saved is the difference). eval_items: test "
        "items scored; forward_passes: items embedded for clustering features."))



@migration
def m009_decision_errors_and_use_phase(con: duckdb.DuckDBPyConnection) -> None:
    for table, column, kind, doc in (
            ("rungs", "error", "DOUBLE", "standard error of the score (binomial over the test items); "
             "NULL when unknown"),
            ("rungs", "note", "VARCHAR", "why the rung decided as it did when it was not a plain cut "
             "(a near-tie kept, an uninformative rung), as printed by the run"),
            ("predictions", "lower", "DOUBLE", "lower end of the prediction's 95% interval (the points' "
             "standard errors carried through the fit); NULL when unknown"),
            ("predictions", "upper", "DOUBLE", "upper end of that interval"),
            ("run_uses", "phase", "VARCHAR", "the run's phase that first used it (cluster-encoders, "
             "cluster-llms@ENCODER, ...); NULL for uses recorded before m009 or outside a phase")):
        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        con.execute(f"COMMENT ON COLUMN {table}.{column} IS " + _sql_str(doc))



@migration
def m010_trial_node(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE trials ADD COLUMN node VARCHAR")
    con.execute("COMMENT ON COLUMN trials.node IS " + _sql_str(
        "the machine that trained it when not the driver's: host (Ray node id) for executor ray; "
        "NULL when it ran in the driver's process or a local worker"))



@migration
def m011_baselines_and_ranking_basis(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "task_baselines", "Constant-answer baseline of a task's test split: the best score "
            "of always giving one answer (the share of items whose answer is the most frequent one). "
            "Computed once per (task, split, items) and reused by every later run.", [
        ("task", "VARCHAR NOT NULL", "target task"),
        ("split", "VARCHAR NOT NULL", "split the answers were counted on (test)"),
        ("n_items", "INTEGER NOT NULL", "items counted (the target's limit)"),
        ("answer", "VARCHAR", "the most frequent answer"),
        ("value", "DOUBLE NOT NULL", "its share of the items: the constant-answer accuracy"),
        *_provenance("baseline"),
    ], ["PRIMARY KEY (task, split, n_items)"])
    for column, kind, doc in (
            ("basis", "VARCHAR", "what the place rests on: measured (a trial at r = 1) | predicted "
             "(a scaling law, lower/upper its 95% interval; or dcd's transfer) | eliminated (placed by the "
             "rung that dropped it, score at sample_ratio) | cluster (never trained: placed with its "
             "cluster's medoid) | similarity (gw-prescreen's training-free order)"),
            ("error", "DOUBLE", "standard error of score (binomial over the test items); NULL when unknown"),
            ("lower", "DOUBLE", "lower end of a predicted score's 95% interval"),
            ("upper", "DOUBLE", "upper end of that interval"),
            ("estimate", "DOUBLE", "for a candidate below the survivors: the full-data score its place "
             "was ordered by (search.rank_below: estimate), else NULL")):
        con.execute(f"ALTER TABLE rankings ADD COLUMN {column} {kind}")
        con.execute(f"COMMENT ON COLUMN rankings.{column} IS " + _sql_str(doc))


@migration
def m012_continued_trials(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE trials ADD COLUMN continued_from VARCHAR")
    con.execute("COMMENT ON COLUMN trials.continued_from IS " + _sql_str(
        "for a continued trial (search.continuation): the trial_key of the trial at the lower ratio "
        "whose checkpoint and optimiser state it resumed. It trained only the extra samples "
        "(samples_seen counts those); a run that uses it also records a use of that trial, so the "
        "run's cost charges the lower rung once. NULL: trained from scratch"))


@migration
def m013_ground_truth_runs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE runs ADD COLUMN ground_truth BOOLEAN")
    con.execute("COMMENT ON COLUMN runs.ground_truth IS " + _sql_str(
        "an exhaustive run (every candidate measured at r = 1: a strategy that declares exhaustive, "
        "e.g. grid): what searches are judged against (compare, report, replays). Runs from before "
        "this column read as their strategy being grid"))
    con.execute("UPDATE runs SET ground_truth = (strategy = 'grid')")


@migration
def m014_leaderboard_says_what_each_score_is(con: duckdb.DuckDBPyConnection) -> None:
    # The same seven columns, read better: measured_or_predicted says what the place rests on
    # (rankings.basis, which m011 added: a candidate eliminated at a rung is no longer labelled
    # measured, and a place without a score never is), and metric names the score's metric
    # (what the run's trials were scored with) where a search stored its objective as
    # score / mean.
    con.execute("""
        CREATE OR REPLACE VIEW leaderboard AS
        WITH latest AS (
            SELECT k.task, k.run_id,
                   row_number() OVER (PARTITION BY k.task ORDER BY r.started_at DESC, k.run_id DESC) AS recency
            FROM (SELECT DISTINCT task, run_id FROM rankings) k
            JOIN runs r USING (run_id)
            WHERE r.status = 'done'
        ),
        board AS (
            SELECT k.*
            FROM rankings k
            JOIN latest l ON l.task = k.task AND l.run_id = k.run_id AND l.recency = 1
        ),
        used AS (  -- the trials each of those runs used (reused or trained) or ranked
            SELECT u.run_id, u.key AS trial_key FROM run_uses u
            WHERE u.kind = 'trial' AND u.run_id IN (SELECT run_id FROM board)
            UNION
            SELECT run_id, trial_key FROM board WHERE trial_key IS NOT NULL
        ),
        scored AS (  -- the metric(s) those trials were scored with, per ranked task
            SELECT o.run_id, o.task, string_agg(DISTINCT s.metric, ', ' ORDER BY s.metric) AS metric
            FROM (SELECT DISTINCT run_id, task FROM board) o
            JOIN used u ON u.run_id = o.run_id
            JOIN scores s ON s.trial_key = u.trial_key
                AND (s.task = o.task OR (o.task LIKE 'mean(%)'
                                         AND list_contains(string_split(o.task[6:-2], ','), s.task)))
            GROUP BY o.run_id, o.task
        )
        SELECT k.task, k.encoder AS vision_encoder, k.llm AS language_model, k.score,
               CASE WHEN k.metric = 'score' AND m.metric IS NOT NULL THEN m.metric
                    WHEN k.metric = 'mean' AND m.metric IS NOT NULL THEN 'mean of ' || m.metric
                    ELSE k.metric END AS metric,
               k.run_id,
               CASE WHEN k.score IS NULL AND b.basis IN ('measured', 'predicted', 'eliminated') THEN 'failed'
                    ELSE b.basis END AS measured_or_predicted
        FROM board k
        CROSS JOIN LATERAL (SELECT coalesce(k.basis, CASE
            WHEN k.stage = 'gw-rank' THEN 'similarity'
            WHEN k.measured_or_predicted = 'predicted' THEN 'predicted'
            WHEN k.stage LIKE 'eliminated%' AND k.sample_ratio IS NULL THEN 'cluster'
            WHEN k.stage LIKE 'eliminated%' THEN 'eliminated'
            ELSE 'measured' END) AS basis) b
        LEFT JOIN scored m ON m.run_id = k.run_id AND m.task = k.task
        ORDER BY k.task, k.rank, k.encoder, k.llm
    """)
    con.execute("COMMENT ON VIEW leaderboard IS " + _sql_str(
        "Per task, the ranking from the most recent finished (status done) run that ranked it, best "
        "first; each place says what its score is. For one run's ranking in full, read rankings."))
    for column, doc in (
            ("task", "target task (mean(a,b,...) for a search of the mean over several)"),
            ("vision_encoder", "vision encoder ref"),
            ("language_model", "language model ref"),
            ("score", "the place's score (see measured_or_predicted for what it is); NULL when it has none"),
            ("metric", "what the score measures: the metric the run's trials were scored with (e.g. "
             "exact_match; 'mean of ...' over several targets)"),
            ("run_id", "the run that ranked the task (runs.run_id)"),
            ("measured_or_predicted", "what the place rests on (rankings.basis): measured (a trial at "
             "r = 1) | predicted (a scaling law's full-data score) | eliminated (dropped at a rung: its "
             "score there, at rankings.sample_ratio) | cluster (never trained, placed with its cluster; "
             "no score) | similarity (a training-free order; no score) | failed (its trial or "
             "prediction failed: no score)")):
        con.execute(f"COMMENT ON COLUMN leaderboard.{column} IS " + _sql_str(doc))


@migration
def m015_search_steps_and_history(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "search_steps",
            "One decision of a model-based search (strategy learned): the (candidate, ratio) it chose "
            "to train, in order, what it scored, and the pick after it. A replay of the run makes the "
            "same rows.", [
        ("step", "INTEGER NOT NULL", "0, 1, 2, ... in the order the decisions were made"),
        ("task", "VARCHAR NOT NULL", "the objective (a target task, or the mean over targets)"),
        ("encoder", "VARCHAR NOT NULL", "the candidate trained (its vision encoder ref)"),
        ("llm", "VARCHAR NOT NULL", "the candidate trained (its language model ref)"),
        ("sample_ratio", "DOUBLE NOT NULL", "the ratio it was trained at"),
        ("score", "DOUBLE", "its score there (NULL: the trial failed)"),
        ("trial_key", "VARCHAR", "the trial (trials.trial_key)"),
        ("spent", "DOUBLE NOT NULL", "training spent so far, in full-data trials (a grid costs one per "
         "candidate)"),
        ("pick_encoder", "VARCHAR NOT NULL", "the pick after this step (highest posterior mean)"),
        ("pick_llm", "VARCHAR NOT NULL", "the pick after this step"),
        ("free", "BOOLEAN NOT NULL DEFAULT false", "a stored trial scored on this target: its training "
         "was not charged"),
        *_provenance("decision"),
    ], ["PRIMARY KEY (run_id, step)"])
    _create(con, "search_history",
            "What informed a model-based search's prior: one row per (run, task) of the store whose "
            "scores it used (search.history), so a result can be traced to the history it learned from.", [
        ("task", "VARCHAR NOT NULL", "a task of the history"),
        ("source_run", "VARCHAR NOT NULL", "a run whose trials were scored on it (runs.run_id)"),
        *_provenance("history use"),
    ], ["PRIMARY KEY (run_id, task, source_run)"])



@migration
def m016_search_prior(con: duckdb.DuckDBPyConnection) -> None:
    _create(con, "search_prior",
            "What a model-based search (strategy learned) believed of each candidate before its own "
            "data and after: the history prior beside the task's own scores and the posterior, one row "
            "per (run, objective, candidate), written when the search ends.", [
        ("task", "VARCHAR NOT NULL", "the objective (a target task, or the mean over targets)"),
        ("encoder", "VARCHAR NOT NULL", "the candidate (its vision encoder ref)"),
        ("llm", "VARCHAR NOT NULL", "the candidate (its language model ref)"),
        ("history_z", "DOUBLE", "its mean standardised full-data score on the history tasks (NULL: no "
         "history scored it)"),
        ("prior_mean", "DOUBLE NOT NULL", "the surrogate's full-data score before any of this task's data"),
        ("prior_sd", "DOUBLE NOT NULL", "the uncertainty of prior_mean (one sd)"),
        ("prior_rank", "INTEGER NOT NULL", "its rank by prior_mean (1 = history's pick)"),
        ("own_score", "DOUBLE", "its score on this task at the highest ratio this search measured it "
         "(NULL: not measured)"),
        ("own_ratio", "DOUBLE", "the ratio of own_score"),
        ("posterior_mean", "DOUBLE NOT NULL", "the full-data score after every measurement"),
        ("posterior_sd", "DOUBLE NOT NULL", "the uncertainty of posterior_mean (one sd)"),
        ("posterior_rank", "INTEGER NOT NULL", "its rank by posterior_mean (1 = the pick)"),
        ("p_best", "DOUBLE NOT NULL", "the posterior probability that it is the best candidate"),
        *_provenance("belief"),
    ], ["PRIMARY KEY (run_id, task, encoder, llm)"])


@migration
def m017_search_prior_rank_comment(con: duckdb.DuckDBPyConnection) -> None:
    # m016 described posterior_rank as the rank by posterior_mean; the search ranks by the rule
    # every ranking follows (harness.evidence), so a full-data measurement counts too
    con.execute("COMMENT ON COLUMN search_prior.posterior_rank IS " + _sql_str(
        "its rank in the search's final order: by posterior_mean, a candidate measured at full data "
        "by the larger of that measurement and posterior_mean (1 = the pick)"))

# ---------------------------------------------------------------------------------------------
# Generated documentation


def example_queries() -> list[tuple[str, str]]:
    """(title, sql) pairs from examples.sql: a `-- title` line, then SQL ending in `;`."""
    text = resources.files(__package__).joinpath("examples.sql").read_text(encoding="utf-8")
    out, title, lines = [], None, []
    for line in text.splitlines():
        if not lines and line.startswith("-- "):
            title = line[3:].strip()
            continue
        if line.strip() or lines:
            lines.append(line)
        if line.rstrip().endswith(";"):
            out.append((title or "query", "\n".join(lines).strip()))
            title, lines = None, []
    return out


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def schema_markdown() -> str:
    """docs/store-schema.md: run every migration on a blank in-memory database and describe it."""
    con = duckdb.connect(":memory:")
    try:
        migrate(con)
        rels = con.execute(
            "SELECT table_name, comment, 'table' FROM duckdb_tables() WHERE NOT internal AND table_name NOT LIKE '\\_%' ESCAPE '\\'"
            " UNION ALL SELECT view_name, comment, 'view' FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
        order = {name: i for i, (name, _, _) in enumerate(
            con.execute("SELECT table_name, comment, 0 FROM duckdb_tables() ORDER BY table_oid").fetchall()
            + con.execute("SELECT view_name, comment, 0 FROM duckdb_views() WHERE NOT internal ORDER BY view_oid").fetchall()
        )}
        rels.sort(key=lambda r: (r[2] == "view", order.get(r[0], 0)))
        cols = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, comment "
            "FROM duckdb_columns() WHERE NOT internal ORDER BY table_name, column_index"
        ).fetchall()
        pks = {
            r[0]: r[1] for r in con.execute(
                "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()
        }
        names = [m.__name__ for m in MIGRATIONS]
    finally:
        con.close()

    out = [
        "# Store schema",
        "",
        "<!-- Generated by `python -m harness.store.migrations --docs > docs/store-schema.md`; do not edit by hand. -->",
        "",
        ("The store is one DuckDB file (default `.harness/store.duckdb`; `HARNESS_STORE` or `--store` "
         "override it). Opening it writable creates it and applies pending migrations in one transaction; "
         "`harness sql` opens it read-only, which never creates or migrates: a store older than the code "
         "is read as it is, with a warning, until a writable open upgrades it. "
         "Column descriptions are also in the database itself: "
         "`SELECT table_name, column_name, comment FROM duckdb_columns()`."),
        "",
        "Migrations, in order: " + ", ".join(f"`{n}`" for n in names) + ".",
        "",
    ]
    for kind in ("table", "view"):
        out += [f"## {'Tables' if kind == 'table' else 'Views'}", ""]
        for name, comment, k in rels:
            if k != kind:
                continue
            out += [f"### `{name}`", "", comment or "", ""]
            if name in pks:
                out += ["Primary key: " + ", ".join(f"`{c}`" for c in pks[name]) + ".", ""]
            out += ["| column | type | null | description |", "|---|---|---|---|"]
            for t, c, typ, nullable, default, ccomment in cols:
                if t == name:
                    desc = _md(ccomment)
                    if default is not None and kind == "table":
                        desc += f" (default `{_md(str(default))}`)"
                    out.append(f"| `{c}` | {typ} | {'yes' if nullable else 'no'} | {desc.strip()} |")
            out.append("")
    out += ["## Example queries", "", "Run any of these with `harness sql \"...\"`.", ""]
    for title, sql in example_queries():
        out += [f"**{title}**", "", "```sql", sql, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--docs"]:
        sys.stdout.write(schema_markdown())
        return 0
    if argv == ["--list"]:
        print("\n".join(m.__name__ for m in MIGRATIONS))
        return 0
    print("usage: python -m harness.store.migrations --docs | --list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
