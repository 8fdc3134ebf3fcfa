"""The plan a search strategy reads: a suite resolved once, before the search starts.

A strategy never reaches into the whole :class:`harness.suite.Suite`: it gets the candidates
(every encoder x LLM pair, encoder-major), the training recipe (a
:class:`harness.training.TrainConfig`), the targets (:class:`harness.scoring.Target`), the
alignment data and its budget (``samples`` at r = 1; None: the whole set), the seed and device,
and its own section of the suite (``search``: policies, clustering, predictor, options). Every
default is the suite schema's, filled in by validation; nothing here sets one of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    suite: str  # the suite's name (messages, run rows)
    seed: int
    device: str  # auto | cpu | cuda
    encoders: tuple[str, ...]
    llms: tuple[str, ...]
    candidates: tuple  # harness.suite.Candidate, every encoder x LLM, encoder-major
    alignment: str  # the alignment dataset ref
    samples: int | None  # alignment items at r = 1; None: the whole set
    train: Any  # harness.training.TrainConfig
    targets: tuple  # harness.scoring.Target, in the suite's order
    search: Any  # harness.suite.Search: the strategy's section (stages, clustering, predictor, options)
    executor: str  # the executor's registered name
    executor_options: Mapping[str, Any]  # its options, as its Options model validated them

    @classmethod
    def of(cls, suite) -> Plan:
        """The plan of a validated suite."""
        from harness.training import config_from_suite

        return cls(
            suite=suite.name, seed=suite.seed, device=suite.device,
            encoders=tuple(suite.zoo.vision_encoders), llms=tuple(suite.zoo.language_models),
            candidates=tuple(suite.candidates()),
            alignment=suite.alignment.dataset, samples=suite.alignment.samples,
            train=config_from_suite(suite.vlm),
            targets=tuple(suite.targets),
            search=suite.search, executor=suite.executor.name,
            executor_options=dict(suite.executor.kwargs()))
