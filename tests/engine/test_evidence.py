"""The pick follows the evidence (issue 30): whatever the rung data, the real Mordal strategy's
ranking puts no candidate above another whose full-data estimate is higher, and the pick is never
below any candidate's largest-ratio measurement. The world is a table of random scores answered
by an executor (the contract a replay answers trials through), so no model trains."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.evidence import order_by_evidence
from harness.scoring import TaskScore
from harness.strategies.base import RankedCandidate
from harness.suite import Candidate, Suite
from harness.trial import TrialOutcome

ENCODERS = ["mini:clip-vit-s", "mini:sup-resnet", "mini:simclr-vit"]
LLMS = ["mini:llama-mixed", "mini:qwen2-mixed", "mini:gpt2-mixed"]
RATIOS = [0.0625, 0.125, 0.25, 0.5, 1.0]
N_ITEMS = 200


def suite(intra_top_k: int = 1, predictor: bool = True, intra_min_ratio: float = 0.25) -> Suite:
    return Suite.model_validate({
        "name": "evidence", "seed": 0,
        "zoo": {"vision_encoders": ENCODERS, "language_models": LLMS},
        "alignment": {"dataset": "shapes:align", "samples": 1200},
        "targets": [{"task": "shapes:count", "limit": N_ITEMS}],
        "search": {"strategy": "mordal",
                   "clustering": {"enabled": False},
                   "inter": {"policy": "sha", "eta": 2, "top_k": 3, "min_ratio": 0.125},
                   "intra": {"policy": "sha", "eta": 2, "top_k": intra_top_k, "min_ratio": intra_min_ratio},
                   "predictor": {"enabled": predictor, "name": "loglinear", "r0": 0.25, "points": 2}},
    })


class TableExecutor:
    """Answers each trial from ``table`` ((encoder, llm, ratio) -> accuracy): a world of
    recorded scores, like a replay's."""

    def __init__(self, table):
        self.table = table

    def run(self, spec, progress=None):
        value = self.table[(spec.encoder, spec.llm, spec.ratio)]
        return TrialOutcome(key=f"{spec.encoder}|{spec.llm}|{spec.ratio}", status="done", reused=False,
                            trained=True, scores=[TaskScore("shapes:count", "exact_match", value, N_ITEMS)],
                            samples_seen=int(1200 * spec.ratio))


def search(tmp_path, table, **kw):
    from harness.store import Store
    from harness.strategies.mordal import MordalSearch

    s = suite(**kw)
    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.start_run(suite_name=s.name, suite_hash=s.fingerprint(), strategy="mordal",
                                 seed=0, config=s.model_dump(mode="json"), plugin="harness",
                                 plugin_version="test")
        strategy = MordalSearch(suite=s, store=store, run_id=run_id, executor=TableExecutor(table))
        ranking = strategy.run()
        stored = store.query("select rank, encoder, llm, score from rankings where run_id = ? order by rank",
                             [run_id])
        strategy.rungs = store.query("select phase, rung, sample_ratio, encoder, llm, score, kept from rungs"
                                     " where run_id = ? order by phase, rung", [run_id])
        strategy.predictions = store.query("select encoder, llm, predicted_score from predictions"
                                           " where run_id = ?", [run_id])
        return strategy, ranking, stored


scores = st.integers(0, N_ITEMS).map(lambda k: k / N_ITEMS)


@st.composite
def tables(draw):
    return {(e, m, r): draw(scores) for e in ENCODERS for m in LLMS for r in RATIOS}


