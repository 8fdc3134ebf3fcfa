"""One trial: (encoder, LLM, alignment data at ratio r, training config, seed) -> a trained
projector (+LoRA) -> scores on the target tasks through lmms-eval, all in the store.

A trial's content key covers what determines its training (component and data fingerprints,
ratio, config, seed). Before anything trains the key is looked up: a finished trial is reused;
target scores it lacks are computed from its checkpoint without training again.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__
from harness.errors import (
    BadInput,
    EnvironmentFault,
    environment_fault,
    interrupted,
    stop_if_interrupted,
)
from harness.scoring import DEFAULT_TEST_ITEMS, Target, TaskScore

PLUGIN = "harness.trial"


@dataclass(frozen=True)
class TrialSpec:
    encoder: str
    llm: str
    alignment: str  # the alignment dataset ref (the suite's alignment.dataset)
    samples: int | None = None  # alignment items at r = 1; None: the whole set (suite: alignment.samples)
    ratio: float = 1.0
    train: object = None  # harness.training.TrainConfig (None: defaults)
    seed: int = 0
    targets: tuple[Target, ...] = ()
    device: str = "auto"
    # a continued trial (search.continuation): the ratios trained before this one, ascending.
    # It resumes the trial at after[-1] (itself continued from after[:-1]) and trains the
    # samples its ratio adds; () is a trial trained from scratch.
    after: tuple[float, ...] = ()

    @property
    def parent(self) -> TrialSpec | None:
        """The trial a continued one resumes; None for one trained from scratch."""
        if not self.after:
            return None
        return dataclasses.replace(self, ratio=self.after[-1], after=self.after[:-1])


@dataclass
class TrialOutcome:
    key: str
    status: str  # done | failed
    reused: bool
    trained: bool
    scores: list[TaskScore] = field(default_factory=list)
    wall_seconds: float = 0.0
    samples_seen: int = 0
    error: str | None = None


class ComponentFailed(BadInput):
    """An encoder or LLM that cannot be loaded (a damaged checkpoint, an unknown timm name, a
    bad config, a plugin's exception): the candidates that use it fail, the search goes on."""

    def __init__(self, kind: str, ref: str, exc: BaseException, entry=None):
        self.kind, self.ref = kind, ref
        what = "vision encoder" if kind == "vision_encoder" else "language model"
        by = f" (plugin {entry.plugin} {entry.version})" if entry is not None else ""
        super().__init__(f"{what} {ref}{by} cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}")


def load_component(kind: str, ref: str):
    """(registry entry, loaded component) for an encoder or LLM ref like ``tiny:vit-p8``;
    a loader's failure is a :class:`ComponentFailed` naming the component."""
    from harness.plugin_manager import get_components

    entry, name = get_components()[kind].resolve(ref)
    try:
        component = entry.load()(name)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # any loader's failure is this component's
        stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
        raise ComponentFailed(kind, ref, exc, entry) from exc
    if entry.producer is not None:  # a plugin's component: keyed by its release too
        from harness.datasets import content_hash

        try:
            component.fingerprint = content_hash({"fingerprint": component.fingerprint,
                                                  "producer": entry.producer})
        except AttributeError as exc:  # a read-only fingerprint: its plugin must say so
            raise ComponentFailed(kind, ref, TypeError(
                f"its fingerprint cannot be set ({exc}); harness keys a plugin's components by "
                f"{entry.producer} too, so make fingerprint a plain attribute"), entry) from exc
    return entry, component


def n_params(component) -> int | None:
    """Parameters of a loaded encoder or LLM (None if it is not a torch module)."""
    parameters = getattr(component, "parameters", None)
    return sum(p.numel() for p in parameters()) if callable(parameters) else None


def load_encoder(ref: str):
    return load_component("vision_encoder", ref)


def load_language_model(ref: str):
    return load_component("language_model", ref)


def load_alignment(ref: str, samples: int | None, seed: int):
    """(registry entry, dataset): the alignment data named by ``ref``, capped at ``samples`` items
    (None: all of it; a generated family: its own default size), from its dataset family."""
    from harness.plugin_manager import families_that, family_entry

    entry, family, name = family_entry(ref)
    if not family.alignment_data:
        raise BadInput(f"alignment dataset {ref!r}: family {family.family!r} holds target tasks, not "
                       f"alignment data; use one of: {', '.join(families_that('alignment_data')) or '(none)'}")
    return entry, family.alignment(name, samples=samples, seed=seed)


def examples_from(dataset) -> list:
    """Every human/gpt turn of every conversation becomes one single-turn example with the image."""
    from harness.training import Example

    out = []
    for item in dataset:
        turns = item.conversations
        image = item.image  # one image object per conversation (rendered once)
        for human, gpt in zip(turns[0::2], turns[1::2]):
            out.append(Example(image, human["value"], gpt["value"]))
    return out


def _checkpoint_tensors(vlm) -> dict:
    """What training changed: trainable parameters and the feature standardisation."""
    tensors = {n: p for n, p in vlm.named_parameters() if p.requires_grad}
    tensors.update(feature_mean=vlm.feature_mean, feature_std=vlm.feature_std)
    return {n: t.detach().cpu().contiguous() for n, t in tensors.items()}


OPTIMIZER_FILE = "optimizer.pt"  # beside the checkpoint: AdamW's state, for a continuation


def save_checkpoint(vlm, directory: Path, result=None) -> Path:
    """The trainable tensors, and with a ``result`` whose recipe can be continued
    (:func:`harness.training.continuable`) AdamW's state and the step count too."""
    import io

    import torch
    from safetensors.torch import save

    # serialised in memory, written by Python: a full disk or a read-only folder is an OSError
    # with its errno (the libraries' own writers report it as text, or not at all)
    path = directory / "trainable.safetensors"
    files = [(path, save(_checkpoint_tensors(vlm)))]
    if result is not None and result.optimizer_state is not None:
        buf = io.BytesIO()
        torch.save({"optimizer": result.optimizer_state, "steps": result.steps_total}, buf)
        files.append((directory / OPTIMIZER_FILE, buf.getvalue()))
    tmp = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for target, data in files:
            tmp = target.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(target)
            tmp = None
    except OSError as exc:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        fault = environment_fault(exc, f"saving the checkpoint of trial {directory.name[:12]}", directory)
        if fault is not None:
            raise fault from exc
        raise
    return path


def load_resume_state(path: Path, steps_planned: int):
    """The :class:`harness.training.Resume` of the trial whose checkpoint is ``path``."""
    import torch

    from harness.training import Resume

    state = torch.load(path.parent / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    return Resume(optimizer_state=state["optimizer"], steps_before=int(state["steps"]),
                  steps_planned=steps_planned)


def load_checkpoint(vlm, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    expected = set(_checkpoint_tensors(vlm))
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise BadInput(f"checkpoint {path} does not match this VLM: missing {sorted(missing)[:3]}, "
                       f"unexpected {sorted(unexpected)[:3]}")
    vlm.load_state_dict(state, strict=False)


def build_vlm(spec: TrialSpec, encoder, language_model):
    from harness.training import TrainConfig, prepare_trainable
    from harness.vlm import VLM

    config = spec.train or TrainConfig()
    import torch

    torch.manual_seed(spec.seed)  # projector / LoRA init
    vlm = VLM(encoder, language_model, projector=config.projector,
              normalize_features=config.normalize_features)
    return prepare_trainable(vlm, config), config


def identify(spec: TrialSpec):
    """(content key, (entry, encoder), (entry, LLM), (entry, alignment dataset)) of a trial.

    Components and data are identities: fixed seeds. The trial seed drives the projector /
    LoRA init and the data order; the nested subset for ratio r uses it too."""
    encoder = load_encoder(spec.encoder)
    language_model = load_language_model(spec.llm)
    dataset = load_alignment(spec.alignment, spec.samples, seed=0)
    key = key_of(spec, encoder[1].fingerprint, language_model[1].fingerprint, dataset[1].fingerprint)
    return key, encoder, language_model, dataset


def _unloadable(spec: TrialSpec, store, run_id: str, config, exc: ComponentFailed) -> TrialOutcome:
    """Record a trial whose encoder or LLM could not be loaded as failed, keyed by the refs
    (there is no fingerprint to key it by); a later run tries to load it again."""
    from harness.store import content_key

    key = "unloadable-" + content_key({"encoder": spec.encoder, "llm": spec.llm, "ratio": spec.ratio,
                                       "train": config.as_dict(), "seed": spec.seed,
                                       "alignment": spec.alignment, "samples": spec.samples})[:48]
    store.start_trial(key, run_id=run_id, encoder=spec.encoder, llm=spec.llm, dataset_fingerprint="",
                      sample_ratio=spec.ratio, plugin=PLUGIN, plugin_version=__version__,
                      train_config=config.as_dict(), seed=spec.seed)
    store.record_use(run_id, "trial", key, reused=False)
    store.finish_trial(key, status="failed", wall_seconds=0.0, error=str(exc))
    return TrialOutcome(key, "failed", reused=False, trained=True, error=str(exc))


def key_of(spec: TrialSpec, encoder_fp: str, llm_fp: str, dataset_fp: str) -> str:
    """A trial's content key from its components' and alignment data's fingerprints."""
    from harness.store import trial_key
    from harness.training import TrainConfig

    config = spec.train or TrainConfig()
    parent = spec.parent
    return trial_key(encoder=encoder_fp, llm=llm_fp, dataset=dataset_fp, sample_ratio=spec.ratio,
                     train_config=config.as_dict(), seed=spec.seed,
                     continued_from=None if parent is None else key_of(parent, encoder_fp, llm_fp, dataset_fp))


def stored_outcome(spec: TrialSpec, key: str, store, run_id: str,
                   default_limit: int = DEFAULT_TEST_ITEMS) -> TrialOutcome | None:
    """The outcome of a trial the store holds, done and scored on every target, recorded as a
    use by ``run_id``; None when it is absent, not done, or lacks a target's score (then
    :func:`run_trial` trains or scores what is missing). Loads no model."""
    prior = store.get_trial(key)
    if prior is None or prior["status"] != "done":
        return None
    have = {s["task"]: s for s in store.get_scores(key)}
    if any(t.task not in have or _expected_items(t, default_limit) not in (None, have[t.task]["n_items"])
           for t in spec.targets):
        return None
    store.record_use(run_id, "trial", key, reused=True)
    scores = [TaskScore(t.task, have[t.task]["metric"], have[t.task]["value"],
                        have[t.task]["n_items"] or 0) for t in spec.targets]
    return TrialOutcome(key, "done", reused=True, trained=False, scores=scores,
                        wall_seconds=prior["wall_seconds"] or 0.0,
                        samples_seen=prior["samples_seen"] or 0)


def _expected_items(target: Target, default_limit: int) -> int | None:
    from harness.plugin_manager import family_of

    return family_of(target.task)[0].scored_items(target, default_limit)


def run_batch(specs: list, store, run_id: str, train, finished) -> list[TrialOutcome]:
    """The outcomes of ``specs``, in order, for an executor that trains several at once:
    those the store holds are looked up; ``train(missing specs)`` trains the rest (in worker
    processes, on Ray, ...) and gets them into the store; then ``finished(spec)`` gives each
    one's outcome, marked as trained by this batch."""
    outcomes = [run_trial(spec, store, run_id, stored_only=True) for spec in specs]
    missing = [i for i, o in enumerate(outcomes) if o is None]
    if missing:
        train([specs[i] for i in missing])
    for i in missing:
        outcomes[i] = dataclasses.replace(finished(specs[i]), reused=False, trained=True)
    return outcomes


def checkpoint_of(store, row) -> Path:
    """A stored trial's checkpoint file: ``checkpoints/<its key>/trainable.safetensors`` beside
    the store, derived from its content key (where :func:`run_trial` saves it), never the path
    the row names: a row imported or merged from elsewhere cannot point a trial at another
    trial's weights."""
    return store.checkpoints_dir / row["trial_key"] / "trainable.safetensors"


def _has_state(store, row) -> bool:
    """Whether a stored trial can be continued: its checkpoint and optimiser state are here."""
    if not row or row["status"] != "done" or not row["checkpoint_path"]:
        return False
    path = checkpoint_of(store, row)
    return path.is_file() and (path.parent / OPTIMIZER_FILE).is_file()


def parent_state(spec: TrialSpec, store) -> dict | None:
    """For a worker with a store of its own (Ray): the stored row and checkpoint files (bytes,
    by path relative to the store's folder) of the trial ``spec`` continues; None for a trial
    trained from scratch, or when this store cannot continue it (then the worker trains the
    parent first, as :func:`run_trial` would here)."""
    if spec.parent is None:
        return None
    key = identify(spec.parent)[0]
    row = store.get_trial(key)
    if not _has_state(store, row):
        return None
    checkpoint = checkpoint_of(store, row)
    folder = f"checkpoints/{key}"
    files = {f"{folder}/{p.name}": p.read_bytes()
             for p in sorted(checkpoint.parent.iterdir()) if p.is_file()}
    return {"row": {**row, "checkpoint_path": f"{folder}/{checkpoint.name}"}, "files": files}


def install_parent_state(store, state: dict | None) -> None:
    """Put a :func:`parent_state` into ``store`` (a worker's scratch store) and its folder."""
    if not state:
        return
    if store.get_trial(state["row"]["trial_key"]) is None:
        store.insert("trials", [state["row"]])
    for rel, data in state["files"].items():
        target = store.path.parent / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _resume(spec: TrialSpec, parent_key: str, vlm, dataset, store, run_id: str, config,
            default_limit: int):
    """(training data, Resume) of a continued trial: its parent's checkpoint loaded into
    ``vlm``. A parent the store lacks, or holds without its checkpoint and optimiser state (an
    imported table, a deleted folder), is trained first as a trial of its own."""
    from harness.datasets import subset
    from harness.training import TrainingFailed, planned_steps

    parent = store.get_trial(parent_key)
    if _has_state(store, parent):
        store.record_use(run_id, "trial", parent_key, reused=True)
    else:
        out = run_trial(spec.parent, store, run_id, default_limit=default_limit, need_state=True)
        if out.status != "done":
            raise TrainingFailed(f"the trial it continues (r={spec.parent.ratio:g}) failed: {out.error}")
        parent = store.get_trial(parent_key)
    path = checkpoint_of(store, parent)
    load_checkpoint(vlm, path)
    full = subset(dataset, spec.ratio, spec.seed)
    turns = sum(len(item.conversations) // 2 for item in full)
    resume = load_resume_state(path, planned_steps(config, turns, spec.ratio))
    if config.steps is not None:  # a step budget samples the whole subset, as a fresh trial does
        return full, resume
    extra = subset(dataset, spec.ratio, spec.seed, after=spec.parent.ratio)
    return (extra if len(extra) else full), resume


def run_trial(spec: TrialSpec, store, run_id: str, *, default_limit: int = DEFAULT_TEST_ITEMS,
              progress=None, stored_only: bool = False,
              need_state: bool = False) -> TrialOutcome | None:
    """Train (or reuse) and score one trial. A failure inside the candidate (NaN loss, OOM,
    a plugin's exception) is recorded as a failed trial and returned, not raised. With
    ``stored_only`` nothing trains: a trial missing from the store returns None. With
    ``need_state`` (a continuation needs it) a stored trial whose checkpoint or optimiser
    state is missing is trained again."""
    # here, not at the top: a strategy module that imports this one (for ComponentFailed) is
    # loaded when a suite is validated, which must not import the store
    from harness.store.errors import StoreWarning

    from harness.datasets import subset
    from harness.scoring import score
    from harness.training import TrainConfig, continuable, resolve_device, train

    config = spec.train or TrainConfig()
    device = resolve_device(spec.device)
    try:
        key, (enc_entry, encoder), (llm_entry, language_model), (data_entry, dataset) = identify(spec)
    except ComponentFailed as exc:
        return None if stored_only else _unloadable(spec, store, run_id, config, exc)
    with store.transaction():
        store.put_component(encoder.fingerprint, kind="vision_encoder", ref=spec.encoder,
                            run_id=run_id, plugin=enc_entry.plugin,
                            plugin_version=enc_entry.version, config=encoder.config,
                            n_params=n_params(encoder))
        store.put_component(language_model.fingerprint, kind="language_model", ref=spec.llm,
                            run_id=run_id, plugin=llm_entry.plugin,
                            plugin_version=llm_entry.version, config=language_model.config,
                            n_params=n_params(language_model))
        store.put_dataset(dataset.fingerprint, ref=spec.alignment, run_id=run_id,
                          plugin=data_entry.plugin, plugin_version=data_entry.version,
                          split="train", n_items=len(dataset))

    def _score(vlm, targets):
        return score(vlm, list(targets), seed=0, device=str(device), default_limit=default_limit)

    def _store_scores(scores):
        store.put_scores(key, [{"task": s.task, "metric": s.metric, "value": s.value,
                                "n_items": s.n_items} for s in scores],
                         run_id=run_id, plugin=PLUGIN, plugin_version=__version__)

    prior = store.get_trial(key)
    retrain, vlm = False, None
    if need_state and prior is not None and prior["status"] == "done" and not _has_state(store, prior):
        retrain = True
        if not stored_only:
            warnings.warn(f"trial {key[:12]} ({spec.encoder} + {spec.llm}, r={spec.ratio:g}): a "
                          "continued trial resumes it, and its checkpoint or optimiser state is not "
                          "here, so it is trained again", StoreWarning, stacklevel=2)
    elif prior is not None and prior["status"] == "done":
        have = {s["task"]: s for s in store.get_scores(key)}
        missing = [t for t in spec.targets if t.task not in have
                   or _expected_items(t, default_limit) not in (None, have[t.task]["n_items"])]
        if not missing:
            return stored_outcome(spec, key, store, run_id, default_limit)
        vlm, _ = build_vlm(spec, encoder, language_model)
        try:  # new targets are scored from the stored checkpoint
            if not prior["checkpoint_path"]:
                raise FileNotFoundError("the trial was stored without one (an imported table)")
            load_checkpoint(vlm, checkpoint_of(store, prior))
        except Exception as exc:  # noqa: BLE001 - missing, truncated, foreign: train it again
            stop_if_interrupted(exc)  # Ctrl-C during a DuckDB statement is no failure
            retrain = True
            warnings.warn(f"trial {key[:12]} ({spec.encoder} + {spec.llm}, r={spec.ratio:g}): its "
                          f"checkpoint cannot be read ({type(exc).__name__}: {str(exc)[:120]}), so "
                          "it is trained again to score the new targets", StoreWarning, stacklevel=2)
        else:
            vlm.to(device).eval()
            _store_scores(_score(vlm, missing))
            return stored_outcome(spec, key, store, run_id, default_limit)

    if stored_only:
        return None
    parent_key = None if spec.parent is None else key_of(
        spec.parent, encoder.fingerprint, language_model.fingerprint, dataset.fingerprint)
    store.start_trial(key, run_id=run_id, encoder=spec.encoder, llm=spec.llm,
                      dataset_fingerprint=dataset.fingerprint, sample_ratio=spec.ratio,
                      plugin=PLUGIN, plugin_version=__version__, train_config=config.as_dict(),
                      seed=spec.seed, encoder_fingerprint=encoder.fingerprint,
                      llm_fingerprint=language_model.fingerprint, device=str(device),
                      replace_done=retrain, continued_from=parent_key)
    store.record_use(run_id, "trial", key, reused=False)
    start = time.perf_counter()
    try:
        if vlm is None:  # (a VLM built for a checkpoint that could not be read is still fresh)
            vlm, _ = build_vlm(spec, encoder, language_model)
        resume = None
        if parent_key is not None:
            data, resume = _resume(spec, parent_key, vlm, dataset, store, run_id, config, default_limit)
        else:
            data = subset(dataset, spec.ratio, spec.seed)
        result = train(vlm, examples_from(data), config, seed=spec.seed, device=str(device),
                       ratio=spec.ratio, progress=progress, resume=resume)
        checkpoint = save_checkpoint(vlm, store.checkpoints_dir / key,
                                     result if continuable(config) is None else None)
        scores = _score(vlm, spec.targets)
        wall = time.perf_counter() - start
        with store.transaction():
            _store_scores(scores)
            store.finish_trial(key, status="done", wall_seconds=wall,
                               samples_seen=result.samples_seen, checkpoint_path=checkpoint,
                               device=result.device)
        return TrialOutcome(key, "done", reused=False, trained=True, scores=scores,
                            wall_seconds=wall, samples_seen=result.samples_seen)
    except KeyboardInterrupt:  # the user stopped the search: this trial did not finish
        store.finish_trial(key, status="failed", wall_seconds=time.perf_counter() - start,
                           error="interrupted by the user")
        raise
    except Exception as exc:  # one candidate's failure must not end the search
        fault = environment_fault(exc, f"trial {key[:12]} ({spec.encoder} + {spec.llm}, "
                                       f"r={spec.ratio:g})")
        if fault is not None:  # ... but the machine's does: every candidate would fail so
            _record_fault(store, key, time.perf_counter() - start, fault)
            raise fault from exc
        if interrupted(exc):  # Ctrl-C during a DuckDB statement: the user stopped the search
            store.finish_trial(key, status="failed", wall_seconds=time.perf_counter() - start,
                               error="interrupted by the user")
            raise KeyboardInterrupt from exc
        wall = time.perf_counter() - start
        error = f"{type(exc).__name__}: {exc}"
        detail = "".join(traceback.format_exception(exc)[-3:])
        store.finish_trial(key, status="failed", wall_seconds=wall, error=f"{error}\n{detail}")
        return TrialOutcome(key, "failed", reused=False, trained=True, wall_seconds=wall,
                            error=error)


def _record_fault(store, key: str, wall: float, fault: EnvironmentFault) -> None:
    """Mark the trial failed with the fault, if the store can still be written (it may be on the
    full disk itself); the run's own status is set where the fault stops it."""
    import contextlib

    with contextlib.suppress(Exception):  # the fault is what gets reported
        store.finish_trial(key, status="failed", wall_seconds=wall, error=str(fault))
