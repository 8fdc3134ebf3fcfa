"""``harness report`` of a model-based search (issue 33): the prior from history beside what the
task's own data said, read from ``search_prior`` and ``search_history``. A real store: a grid on
two tasks of the mini zoo, then ``strategy: learned`` on a third task with the same recipe (its
prior from the grid's tasks), and a learned run told to use no history."""

from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import fetch, invoke, last_run, write_suite

from harness.report import prior_vs_data

# 3 x 2 mini-zoo candidates, 32 alignment samples, 16 test items: seconds a trial
BASE = {
    "name": "prior-report", "seed": 1,
    "zoo": {"vision_encoders": ["mini:clip-vit-s", "mini:sup-resnet", "mini:random-vit"],
            "language_models": ["mini:llama-qa", "mini:gpt2-mixed"]},
    "alignment": {"dataset": "shapes:align", "samples": 32},
    "vlm": {"llm": "full", "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 1}},
    # two history tasks that agree on these six candidates (a positive leave-one-out weight: a
    # prior that is not flat); color and shape run against each other here, and history read
    # backwards is ignored (harness.surrogate.fit_hyperparameters)
    "targets": [{"task": "shapes:shape", "limit": 16}, {"task": "shapes:spatial", "limit": 16}],
    "search": {"strategy": "grid"},
    "device": "cpu",
}
# the learned search on another task, seed 0 (the grid's seed-1 trials inform the prior, they
# are not free); the live test's cheap settings (tests/plugins/test_learned.py)
LEARNED = {"seed": 0, "targets": [{"task": "shapes:count", "limit": 16}], "search.strategy": "learned",
           "search.options": {"confidence": 0.95, "budget": 0.5, "ratios": [0.5, 1.0]}}
PRIOR_COLUMNS = ["", "candidate", "history z", "prior rank", "prior mean ± sd", "own score",
                 "posterior mean ± sd", "posterior rank", "P(best)"]


class Page(HTMLParser):
    """Each section's text and table rows (cells as text), by section id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tables, self.order = {}, {}, []
        self.section = self.row = self.cell = None

    def handle_starttag(self, tag, attrs):
        if self.section is not None:
            self.text[self.section] += " "  # a tag parts words
        if tag == "section":
            self.section = dict(attrs)["id"]
            self.order.append(self.section)
            self.text[self.section], self.tables[self.section] = "", []
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell)
            self.cell = None
        elif tag == "tr":
            self.tables[self.section].append(self.row)
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        elif self.section is not None:
            self.text[self.section] += data


def report(store, run_id, folder) -> Page:
    out = invoke("report", run_id, "--store", store, "--out", folder)
    assert out.returncode == 0, out.stderr
    page = Page()
    page.feed(Path(out.stdout.strip()).read_text(encoding="utf-8"))
    return page


def beliefs(store, run_id) -> dict:
    """(encoder, llm) -> its search_prior row as a dict."""
    cols = ["encoder", "llm", "history_z", "prior_mean", "prior_sd", "prior_rank", "own_score", "own_ratio",
            "posterior_mean", "posterior_sd", "posterior_rank", "p_best"]
    rows = fetch(store, f"select {', '.join(cols)} from search_prior where run_id = ?", [run_id])
    return {(r[0], r[1]): dict(zip(cols, r)) for r in rows}


def ranked(store, run_id) -> list[tuple]:
    """The run's pick and runner-up (its rankings)."""
    return fetch(store, "select encoder, llm from rankings where run_id = ? and rank <= 2 order by rank", [run_id])


def cells(r: dict, flat: bool) -> list[str]:
    """A search_prior row as the page must show it (after the role column)."""
    return [f"{r['encoder']} + {r['llm']}",
            "-" if r["history_z"] is None else f"{r['history_z']:+.3f}",
            "-" if flat else str(r["prior_rank"]),
            f"{r['prior_mean']:.4f} ± {r['prior_sd']:.4f}",
            "not measured" if r["own_score"] is None else f"{r['own_score']:.4f} at r={r['own_ratio']:g}",
            f"{r['posterior_mean']:.4f} ± {r['posterior_sd']:.4f}", str(r["posterior_rank"]),
            prob(r["p_best"])]


def prob(p: float) -> str:
    """Two decimals, but a probability strictly between 0 and 1 never reads as 0 or 1."""
    return "<0.01" if 0 < p < 0.005 else ">0.99" if 0.995 <= p < 1 else f"{p:.2f}"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """(store, grid run, learned run with history and what `harness run` printed, learned run
    with search.history none)."""
    folder = tmp_path_factory.mktemp("prior")
    store = folder / "s.duckdb"
    grid = invoke("run", write_suite(folder, BASE, "grid.yaml"), "--store", store)
    assert grid.returncode == 0, grid.stderr
    grid_run = last_run(store)[0]
    learned = invoke("run", write_suite(folder, BASE, "learned.yaml", **LEARNED), "--store", store)
    assert learned.returncode == 0, learned.stderr
    assert "learned: prior from 2 task(s) of 1 run(s)" in learned.stderr
    learned_run = last_run(store)[0]
    flat = invoke("run", write_suite(folder, BASE, "flat.yaml", **{**LEARNED, "search.options": {
        **LEARNED["search.options"], "history": "none"}}), "--store", store)
    assert flat.returncode == 0, flat.stderr
    assert "learned: no history; the prior is flat" in flat.stderr
    return store, grid_run, (learned_run, learned.stdout), last_run(store)[0]


def expected(rows: dict, top: list, history: bool) -> tuple[str, dict]:
    """(the lead sentence, candidate -> its roles) as the report must say them, from the stored
    rows and the run's pick and runner-up (6 candidates: every move of 2 ranks or more is shown)."""
    def name(r):
        return f"{r['encoder']} + {r['llm']}"

    def key(r):
        return r["encoder"], r["llm"]

    pick, runner_up = rows[top[0]], rows[top[1]]
    post_top = min(rows.values(), key=lambda r: r["posterior_rank"])
    by_prior = min(rows.values(), key=lambda r: r["prior_rank"])
    roles: dict = {}
    roles.setdefault(key(pick), []).append("pick")
    roles.setdefault(key(runner_up), []).append("runner-up")
    if post_top is not pick:
        roles.setdefault(key(post_top), []).append("posterior's top")
    p = prob(pick["p_best"])
    p = p if p[0] in "<>" else f"={p}"
    if not history:
        lead = f"no history: the prior was flat; the task's own data put {name(pick)} at the top (P(best){p})"
    else:
        roles.setdefault(key(by_prior), []).append("history's pick")
        for k, r in rows.items():
            shift = r["prior_rank"] - r["posterior_rank"]
            if k not in roles and abs(shift) >= 2:
                roles[k] = [f"moved {'up' if shift > 0 else 'down'} {abs(shift)}"]
        lead = (f"the task's data agreed with history: history's pick {name(pick)} (prior rank 1) stayed at the "
                f"top (P(best){p})" if by_prior is pick else
                f"history's pick was {name(by_prior)} (prior rank 1, posterior rank {by_prior['posterior_rank']}); "
                f"the task's own data moved {name(pick)} from prior rank {pick['prior_rank']} to the top "
                f"(P(best){p})")
    if post_top is not pick:  # the ranking sorts a score measured at r = 1 as measured
        lead += (f"; the posterior mean ranks {name(post_top)} first ({post_top['posterior_mean']:.4f} against "
                 f"{pick['posterior_mean']:.4f})")
    return lead, roles


def check_table(page: Page, rows: dict, roles: dict, flat: bool) -> None:
    """The prior table: exactly the candidates with a role, best posterior first, each figure
    its stored row's."""
    head, *body = page.tables["prior"]
    assert head == PRIOR_COLUMNS
    shown = [tuple(figures[0].split(" + ")) for _, *figures in body]
    assert shown == sorted(roles, key=lambda k: rows[k]["posterior_rank"])
    for (role, *figures), k in zip(body, shown):
        assert role == ", ".join(roles[k])
        assert figures == cells(rows[k], flat=flat)


@pytest.mark.long
def test_the_report_puts_the_prior_from_history_beside_the_tasks_own_data(searched, tmp_path):
    store, grid_run, (run_id, printed), _ = searched
    rows = beliefs(store, run_id)
    assert len(rows) == 6
    history = fetch(store, "select task, source_run from search_history where run_id = ? order by all", [run_id])
    assert history == [("shapes:shape", grid_run), ("shapes:spatial", grid_run)]
    page = report(store, run_id, tmp_path / "r")
    assert page.order.index("prior") == page.order.index("grid") + 1  # under the ranking it explains
    text = " ".join(unescape(page.text["prior"]).split())
    # which history informed the prior: every task, and the run its scores came from
    assert f"2 history tasks (search.history: auto): shapes:shape, shapes:spatial (run {grid_run})" in text
    # one sentence: history's pick (prior rank 1) against the run's pick, with its P(best)
    lead, roles = expected(rows, ranked(store, run_id), history=True)
    assert text.startswith(f"Prior from history vs the task's own data {lead} ")
    # `harness run` said it too, among the answer's sentences, and the page's answer has it
    assert lead in printed.splitlines()
    assert lead in " ".join(unescape(page.text["answer"]).split())
    # the pick, the runner-up, history's pick and every large move, figures as stored
    check_table(page, rows, roles, flat=False)
    # a prior that falls as history's z-score rises is said to run against it
    z = sorted((r["history_z"], r["prior_mean"]) for r in rows.values())
    assert ("runs against the history z-scores" in text) == (z[-1][1] < z[0][1])


@pytest.mark.long
def test_a_learned_run_without_history_says_the_prior_was_flat_and_other_strategies_show_nothing_new(
        searched, tmp_path):
    store, grid_run, _, run_id = searched
    assert fetch(store, "select count(*) from search_history where run_id = ?", [run_id], one=True) == (0,)
    rows = beliefs(store, run_id)
    page = report(store, run_id, tmp_path / "flat")
    text = " ".join(unescape(page.text["prior"]).split())
    lead, roles = expected(rows, ranked(store, run_id), history=False)
    assert text.startswith(f"Prior from history vs the task's own data {lead} ")
    assert "No history: search.history is none, so every candidate started from the same prior." in text
    # no history's pick, no prior rank (every candidate had the same prior)
    assert not any("history's pick" in r or "moved" in " ".join(r) for r in roles.values())
    check_table(page, rows, roles, flat=True)
    # a grid run wrote no beliefs: no section, no new sentence
    grid = report(store, grid_run, tmp_path / "grid")
    assert "prior" not in grid.order and "history's pick" not in grid.text["answer"]
    assert prior_vs_data_of(store, grid_run) == []


def prior_vs_data_of(store, run_id):
    from harness.store import Store

    with Store.open(store, read_only=True) as st:
        return prior_vs_data(st, run_id)


# prior ranks 1..12; the posterior keeps history's pick on top and moves c5 by 6, c6 by 4, c1 by
# 3 and c8-c11 by 3 each (a large move among 12 is 3 ranks or more)
POSTERIOR = [1, 5, 2, 3, 4, 12, 11, 10, 6, 7, 8, 9]


def _beliefs(run, flat_prior=False):
    """12 search_prior rows, the prior falling with prior rank (rising with history's z)."""
    cands = [(f"x:e{i // 3}", f"x:l{i % 3}") for i in range(12)]
    return [{"run_id": run, "plugin": "test", "plugin_version": "0", "task": "shapes:count",
             "encoder": e, "llm": l, "history_z": 1.0 - 0.2 * i,
             "prior_mean": 0.5 if flat_prior else 0.6 - 0.02 * i, "prior_sd": 0.05, "prior_rank": i + 1,
             "own_score": 0.5 if i % 2 == 0 else None, "own_ratio": 1.0 if i % 2 == 0 else None,
             "posterior_mean": 0.7 - 0.03 * POSTERIOR[i], "posterior_sd": 0.01, "posterior_rank": POSTERIOR[i],
             "p_best": 0.999 if i == 0 else 0.001 / 11} for i, (e, l) in enumerate(cands)]


def test_agreement_largest_moves_and_a_history_that_cannot_tell_candidates_apart(tmp_path):
    """Row by row in a real store, the cases a tiny live run does not reach: the data agreeing
    with history, more large moves than are shown, a P(best) near 1, and a history whose prior
    is the same for every candidate."""
    from harness.store import Store

    with Store.open(tmp_path / "s.duckdb") as st:
        agree = st.start_run(suite_name="made", strategy="learned", seed=0)
        flat = st.start_run(suite_name="made", strategy="learned", seed=0)
        st.insert("search_prior", _beliefs(agree) + _beliefs(flat, flat_prior=True))
        st.insert("search_history", [{"run_id": r, "plugin": "test", "plugin_version": "0",
                                      "task": "shapes:color", "source_run": "grid-run"} for r in (agree, flat)])
        [view] = prior_vs_data(st, agree)
        assert view.lead == ("the task's data agreed with history: history's pick x:e0 + x:l0 (prior rank 1) "
                             "stayed at the top (P(best)>0.99)")  # 0.999 is not said as 1.00
        assert not view.flat and not view.against_history and view.moved == 3
        assert [(r["encoder"], r["llm"], r["roles"]) for r in view.rows] == [
            ("x:e0", "x:l0", ["pick", "history's pick"]), ("x:e0", "x:l2", ["runner-up"]),
            ("x:e0", "x:l1", ["moved down 3"]),  # of the four moves by 3, the one ranked highest
            ("x:e2", "x:l0", ["moved down 4"]), ("x:e1", "x:l2", ["moved down 6"])]
        [view] = prior_vs_data(st, flat)
        assert view.flat and view.lead.startswith(
            "history (shapes:color) did not tell the candidates apart: the prior was flat; the task's own "
            "data put x:e0 + x:l0 at the top")
        assert [r["roles"] for r in view.rows] == [["pick"], ["runner-up"]]
