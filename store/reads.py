"""Reading the store back: the methods of :class:`~harness.store.connection.Store` that return
stored rows, and the queries several commands share, so that they agree: the grid a run is judged
against (:func:`judging_grids`, for ``harness report``, the run's answer and ``harness replay``).
"""

from __future__ import annotations

from typing import Any

from . import embeddings as _emb
from .migrations import applied_migrations

__all__ = ["Reads", "judging_grid", "judging_grids"]


class Reads:
    """The reading half of :class:`~harness.store.connection.Store`, which supplies ``con`` and
    ``query()``."""

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of ``run_id`` (every column), or None."""
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        return rows[0] if rows else None

    def get_trial(self, trial_key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM trials WHERE trial_key = ?", [trial_key])
        return rows[0] if rows else None

    def get_scores(self, trial_key: str) -> list[dict[str, Any]]:
        return self.query("SELECT task, metric, value, n_items FROM scores WHERE trial_key = ? ORDER BY task, metric",
                          [trial_key])

    def get_embedding(self, key: str):
        """The stored array (numpy, in its original dtype), or None."""
        return _emb.get_embedding(self.con, key)

    def get_similarity(self, key: str) -> float | None:
        row = self.con.execute("SELECT value FROM similarities WHERE similarity_key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def leaderboard(self, task: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        """The leaderboard view (latest finished run per task), or one run's rankings if run_id is given."""
        if run_id is None:
            sql, params = "SELECT * FROM leaderboard", []
            if task is not None:
                sql, params = sql + " WHERE task = ?", [task]
            return self.query(sql, params)
        sql = ("SELECT task, encoder AS vision_encoder, llm AS language_model, score, metric, run_id,"
               " measured_or_predicted FROM rankings WHERE run_id = ?")
        params = [run_id]
        if task is not None:
            sql, params = sql + " AND task = ?", params + [task]
        return self.query(sql + " ORDER BY task, rank, encoder, llm", params)

    def applied_migrations(self) -> list[str]:
        return applied_migrations(self.con)


def judging_grids(store, run: dict, sources: list[str] | None = None) -> list[str]:
    """The finished grid runs that judge ``run`` (one rule for ``harness report``, ``harness
    run``'s answer and ``harness replay``): grid (ground-truth) runs that ranked a task ``run``
    ranked, among ``sources`` when given (a replay's source runs); of those, the best tier of
    same suite and same seed, else same suite, else same seed, else any; latest first. A grid
    run is its own ground truth: none judges it, except in a replay (a grid replayed from a
    smaller grid is compared with its source)."""
    if run.get("ground_truth") and sources is None:
        return []
    tasks = [r["task"] for r in store.query("select distinct task from rankings where run_id = ?",
                                            [run["run_id"]])]
    if not tasks:
        return []
    marks = ", ".join("?" for _ in tasks)
    params = list(tasks)
    among = ""
    if sources is not None:
        if not sources:
            return []
        among = f" and r.run_id in ({', '.join('?' for _ in sources)})"
        params += list(sources)
    grids = store.query(
        "select r.run_id, r.suite_name, r.seed from runs r where r.ground_truth and r.status = 'done'"
        f" and r.run_id <> ? and exists (select 1 from rankings k where k.run_id = r.run_id"
        f" and k.task in ({marks})){among} order by r.started_at desc, r.run_id desc",
        [run["run_id"], *params])
    suite, seed = run.get("suite_name"), run.get("seed")
    for tier in (lambda g: g["suite_name"] == suite and g["seed"] == seed,
                 lambda g: g["suite_name"] == suite, lambda g: g["seed"] == seed, lambda g: True):
        chosen = [g["run_id"] for g in grids if tier(g)]
        if chosen:
            return chosen
    return []


def judging_grid(store, run: dict, sources: list[str] | None = None) -> str | None:
    """The grid run that judges ``run``: the first of :func:`judging_grids`."""
    grids = judging_grids(store, run, sources)
    return grids[0] if grids else None
