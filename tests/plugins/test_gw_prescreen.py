"""GW prescreen (and GW as Mordal's clustering metric) on tiny models and a real store."""

import math
import time

import duckdb
import numpy as np
import pytest
import helpers
from harness.store import Store

from harness.gromov import gw_distance
from harness.strategies.gw_prescreen import (
    GWPrescreen,
    encoder_token_features,
    gw_order,
    llm_text_features,
    paired_text,
)
from harness.suite import Candidate, load_suite

SUITE = {
    "name": "gw-test",
    "seed": 0,
    "zoo": {"vision_encoders": ["tiny:vit-p8", "tiny:resnet"],
            "language_models": ["tiny:gpt2", "tiny:mistral"]},
    "alignment": {"dataset": "shapes:color", "samples": 32},
    "vlm": {"llm": "full", "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 1}},
    "targets": [{"task": "shapes:color", "limit": 8}],
    "search": {"strategy": "gw-prescreen", "options": {"samples": 16, "train_top": 1}},
    "device": "cpu",
}


def write_suite(tmp_path, name="suite.yaml", **changes):
    return helpers.write_suite(tmp_path, SUITE, name, **changes)


def run_strategy(cls, suite, store):
    run_id = store.start_run(suite_name=suite.name, strategy=suite.search.strategy, seed=suite.seed)
    strategy = cls(suite=suite, store=store, run_id=run_id)
    ranking = strategy.run()
    store.finish_run(run_id, "done")
    return run_id, strategy, ranking


# -- pure pieces ----------------------------------------------------------------------------------


def test_gw_order_is_ascending_with_ties_by_name_and_nan_last():
    a, b, c, d = (Candidate(e, "m") for e in "abcd")
    assert gw_order({c: 0.2, a: math.nan, d: 0.1, b: 0.2}) == [d, b, c, a]


def test_paired_text_is_the_question_and_answer_without_the_image_token():
    from harness.plugins.shapes import load_dataset

    item = load_dataset("count", split="train", n=4, seed=0)[0]
    text = paired_text(item)
    assert "<image>" not in text and text == f"{item.question} {item.answer}"


def test_text_features_do_not_depend_on_the_batch_padding():
    from harness.trial import load_language_model

    _, lm = load_language_model("tiny:gpt2")
    short, long = "what color is it? red", "what color is the shape left of the big circle? blue"
    alone = llm_text_features(lm, [short])
    batched = llm_text_features(lm, [short, long])
    assert batched.shape == (2, lm.hidden_size)
    np.testing.assert_allclose(batched[0], alone[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_encoder_features_are_standardised_per_token_and_feature():
    from harness.plugins.shapes import load_dataset
    from harness.trial import load_encoder

    dataset = load_dataset("color", split="train", n=12, seed=0)
    items = [dataset[i] for i in range(12)]
    _, encoder = load_encoder("tiny:vit-p8")
    feats = encoder_token_features(encoder, items)
    assert feats.shape == (12, encoder.num_tokens * encoder.hidden_size)
    np.testing.assert_allclose(feats.mean(0), 0.0, atol=1e-4)
    varied = feats.std(0, ddof=1) > 1e-3  # columns constant over images stay 0
    np.testing.assert_allclose(feats.std(0, ddof=1)[varied], 1.0, rtol=1e-3)


# -- GW as Mordal's clustering metric -------------------------------------------------------------


@pytest.mark.parametrize("metric", ["gw", "cka"])
def test_mordal_clusters_on_the_metric_it_is_given(tmp_path, metric):
    from harness.clustering import cluster
    from harness.similarity import pairwise_similarity
    from harness.strategies.mordal import MordalSearch

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 4
    a = centres[np.arange(24) % 3] + rng.normal(size=(24, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    feats = {"a": a, "a-rotated": 5 * a @ q + 1.0, "noise": rng.uniform(size=(24, 6))}
    names = list(feats)
    suite = load_suite(write_suite(tmp_path, **{"search.strategy": "mordal", "search.options": {},
                                                "search.similarity": metric}))
    with Store.open(tmp_path / "s.duckdb") as store:
        run_id = store.start_run(suite_name="gw-mordal", strategy="mordal", seed=0)
        mordal = MordalSearch(suite=suite, store=store, run_id=run_id)
        keys = {n: f"emb-{n}" for n in names}
        threshold = 0.03 if metric == "gw" else 0.05  # entropic GW(X, X) is ~0.01 here
        got = mordal._cluster_and_record("encoder", names, feats, keys, {n: n for n in names},
                                         threshold, "cluster-encoders", time.perf_counter(), 0, False)
        stored = {(r["a"], r["b"]): r["value"] for r in store.query(
            "select a, b, value from similarities where metric = ?", [metric])}
    assert {tuple(c.members) for c in got} == {("a", "a-rotated"), ("noise",)}
    if metric == "gw":  # the store keeps the distance; the cut is on the distance itself
        assert stored[("a", "a-rotated")] == pytest.approx(gw_distance(a, feats["a-rotated"]))
        assert stored[("a", "a-rotated")] <= threshold < stored[("a", "noise")]
    else:  # CKA unchanged: exactly the clustering of its similarity matrix
        _, sim = pairwise_similarity(feats, minibatch=suite.search.clustering.cka_batch, seed=0)
        assert got == cluster(names, sim, threshold, suite.search.clustering.linkage)


# -- the strategy ---------------------------------------------------------------------------------


def test_prescreen_ranks_every_candidate_by_gw_and_reuses_everything(tmp_path):
    """train_top 0: the training-free part alone, in process."""
    suite = load_suite(write_suite(tmp_path, **{"search.options.train_top": 0}))
    with Store.open(tmp_path / "s.duckdb") as store:
        run_1, strategy, ranking = run_strategy(GWPrescreen, suite, store)
        assert strategy.trained == 0 and strategy.reused == 0
        assert len(ranking) == 4 and len({r.candidate for r in ranking}) == 4
        assert all(r.stage == "gw-rank" and r.score is None and r.sample_ratio is None
                   and r.measured_or_predicted == "predicted" for r in ranking)
        gw = {(r["encoder"], r["llm"]): r["predicted_score"] for r in store.query(
            "select encoder, llm, predicted_score from predictions where run_id = ? and predictor = 'gw'",
            [run_1])}
        order = [(r.candidate.vision_encoder, r.candidate.language_model) for r in ranking]
        assert [gw[c] for c in order] == sorted(gw.values()) and all(v > 0 for v in gw.values())
        assert sorted(gw.values()) == pytest.approx(sorted(
            r["value"] for r in store.query("select value from similarities where metric = 'gw'")))
        assert store.query("select count(*) as n from embeddings")[0]["n"] == 4
        assert store.query("select count(*) as n from trials")[0]["n"] == 0
        assert store.query("select stage from rankings where run_id = ? and rank = 1",
                           [run_1])[0]["stage"] == "gw-rank"

        run_2, _, ranking_2 = run_strategy(GWPrescreen, suite, store)
        uses = store.query("select kind, reused, count(*) as n from run_uses where run_id = ?"
                           " group by all order by all", [run_2])
        assert [(u["kind"], u["reused"], u["n"]) for u in uses] == [("embedding", True, 4),
                                                                   ("similarity", True, 4)]
        assert store.query("select count(*) as n from embeddings")[0]["n"] == 4
        assert store.query("select reused from phase_costs where run_id = ?", [run_2])[0]["reused"]
        assert [r.candidate for r in ranking_2] == [r.candidate for r in ranking]


@pytest.mark.slow
def test_prescreen_end_to_end_trains_only_the_top_then_nothing(tmp_path):
    """Through the CLI: trains exactly train_top candidates; a rerun trains and embeds nothing."""
    from helpers import harness, last_run, trials_of

    store = tmp_path / "s.duckdb"
    suite = write_suite(tmp_path)
    first = harness("run", suite, "--store", store)
    assert first.returncode == 0, first.stderr
    assert "gw-prescreen ranking" in first.stdout
    run_1, status = last_run(store)
    assert status == "done"
    assert trials_of(store, run_1) == (1, 0)

    con = duckdb.connect(str(store), read_only=True)
    ranking = con.execute("select encoder, llm, score, measured_or_predicted, stage from rankings"
                          " where run_id = ? order by rank", [run_1]).fetchall()
    gw = {(e, m): v for e, m, v in con.execute(
        "select encoder, llm, predicted_score from predictions where run_id = ?", [run_1]).fetchall()}
    con.close()
    assert len(ranking) == 4 and len(gw) == 4
    assert ranking[0][3:] == ("measured", "gw-trained") and ranking[0][2] is not None
    assert (ranking[0][0], ranking[0][1]) == min(gw, key=gw.get)  # the one trained is GW's best
    assert all(r[2] is None and r[3:] == ("predicted", "gw-rank") for r in ranking[1:])
    assert [gw[(e, m)] for e, m, *_ in ranking[1:]] == sorted(gw[(e, m)] for e, m, *_ in ranking[1:])

    again = harness("run", suite, "--store", store)
    assert again.returncode == 0, again.stderr
    run_2, _ = last_run(store)
    assert trials_of(store, run_2) == (0, 1)
    con = duckdb.connect(str(store), read_only=True)
    assert con.execute("select count(*) from run_uses where run_id = ? and kind in"
                       " ('embedding', 'similarity') and not reused", [run_2]).fetchone()[0] == 0
    assert con.execute("select count(*) from embeddings").fetchone()[0] == 4
    same = [con.execute("select encoder, llm from rankings where run_id = ? order by rank", [r]).fetchall()
            for r in (run_1, run_2)]
    con.close()
    assert same[0] == same[1]
