"""What a search writes to the store besides its trials: its rows (each with the run and the
plugin that made it), the ranking, the cost of each phase, and the features it computes or reuses.

Owned by :class:`harness.strategy.SearchStrategy` (``strategy.records``).
"""

from __future__ import annotations

import math
import time

import numpy as np

from harness.errors import HarnessError, stop_if_interrupted


class SearchRecords:
    """One search's writes to ``store`` under ``run_id``.

    :param plugin: ``() -> (plugin, version)`` of the strategy, the producer of rows that name
        no other.
    :param executor: the search's :class:`harness.executors.Executor` (a replay stops at
        features it says should be stored).
    :param progress: the search's :class:`harness.progress.SearchProgress`.
    :param use_phase: ``() -> str | None``: the strategy's current phase, which the uses of
        stored features are recorded under.
    """

    def __init__(self, store, run_id: str, plugin, executor, progress, use_phase=lambda: None):
        self.store = store
        self.run_id = run_id
        self.plugin = plugin
        self.executor = executor
        self.progress = progress
        self.use_phase = use_phase  # () -> the phase stored uses are recorded under (run_uses.phase)

    def insert(self, table: str, rows: list[dict], producer=None) -> None:
        """Rows with this run's id and the plugin that made them: ``producer`` (a registry
        entry: the policy of a rung, the predictor of a fit), else the strategy."""
        plugin, version = (producer.plugin, producer.version) if producer is not None else self.plugin()
        self.store.insert(table, [{"run_id": self.run_id, "plugin": plugin,
                                   "plugin_version": version, **row} for row in rows])

    def ranking(self, ranking, objective: str, n_targets: int, error_of) -> None:
        """The ``rankings`` rows of a finished search, best first; ``error_of(ranked)`` is the
        SE of a ranked score measured by this run (None otherwise)."""
        plugin, version = self.plugin()
        metric = "mean" if n_targets > 1 else "score"
        rows = [{"run_id": self.run_id, "task": objective, "metric": metric, "rank": i + 1,
                 "encoder": r.candidate.vision_encoder, "llm": r.candidate.language_model,
                 "score": None if r.score is None or math.isnan(r.score) else r.score,
                 "measured_or_predicted": r.measured_or_predicted, "trial_key": r.trial_key,
                 "sample_ratio": r.sample_ratio, "stage": r.stage, "basis": r.basis,
                 "error": error_of(r), "lower": _finite(r.lower), "upper": _finite(r.upper),
                 "estimate": _finite(r.estimate), "plugin": plugin, "plugin_version": version} for i, r in enumerate(ranking)]
        self.store.insert("rankings", rows)

    def features(self, component_fp: str, dataset, layer: str, compute, n: int, producer=None):
        """(key, features, reused): a component's features on the first ``n`` items of ``dataset``
        at ``layer``, read from the store by content key, else ``compute()``d and stored. Either
        way the features are returned as stored (float16), so a first run and a rerun compute
        the same similarities from them. The use is recorded in ``run_uses``."""
        from harness.store import embedding_key

        key = embedding_key(component=component_fp, dataset=dataset.fingerprint, layer=layer,
                            sample_set={"first": n})
        cached = self.store.get_embedding(key)
        self.store.record_use(self.run_id, "embedding", key, reused=cached is not None,
                              phase=self.use_phase())
        if cached is not None:
            return key, np.asarray(cached, dtype=np.float32), True
        self.executor.missing_embedding(f"the {layer!r} features of component {component_fp[:12]}")
        start = time.perf_counter()
        feats = compute()  # the features, or (features, {"train_samples": k, "train_flops": f})
        feats, spent = feats if isinstance(feats, tuple) else (feats, {})
        if not np.all(np.isfinite(np.asarray(feats, dtype=np.float32))):
            # a broken component (NaN weights, an overflow): nothing is stored, and its
            # similarities come out non-finite, which clustering reads as "unlike everything"
            self.progress.say(f"[red]the {layer!r} features of component {component_fp[:12]} are not finite; "
                     "not stored[/red]", always=True)
            return key, np.asarray(feats, dtype=np.float32), False
        # the component made the features (its plugin), else the strategy that computed them
        plugin, version = (producer.plugin, producer.version) if producer is not None else self.plugin()
        with self.store.transaction():
            self.store.put_embedding(key, feats, component_fingerprint=component_fp,
                                     dataset_fingerprint=dataset.fingerprint, layer=layer,
                                     run_id=self.run_id, plugin=plugin, plugin_version=version,
                                     sample_set={"first": n})
            self.store.insert("feature_costs", [{
                "embedding_key": key, "wall_seconds": time.perf_counter() - start,
                "train_samples": int(spent.get("train_samples", 0)), "train_flops": spent.get("train_flops"),
                "forward_passes": int(np.shape(feats)[0]) if np.ndim(feats) else 0,
                "run_id": self.run_id, "plugin": plugin, "plugin_version": version}], on_conflict="ignore")
        return key, np.asarray(self.store.get_embedding(key), dtype=np.float32), False

    def lazy_features(self, component_fp: str, dataset, layer: str, compute, n: int, producer=None):
        """(key, load): the features' content key now, the features only when ``load()`` is
        called (then as :meth:`features`). A similarity already stored under the key needs no
        features: a replay on a table that ships similarities but not raw embeddings works."""
        from harness.store import embedding_key

        key = embedding_key(component=component_fp, dataset=dataset.fingerprint, layer=layer,
                            sample_set={"first": n})
        cache: dict = {}

        def load():
            if "feats" not in cache:
                try:
                    _, cache["feats"], cache["reused"] = self.features(component_fp, dataset, layer,
                                                                        compute, n, producer)
                except (KeyboardInterrupt, MemoryError, HarnessError):
                    raise  # (a replay's missing features, a store error, a diverged warm-up)
                except Exception as exc:  # noqa: BLE001 - a component's forward failed: that
                    # component is clustered alone and the search goes on
                    stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
                    who = f"plugin {producer.plugin} {producer.version}" if producer is not None else "component"
                    self.progress.say(f"[red]the {layer!r} features of {component_fp[:12]} ({who}) could not be "
                             f"computed: {type(exc).__name__}: {str(exc)[:200]}; clustered alone[/red]",
                             always=True)
                    cache["feats"], cache["reused"] = np.full((1, 1), np.nan, dtype=np.float32), False
                cache["finite"] = bool(np.all(np.isfinite(cache["feats"])))
            return cache["feats"]

        load.cache = cache
        return key, load

    def feature_cost(self, keys) -> dict:
        """What the features under ``keys`` cost when they were computed, reused or not (the
        empty-store price): seconds, training samples and FLOPs, items embedded; and the seconds
        of those computed by this run (already inside its measured phase time)."""
        keys = list(keys)
        out = {"seconds": 0.0, "samples": 0, "flops": 0.0, "forward": 0, "fresh_seconds": 0.0}
        if not keys:
            return out
        marks = ", ".join("?" for _ in keys)
        row = self.store.query(
            "select coalesce(sum(wall_seconds), 0) as s, coalesce(sum(train_samples), 0) as n,"
            " coalesce(sum(train_flops), 0) as f, coalesce(sum(forward_passes), 0) as p,"
            " coalesce(sum(wall_seconds) filter (where run_id = ?), 0) as fresh"
            f" from feature_costs where embedding_key in ({marks})", [self.run_id, *keys])[0]
        return {"seconds": float(row["s"]), "samples": int(row["n"]), "flops": float(row["f"]),
                "forward": int(row["p"]), "fresh_seconds": float(row["fresh"])}

    def record_phase_cost(self, phase: str, seconds: float, samples: int, reused: bool, keys=()) -> None:
        """One ``phase_costs`` row: what the phase computed now (``seconds``, ``samples``) and
        what it costs with an empty store (every feature it used at its original price)."""
        spent = self.feature_cost(keys)
        self.insert("phase_costs", [{
            "phase": phase, "wall_seconds": seconds, "samples_seen": samples, "reused": reused,
            "cost_seconds": spent["seconds"] + max(0.0, seconds - spent["fresh_seconds"]),
            "cost_samples": max(spent["samples"], samples), "cost_flops": spent["flops"],
            "forward_passes": spent["forward"]}])


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
