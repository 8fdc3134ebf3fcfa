"""Strategy dcd: transfer from the most similar past tasks. Pure parts on arrays; end to end on a
small real grid (mini zoo components, real training and scoring, a real store file)."""

import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import BadInput
from harness.strategies.dcd import (
    DCDSearch,
    holdout_evaluation,
    neighbour_weights,
    rank_by_prediction,
    transfer_prediction,
    uniform_prediction,
)

# ---------------------------------------------------------------- pure parts


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=1, max_size=8))
def test_neighbour_weights_are_a_distribution_decreasing_in_divergence(d):
    w = neighbour_weights(d)
    assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
    order = np.argsort(d, kind="stable")
    assert np.all(np.diff(w[order]) <= 1e-12)  # closer tasks never weigh less


def test_neighbour_weights_formula_and_scale_free():
    d = np.array([0.1, 0.3])
    tau = d.mean()
    expected = np.exp(-d / tau) / np.exp(-d / tau).sum()
    np.testing.assert_allclose(neighbour_weights(d), expected)
    np.testing.assert_allclose(neighbour_weights(d * 1000), expected)
    np.testing.assert_allclose(neighbour_weights([0.0, 0.0]), [0.5, 0.5])


def test_transfer_prediction_uses_the_closest_tasks_the_candidate_has_scores_on():
    divergences = {"a": 0.1, "b": 0.2, "c": 5.0}
    scores = {"a": 0.9, "c": 0.1, "z": 0.5}  # no score on b; z has no divergence
    # one neighbour: a, the closest with a score
    assert transfer_prediction(divergences, scores, 1) == pytest.approx(0.9)
    w = neighbour_weights([0.1, 5.0])
    assert transfer_prediction(divergences, scores, 2) == pytest.approx(w[0] * 0.9 + w[1] * 0.1)
    assert transfer_prediction(divergences, {"z": 1.0}, 2) is None
    assert uniform_prediction(scores, ["a", "b", "c"]) == pytest.approx(0.5)
    assert uniform_prediction({}, ["a"]) is None


def test_rank_puts_missing_predictions_last():
    assert rank_by_prediction({"x": 0.2, "y": None, "z": 0.7, "w": 0.2}) == ["z", "w", "x", "y"]


# ---------------------------------------------------------------- a real store

GRID = {
    "name": "dcd-test", "seed": 0,
    "zoo": {"vision_encoders": ["mini:clip-vit-s", "mini:sup-resnet"],
            "language_models": ["mini:llama-qa", "mini:gpt2-mixed"]},
    "alignment": {"dataset": "shapes:align", "samples": 32},
    "vlm": {"llm": "full", "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 1}},
    "targets": [{"task": f"shapes:{t}", "limit": 16} for t in ("color", "shape", "count")],
    "search": {"strategy": "grid"},
    "device": "cpu",
}
TASKS = ["shapes:color", "shapes:shape", "shapes:count"]


def _suite(tmp_path, name, **changes):
    from harness.suite import load_suite

    body = {**GRID, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_suite(path)


def _dcd_suite(tmp_path, **transfer):
    return _suite(tmp_path, "dcd", targets=[{"task": "shapes:count", "limit": 16}],
                  search={"strategy": "dcd", "options": {"examples": 4, "neighbours": 1,
                                                          **transfer}})


def _run(store, cls, suite):
    run_id = store.start_run(suite_name=suite.name, strategy=cls.name)
    strategy = cls(suite=suite, store=store, run_id=run_id)
    ranking = strategy.run()
    store.finish_run(run_id, "done")
    return run_id, strategy, ranking


def test_without_past_results_dcd_says_what_to_run_first(tmp_path):
    from harness.store import Store

    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.start_run(suite_name="dcd", strategy="dcd")
        strategy = DCDSearch(suite=_dcd_suite(tmp_path), store=store, run_id=run_id)
        with pytest.raises(BadInput, match="run a grid"):
            strategy.search()
        assert store.query("select count(*) as n from trials")[0]["n"] == 0


@pytest.mark.slow
def test_dcd_ranks_from_stored_results_trains_nothing_and_reuses_its_profiles(tmp_path):
    """Minutes on 2 busy cores: a 2 x 2 grid scored on three tasks, then dcd on one of them."""
    from harness.store import Store

    from harness.strategies.grid import GridSearch

    with Store.open(tmp_path / "s.duckdb") as store:
        _run(store, GridSearch, _suite(tmp_path, "grid"))
        suite = _dcd_suite(tmp_path)
        run_id, strategy, ranking = _run(store, DCDSearch, suite)

        trained = store.query("select count(*) filter (where not reused) as n from run_uses"
                              " where run_id = ? and kind = 'trial'", [run_id])[0]["n"]
        assert trained == 0 and strategy.trained == 0
        assert sorted(r.candidate for r in ranking) == sorted(suite.candidates())
        assert all(r.measured_or_predicted == "predicted" and r.stage == "dcd" for r in ranking)
        scores = [r.score for r in ranking]
        assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
        # with one neighbour, each prediction is the candidate's score on its encoder's closest task
        sims = store.query("select value, config->>'encoder' as enc, config->>'source' as src"
                           " from similarities where metric = 'dcd' and run_id = ?", [run_id])
        assert len(sims) == 2 * 2 and all(s["value"] >= 0 for s in sims)
        closest = {e: min((s for s in sims if s["enc"] == e), key=lambda s: s["value"])["src"]
                   for e in {s["enc"] for s in sims}}
        measured = {(r["encoder"], r["llm"], r["task"]): r["value"] for r in store.query(
            "select t.encoder, t.llm, s.task, s.value from scores s join trials t using (trial_key)")}
        for r in ranking:
            c = r.candidate
            assert r.score == pytest.approx(
                measured[(c.vision_encoder, c.language_model, closest[c.vision_encoder])])
        assert strategy.profiles_computed == 2 * 3
        cost = store.query("select reused from phase_costs where run_id = ?", [run_id])
        assert cost == [{"reused": False}]

        again_id, again, again_ranking = _run(store, DCDSearch, suite)
        assert again.profiles_computed == 0
        assert [r.candidate for r in again_ranking] == [r.candidate for r in ranking]
        uses = store.query("select kind, bool_and(reused) as all_reused from run_uses"
                           " where run_id = ? group by kind order by kind", [again_id])
        assert uses == [{"kind": "embedding", "all_reused": True},
                        {"kind": "similarity", "all_reused": True},
                        {"kind": "trial", "all_reused": True}]

        n_profiles = "select count(*) as n from embeddings where layer = 'conductance'"
        before = store.query(n_profiles)[0]["n"]
        rows = holdout_evaluation(store, suite, TASKS)
        assert store.query(n_profiles)[0]["n"] == before == 2 * 3  # read back, not recomputed
        assert [r["task"] for r in rows] == TASKS
        for row in rows:
            assert row["candidates"] == 4 and target_not_in(row)
            for key in ("dcd_ndcg_at_5", "uniform_ndcg_at_5"):
                assert 0.0 <= row[key] <= 1.0
            for key in ("dcd_kendall_tau", "uniform_kendall_tau"):
                # tau-b is undefined (NaN) only when the task's measured scores all tie
                truth = {v for (_, _, t), v in measured.items() if t == row["task"]}
                assert math.isfinite(row[key]) or len(truth) == 1
                assert not math.isfinite(row[key]) or -1.0 <= row[key] <= 1.0


def target_not_in(row) -> bool:
    return row["task"] not in row["history"] and len(row["history"]) == len(TASKS) - 1