@given(table=tables(), intra_top_k=st.sampled_from([1, 2]), intra_min_ratio=st.sampled_from([0.25, 0.5]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_pick_is_never_below_a_measured_score(tmp_path_factory, table, intra_top_k, intra_min_ratio):
    strategy, ranking, stored = search(tmp_path_factory.mktemp("ev"), table, intra_top_k=intra_top_k,
                                       intra_min_ratio=intra_min_ratio)
    measured = strategy.measured_scores()
    # every candidate's most informative measurement: its largest-ratio score in this run
    latest = {c: by[max(by)][0] for c, by in measured.items()}
    pick = ranking[0]
    assert not math.isnan(pick.score)
    for c, value in latest.items():
        assert pick.score >= value - 1e-12, (pick, c, value)
    # the pick's own estimate is at least what it measured at its largest ratio
    assert pick.score >= latest[pick.candidate] - 1e-12
    # the ranking is ordered by estimate, scored candidates first; the store holds that order
    values = [r.score for r in ranking if not math.isnan(r.score)]
    assert values == sorted(values, reverse=True)
    assert [(r["encoder"], r["llm"]) for r in stored] == [
        (r.candidate.vision_encoder, r.candidate.language_model) for r in ranking]
    assert len(ranking) == len(ENCODERS) * len(LLMS)


def test_a_falling_fit_is_not_trusted_beyond_the_measured_range(tmp_path):
    """The quickstart's case: the survivor's r = 1/8 and 1/4 scores fall (0.15, 0.125), its
    r = 1/2 rung score is 0.265; it is ranked by what it measured, not by a falling line."""
    table = {(e, m, r): 0.05 for e in ENCODERS for m in LLMS for r in RATIOS}
    star = (ENCODERS[1], LLMS[0])
    runner = (ENCODERS[1], LLMS[2])
    for r, v in {0.0625: 0.2, 0.125: 0.15, 0.25: 0.125, 0.5: 0.265, 1.0: 0.3}.items():
        table[(*star, r)] = v
    for r, v in {0.0625: 0.19, 0.125: 0.14, 0.25: 0.12, 0.5: 0.255, 1.0: 0.26}.items():
        table[(*runner, r)] = v
    # the intra rung trains the finalists at r = 1/2 (the quickstart's last rung)
    strategy, ranking, _ = search(tmp_path, table, intra_min_ratio=0.5)
    assert any(r["sample_ratio"] == 0.5 and (r["encoder"], r["llm"]) == star for r in strategy.rungs)
    pick = ranking[0]
    assert (pick.candidate.vision_encoder, pick.candidate.language_model) == star
    assert pick.score >= 0.265 and ranking[1].score <= pick.score
    # its fit was given the r = 1/2 score: nothing predicted for it below that measurement
    assert all(p["predicted_score"] >= 0.265 - 1e-9 for p in strategy.predictions)

    # with no rung above r = 1/4 its fit falls (0.15, 0.125): it is ranked by its r = 1/4
    # measurement, not by the line's 0.075 at r = 1, and no prediction is stored for it
    strategy, ranking, _ = search(tmp_path / "b", table, intra_min_ratio=0.25)
    mine = next(r for r in ranking if (r.candidate.vision_encoder, r.candidate.language_model) == star)
    assert mine.measured_or_predicted == "measured" and mine.score == 0.125 and mine.sample_ratio == 0.25
    assert not [p for p in strategy.predictions if (p["encoder"], p["llm"]) == star]


def C(i):
    return Candidate(ENCODERS[i % 3], LLMS[i // 3])


def test_order_by_evidence_moves_a_measured_score_above_a_lower_prediction():
    ranking = [RankedCandidate(C(0), 0.075, "predicted", stage="survivor", lower=0.0, upper=0.2),
               RankedCandidate(C(1), 0.255, "measured", "k1", sample_ratio=0.5, stage="eliminated-intra"),
               RankedCandidate(C(2), math.nan, "measured", sample_ratio=None, stage="eliminated-inter"),
               RankedCandidate(C(3), 0.1, "measured", "k3", sample_ratio=0.25, stage="eliminated-inter"),
               RankedCandidate(C(4), math.nan, "measured", sample_ratio=None, stage="eliminated-inter")]
    out = order_by_evidence(ranking)
    # an unscored row keeps its place after the scored row before it
    assert [r.candidate for r in out] == [C(1), C(2), C(3), C(4), C(0)]


def test_a_higher_ratio_measurement_replaces_a_lower_one():
    ranking = [RankedCandidate(C(0), 0.3, "measured", "a", sample_ratio=1.0, stage="survivor"),
               RankedCandidate(C(1), 0.2, "measured", "b1", sample_ratio=0.25, stage="eliminated-intra")]
    out = order_by_evidence(ranking, {C(1): {0.25: (0.2, "b1"), 0.5: (0.4, "b2")}})
    assert out[0].candidate == C(1) and out[0].score == 0.4 and out[0].sample_ratio == 0.5
    assert out[0].trial_key == "b2"


@pytest.mark.parametrize("s1,se1,s2,se2,words", [
    (0.5, 0.01, 0.4, 0.01, "pick better by 7.1 SE: separated beyond noise"),
    (0.075, 0.03, 0.255, 0.0308, "runner-up better by 4.2 SE"),
    (0.30, 0.03, 0.29, 0.03, "pick ahead by 0.2 SE: not separated beyond noise"),
    (0.29, 0.03, 0.30, 0.03, "runner-up ahead by 0.2 SE: not separated beyond noise"),
])
def test_the_separation_verdict_reads_the_sign(s1, se1, s2, se2, words):
    from harness.answer import separation

    gap, se, verdict, p = separation(s1, se1, s2, se2)
    assert words in verdict
    assert (p > 0.5) == (gap > 0)
