"""benchmarks/testbed_report.py's statistics: the top-1 gap over its SE and the chance flips."""

import math
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from testbed_report import flips, grid_specs, top1_gaps


def tables(scores: dict) -> tuple[dict, dict]:
    """{(encoder, llm): [seed 0, seed 1, ...] per task} -> (grid, seeded) as the report reads them."""
    grid, seeded = {}, {}
    for (e, l), per_task in scores.items():
        for seed in range(len(next(iter(per_task.values())))):
            row = {t: vals[seed] for t, vals in per_task.items()}
            (grid if seed == 0 else seeded)[(e, l, seed, 1.0)] = row
    return grid, seeded


def test_a_clear_winner_is_separated_and_a_near_duplicate_is_not():
    grid, seeded = tables({
        ("a", "x"): {"t1": [0.60, 0.62, 0.61], "t2": [0.40, 0.41, 0.39]},
        ("a", "y"): {"t1": [0.50, 0.52, 0.51], "t2": [0.40, 0.39, 0.41]},
        ("b", "x"): {"t1": [0.20, 0.21, 0.19], "t2": [0.30, 0.31, 0.29]},
    })
    gaps = {g["task"]: g for g in top1_gaps(grid, seeded, ["t1", "t2"])}
    assert gaps["t1"]["first"] == ("a", "x") and gaps["t1"]["second"] == ("a", "y")
    assert gaps["t1"]["mean1"] == pytest.approx(0.61) and gaps["t1"]["seeds"] == 3
    # gap 0.10 over sqrt(2) * (0.01 / sqrt(3)): about 12 standard errors
    assert gaps["t1"]["ratio"] == pytest.approx(0.10 / math.sqrt(2 * 0.01 ** 2 / 3), rel=1e-6)
    assert abs(gaps["t2"]["ratio"]) < 2  # identical means: no separation


def test_no_reseeded_candidates_means_no_gaps():
    grid, _ = tables({("a", "x"): {"t": [0.5]}, ("b", "x"): {"t": [0.4]}})
    assert top1_gaps(grid, {}, ["t"]) == []


def test_flips_flag_a_candidate_that_learns_on_some_seeds_only():
    grid, seeded = tables({
        ("a", "x"): {"t": [0.52, 0.13, 0.40]},  # learns on seeds 0 and 2, at chance on seed 1
        ("b", "x"): {"t": [0.12, 0.13, 0.11]},  # at chance on every seed: not a flip
        ("c", "x"): {"t": [0.60, 0.55, 0.58]},  # learns on every seed
    })
    assert flips(grid, seeded, ["t"], {"t": 0.125}) == {("a", "x", "t"): [0.52, 0.13, 0.40]}


def test_grid_specs_empty_candidate_list_means_none():
    from harness.suite import load_suite

    suite = load_suite(ROOT / "suites" / "quickstart.yaml")
    assert len(grid_specs(suite, 0)) == len(suite.candidates())
    assert grid_specs(suite, 0, 0.5, []) == []
