"""Scoring a trained VLM with lmms-eval, in memory and offline.

``InMemoryVLM`` is an lmms-eval model class wrapping a live ``VLM`` (no checkpoint round
trip, no registry lookup). Which lmms-eval task scores a target is its dataset family's answer
(:meth:`harness.datasets.DatasetFamily.scoring_task`): a local exact-match task written from
the family's test split, or a task lmms-eval reads itself.

lmms-eval 0.7.3 pitfalls handled here (each verified on the installed source):
- ``evaluate()`` ends with ``lm.clean()``, which deletes nn.Module attributes: overridden.
- ``simple_evaluate`` reseeds global RNGs unless its seed arguments are None: they are None.
- multiple choice takes the *minimum* of ``GenerationResult(text=(value, greedy))``: we return
  the negative log-likelihood, wrapped.
- ``TaskManager()`` indexes every built-in task (~5 s): a local task uses only its folder.
- dataset and metric errors arrive wrapped in ``tenacity.RetryError``: unwrapped and named.
- importing lmms_eval's models removes loguru sinks: we re-add one at ERROR level.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.suite import Target


# test items a target is scored on when the suite gives it no ``limit`` (and its family draws
# them: an lmms task scores its whole split); the one place this default lives
DEFAULT_TEST_ITEMS = 1000


class ScoringError(HarnessError):
    """lmms-eval could not score a task; the message names the task and the cause."""


@dataclass
class TaskScore:
    task: str  # the suite's task ref, e.g. shapes:count
    metric: str
    value: float
    n_items: int
    samples: list[dict] = field(default_factory=list, repr=False)


def __getattr__(name: str):
    # ``Target`` is the suite schema's model (harness.suite.Target: one target type for a suite,
    # a plan, a trial and scoring), loaded on first use so that importing this module (the CLI
    # reads DEFAULT_TEST_ITEMS at start-up) does not load the schema
    if name == "Target":
        from harness.suite import Target

        return Target
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _import_lmms():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lmms_eval.evaluator import simple_evaluate  # noqa: F401  (removes loguru sinks)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    import lmms_eval
    from lmms_eval import evaluator

    # its "Postprocessing" bar passes disable= itself, so TQDM_DISABLE cannot quiet it; harness
    # shows its own progress
    if not getattr(evaluator.tqdm, "_harness_quiet", False):
        evaluator.tqdm = _quiet_tqdm(evaluator.tqdm)
    return lmms_eval


def _quiet_tqdm(tqdm):
    def quiet(*args, **kwargs):
        kwargs["disable"] = True
        return tqdm(*args, **kwargs)

    quiet._harness_quiet = True
    return quiet


_MODEL_CLASS = None


def model_class():
    """The lmms-eval model class, built on first use so importing harness stays light."""
    global _MODEL_CLASS
    if _MODEL_CLASS is not None:
        return _MODEL_CLASS
    _import_lmms()
    import torch
    from lmms_eval.api.instance import GenerationResult
    from lmms_eval.api.model import lmms

    class InMemoryVLM(lmms):
        """An lmms-eval model backed by a live ``harness.vlm.VLM``."""

        is_simple = True

        def __init__(self, vlm, batch_size: int = 32, device: str = "cpu"):
            super().__init__()
            self.vlm = vlm
            self.batch_size = batch_size
            self._device = torch.device(device)
            self.accelerator = None

        @property
        def device(self):
            return self._device

        def clean(self):  # the default deletes every nn.Module attribute
            pass

        def _pixels(self, chunk):
            images = []
            for req in chunk:
                doc_to_visual, doc_id, task, split = req.args[2:6]
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual else None
                if not visuals:
                    raise ScoringError(f"task {task!r} doc {doc_id} has no image; harness VLMs need one")
                images.append(visuals[0].convert("RGB"))
            transform = self.vlm.encoder.transform
            return torch.stack([transform(im) for im in images]).to(self._device)

        def generate_until(self, requests):
            out = []
            for lo in range(0, len(requests), self.batch_size):
                chunk = requests[lo:lo + self.batch_size]
                gen_kwargs = chunk[0].args[1] or {}
                texts = self.vlm.generate(
                    self._pixels(chunk), [req.args[0] for req in chunk],
                    max_new_tokens=int(gen_kwargs.get("max_new_tokens", 16)),
                    until=list(gen_kwargs.get("until") or []),
                )
                out.extend(texts)
            return out

        def loglikelihood(self, requests):
            out = []
            for lo in range(0, len(requests), self.batch_size):
                chunk = requests[lo:lo + self.batch_size]
                pairs = self.vlm.answer_logprobs(
                    self._pixels(chunk), [req.args[0] for req in chunk],
                    [req.args[1].strip() for req in chunk],
                )
                # lmms-eval takes the argmin over choices: return a loss, wrapped
                out.extend(GenerationResult(text=(-lp, greedy)) for lp, greedy in pairs)
            return out

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("harness VLMs answer single-round prompts")

    _MODEL_CLASS = InMemoryVLM
    return InMemoryVLM


def _unwrap(exc: BaseException) -> BaseException:
    try:
        import tenacity
    except ImportError:  # pragma: no cover
        return exc
    while isinstance(exc, tenacity.RetryError) and exc.last_attempt.exception() is not None:
        exc = exc.last_attempt.exception()
    return exc


def _pick_metric(results: dict, wanted: str | None) -> tuple[str, float]:
    numeric = {k: v for k, v in results.items()
               if isinstance(v, (int, float)) and "_stderr" not in k and k != "alias"}
    if wanted is not None:
        for key, value in numeric.items():
            if key.split(",")[0] == wanted:
                return key, float(value)
        raise ScoringError(f"metric {wanted!r} not produced; available: {', '.join(numeric)}")
    for preferred in ("exact_match", "acc", "accuracy", "relaxed_overall", "anls"):
        for key, value in numeric.items():
            if key.split(",")[0] == preferred:
                return key, float(value)
    if not numeric:
        raise ScoringError(f"no numeric metric in results: {results}")
    key = sorted(numeric)[0]
    return key, float(numeric[key])


def score(vlm, targets: list[Target], *, seed: int = 0, batch_size: int = 32,
          device: str = "cpu", default_limit: int = DEFAULT_TEST_ITEMS, cache_dir: Path | None = None,
          log_samples: bool = False) -> list[TaskScore]:
    """Score ``vlm`` on every target through lmms-eval; one TaskScore per target."""
    _import_lmms()
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from harness.datasets import family_of

    lm = model_class()(vlm, batch_size=batch_size, device=device)
    scores: list[TaskScore] = []
    for target in targets:
        family, _ = family_of(target.task)
        found = family.scoring_task(target, n=target.limit or default_limit, seed=seed, cache_dir=cache_dir)
        manager = TaskManager(include_path=found.include_path, include_defaults=found.include_defaults)
        tasks, limit = list(found.tasks), found.limit
        try:
            result = simple_evaluate(
                model=lm, tasks=tasks, task_manager=manager, limit=limit, log_samples=log_samples,
                bootstrap_iters=0, random_seed=None, numpy_random_seed=None,
                torch_random_seed=None, fewshot_random_seed=seed, process_docs_parallel=1,
            )
        except Exception as exc:  # noqa: BLE001 - re-raised with the task named
            cause = _unwrap(exc)
            raise ScoringError(
                f"lmms-eval failed on {target.task!r}: {type(cause).__name__}: {cause}") from cause
        for task_name, res in result["results"].items():
            metric, value = _pick_metric(res, target.metric)
            n = result.get("n-samples", {}).get(task_name, {}).get("effective", 0)
            samples = result.get("samples", {}).get(task_name, []) if log_samples else []
            scores.append(TaskScore(target.task if len(result["results"]) == 1
                                    else f"{target.task.partition(':')[0]}:{task_name}",
                                    metric.split(",")[0], value, int(n), samples))
    return scores
