"""``strategy: learned``: a model-based, cost-aware search with a prior from the store's history.

The decisions are :class:`LearnedCore`'s, a pure loop over an ``observe(candidate, ratio)``
callback, so the live strategy (:class:`LearnedSearch`, trials through the executor), a replay
(trials answered by the store) and the research simulator (``benchmarks/anytime.py``, trials
answered from a table in memory) make the same decisions from the same scores.

Each step: the surrogate (:mod:`harness.surrogate`) gives every candidate's full-data score a
posterior; P(best) comes from samples of it. If P(the pick is the best, or within ``tolerance``
of it) has reached ``confidence``, or the budget is spent, the search stops. Otherwise it trains
the (candidate, ratio) with the highest knowledge gradient per training sample: the expected
rise of the best posterior mean that one measurement would bring (correlated beliefs: a
measurement moves every candidate sharing its encoder or LLM), divided by the samples it costs
(ratio x alignment samples; ``acquisition`` picks another rule: ``info``, ``ei``, ``thompson``).
The pick is the first of :meth:`LearnedCore.order`, the order every ranking follows
(``harness.evidence``).
With ``workers`` W > 1 it keeps W trials in flight, ASHA-style: the next is chosen as soon as the
oldest comes back, the others taken at their posterior mean (the "kriging believer").
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness.errors import BadInput
from harness.strategy import RankedCandidate, SearchStrategy
from harness.surrogate import Hyper, Surrogate, fit_hyperparameters, history_prior

DEFAULT_RATIOS = (0.0625, 0.125, 0.25, 0.5, 1.0)


@dataclass
class Step:
    """One decision: what was trained, what it cost, and the pick after it."""

    candidate: object
    ratio: float
    score: float
    spent: float  # training samples so far, in units of one full-data trial
    pick: object


@dataclass
class LearnedResult:
    order: list  # candidates, best posterior mean first
    mean: np.ndarray
    sd: np.ndarray
    p_best: np.ndarray
    spent: float  # in full-data trials
    steps: list[Step] = field(default_factory=list)
    stopped: str = ""  # why: confidence | budget | exhausted
    tolerance: float = 0.0  # what "within noise of the best" meant, in score units
    p_within: float = math.nan  # P(the pick is the best or within tolerance of it)


class LearnedCore:
    """The learned search's decisions over ``candidates`` ((encoder, llm) pairs).

    :param budget: the most training to spend, in full-data trials (a grid costs
        ``len(candidates)``).
    :param confidence: stop once the pick's P(best) reaches it.
    :param n_items: test items behind a score (its binomial standard error); None: unknown.
    :param acquisition: what a measurement is worth before its cost: ``kg`` (the knowledge
        gradient, the default), ``info`` (the reduction of the P(best)-weighted variance of
        full-data scores), ``ei`` (multi-fidelity expected improvement) or ``thompson`` (the best
        of one posterior draw). Where the rule values nothing above zero, ``info`` decides.
    :param tolerance: ``confidence`` is P(the pick is the best or within this of it), in score
        units; None: the standard error of a difference of two scores at the pick's level.
    """

    def __init__(self, candidates: Sequence, *, ratios: Sequence[float] = DEFAULT_RATIOS,
                 hyper: Hyper | None = None, prior: Mapping | None = None, confidence: float = 0.9,
                 budget: float | None = None, workers: int = 1, seed: int = 0,
                 n_items: int | None = None, draws: int = 2000, acquisition: str = "kg",
                 tolerance: float | None = 0.0):
        self.candidates = list(candidates)
        self.ratios = sorted(float(r) for r in ratios)
        self.prior = prior
        # how far low ratios track full-data scores on this task: without history unknown, a
        # few candidate values of rho; with history, history's estimate or none at all (on the
        # shipped table a ratio's slope differs from task to task: 1/16 tracks r = 1 on digits
        # and sits at the floor on color, where history's average would read floor scores as
        # differences). At each step the variant the data make most likely (empirical Bayes;
        # ties: the first)
        if hyper is not None and hyper.rho:
            self.variants = [hyper, dataclasses.replace(hyper, rho={r: 0.0 for r in hyper.rho})]
        else:
            self.variants = [dataclasses.replace(hyper or Hyper(), rho_default=rho, d_default=d)
                             for rho, d in ((1.0, 0.03), (0.5, 0.05), (0.2, 0.05), (0.05, 0.05))]
        self.surrogate = Surrogate(self.candidates, self.variants[0], prior, ratios=self.ratios)
        self.confidence = confidence
        self.budget = float(len(self.candidates)) if budget is None else float(budget)
        self.workers = max(1, int(workers))
        self.seed = seed
        self.n_items = n_items
        self.draws = draws
        self.acquisition = acquisition
        self.tolerance = None if tolerance is None else float(tolerance)
        self.measured: dict = {}  # (candidate, ratio) -> score
        self.on_step = None  # called with the steps of each decision, as they are made
        self.spent = 0.0
        self.steps: list[Step] = []

    def _se(self, score: float) -> float:
        if not self.n_items or not math.isfinite(score):
            return 0.0
        p = min(max(score, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / self.n_items)

    def _open(self) -> np.ndarray:
        """[n, ratios]: which (candidate, ratio) may still be trained: not yet, and not below a
        ratio the candidate already has (a smaller ratio after a larger one tells nothing new)."""
        ok = np.ones((len(self.candidates), len(self.ratios)), dtype=bool)
        for (c, r) in self.measured:
            i = self.surrogate.index[c]
            for k, rr in enumerate(self.ratios):
                if rr <= r + 1e-12:
                    ok[i, k] = False
        return ok

    def _refit(self) -> None:
        """With several hyperparameter variants: the surrogate of the one with the highest
        marginal likelihood of the scores so far (ties: the first, rho 1)."""
        if len(self.variants) < 2 or not self.surrogate.observations:
            return
        best, best_ev = self.surrogate, None
        for hyper in self.variants:
            model = self.surrogate.with_hyper(hyper)
            ev = model.log_evidence()
            if best_ev is None or ev > best_ev + 1e-9:
                best, best_ev = model, ev
        self.surrogate = best

    def _sure(self, p: np.ndarray) -> bool:
        """Whether P(the pick is the best, or within ``tolerance`` of it) has reached
        ``confidence``."""
        return self._p_pick(p)[1] >= self.confidence

    def _p_pick(self, p: np.ndarray) -> tuple[float, float]:
        """(tolerance, P(the pick is the best or within tolerance of it)); ``p``: P(best)."""
        i = self.surrogate.index[self.order()[0]]
        tolerance = self.tolerance
        if tolerance is None:  # auto: the standard error of a difference of two scores at the pick's level
            tolerance = math.sqrt(2) * self._se(float(self.surrogate.mean_sd()[0][i]))
        if tolerance <= 0:
            return 0.0, float(p[i])
        within = self.surrogate.p_within(tolerance, self.draws, seed=self.seed + len(self.steps))
        return tolerance, float(within[i])

    def choose(self, p: np.ndarray | None = None, pending: Sequence[tuple] = ()) -> tuple | None:
        """The next (candidate, ratio) to train (None: nothing affordable is left); ``p``: P(best)
        of the current posterior when the caller has it; ``pending``: pairs chosen and still in
        flight, charged to the budget, closed, and taken as if they came back at their
        posterior mean (the "kriging believer"), so a busy worker's trial is not chosen twice."""
        left = self.budget - self.spent - sum(r for _, r in pending)
        if p is None:
            p = self.surrogate.p_best(self.draws, seed=self.seed + len(self.steps))
        weights = p + 1.0 / (10 * len(self.candidates))  # a floor: every candidate counts a little
        se_top = self._se(float(np.max(self.surrogate.mean_sd()[0])))  # a contender's score's SE
        se = dict.fromkeys(self.ratios, se_top)
        taken = self._open()
        for c, r in pending:
            taken[self.surrogate.index[c], : self.ratios.index(r) + 1] = False
        model = self.surrogate.believing(pending, se) if pending else self.surrogate
        cost = np.array(self.ratios)[None, :]
        ok = taken & (cost <= left + 1e-9)
        info = self._value(model, weights, se, len(pending), ok)
        if not (np.where(ok, info, 0.0) > 1e-12).any():  # nothing worth anything by this rule
            info = model.information(self.ratios, weights, se)
        value = np.where(ok, info / cost, -np.inf)
        if not np.isfinite(value).any():
            return None
        i, k = np.unravel_index(int(np.argmax(value)), value.shape)  # ties: first in order
        return self.candidates[i], self.ratios[k]

    def _value(self, model: Surrogate, weights: np.ndarray, se: Mapping, k: int, ok: np.ndarray) -> np.ndarray:
        """[n, ratios]: what measuring each (candidate, ratio) is worth, by ``acquisition``, before
        dividing by its cost."""
        if self.acquisition == "kg":
            return model.knowledge_gradient(self.ratios, se)
        if self.acquisition == "ei":
            return model.expected_improvement(self.ratios, se)
        if self.acquisition == "thompson":
            # the candidate a posterior draw says is best; its ratio by how much a measurement
            # there shrinks that candidate's own variance per sample
            draw = model.sample(self.seed * 7919 + 104729 * len(self.steps) + k)
            out = np.zeros((len(self.candidates), len(self.ratios)))
            open_ = [i for i in np.argsort(-draw, kind="stable") if ok[i].any()]
            if open_:
                i = int(open_[0])
                cov, var = model.lookahead(self.ratios, se)
                out[i] = cov[i, i, :] ** 2 / var[i]
            return out
        return model.information(self.ratios, weights, se)

    def free(self, pairs, observe: Callable[[object, float], float]) -> list[Step]:
        """Trials already trained (stored by an earlier search with the same recipe): scored on
        this target first, their training not charged. Returns their steps."""
        return [self._take(c, r, float(observe(c, r))) for c, r in pairs
                if c in self.surrogate.index and (c, r) not in self.measured]

    def _take(self, candidate, ratio: float, score: float) -> Step:
        """A score into the model: recorded, observed, hyperparameters refitted; its step."""
        self.measured[(candidate, ratio)] = score
        self.surrogate.observe(candidate, ratio, score, self._se(score))
        self._refit()
        return Step(candidate, ratio, score, self.spent, self.order()[0])

    def order(self) -> list:
        """The candidates best first, by the rule every ranking follows (``harness.evidence``):
        a candidate measured at full data by the larger of its measurement and its posterior
        mean, any other by its posterior mean; ties by name. So the pick is never below another
        candidate's full-data measurement, and the pick the search reports, stops on and
        stores is the one the ranking shows."""
        mean, _ = self.surrogate.mean_sd()
        key = mean.copy()
        for (c, r), v in self.measured.items():
            if r >= 1.0 - 1e-12 and math.isfinite(v):
                i = self.surrogate.index[c]
                key[i] = max(key[i], v)
        return [self.candidates[i] for i in sorted(range(len(key)), key=lambda i: (-key[i], str(self.candidates[i])))]

    def run(self, observe: Callable[[object, float], float],
            dispatch: Callable[[list], None] | None = None) -> LearnedResult:
        """Search until confident, out of budget, or out of trials; ``observe(candidate, ratio)``
        trains (or looks up) one trial and returns its score (NaN: failed).

        With ``workers`` W > 1 the search is asynchronous, as ASHA is: up to W trials are in
        flight, and the next is chosen as soon as the oldest comes back, with the others still
        in flight taken at their posterior mean. Results are taken in the order the trials were
        chosen, never in the order they finish, so the decisions are a pure function of the
        scores and W, on any executor. ``dispatch(in_flight)`` is called before each wait with
        every pair chosen and not yet observed, oldest first, so the executor can have them all
        running (a streaming executor starts the new ones; a batching one trains them together)."""
        stopped = "exhausted"
        pending: list[tuple] = []
        deciding = True
        while True:
            while deciding and len(pending) < self.workers:
                p = self.surrogate.p_best(self.draws, seed=self.seed + len(self.steps))
                if (self.steps or self.measured) and self._sure(p):
                    stopped, deciding = "confidence", False
                elif self.spent + sum(r for _, r in pending) >= self.budget - 1e-9:
                    stopped, deciding = "budget", False
                else:
                    pick = self.choose(p, pending)
                    if pick is None:
                        stopped = "budget" if self.spent + sum(r for _, r in pending) > 0 else "exhausted"
                        deciding = False
                    else:
                        pending.append(pick)
            if not pending:
                break
            if dispatch is not None:
                dispatch(list(pending))
            c, r = pending.pop(0)  # the oldest: results in the order they were chosen
            score = float(observe(c, r))
            self.spent += r
            self.steps.append(self._take(c, r, score))
            if self.on_step is not None:
                self.on_step(self.steps[-1:])
        mean, sd = self.surrogate.mean_sd()
        p = self.surrogate.p_best(self.draws, seed=self.seed + len(self.steps))
        tolerance, within = self._p_pick(p)
        return LearnedResult(self.order(), mean, sd, p, self.spent, self.steps, stopped, tolerance, within)


