"""Forget stored results, so the next run computes them again (``harness store forget``).

What goes, for each selector (they add up):

- ``components`` (a ref as the suite names it, or a fingerprint or its prefix): every trial that
  used the component (its scores and checkpoint folder with it, and every trial continued from
  one of those), its embeddings (their feature costs) and every similarity involving it.
- ``plugins`` (a plugin name as ``harness plugins`` lists it): the components it provides, as
  above, and every embedding or similarity row it produced.
- ``runs`` (run ids): the results the run computed (trials, embeddings, similarities, as above)
  and the run's own records (rankings, rungs, clusters, costs, uses, the run itself).
- ``keys`` (a trial, embedding or similarity key, or a prefix of at least 8 characters).

A forgotten trial's checkpoint folder is ``checkpoints/<its key>`` beside the store (derived from
the key, never read from a row): it is deleted only when it is a real folder there and no
remaining row names a file in it; ``dry_run`` lists the files that would go.
Past runs' records are kept unless their run is named: their rankings still say what they found,
but a forgotten trial no longer counts in their cost (``run_costs`` joins the trials).
LLM features computed through a warmed-up projector are keyed by the (encoder, LLM, warm-up)
triple, not by one component: forgetting a component leaves them, and the similarities computed
from them; forget them by run or key.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from harness.errors import BadInput

from .exchange import tables

MIN_PREFIX = 8
KEY = re.compile(r"[0-9A-Za-z_-]{8,128}")  # a content key: a folder name, never a path
CACHE_TABLES = ("trials", "scores", "embeddings", "feature_costs", "similarities")


def _one_of(values) -> str:
    return ", ".join("?" for _ in values) or "NULL"


def plan(store, *, components=(), plugins=(), runs=(), keys=()) -> dict[str, Any]:
    """What :func:`forget` would remove: the keys per cache table and the runs whose records go.
    A selector that matches nothing is an error naming it (nothing is removed)."""
    q = store.query
    fps: set[str] = set()
    for ref in components:
        found = {r["fingerprint"] for r in q("select fingerprint from components where ref = ? or"
                                             " starts_with(fingerprint, ?)", [ref, ref])}
        if not found or (len(ref) < MIN_PREFIX and not q("select 1 from components where ref = ?", [ref])):
            raise BadInput(f"--component {ref!r}: no component with that ref or fingerprint in the store; "
                           "list them with: harness sql \"select ref, kind, fingerprint from components\"")
        fps |= found
    for name in plugins:
        found = {r["fingerprint"] for r in q("select fingerprint from components where plugin = ?", [name])}
        rows = sum(q(f"select count(*) as n from {t} where plugin = ?", [name])[0]["n"]
                   for t in ("embeddings", "similarities", "trials"))
        if not found and not rows:
            raise BadInput(f"--plugin {name!r}: no row of the store was made by that plugin; list the "
                           "producers with: harness sql \"select distinct plugin from components\"")
        fps |= found
    for run in runs:
        if not q("select 1 from runs where run_id = ?", [run]):
            raise BadInput(f"--run {run!r}: no such run in the store; list runs with: harness sql "
                           "\"select run_id, suite_name, status from runs order by started_at\"")
    trials: set[str] = set()
    embeddings: set[str] = set()
    similarities: set[str] = set()
    for key in keys:
        if len(key) < MIN_PREFIX:
            raise BadInput(f"--key {key!r}: give at least {MIN_PREFIX} characters of a key")
        hit = False
        for table, column, into in (("trials", "trial_key", trials), ("embeddings", "embedding_key", embeddings),
                                    ("similarities", "similarity_key", similarities)):
            found = {r["k"] for r in q(f"select {column} as k from {table} where starts_with({column}, ?)", [key])}
            into |= found
            hit = hit or bool(found)
        if not hit:
            raise BadInput(f"--key {key!r}: no trial, embedding or similarity has a key starting so")
    f, p, r = list(fps), list(plugins), list(runs)
    trials |= {x["trial_key"] for x in q(
        f"select trial_key from trials where encoder_fingerprint in ({_one_of(f)}) or llm_fingerprint in"
        f" ({_one_of(f)}) or run_id in ({_one_of(r)}) or plugin in ({_one_of(p)})", [*f, *f, *r, *p])}
    while True:  # a trial continued from a forgotten one resumed it: it goes too
        more = {x["trial_key"] for x in q(
            f"select trial_key from trials where continued_from in ({_one_of(trials)})", list(trials))} - trials
        if not more:
            break
        trials |= more
    embeddings |= {x["embedding_key"] for x in q(
        f"select embedding_key from embeddings where component_fingerprint in ({_one_of(f)}) or run_id in"
        f" ({_one_of(r)}) or plugin in ({_one_of(p)})", [*f, *r, *p])}
    e = list(embeddings)
    similarities |= {x["similarity_key"] for x in q(
        f"select similarity_key from similarities where a in ({_one_of(f)}) or b in ({_one_of(f)}) or"
        f" a_embedding in ({_one_of(e)}) or b_embedding in ({_one_of(e)}) or run_id in ({_one_of(r)})"
        f" or plugin in ({_one_of(p)})", [*f, *f, *e, *e, *r, *p])}
    return {"trials": trials, "embeddings": embeddings, "similarities": similarities, "runs": set(runs)}


def forget(store, *, components=(), plugins=(), runs=(), keys=(), dry_run: bool = False) -> dict[str, int]:
    """Remove what :func:`plan` selects, in one transaction (checkpoint folders after it);
    returns the rows per table (what would go, with ``dry_run``)."""
    if not (components or plugins or runs or keys):
        raise BadInput("say what to forget: --component, --plugin, --run or --key (repeatable)")
    chosen = plan(store, components=components, plugins=plugins, runs=runs, keys=keys)
    t, e, s, r = (list(chosen[k]) for k in ("trials", "embeddings", "similarities", "runs"))
    where = {"trials": ("trial_key", t), "scores": ("trial_key", t), "embeddings": ("embedding_key", e),
             "feature_costs": ("embedding_key", e), "similarities": ("similarity_key", s)}
    here = set(tables(store.con))
    history = [name for name in sorted(here) if name not in CACHE_TABLES and name not in
               ("components", "datasets", "imports", "task_baselines") and not name.startswith("_")
               and "run_id" in {c[0] for c in store.con.execute(f"DESCRIBE {name}").fetchall()}]
    counts: dict[str, int] = {}
    for table, (column, values) in where.items():
        if table in here and values:
            counts[table] = store.query(f"select count(*) as n from {table} where {column} in"
                                        f" ({_one_of(values)})", values)[0]["n"]
    for table in history:
        if r:
            counts[table] = store.query(f"select count(*) as n from {table} where run_id in ({_one_of(r)})", r)[0]["n"]
    counts = {k: v for k, v in counts.items() if v}
    if dry_run:
        files = [str(f) for folder in checkpoint_folders(store, t, forgotten=True) for f in _files(folder)]
        counts = Counts(counts)
        counts.files = files
        return counts
    store._require_writable("forget stored results")
    with store.transaction():
        for table, (column, values) in where.items():
            if table in here and values:
                store.con.execute(f"DELETE FROM {table} WHERE {column} IN ({_one_of(values)})", values)
        for table in history:
            if r:
                store.con.execute(f"DELETE FROM {table} WHERE run_id IN ({_one_of(r)})", r)
    for folder in checkpoint_folders(store, t):
        shutil.rmtree(folder, ignore_errors=True)
    return counts


class Counts(dict):
    """Rows per table a dry run would forget; ``files``: the checkpoint files it would delete."""

    files: tuple[str, ...] | list[str] = ()


def dry_run_lines(counts: dict) -> list[str]:
    """The lines ``harness store forget --dry-run`` prints after its counts: each file it would delete."""
    return [f"would delete {f}" for f in getattr(counts, "files", [])]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def checkpoint_folders(store, trial_keys, *, forgotten: bool = False) -> list[Path]:
    """The checkpoint folders forgetting ``trial_keys`` deletes: for each key, the folder
    ``<store folder>/checkpoints/<key>`` (derived from the key, never read from a row), when it
    is a real folder (not a link) directly inside the store's own checkpoint folder and no
    remaining trial row names a path inside it. ``forgotten``: the rows of ``trial_keys`` are
    still in the store (a dry run) and do not count as remaining."""
    root = store.checkpoints_dir
    if not trial_keys or root.is_symlink() or not root.is_dir():
        return []
    keys = set(trial_keys)
    named: set[str] = set()
    for row in store.query("select trial_key, checkpoint_path from trials where checkpoint_path is not null"):
        if forgotten and row["trial_key"] in keys:
            continue
        p = Path(os.path.normpath(store.checkpoint_abspath(row["checkpoint_path"])))
        named.add(str(p.parent))
        named.add(str(p))
    real_root = Path(os.path.realpath(root))
    out = []
    for key in sorted(keys):
        if not KEY.fullmatch(key):
            continue
        folder = root / key
        if folder.is_symlink() or not folder.is_dir() or Path(os.path.realpath(folder)).parent != real_root:
            continue
        if str(Path(os.path.normpath(folder))) in named:
            continue
        out.append(folder)
    return out
