"""Mordal (arXiv 2502.00241): cluster, then successive halving over clusters, then successive
halving and an observational scaling law inside the best clusters.

Choices where the paper is vague (also in the closing note):
- Encoder representation: the encoder's patch tokens on ``clustering.samples`` images of the
  target task's *train* split (an lmms target: its validation split, else train, never test;
  alignment images when it has neither), standardised per
  (token, feature) and flattened per image, compared with the suite's similarity metric (linear
  CKA by default). Token-level rather than mean-pooled: mean pooling mostly tracks the raw
  pixels' colour layout (measured on this test bed).
- LLM representation: per encoder cluster, through its medoid encoder and a projector warmed up
  for ``warmup_steps`` steps (LLM frozen), the LLM's last hidden state averaged over the prompt
  (image tokens + question).
- Thresholds ``t_ve`` / ``t_llm`` are similarity floors by default (the paper's reading,
  ``clustering.threshold_kind: min_similarity``), or distance cut-offs (``max_distance``); either
  becomes a cut of the dendrogram of 1 - similarity, or of the metric itself when it is a
  distance (``similarity: gw``).
- Multi-target suites are searched on the mean score over targets.
- Ranking: survivors by predicted full-data score; then the rest by elimination order (later
  eliminated first; within a rung by that rung's score); an eliminated cluster's unevaluated
  members follow its medoid.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from harness.plugins.strategies.clustering import Cluster, candidate_clusters, cluster, singletons
from harness.contracts import build_policy, metric_options
from harness.errors import HarnessError, stop_if_interrupted
from harness.policies import drive
from harness.predictors import fit_until_loglinear, prediction_interval, scaling_ratios
from harness.strategy import RankedCandidate, SearchStrategy, best_first
from harness.plugins.strategies.gw_prescreen import ENCODER_LAYER, encoder_token_features
from harness.suite import Candidate
from harness.trial import ComponentFailed


class MordalSearch(SearchStrategy):
    name = "mordal"

    def search(self) -> list[RankedCandidate]:
        cfg = self.plan.search
        encoders = list(self.plan.encoders)
        llms = list(self.plan.llms)

        if cfg.clustering.enabled:
            enc_clusters = self.cluster_encoders(encoders)
            llm_clusters = {c.medoid: self.cluster_llms(c.medoid, llms) for c in enc_clusters}
        else:
            enc_clusters = singletons(encoders)
            llm_clusters = {e: singletons(llms) for e in encoders}
        clusters = candidate_clusters(enc_clusters, llm_clusters)
        by_medoid = {Candidate(*c.medoid): c for c in clusters}

        # inter-cluster: the medoid candidate of every cluster (or its best representative),
        # down to the top-K clusters
        self._reps = {m: self.representatives(c) for m, c in by_medoid.items()}
        inter_policy = self.policy("inter")
        inter_plan = inter_policy.plan(len(by_medoid), cfg.inter.top_k)
        self.phase("inter-cluster", total=sum(r.n_in for r in inter_plan) or None)
        inter = drive(inter_policy, list(by_medoid), cfg.inter.top_k, self.evaluate_cluster,
                      errors=lambda m, r: self.score_error(self.best_representative(m, r), r),
                      baseline=self.constant_baseline,
                      prefetch=lambda pairs: self.prefetch(
                          [(rep, r) for m, r in pairs for rep in self._reps[m]]),
                      name=self.policy_label("inter"))
        self.record_rungs("inter", inter, self._reps)

        # intra-cluster: every candidate of the surviving clusters, down to the top-K'
        members = sorted({m for med in inter.survivors for m in by_medoid[med].members})
        members = [Candidate(*m) for m in members]
        intra_policy = self.policy("intra")
        intra_plan = intra_policy.plan(len(members), cfg.intra.top_k)
        self.phase("intra-cluster", total=sum(r.n_in for r in intra_plan) or None)
        intra = drive(intra_policy, members, cfg.intra.top_k, self.evaluate,
                      errors=self.score_error, baseline=self.constant_baseline,
                      prefetch=self.prefetch, name=self.policy_label("intra"))
        self.record_rungs("intra", intra)

        # the survivors' full-data scores: predicted from small ratios, or measured at r = 1
        survivors = list(intra.survivors)
        ranked = self.predict(survivors) if cfg.predictor.enabled else self.measure(survivors)
        ranked = self.confirm(ranked)
        top = len(ranked)
        ranked += self.eliminated(intra, exclude={r.candidate for r in ranked})
        ranked += self.untried(intra.untried, exclude={r.candidate for r in ranked})
        ranked += self.eliminated_clusters(inter, by_medoid, exclude={r.candidate for r in ranked})
        if cfg.rank_below == "estimate":
            ranked = ranked[:top] + self.by_estimate(ranked[:top], ranked[top:], by_medoid)
        return ranked

    # -- clusters judged by more than their medoid ---------------------------------------------

    def representatives(self, cluster) -> list[Candidate]:
        """The members that stand for ``cluster`` in the inter-cluster stage: the medoid, then
        (``clustering.representatives`` > 1) the members farthest from it."""
        from harness.plugins.strategies.clustering import farthest_members

        k = self.plan.search.clustering.representatives
        medoid = Candidate(*cluster.medoid)
        if k <= 1 or len(cluster.members) < 2:
            return [medoid]
        sims = getattr(self, "_sims", {})
        enc = sims.get(("encoder", None))
        llm = sims.get(("llm", cluster.medoid[0]))

        def far(a, b, table):
            if a == b:
                return 0.0
            if table is None:  # not clustered at this level: as far as can be
                return 1.0
            names, sim = table
            return 1.0 - float(sim[names.index(a), names.index(b)])

        def distance(a, b):
            return far(a[0], b[0], enc) + far(a[1], b[1], llm)

        return [Candidate(*m) for m in
                farthest_members(list(cluster.members), cluster.medoid, distance, k)]

    def best_representative(self, medoid: Candidate, ratio: float) -> Candidate:
        """The representative of ``medoid``'s cluster with the best score at ``ratio``."""
        reps = self._reps.get(medoid, [medoid])
        if len(reps) == 1:
            return reps[0]
        return min(reps, key=lambda c: best_first(self.evaluate(c, ratio), c))

    def evaluate_cluster(self, medoid: Candidate, ratio: float) -> float:
        """A cluster's score at ``ratio``: the best of its representatives (its medoid's alone
        with ``clustering.representatives: 1``)."""
        return self.evaluate(self.best_representative(medoid, ratio), ratio)

    # -- the final stage -----------------------------------------------------------------------

    def confirm(self, ranked: list[RankedCandidate]) -> list[RankedCandidate]:
        """``predictor.confirm``: measure at r = 1 the survivors whose 95% interval overlaps the
        leader's (the leader first when it is predicted), at most that many trials; the
        survivors are then ordered by measured or predicted score."""
        budget = self.plan.search.predictor.confirm
        if budget <= 0 or len(ranked) < 2:
            return ranked

        def interval(r: RankedCandidate) -> tuple[float, float]:
            if r.measured_or_predicted == "predicted":
                lo = r.score if r.lower is None else r.lower
                hi = r.score if r.upper is None else r.upper
                return lo, hi
            half = 1.96 * self.score_error(r.candidate, 1.0)
            return r.score - half, r.score + half

        if math.isnan(ranked[0].score):
            return ranked
        lo, hi = interval(ranked[0])
        tied = [ranked[0]] + [r for r in ranked[1:] if not math.isnan(r.score)
                              and interval(r)[1] >= lo and interval(r)[0] <= hi]
        todo = [r.candidate for r in tied if r.measured_or_predicted == "predicted"][:budget]
        if len(tied) < 2 or not todo:
            return ranked
        self.phase("confirm overlapping survivors", total=len(todo))
        self.say("confirming at r=1 (intervals overlap the leader's): "
                 + ", ".join(str(c) for c in todo), always=True)
        self.prefetch([(c, 1.0) for c in todo])
        out = []
        for r in ranked:
            if r.candidate in todo:
                out.append(RankedCandidate(r.candidate, self.evaluate(r.candidate, 1.0), "measured",
                                           self._outcomes[(r.candidate, 1.0)].key, stage="survivor"))
            else:
                out.append(r)
        return sorted(out, key=_best_first)

    # -- the ranking below the survivors ------------------------------------------------------

    def by_estimate(self, top: list[RankedCandidate], below: list[RankedCandidate],
                    by_medoid: dict) -> list[RankedCandidate]:
        """``search.rank_below: estimate``: the candidates below the survivors, ordered by an
        estimated full-data score (:func:`estimate_full_scores` over every score this run has);
        a never-trained member of a dropped cluster takes its medoid's estimate, after it."""
        scores: dict = {}
        for (c, r), outcome in self._outcomes.items():
            if outcome.status == "done":
                scores.setdefault(c, {})[r] = self.evaluate(c, r)
        final = {r.candidate: r.score for r in top if not math.isnan(r.score)}
        estimate = estimate_full_scores(scores, final)
        medoid_of = {Candidate(*m): med for med, cl in by_medoid.items() for m in cl.members}
        out = []
        for i, r in enumerate(below):
            value = estimate.get(r.candidate)
            trained = value is not None
            if value is None:
                value = estimate.get(medoid_of.get(r.candidate))
            out.append((value is None, -(value or 0.0), not trained, i,
                        dataclasses.replace(r, estimate=value)))
        return [row[-1] for row in sorted(out, key=lambda row: row[:4])]

    # -- stages -----------------------------------------------------------------------------------

    def policy(self, stage: str):
        """The stage's stopping policy, built as its contract says
        (:func:`harness.contracts.build_policy`): the stage settings it declares, its options."""
        options = getattr(self.plan.search, stage)
        entry = self.components["stopping_policy"].get(self.plan.search.policy(stage))
        settings = {"eta": options.eta, "min_ratio": options.min_ratio, "tie_z": options.tie_z,
                    "uninformative": options.uninformative}
        return build_policy(entry.load(), settings, options.options)

    def policy_label(self, stage: str) -> str:
        """The stage's policy as the user knows it, for the errors that name it."""
        name = self.plan.search.policy(stage)
        entry = self.components["stopping_policy"].get(name)
        return f"{name!r} (plugin {entry.plugin} {entry.version})"

    def record_rungs(self, phase: str, stage, reps: dict | None = None) -> None:
        """One ``rungs`` row per candidate a rung trained; with ``reps`` (item -> the members
        that stand for its cluster), one per representative, each with its own score."""
        rows = []
        for result in stage.rungs:
            if getattr(result, "why", ""):
                self.say(f"{phase} rung {result.rung.index} (r={result.rung.ratio:g}): {result.why}",
                         always=True)
            pairs = [(item, c) for item in result.candidates for c in (reps or {}).get(item, [item])]
            for item, candidate in pairs:
                outcome = self._outcomes.get((candidate, result.rung.ratio))
                score = self.evaluate(candidate, result.rung.ratio) if outcome is not None else math.nan
                rows.append({"phase": phase, "rung": result.rung.index,
                             "encoder": candidate.vision_encoder, "llm": candidate.language_model,
                             "task": self.objective, "sample_ratio": result.rung.ratio,
                             "budget": result.rung.ratio,
                             "score": None if math.isnan(score) else score,
                             "error": (self.score_error(candidate, result.rung.ratio)
                                       if outcome is not None else None),
                             "note": getattr(result, "why", "") or None,
                             "kept": item in result.kept,
                             "trial_key": outcome.key if outcome else None})
        if rows:
            # the policy made the decisions: its plugin (`none` when early stopping is off)
            policy = self.components["stopping_policy"].get(self.plan.search.policy(phase))
            self.insert("rungs", rows, producer=policy)

    def predict(self, survivors: list[Candidate]) -> list[RankedCandidate]:
        cfg = self.plan.search.predictor
        made_by = self.components["predictor"].get(cfg.name)  # fits and predictions are its rows
        predictor = made_by.load()(**cfg.options)  # options as its Options model validated them
        ratios = scaling_ratios(cfg.r0, cfg.points)
        self.phase("scaling prediction", total=len(survivors) * len(ratios))
        self.prefetch([(c, r) for c in survivors for r in ratios
                       if not (self._outcomes.get((c, 1.0)) and self._outcomes[(c, 1.0)].status == "done")])
        ranked = []
        for candidate in survivors:
            full = self._outcomes.get((candidate, 1.0))
            if full is not None and full.status == "done":  # a rung already trained it on all the data
                ranked.append(self._measured_at(candidate, 1.0))
                continue
            scores = [self.evaluate(candidate, r) for r in ratios]
            # every score the run has for it: the predictor's ratios and every rung that trained it
            own = {r: s for r, (s, _) in self.measured_scores(candidate).get(candidate, {}).items()}
            own.update(zip(ratios, scores))
            points = sorted((r, s) for r, s in own.items() if not math.isnan(s))
            base = {"encoder": candidate.vision_encoder, "llm": candidate.language_model,
                    "task": self.objective, "metric": "score"}
            self.insert("scaling_points", [
                {**base, "sample_ratio": r, "score": s,
                 "trial_key": self._outcomes[(candidate, r)].key} for r, s in points])
            if len(points) < 2:
                ranked.append(RankedCandidate(candidate, math.nan, "predicted", stage="survivor"))
                continue
            try:
                fit, points, extra = fit_until_loglinear(
                    predictor, points, lambda r, c=candidate: self.evaluate(c, r), min_r2=cfg.min_r2,
                    error_of=lambda r, c=candidate: self.score_error(c, r), baseline=self.constant_baseline)
            except (HarnessError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - the predictor plugin's failure, named
                stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
                ranked.append(self._unpredicted(candidate, points, f"raised {type(exc).__name__}: "
                                                f"{str(exc)[:200]} fitting", made_by))
                continue
            added = [(r, s) for r, s in points if r in extra]
            if added:
                self.say(f"{candidate}: not log-linear (R^2 < {cfg.min_r2:g}), trained at "
                         + ", ".join(f"r={r:g}" for r in extra))
                self.insert("scaling_points", [
                    {**base, "sample_ratio": r, "score": s,
                     "trial_key": self._outcomes[(candidate, r)].key} for r, s in added])
            if points[-1][0] >= 1.0:  # trained to the full data: measured, not predicted
                ranked.append(self._measured_at(candidate, 1.0))
                continue
            r_top, s_top = points[-1]
            try:
                value = predictor.predict(fit, 1.0)
                falls = usable_prediction(value, fit) and value < predictor.predict(fit, r_top) - 1e-12
                if usable_prediction(value, fit) and not falls:
                    lower, upper = prediction_interval(predictor, points,
                                                       [self.score_error(candidate, r) for r, _ in points],
                                                       baseline=self.constant_baseline)
            except (HarnessError, KeyboardInterrupt, MemoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - the predictor plugin's failure, named
                stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
                value = f"raised {type(exc).__name__}: {str(exc)[:200]}"
            if not usable_prediction(value, fit):
                # refused at the boundary: nothing stored; the candidate keeps its largest
                # measured score, which is what the run knows of it
                what = value if isinstance(value, str) else f"returned {value!r}"
                ranked.append(self._unpredicted(candidate, points, f"{what} (params {fit.params})", made_by))
                continue
            self.insert("scaling_fits", [{**base, "predictor": cfg.name, "a": fit.params.get("a"),
                                          "b": fit.params.get("b"), "r2": fit.r2,
                                          "params": fit.params, "n_points": len(points)}], producer=made_by)
            if falls:
                # a law that says more data makes it worse is not trusted beyond the measured
                # range: the candidate is ranked by its largest-ratio measurement, no prediction
                self.say(f"{candidate}: its {cfg.name} fit falls with more data ({value:.4f} at r=1 "
                         f"below {s_top:.4f} measured at r={r_top:g}); ranked by that measurement",
                         always=True)
                ranked.append(self._measured_at(candidate, r_top))
                continue
            self.insert("predictions", [{**base, "sample_ratio": 1.0, "predicted_score": value,
                                         "lower": lower, "upper": upper, "predictor": cfg.name}],
                        producer=made_by)
            if value < s_top:
                # the law predicts less than the candidate already measured at r_top: the
                # measurement is the better estimate (more data does not lower a score by the law)
                ranked.append(self._measured_at(candidate, r_top))
                continue
            ranked.append(RankedCandidate(candidate, value, "predicted", stage="survivor",
                                          lower=lower, upper=upper))
        return sorted(ranked, key=_best_first)

    def _unpredicted(self, candidate: Candidate, points, what: str, entry) -> RankedCandidate:
        """A survivor the predictor failed on: named in one line, ranked by its largest
        measured score (what the run knows of it); nothing is stored for the prediction."""
        r_top, s_top = points[-1]
        self.say(f"[red]predictor {entry.name!r} (plugin {entry.plugin} {entry.version}) {what} for "
                 f"{candidate}; its r={r_top:g} score ranks it instead[/red]", always=True)
        return self._measured_at(candidate, r_top)

    def _measured_at(self, candidate: Candidate, ratio: float) -> RankedCandidate:
        """A survivor ranked by its score measured at ``ratio``."""
        return RankedCandidate(candidate, self.evaluate(candidate, ratio), "measured",
                               self._outcomes[(candidate, ratio)].key, sample_ratio=ratio,
                               stage="survivor")

    def measure(self, survivors: list[Candidate]) -> list[RankedCandidate]:
        self.phase("full-data survivors", total=len(survivors))
        self.prefetch([(c, 1.0) for c in survivors])
        ranked = [self._measured_at(c, 1.0) for c in survivors]
        return sorted(ranked, key=_best_first)

    def untried(self, candidates, exclude: set, label: str = "eliminated-intra") -> list[RankedCandidate]:
        """Candidates a policy never evaluated (Hyperband's brackets may not draw every one)."""
        return [RankedCandidate(c, math.nan, "measured", sample_ratio=None, stage=label)
                for c in sorted(candidates) if c not in exclude]

    def eliminated(self, stage, exclude: set, label: str = "eliminated-intra") -> list[RankedCandidate]:
        """Dropped candidates, later eliminated first: by the ratio of the rung that dropped them
        (highest first; for SHA the rung order, for Hyperband across its brackets), then score."""
        out = []
        for result in sorted(stage.rungs, key=lambda r: (r.rung.ratio, r.rung.index), reverse=True):
            dropped = [c for c in result.candidates if c not in result.kept and c not in exclude]
            for c in sorted(dropped, key=lambda c: best_first(result.scores[c], c)):
                out.append(RankedCandidate(c, result.scores[c], "measured",
                                           self._outcomes[(c, result.rung.ratio)].key,
                                           sample_ratio=result.rung.ratio, stage=label))
                exclude.add(c)
        return out

    def eliminated_clusters(self, inter, by_medoid, exclude: set) -> list[RankedCandidate]:
        out = []
        dropped_medoids = (self.eliminated(inter, set(), label="eliminated-inter")
                           + self.untried(inter.untried, set(), label="eliminated-inter"))
        for dropped in dropped_medoids:
            medoid = dropped.candidate
            ratio = dropped.sample_ratio
            reps = getattr(self, "_reps", {}).get(medoid, [medoid])
            if ratio is not None and len(reps) > 1:  # each representative by its own score
                tried = sorted(reps, key=lambda c: best_first(self.evaluate(c, ratio), c))
                for rep in tried:
                    if rep not in exclude:
                        exclude.add(rep)
                        out.append(RankedCandidate(rep, self.evaluate(rep, ratio), "measured",
                                                   self._outcomes[(rep, ratio)].key,
                                                   sample_ratio=ratio, stage="eliminated-inter"))
            elif medoid not in exclude:
                exclude.add(medoid)
                out.append(dropped)
            for member in sorted(Candidate(*m) for m in by_medoid[medoid].members):
                if member not in exclude:  # never trained: ranked with its cluster, no score
                    exclude.add(member)
                    out.append(RankedCandidate(member, math.nan, "measured", sample_ratio=None,
                                               stage="eliminated-inter"))
        return out

    # -- clustering -------------------------------------------------------------------------------

    def clustering_data(self):
        """(dataset, items) whose images and questions represent the target task: the first
        target's (:meth:`feature_data`). A multi-target suite is searched on the mean score but
        clustered on its first target's items: clustering per target would be one search per
        target (run a suite per target for that), and a union of the targets' items would need
        features the shipped table does not hold (it has them per task)."""
        return self.feature_data(self.targets[0].task, self.plan.search.clustering.samples)

    def _similarities(self, names: list[str], feats: dict, keys: dict, fps: dict) -> np.ndarray:
        """The suite's metric between every pair of ``names``, as stored: read from the store by
        similarity key, else computed and stored. The diagonal is a component's value with
        itself: 1 for a similarity (CKA), 0 for a distance (``is_distance=True`` at registration, GW)."""
        from harness.store import similarity_key

        metric_name = self.plan.search.similarity
        entry = self.components["similarity_metric"].get(metric_name)
        metric = entry.load()
        options = similarity_options(entry, self.plan.search.clustering)
        plugin, version = entry.plugin, entry.version  # the metric made the value
        closer = entry.higher_is_closer
        sim = np.eye(len(names)) if closer else np.zeros((len(names), len(names)))
        refused = []
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                b = names[j]
                key = similarity_key(metric=metric_name, a=keys[a], b=keys[b], config=options or None,
                                     producer=entry.producer)
                value = self.store.get_similarity(key)
                self.store.record_use(self.run_id, "similarity", key, reused=value is not None,
                                      phase=self.use_phase)
                if value is None:  # only now are the features needed (feats: lazy loaders)
                    fa, fb = _loaded(feats[a]), _loaded(feats[b])
                    if not (np.all(np.isfinite(fa)) and np.all(np.isfinite(fb))):
                        value = math.nan  # a broken component: clustered alone, the metric is not at fault
                    else:
                        try:
                            value = float(metric(fa, fb, **options))
                        except (KeyboardInterrupt, MemoryError):
                            raise
                        except Exception as exc:  # noqa: BLE001 - the metric plugin's failure
                            stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
                            value = f"{type(exc).__name__}: {str(exc)[:120]}"
                    if not isinstance(value, float) or not math.isfinite(value):  # non-finite features (a broken component) or a
                        # broken metric: not stored; the component is then clustered alone
                        sim[i, j] = sim[j, i] = 0.0 if closer else 1.0
                        if not (isinstance(value, float) and math.isnan(value)
                                and not (np.all(np.isfinite(fa)) and np.all(np.isfinite(fb)))):
                            refused.append((a, b, value))
                        continue
                    self.store.put_similarity(key, value, metric=metric_name, a=fps[a], b=fps[b],
                                              run_id=self.run_id, plugin=plugin,
                                              plugin_version=version, a_embedding=keys[a],
                                              b_embedding=keys[b], config=options or None)
                sim[i, j] = sim[j, i] = value
        if refused:
            a, b, value = refused[0]
            self.say(f"[red]similarity metric {metric_name!r} (plugin {entry.plugin} {entry.version}) "
                     f"{f'returned {value!r}' if isinstance(value, float) else f'raised {value}'} for "
                     f"{len(refused)} pair(s) (e.g. {a} vs {b}): not stored; "
                     "those components are clustered apart[/red]", always=True)
        return sim

    def _record_clusters(self, level: str, clusters: list[Cluster], threshold: float,
                         fps: dict, context: str | None = None) -> None:
        rows = [{"level": level, "context": context or "", "cluster_id": i, "member": m, "member_fingerprint": fps.get(m),
                 "is_medoid": m == c.medoid, "threshold": threshold,
                 "linkage": self.plan.search.clustering.linkage,
                 "metric": self.plan.search.similarity}
                for i, c in enumerate(clusters) for m in c.members]
        self.insert("clusters", rows)


    def cluster_encoders(self, encoders: list[str]) -> list[Cluster]:
        from harness.trial import load_encoder

        start = time.perf_counter()
        dataset, items = self.clustering_data()
        self.phase("cluster encoders", total=len(encoders))
        self.use_phase = "cluster-encoders"
        feats, keys, fps, all_reused = {}, {}, {}, True
        self._encoders = {}
        broken = []
        for ref in encoders:
            self.say(f"encoder features: {ref}")
            try:
                entry, encoder = load_encoder(ref)
            except ComponentFailed as exc:  # its candidates fail when trained; the search goes on
                self.say(f"[red]{exc}[/red]: clustered alone", always=True)
                broken.append(ref)
                continue
            self._encoders[ref] = encoder
            fps[ref] = encoder.fingerprint

            keys[ref], feats[ref] = self._lazy_features(
                fps[ref], dataset, ENCODER_LAYER, lambda encoder=encoder: encoder_token_features(encoder, items),
                self.plan.search.clustering.samples, producer=entry)
            self.progress.advance()
        return self._cluster_and_record("encoder", [e for e in encoders if e not in broken], feats,
                                        keys, fps, self.plan.search.clustering.distance_cut("encoder"),
                                        "cluster-encoders", start, 0, all_reused, alone=broken)

    def cluster_llms(self, encoder_ref: str, llms: list[str]) -> list[Cluster]:
        import torch

        from harness.store import content_key
        from harness.training import TrainConfig, TrainingFailed, resolve_device, train
        from harness.trial import (
            build_vlm,
            examples_from,
            load_alignment,
            load_language_model,
            n_params,
        )
        from harness.vlm import Conversation

        start = time.perf_counter()
        if encoder_ref not in self._encoders or encoder_ref in getattr(self, "_alone", set()):
            return singletons(llms)  # an encoder that failed to load or gives non-finite features
        dataset, items = self.clustering_data()
        warm = self.plan.search.clustering.warmup_steps
        encoder = self._encoders[encoder_ref]
        self.phase(f"cluster LLMs via {encoder_ref}", total=len(llms))
        self.use_phase = f"cluster-llms@{encoder_ref}"
        feats, keys, fps, all_reused, samples = {}, {}, {}, True, 0
        cache = self.__dict__.setdefault("_llms", {})  # loaded once, used frozen in every context
        broken = []
        for ref in llms:
            self.say(f"LLM features via {encoder_ref}: {ref}")
            if ref not in cache:
                try:
                    cache[ref] = load_language_model(ref)[1]
                except ComponentFailed as exc:
                    self.say(f"[red]{exc}[/red]: clustered alone", always=True)
                    cache[ref] = None
            lm = cache[ref]
            if lm is None:
                broken.append(ref)
                continue
            fp = content_key({"encoder": encoder.fingerprint, "llm": lm.fingerprint,
                              "warmup_steps": warm, "projector": self.train_config.projector,
                              "lr": self.train_config.lr, "seed": self.plan.seed})
            fps[ref] = lm.fingerprint

            def compute(lm=lm, ref=ref):
                nonlocal samples
                config = TrainConfig(projector=self.train_config.projector, llm="frozen",
                                     lr=self.train_config.lr, batch_size=self.train_config.batch_size,
                                     steps=max(1, warm), schedule="constant", warmup=0.0)
                spec = self.spec(Candidate(encoder_ref, ref), 1.0)
                vlm, _ = build_vlm(dataclasses.replace(spec, train=config), encoder, lm)
                _, align = load_alignment(self.plan.alignment,
                                          min(512, self.plan.samples or 512), seed=0)
                spent = {}
                if warm > 0:
                    result = train(vlm, examples_from(align), config, seed=self.plan.seed,
                                   device=str(resolve_device(self.plan.device)))
                    samples += result.samples_seen
                    spent = {"train_samples": result.samples_seen,
                             "train_flops": result.samples_seen * (2.0 * n_params(encoder) + 6.0 * n_params(lm))}
                vlm.eval()
                out = []
                with torch.no_grad():
                    for i in range(0, len(items), 64):
                        chunk = items[i:i + 64]
                        pixels = torch.stack([encoder.transform(it.image) for it in chunk])
                        inputs = vlm.build_inputs(pixels.to(next(vlm.projector.parameters()).device),
                                                  [Conversation(it.prompt) for it in chunk],
                                                  with_answer=False)
                        inputs.pop("labels")
                        hidden = vlm.llm(**inputs, output_hidden_states=True).hidden_states[-1]
                        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                        out.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu())
                return torch.cat(out).numpy(), spent

            keys[ref], feats[ref] = self._lazy_features(fp, dataset, "llm-last-hidden", compute,
                                                        self.plan.search.clustering.samples,
                                                        producer=self.components["language_model"].resolve(ref)[0])
            self.progress.advance()
        try:
            return self._cluster_and_record("llm", [m for m in llms if m not in broken], feats, keys, fps,
                                            self.plan.search.clustering.distance_cut("llm"),
                                            f"cluster-llms@{encoder_ref}", start, lambda: samples,
                                            all_reused, context=encoder_ref, alone=broken)
        except TrainingFailed as exc:  # the projector warm-up diverged through this encoder
            self.say(f"[red]LLM features via {encoder_ref}: {exc}; its LLMs are not clustered[/red]",
                     always=True)
            return singletons(llms)

    def _cluster_and_record(self, level, names, feats, keys, fps, threshold, phase, start,
                            samples, all_reused, context=None, alone=()) -> list[Cluster]:
        """Similarities -> clusters cut at distance ``threshold``; clusters and the phase's cost
        recorded (the ``clusters.threshold`` column holds that distance cut).

        :func:`harness.plugins.strategies.clustering.cluster` cuts the dendrogram of 1 - similarity. A distance
        metric (registered ``is_distance=True``, e.g. ``gw``) is handed over as 1 - distance, so
        the cut is on the distance itself (GW distances between feature distance matrices scaled
        to [0, 1], see :mod:`harness.plugins.similarity.gromov`). ``Clustering.distance_cut`` turns the suite's
        ``t_ve`` / ``t_llm`` into that cut under its ``threshold_kind``. Components in ``alone``
        (they failed to load) are clusters of their own, recorded with the rest.
        """
        values = self._similarities(names, feats, keys, fps)
        bad = [n for n in names if getattr(feats[n], "cache", {}).get("finite") is False]
        if bad:  # components whose features are not finite: each a cluster of its own
            self.say(f"[red]{phase}: {', '.join(bad)}: non-finite features; clustered alone[/red]",
                     always=True)
            keep = [i for i, n in enumerate(names) if n not in bad]
            values = values[np.ix_(keep, keep)]
            names, alone = [names[i] for i in keep], list(alone) + bad
            self.__dict__.setdefault("_alone", set()).update(bad)
        if not names:  # nothing left to compare
            clusters = singletons(alone)
            self._record_clusters(level, clusters, threshold, fps, context=context)
            return clusters
        # features are loaded only for similarities the store lacked: reused unless one was computed
        all_reused = all(getattr(f, "cache", {}).get("reused", True) for f in feats.values())
        samples = samples() if callable(samples) else samples
        entry = self.components["similarity_metric"].get(self.plan.search.similarity)
        sim = values if entry.higher_is_closer else 1.0 - values
        self.__dict__.setdefault("_sims", {})[(level, context)] = (list(names), sim)
        clusters = cluster(names, sim, threshold, self.plan.search.clustering.linkage) + singletons(alone)
        self._record_clusters(level, clusters, threshold, fps, context=context)
        self.record_phase_cost(phase, time.perf_counter() - start, samples, all_reused, keys.values())
        return clusters


def _loaded(features):
    """Features given as an array, or as a loader (:meth:`SearchStrategy._lazy_features`)."""
    return features() if callable(features) else features


def similarity_options(entry, clustering) -> dict:
    """Keyword options the suite gives a similarity metric, by what its registration says it
    takes (``takes=``; never by its name or signature): ``minibatch`` (and a fixed batching
    seed) from ``clustering.cka_batch``. They are part of the similarity's content key; no
    options keeps the key of the plain metric."""
    return metric_options(entry.takes, clustering.cka_batch)


def usable_prediction(value, fit) -> bool:
    """A predictor's output the core accepts: a finite number, from a fit whose numeric
    parameters are finite (a NaN would rank first or be stored as ``{"a": NaN}``)."""
    params = [v for v in (getattr(fit, "params", None) or {}).values()
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and all(math.isfinite(v) for v in params))


def estimate_full_scores(scores: dict, final: dict, direct_min: int = 3) -> dict:
    """An estimated full-data (r = 1) score for every candidate in ``scores`` ({candidate:
    {ratio: score}}): its score at its largest ratio plus the median gain from that ratio to
    r = 1. ``final`` holds the full-data scores the run has (measured, or predicted for
    survivors), which count as r = 1 scores. The gain from ratio r is the median of
    (full - score at r) over candidates that have both when at least ``direct_min`` do; else
    the median step to the next larger ratio plus that ratio's gain (so one survivor's curve is
    not the only evidence); 0 when nothing links r to r = 1. A candidate with a full-data score
    keeps it."""
    import statistics

    full = {c: v for c, v in final.items() if v is not None and not math.isnan(v)}
    for c, by_ratio in scores.items():
        if c not in full and not math.isnan(by_ratio.get(1.0, math.nan)):
            full[c] = by_ratio[1.0]
    ratios = sorted({r for by_ratio in scores.values() for r in by_ratio if r < 1.0})
    gain: dict = {}
    for i in reversed(range(len(ratios))):
        r = ratios[i]
        direct = [full[c] - s[r] for c, s in scores.items()
                  if c in full and not math.isnan(s.get(r, math.nan))]
        chained = None
        for r2 in ratios[i + 1:]:
            steps = [s[r2] - s[r] for s in scores.values()
                     if not math.isnan(s.get(r, math.nan)) and not math.isnan(s.get(r2, math.nan))]
            if steps:
                chained = statistics.median(steps) + gain[r2]
                break
        if len(direct) >= direct_min or (direct and chained is None):
            gain[r] = statistics.median(direct)
        else:
            gain[r] = 0.0 if chained is None else chained
    out = dict(full)
    for c, by_ratio in scores.items():
        if c in out:
            continue
        seen = [r for r in sorted(by_ratio) if r < 1.0 and not math.isnan(by_ratio[r])]
        if seen:
            out[c] = by_ratio[seen[-1]] + gain[seen[-1]]
    return out


def _best_first(r: RankedCandidate) -> tuple:
    return best_first(r.score, r.candidate)