# -- the harness strategy --------------------------------------------------------------------------


class HistoryTasks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1)


class HistoryRuns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    runs: list[str] = Field(min_length=1)


class LearnedOptions(BaseModel):
    """``search.options`` of ``strategy: learned``."""

    model_config = ConfigDict(extra="forbid")
    # stop when P(the pick is the best, or within tolerance of it) reaches it
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.9
    # the most training to spend: a fraction of the grid's samples (<= 1), or samples (> 1)
    # (0.5: with confidence 0.9 the search stops on confidence at about 0.23 of the grid on the
    # shipped table, 16 of 18 top-1 with history, and at 0.32-0.41 on random zoo subsets, so a
    # budget of 0.25 would cut many short; benchmarks/anytime.py)
    budget: Annotated[float, Field(gt=0)] = 0.5
    # what the prior may use: every task in the store trained with the same recipe (auto),
    # nothing, or the tasks / runs named
    history: Literal["auto", "none"] | HistoryTasks | HistoryRuns = "auto"
    ratios: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: list(DEFAULT_RATIOS),
                                                                min_length=1)
    workers: Annotated[int, Field(ge=1, le=1024)] = 1  # trials chosen at once (batching executors)
    # what a measurement is worth per training sample; the knowledge gradient measured best on the
    # shipped table, a tie with info on random zoo subsets (benchmarks/anytime.py --acquisitions)
    acquisition: Literal["info", "kg", "ei", "thompson"] = "kg"
    # confidence is P(the pick is the best, or within this much of it, in score units); auto: the
    # standard error of a difference of two scores at the pick's level (binomial over the test
    # items), so candidates tied within noise count as one; 0: P(the pick is the best) literally
    tolerance: Literal["auto"] | Annotated[float, Field(ge=0, lt=1)] = "auto"
    # with several targets: also the best candidate of each target (its ranking stored under its
    # task), searched after the mean, one target after another, every trial shared, all within
    # the one budget
    per_target: bool = False


