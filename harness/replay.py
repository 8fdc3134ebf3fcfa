"""Replay: run any search strategy against the trials earlier runs stored, training nothing.

The store is a tabular benchmark (like Syne Tune's blackbox repository): every trial a strategy
asks for is a (candidate, sample ratio, training config, seed) with a content key, so a strategy
can be re-driven from recorded scores. A replay run answers "what would this strategy have found,
and what would it have spent": each trial it needs is looked up among the trials of the source
runs and charged at its original cost (:func:`harness.report.run_cost`).

Replaying a strategy on the results of its own live run makes the same decisions, because every
decision is a pure function of the scores it reads back (see :mod:`harness.policies`).

A needed trial that the source runs did not store stops the replay with :class:`MissingTrial`,
naming it; with ``fill=True`` it is trained instead (and then counts as trained by the replay).
Embeddings for clustering are looked up the same way: a replay computes none unless ``fill`` or
``fill_embeddings`` (features and projector warm-ups cost seconds where trials cost minutes: a
hyperparameter sweep on a stored table can compute them for a new task and still train nothing).
"""

from __future__ import annotations

from harness.contracts import TrialExecutor
from harness.errors import BadInput


def check_seed(seed: int | None, flag: str = "--seed") -> None:
    """Refuse a seed the store cannot hold (BIGINT, the suite's range 0 .. 2^63 - 1) before
    anything is opened or written: one line, exit 2."""
    from harness.suite import MAX_SEED

    if seed is not None and not 0 <= seed <= MAX_SEED:
        shown = str(seed) if len(str(seed)) <= 30 else str(seed)[:27] + "..."
        raise BadInput(f"{flag} {shown}: a seed is an integer from 0 to {MAX_SEED} (2^63 - 1)")


class MissingTrial(BadInput):
    """A replay needs a trial (or embedding) that its source runs did not store."""


class ReplayExecutor(TrialExecutor):
    """Answers trials from the store: only those used by ``sources`` (run ids) count.

    :param fill: train (or compute) what is missing instead of stopping.
    :param fill_embeddings: compute missing embeddings, but stop at a missing trial.
    """

    replay = True

    def __init__(self, store, run_id: str, sources: list[str], fill: bool = False,
                 fill_embeddings: bool = False, **options):
        self.store = store
        self.run_id = run_id
        self.sources = list(sources)
        self.fill = fill
        self.fill_embeddings = fill or fill_embeddings
        self._fingerprints: dict = {}  # ref (or (dataset, samples)) -> fingerprint, this replay's
        known = {r["run_id"] for r in store.query("select run_id from runs")}
        unknown = [s for s in self.sources if s not in known]
        if unknown:
            raise BadInput(f"--from: no run {', '.join(map(repr, unknown))} in the store {store.path}; "
                           "list runs with: harness sql \"select run_id, suite_name, strategy, status "
                           "from runs order by started_at\"")
        marks = ", ".join("?" for _ in self.sources)
        self.keys = {r["key"] for r in store.query(
            f"select distinct key from run_uses where kind = 'trial' and run_id in ({marks})",
            self.sources)}

    def key(self, spec) -> str:
        """The trial's content key; each component and dataset is loaded once per replay for its
        fingerprint (a replay asks for hundreds of trials over a few components)."""
        from harness.trial import (
            key_of,
            load_alignment,
            load_encoder,
            load_language_model,
        )

        fps = self._fingerprints
        for ref, load in ((spec.encoder, load_encoder), (spec.llm, load_language_model)):
            if ref not in fps:
                fps[ref] = load(ref)[1].fingerprint
        data = (spec.alignment, spec.samples)
        if data not in fps:
            fps[data] = load_alignment(spec.alignment, spec.samples, seed=0)[1].fingerprint
        return key_of(spec, fps[spec.encoder], fps[spec.llm], fps[data])

    def run(self, spec, progress=None):
        from harness.trial import run_trial, stored_outcome

        key = self.key(spec)
        if key in self.keys:
            outcome = stored_outcome(spec, key, self.store, self.run_id)
            if outcome is None:  # stored but not scored on a target: run_trial scores it
                outcome = run_trial(spec, self.store, self.run_id, stored_only=True)
            if outcome is not None:
                return outcome
        if not self.fill:
            continued = (f", continued from r={spec.after[-1]:g} (search.continuation: a table of "
                         "trials trained from scratch holds none; set it to false to replay one)"
                         if spec.after else "")
            raise MissingTrial(
                f"replay needs trial {spec.encoder} + {spec.llm} at r={spec.ratio:g}{continued} (seed "
                f"{spec.seed}, key {key[:12]}), which run(s) {', '.join(self.sources)} did not store; "
                "run again with --fill to train it, or replay from runs that have it")
        return run_trial(spec, self.store, self.run_id, progress=progress)

    def missing_embedding(self, what: str) -> None:
        """Called by a strategy before it computes features a replay should have found."""
        if not self.fill_embeddings:
            raise MissingTrial(f"replay needs {what}, which the store does not hold; run again with "
                               "--fill-embeddings to compute it (trains no trial), or replay from "
                               "runs that computed it")
