"""The ``lmms`` dataset family: an lmms-eval task as a target, by name (``lmms:mmmu_val``, with
``dataset:`` a local parquet file for its test split) or by the path of a YAML file or folder of
local tasks (``lmms:/data/tasks``). lmms-eval reads the data itself, so this family is scored,
never trained on; its clustering features come from the task's own validation (else training)
images, never its test split."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.datasets import Dataset, DatasetFamily, ScoringTask, VisionTextItem


class LmmsFamily(DatasetFamily):
    scoring = True
    scores_whole_task = True

    def scoring_task(self, target, *, n: int, seed: int, cache_dir: Path | None = None) -> ScoringTask:
        name = target.task.partition(":")[2]
        path = Path(name)
        if path.exists():
            from harness.scoring import _import_lmms

            _import_lmms()
            from lmms_eval.tasks import TaskManager

            folder = path if path.is_dir() else path.parent
            if path.is_file():
                tasks = [path.stem]
            else:
                manager = TaskManager(include_path=str(folder), include_defaults=False)
                tasks = sorted(t for t in manager.all_tasks if t in {p.stem for p in folder.glob("*.yaml")})
            return ScoringTask(tasks=tuple(tasks), include_path=str(folder), include_defaults=False,
                               limit=target.limit)
        if target.dataset:
            inline = {"task": name, "dataset_path": "parquet",
                      "dataset_kwargs": {"data_files": {"test": str(Path(target.dataset).resolve())}},
                      "test_split": "test"}
            return ScoringTask(tasks=(inline,), limit=target.limit)
        return ScoringTask(tasks=(name,), limit=target.limit)

    def features(self, name: str, *, n: int, seed: int, target=None):
        """``n`` documents (a seeded sample) of the task's validation split, else its training
        split, never its test split, as items (image, question); (None, why) when the task has
        neither (or cannot be loaded here). The fingerprint hashes the sampled documents'
        questions and image bytes, so changed data gets new features."""
        import numpy as np

        from harness.scoring import Target, _import_lmms

        _import_lmms()
        from lmms_eval.tasks import TaskManager, get_task_dict

        ref = f"{self.family}:{name}"
        target = target if target is not None else Target(ref)
        try:
            found = self.scoring_task(target, n=n, seed=seed)
            manager = TaskManager(include_path=found.include_path, include_defaults=found.include_defaults)
            tasks = get_task_dict(list(found.tasks), manager)
        except Exception as exc:  # noqa: BLE001 - not loadable here (a hub task offline, a bad YAML)
            return None, f"lmms-eval cannot load it here ({type(exc).__name__}: {str(exc)[:120]})"
        task_name, task = next(iter(sorted(tasks.items(), key=lambda kv: str(kv[0]))))
        if not hasattr(task, "has_validation_docs"):  # a group of tasks
            return None, "it is a group of tasks, not one task"
        if task.has_validation_docs():
            split, docs = "validation", task.validation_docs()
        elif task.has_training_docs():
            split, docs = "train", task.training_docs()
        else:
            return None, "it has no validation or training split (its test items are never used)"
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
            return None, f"its {split} split has no image documents"
        dataset = Dataset(ref, len(items), items.__getitem__, digest.hexdigest()[:16], task=ref)
        return dataset, f"{len(items)} images of its {split} split"