def history_leak_check(history, targets) -> None:
    """A history that names a task being searched is refused: the search would see its own
    answer (a held-out replay would leak)."""
    if isinstance(history, HistoryTasks):
        clash = sorted(set(history.tasks) & set(targets))
        if clash:
            raise BadInput(f"history.tasks names {', '.join(clash)}, a target of this suite: history "
                           "must not hold the task being searched (a held-out replay would leak); "
                           "remove it")


class LearnedSearch(SearchStrategy):
    """A model-based search: surrogate over every candidate, cost-aware choice of the next
    (candidate, ratio), a prior from the store's other tasks; see the module docstring."""

    name = "learned"
    Options = LearnedOptions

    @functools.cached_property
    def _recipe(self) -> dict | None:
        """This suite's training recipe as a trials row stores it (JSON)."""
        return None if self.train_config is None else json.loads(json.dumps(self.train_config.as_dict()))

    def same_recipe(self, stored) -> bool:
        """Whether a trials row's ``train_config`` (JSON text or a mapping) is this suite's recipe."""
        stored = json.loads(stored) if isinstance(stored, str) else stored
        return self._recipe is None or stored == self._recipe

    @classmethod
    def check_suite(cls, suite) -> None:
        try:
            history = LearnedOptions.model_validate(suite.search.options).history
        except ValueError:
            return  # the options' own errors are reported where they are written
        try:
            history_leak_check(history, {t.task for t in suite.targets})
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    def history(self) -> tuple[dict, dict, list[str]]:
        """(full-data scores by task, low-ratio scores by task, the runs they came from) of the
        suite's candidates on other tasks, trained with this suite's recipe and seed-agnostic
        (scores averaged over seeds), as ``search.history`` allows; the runs as (task, run)."""
        opt = self.options.history
        targets = {t.task for t in self.targets}
        if opt == "none" or (opt == "auto" and getattr(self.executor, "replay", False)):
            return {}, {}, []  # a replay's table is the simulated world, not history
        history_leak_check(opt, targets)  # (validated with the suite; a suite built in code too)
        refs = {(c.vision_encoder, c.language_model) for c in self.plan.candidates}
        rows = self.store.query(
            "select t.encoder, t.llm, t.sample_ratio, t.train_config, t.run_id, s.task, s.value "
            "from trials t join scores s on s.trial_key = t.trial_key where t.status = 'done' "
            "order by s.task, t.encoder, t.llm, t.sample_ratio, t.run_id, t.trial_key")
        full: dict = {}
        low: dict = {}
        runs: set = set()
        for r in rows:
            if r["task"] in targets or (r["encoder"], r["llm"]) not in refs:
                continue
            if isinstance(opt, HistoryTasks) and r["task"] not in opt.tasks:
                continue
            if isinstance(opt, HistoryRuns) and r["run_id"] not in opt.runs:
                continue
            if not self.same_recipe(r["train_config"]):
                continue
            key = (r["encoder"], r["llm"])
            bucket = full if r["sample_ratio"] >= 1 - 1e-12 else low
            inner = bucket.setdefault(r["task"], {})
            k = key if bucket is full else (key, round(float(r["sample_ratio"]), 6))
            inner.setdefault(k, []).append(float(r["value"]))
            runs.add((r["task"], r["run_id"]))
        mean = lambda d: {t: {k: float(np.mean(v)) for k, v in x.items()} for t, x in d.items()}  # noqa: E731
        return mean(full), mean(low), sorted(runs)

    def stored_pairs(self, ratios) -> list[tuple]:
        """(candidate, ratio) of this suite's candidates that the store holds finished trials of,
        with this suite's recipe and seed: scoring them on this target costs evaluation only
        (the executor reuses them by content key). None in a replay (the table is the world)."""
        if getattr(self.executor, "replay", False):
            return []
        refs = {(c.vision_encoder, c.language_model) for c in self.plan.candidates}
        wanted = {round(float(r), 6) for r in ratios}
        out = set()
        for r in self.store.query("select encoder, llm, sample_ratio, train_config from trials "
                                  "where status = 'done' and seed = ? and continued_from is null",
                                  [self.plan.seed]):
            ratio = round(float(r["sample_ratio"]), 6)
            if (r["encoder"], r["llm"]) in refs and ratio in wanted and self.same_recipe(r["train_config"]):
                out.add(((r["encoder"], r["llm"]), ratio))
        return sorted(out, key=lambda p: (str(p[0]), p[1]))

    def record_beliefs(self, core: LearnedCore, result: LearnedResult, prior: Mapping | None,
                       objective: str | None = None) -> None:
        """``search_prior`` rows: each candidate's history prior beside this task's own scores
        and the posterior, so a report can show what history said and what the data said."""
        before = Surrogate(core.candidates, core.surrogate.hyper, prior)
        m0, sd0 = before.m0, np.sqrt(np.clip(np.diag(before.K), 0.0, None))
        prior_rank = {i: k + 1 for k, i in enumerate(sorted(range(len(m0)), key=lambda i: (-m0[i], str(core.candidates[i]))))}
        post_rank = {core.surrogate.index[c]: k + 1 for k, c in enumerate(result.order)}
        rows = []
        for i, c in enumerate(core.candidates):
            own = [(r, v) for (cc, r), v in core.measured.items() if cc == c and math.isfinite(v)]
            own_ratio, own_score = max(own) if own else (None, None)
            rows.append({"task": objective or self.objective, "encoder": c[0], "llm": c[1],
                         "history_z": None if prior is None or c not in prior else float(prior[c]),
                         "prior_mean": float(m0[i]), "prior_sd": float(sd0[i]), "prior_rank": prior_rank[i],
                         "own_score": own_score, "own_ratio": own_ratio,
                         "posterior_mean": float(result.mean[i]), "posterior_sd": float(result.sd[i]),
                         "posterior_rank": post_rank[i], "p_best": float(result.p_best[i])})
        self.insert("search_prior", rows)

    def _dispatch(self, in_flight: list[tuple]) -> None:
        """Hand the trials in flight to the executor (:meth:`harness.trials.Trials.prefetch`): a
        streaming one (ray) starts each once, as it is chosen, and keeps W workers busy; a
        batching one (processes) trains together those not yet trained; with ``local`` each
        trains when its result is asked for."""
        from harness.suite import Candidate

        self.prefetch([(Candidate(*c), r) for c, r in in_flight])

    def search(self) -> list[RankedCandidate]:
        from harness.suite import Candidate

        opt = self.options
        full, low, runs = self.history()
        hyper = fit_hyperparameters(full, low) if full else Hyper()
        prior = history_prior(full) if full else None
        if full:
            self.say(f"learned: prior from {len(full)} task(s) of {len({r for _, r in runs})} run(s): "
                     f"{', '.join(sorted(full))}", always=True)
            self.insert("search_history", [{"task": t, "source_run": r} for t, r in runs])
        else:
            self.say("learned: no history; the prior is flat", always=True)
        self.phase("learned search", total=None)
        self._step_no = 0
        n_items = self.targets[0].limit if len(self.targets) == 1 else None
        free = self.stored_pairs(opt.ratios)
        if free:
            self.say(f"learned: {len(free)} trial(s) of these candidates are stored: scored first, "
                     "their training not charged", always=True)
        candidates = self.plan.candidates
        self._left = opt.budget * len(candidates) if opt.budget <= 1 else opt.budget / max(self.plan.samples, 1)
        ranked = self._search_one(self.objective, lambda c, r: self.evaluate(Candidate(*c), r), hyper, prior,
                                  n_items, free)
        if opt.per_target and len(self.targets) > 1:
            self._per_target(hyper, prior, free)
        return ranked

    def _per_target(self, hyper, prior, stored) -> None:
        """The best candidate of each target, searched one target after another: every trial of
        this run (and every stored one) is scored on the target first, free (a trial scores
        every target at once), then the target's own search trains what it still needs, within
        what is left of the run's one budget. Each target's ranking is stored under its task."""
        from harness.evidence import order_by_evidence
        from harness.suite import Candidate

        for target in self.targets:
            task = target.task
            done = sorted({((c.vision_encoder, c.language_model), r) for (c, r), o in self._outcomes.items()
                           if o.status == "done"} | set(stored), key=lambda p: (str(p[0]), p[1]))
            self.say(f"learned: the best on {task}: {len(done)} trial(s) of this run and the store scored "
                     "first", always=True)
            ranked = self._search_one(task, lambda c, r, task=task: self.evaluate(Candidate(*c), r, task),
                                      hyper, prior, target.limit, done)
            self.records.ranking(order_by_evidence(ranked, self.measured_scores(task=task)), task, 1,
                                 functools.partial(self._ranked_error, task=task))

    def _search_one(self, objective: str, observe, hyper, prior, n_items, free) -> list[RankedCandidate]:
        """One learned search of ``objective`` (``observe(candidate, ratio)``: its score); the
        ``free`` pairs scored first, uncharged. Its steps and beliefs are stored under
        ``objective``; returns its ranking."""
        from harness.suite import Candidate

        opt = self.options
        candidates = [(c.vision_encoder, c.language_model) for c in self.plan.candidates]
        core = LearnedCore(candidates, ratios=opt.ratios, hyper=hyper, prior=prior,
                           confidence=opt.confidence, budget=max(self._left, 0.0), workers=opt.workers,
                           seed=self.plan.seed, n_items=n_items or 1000, acquisition=opt.acquisition,
                           tolerance=None if opt.tolerance == "auto" else opt.tolerance)

        def record(steps, free=False):
            rows = []
            for st in steps:
                cand = Candidate(*st.candidate)
                outcome = self._outcomes.get((cand, st.ratio))
                rows.append({"step": self._step_no, "task": objective, "encoder": cand.vision_encoder,
                             "llm": cand.language_model, "sample_ratio": st.ratio,
                             "score": st.score if math.isfinite(st.score) else None,
                             "trial_key": outcome.key if outcome else None, "spent": st.spent,
                             "pick_encoder": st.pick[0], "pick_llm": st.pick[1], "free": free})
                self._step_no += 1
            self.insert("search_steps", rows)

        if free:
            record(core.free(free, observe), free=True)
        core.on_step = record
        result = core.run(observe, dispatch=self._dispatch)
        self._left -= result.spent  # one budget for the run: the mean's search and every target's
        pick = result.order[0]
        i = core.surrogate.index[pick]
        where = "" if objective == self.objective else f" on {objective}"
        self.say(f"learned{where}: stopped ({result.stopped}) after {len(result.steps)} trial(s), "
                 f"{result.spent:.2f} full-data trials of {len(candidates)}; P(pick is best) = "
                 f"{result.p_best[i]:.2f}" + (f", P(pick within {result.tolerance:.3g} of the best) = "
                                              f"{result.p_within:.2f}" if result.tolerance > 0 else ""),
                 always=True)
        self.record_beliefs(core, result, prior, objective)
        ranked = []
        for c in result.order:
            k = core.surrogate.index[c]
            cand = Candidate(*c)
            measured_at = max((r for (cc, r) in core.measured if cc == c and math.isfinite(core.measured[(cc, r)])),
                              default=None)
            outcome = self._outcomes.get((cand, measured_at)) if measured_at is not None else None
            if measured_at is not None and measured_at >= 1 - 1e-12:
                # the posterior mean as its estimate: the ranking's order is the search's (order())
                ranked.append(RankedCandidate(cand, core.measured[(c, measured_at)], "measured",
                                              outcome.key if outcome else None, sample_ratio=1.0,
                                              stage="survivor", estimate=float(result.mean[k])))
            else:
                m, s = float(result.mean[k]), float(result.sd[k])
                ranked.append(RankedCandidate(cand, m, "predicted", outcome.key if outcome else None,
                                              sample_ratio=measured_at, stage="survivor",
                                              lower=m - 1.96 * s, upper=m + 1.96 * s))
        return ranked
