"""Scoring a trained VLM with lmms-eval, in memory and offline.

``InMemoryVLM`` is an lmms-eval model class wrapping a live ``VLM`` (no checkpoint round
trip, no registry lookup). Shapes-world targets are written as local parquet + a generated
task YAML; user tasks are lmms-eval names (optionally with a local dataset override) or a
folder of task YAMLs.

lmms-eval 0.7.3 pitfalls handled here (each verified on the installed source):
- ``evaluate()`` ends with ``lm.clean()``, which deletes nn.Module attributes: overridden.
- ``simple_evaluate`` reseeds global RNGs unless its seed arguments are None: they are None.
- multiple choice takes the *minimum* of ``GenerationResult(text=(value, greedy))``: we return
  the negative log-likelihood, wrapped.
- ``TaskManager()`` indexes every built-in task (~5 s): shapes tasks use only their folder.
- dataset and metric errors arrive wrapped in ``tenacity.RetryError``: unwrapped and named.
- importing lmms_eval's models removes loguru sinks: we re-add one at ERROR level.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

SHAPES_TASK_PREFIX = "harness_shapes_"


class ScoringError(HarnessError):
    """lmms-eval could not score a task; the message names the task and the cause."""


@dataclass
class TaskScore:
    task: str  # the suite's task ref, e.g. shapes:count
    metric: str
    value: float
    n_items: int
    samples: list[dict] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Target:
    """One target task of a suite: ``shapes:<task>``, ``lmms:<name>`` or ``lmms:<folder>``."""

    task: str
    limit: int | None = None
    metric: str | None = None
    dataset: str | None = None  # local parquet override for an lmms-eval built-in task


def _import_lmms():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lmms_eval.evaluator import simple_evaluate  # noqa: F401  (removes loguru sinks)
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    import lmms_eval
    import lmms_eval.evaluator as evaluator

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


SHAPES_UTILS = '''
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
'''

SHAPES_YAML = """
task: {task}
dataset_path: parquet
dataset_kwargs:
  data_files:
    test: {parquet}
test_split: test
output_type: generate_until
doc_to_visual: !function harness_shapes_utils.doc_to_visual
doc_to_text: !function harness_shapes_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 4
  until: ["\\n", "."]
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
metadata:
  version: {version}
"""


def shapes_task_dir(name: str, *, n: int, seed: int, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Write (once) a local lmms-eval task for a shapes-world test split; returns (folder, task)."""
    from harness.shapes import load_dataset

    dataset = load_dataset(name, split="test", n=n, seed=seed)
    copy = dataset.to_disk(cache_dir)
    folder = Path(copy.root)
    task = f"{SHAPES_TASK_PREFIX}{name}_{dataset.fingerprint}"
    yaml_path = folder / "lmms_task" / f"{task}.yaml"
    if not yaml_path.exists():
        yaml_path.parent.mkdir(parents=True, exist_ok=True)
        (yaml_path.parent / "harness_shapes_utils.py").write_text(SHAPES_UTILS)
        text = SHAPES_YAML.format(task=task, parquet=Path(copy.parquet).resolve(), version=1)
        tmp = yaml_path.with_suffix(".tmp")
        tmp.write_text(textwrap.dedent(text))
        tmp.replace(yaml_path)
    return yaml_path.parent, task


def _lmms_tasks(target: Target):
    """(TaskManager, tasks) of an ``lmms:`` target: a local YAML file or folder of tasks, or a
    built-in task name (with ``dataset``: its test split read from that parquet file)."""
    from lmms_eval.tasks import TaskManager

    name = target.task.partition(":")[2]
    path = Path(name)
    if path.exists():
        folder = path if path.is_dir() else path.parent
        manager = TaskManager(include_path=str(folder), include_defaults=False)
        tasks = [path.stem] if path.is_file() else sorted(
            t for t in manager.all_tasks if t in {p.stem for p in folder.glob("*.yaml")})
        return manager, tasks
    if target.dataset:
        return TaskManager(), [{"task": name, "dataset_path": "parquet",
                                "dataset_kwargs": {"data_files": {"test": str(Path(target.dataset).resolve())}},
                                "test_split": "test"}]
    return TaskManager(), [name]


def lmms_feature_items(target: Target, n: int, seed: int):
    """(items, fingerprint, where) for clustering on an ``lmms:`` target's own images: ``n``
    documents (a seeded sample) of its validation split, else its training split, never its test
    split, as :class:`harness.datasets.VisionTextItem` (image, question); or (None, None, why)
    when the task has neither (or cannot be loaded here). The fingerprint hashes the sampled
    documents' questions and image bytes, so changed data gets new features."""
    import hashlib

    import numpy as np

    from harness.datasets import VisionTextItem

    _import_lmms()
    from lmms_eval.tasks import get_task_dict

    try:
        manager, tasks = _lmms_tasks(target)
        found = get_task_dict(tasks, manager)
    except Exception as exc:  # noqa: BLE001 - not loadable here (a hub task offline, a bad YAML)
        return None, None, f"lmms-eval cannot load it here ({type(exc).__name__}: {str(exc)[:120]})"
    task_name, task = next(iter(sorted(found.items(), key=lambda kv: str(kv[0]))))
    if not hasattr(task, "has_validation_docs"):  # a group of tasks
        return None, None, "it is a group of tasks, not one task"
    if task.has_validation_docs():
        split, docs = "validation", task.validation_docs()
    elif task.has_training_docs():
        split, docs = "train", task.training_docs()
    else:
        return None, None, "it has no validation or training split (its test items are never used)"
    picked = sorted(np.random.default_rng([0xC1, int(seed)]).permutation(len(docs))[:n].tolist())
    digest = hashlib.sha256(f"{task_name}:{split}:{len(docs)}".encode())
    items = []
    for i in picked:
        doc = docs[i]
        visuals = [v for v in (task.doc_to_visual(doc) or []) if hasattr(v, "convert")]
        if not visuals:
            continue
        image = visuals[0].convert("RGB")
        question = str(task.doc_to_text(doc))
        digest.update(question.encode())
        digest.update(image.tobytes())
        items.append(VisionTextItem(
            id=f"{task_name}:{split}:{i}", task=str(task_name), image_path=None,
            conversations=({"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": ""}),
            load_image=lambda image=image: image))
    if not items:
        return None, None, f"its {split} split has no image documents"
    return items, digest.hexdigest()[:16], f"{len(items)} images of its {split} split"


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
          device: str = "cpu", default_limit: int = 1000, cache_dir: Path | None = None,
          log_samples: bool = False) -> list[TaskScore]:
    """Score ``vlm`` on every target through lmms-eval; one TaskScore per target."""
    _import_lmms()
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    lm = model_class()(vlm, batch_size=batch_size, device=device)
    scores: list[TaskScore] = []
    for target in targets:
        family, _, name = target.task.partition(":")
        limit = None
        if family == "shapes":
            folder, task = shapes_task_dir(name, n=target.limit or default_limit, seed=seed,
                                           cache_dir=cache_dir)
            manager = TaskManager(include_path=str(folder), include_defaults=False)
            tasks: list = [task]
        elif family == "lmms":
            limit = target.limit
            manager, tasks = _lmms_tasks(target)
        else:
            raise ScoringError(f"target {target.task!r}: only shapes:* and lmms:* tasks can be scored")
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
            scores.append(TaskScore(target.task if len(result["results"]) == 1 else f"lmms:{task_name}",
                                    metric.split(",")[0], value, int(n), samples))
    return scores
