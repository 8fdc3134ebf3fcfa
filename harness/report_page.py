"""``harness report``: one self-contained HTML page per run, with the figures the Mordal paper
draws (similarity heatmaps under their dendrograms, the candidate grid, successive-halving rungs,
scaling fits, where the compute went, search vs grid), read back from the store.

Plots are matplotlib (``Agg``, no display, no network): it is already what the field's plots are
drawn with, renders to PNG offline in-process and needs no browser or JavaScript runtime to make
the images (Vega-Lite through altair needs ``vl-convert``, a 100 MB native binary, for a static
image). Each figure is written as a PNG beside ``report.html`` and inlined into it as a
``data:`` URI, so the page opens with no network and can be mailed as one file.

The store is opened read-only: a report never changes it. Sections a run has no data for are
left out (a grid run has no clusters or rungs; a run without predictions has no fits).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import __version__
from harness.errors import BadInput
from harness.strategies.base import binomial_error, constant_baseline, objective_tasks

# colours: one qualitative map for candidates/clusters, one sequential for scores
_QUAL = "tab10"
_SEQ = "viridis"


@dataclass
class Section:
    key: str  # the section's id in the page (tests look sections up by it)
    title: str
    text: str = ""  # HTML paragraph(s) under the title
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, alt text)
    table: list[list[str]] | None = None  # first row is the header


# -- store access -----------------------------------------------------------------------------


def _has_column(store, table: str, column: str) -> bool:
    return bool(store.query("select 1 from duckdb_columns() where table_name = ? and column_name = ?"
                            " and database_name = current_database()", [table, column]))


def _short(ref: str) -> str:
    return ref.split(":", 1)[-1]


def resolve_run(store, run_id: str | None) -> dict:
    """The run row for ``run_id``, or the latest run when None; a clear error if there is none."""
    if run_id is None:
        rows = store.query("select * from runs order by started_at desc, run_id desc limit 1")
        if not rows:
            raise BadInput(f"the store {store.path} has no runs yet; run a suite first: "
                           "harness run suites/quickstart.yaml")
        return rows[0]
    rows = store.query("select * from runs where run_id = ?", [run_id])
    if not rows:
        raise BadInput(f"no run {run_id!r} in the store {store.path}; list runs with: harness sql "
                       "\"select run_id, suite_name, strategy, status from runs\"")
    return rows[0]


def _config(run: dict) -> dict:
    config = run.get("config")
    if isinstance(config, str):
        config = json.loads(config)
    return config or {}


def find_grid(store, run: dict) -> str | None:
    """A finished grid run that judges ``run``: among grid runs that ranked the same task, the
    latest of the same suite name, else the latest with the same seed, else the latest."""
    if run.get("ground_truth"):
        return None
    tasks = [r["task"] for r in store.query("select distinct task from rankings where run_id = ?",
                                            [run["run_id"]])]
    if not tasks:
        return None
    marks = ", ".join("?" for _ in tasks)
    grids = store.query(
        "select r.run_id, r.suite_name, r.seed from runs r where r.ground_truth and r.status = 'done'"
        f" and exists (select 1 from rankings k where k.run_id = r.run_id and k.task in ({marks}))"
        " order by r.started_at desc, r.run_id desc", tasks)
    for same in (lambda g: g["suite_name"] == run["suite_name"], lambda g: g["seed"] == run["seed"],
                 lambda g: True):
        for g in grids:
            if same(g):
                return g["run_id"]
    return None


def _similarity_blocks(store, run_id: str) -> list[dict]:
    """The similarity matrices a clustering run used: one per (level, context), with its
    members, clusters, medoids, cut and linkage. Uses are matched to a context by
    ``run_uses.phase``; a store from before m009 has no phase, then a context's matrix is the
    similarities between its members (right for encoders and for one LLM context)."""
    clusters = store.query("select level, context, cluster_id, member, member_fingerprint, is_medoid,"
                           " threshold, linkage, metric from clusters where run_id = ?"
                           " order by level, context, cluster_id, member", [run_id])
    if not clusters:
        return []
    with_phase = _has_column(store, "run_uses", "phase")
    sims = store.query(
        "select s.a, s.b, s.value" + (", u.phase" if with_phase else ", null as phase")
        + " from run_uses u join similarities s on s.similarity_key = u.key"
        " where u.run_id = ? and u.kind = 'similarity'", [run_id])
    blocks: dict[tuple, dict] = {}
    for c in clusters:
        b = blocks.setdefault((c["level"], c["context"]), {
            "level": c["level"], "context": c["context"], "members": [], "fps": {}, "cluster": {},
            "medoids": set(), "threshold": c["threshold"], "linkage": c["linkage"] or "average",
            "metric": c["metric"]})
        b["members"].append(c["member"])
        b["fps"][c["member"]] = c["member_fingerprint"]
        b["cluster"][c["member"]] = c["cluster_id"]
        if c["is_medoid"]:
            b["medoids"].add(c["member"])
    contexts = {c for (level, c) in blocks if level == "llm"}
    out = []
    for (level, context), b in sorted(blocks.items()):
        phase = "cluster-encoders" if level == "encoder" else f"cluster-llms@{context}"
        names = sorted(b["members"])
        index = {b["fps"][n]: i for i, n in enumerate(names)}
        values = np.full((len(names), len(names)), np.nan)
        for s in sims:
            if s["phase"] is None and level == "llm" and len(contexts) > 1:
                continue  # which context a use belonged to is unknown (before m009): leave it out
            if s["phase"] is not None and s["phase"] != phase:
                continue
            i, j = index.get(s["a"]), index.get(s["b"])
            if i is not None and j is not None:
                values[i, j] = values[j, i] = float(s["value"])
        b["names"] = names
        b["values"] = values
        b["distance"] = _is_distance(b["metric"])
        if b["distance"]:
            np.fill_diagonal(values, 0.0)
        else:
            np.fill_diagonal(values, 1.0)
        out.append(b)
    return out


def _is_distance(metric: str | None) -> bool:
    if not metric:
        return False
    try:
        from harness.gromov import higher_is_closer
        from harness.plugin_manager import get_components

        return not higher_is_closer(get_components()["similarity_metric"].get(metric).load())
    except Exception:  # a metric whose plugin is not installed: draw it as a similarity
        return False


# -- figures ----------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig


def _save(fig, folder: Path, name: str) -> str:
    fig.savefig(folder / name, format="png")
    return name


def similarity_figure(block: dict, folder: Path, name: str) -> str | None:
    """Dendrogram over the heatmap it orders, the cut drawn on the tree, medoids starred."""
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from harness.clustering import distances

    values, names = block["values"], block["names"]
    if len(names) < 2 or np.isnan(values).any():
        return None
    dist = values if block["distance"] else distances(values)
    dist = np.maximum((dist + dist.T) / 2, 0.0)
    np.fill_diagonal(dist, 0.0)
    tree = linkage(squareform(dist, checks=False), method=block["linkage"])
    fig = _figure(max(4.2, 1.2 + 0.55 * len(names)), max(4.4, 2.6 + 0.55 * len(names)))
    top, heat = fig.subplots(2, 1, height_ratios=[1, 2.2])
    cut = block["threshold"]
    tree_plot = dendrogram(tree, ax=top, labels=names, no_labels=True,
                           color_threshold=cut if cut is not None else 0, above_threshold_color="0.6")
    if cut is not None:
        top.set_ylim(0, max(top.get_ylim()[1], cut * 1.25))
        top.axhline(cut, color="crimson", linestyle="--", linewidth=1)
        top.text(0.99, cut, f" cut {cut:.2f}", color="crimson", ha="right", va="bottom",
                 transform=top.get_yaxis_transform(), fontsize=8)
    top.set_ylabel("distance" if block["distance"] else "1 - similarity")
    top.spines[["top", "right"]].set_visible(False)
    order = tree_plot["ivl"]
    idx = [names.index(n) for n in order]
    shown = values[np.ix_(idx, idx)]
    image = heat.imshow(shown, cmap=_SEQ + ("_r" if block["distance"] else ""), aspect="auto")
    labels = [("* " if n in block["medoids"] else "") + _short(n) + f"  [{block['cluster'][n]}]"
              for n in order]
    heat.set_xticks(range(len(order)), labels, rotation=60, ha="right", fontsize=8)
    heat.set_yticks(range(len(order)), labels, fontsize=8)
    for i in range(len(order)):
        for j in range(len(order)):
            v = shown[i, j]
            heat.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if (v < np.nanmean(shown)) != block["distance"] else "black")
    fig.colorbar(image, ax=heat, shrink=0.8, label=block["metric"] or "similarity")
    what = "encoders" if block["level"] == "encoder" else f"LLMs via {_short(block['context'])}"
    fig.suptitle(f"{block['metric']} between {what} (* medoid, [cluster])", fontsize=10)
    return _save(fig, folder, name)


def grid_figure(ranking: list[dict], folder: Path, name: str, title: str) -> str | None:
    """Encoders x LLMs coloured by the final score, each cell marked how it got it."""
    if not ranking:
        return None
    encoders = sorted({r["encoder"] for r in ranking})
    llms = sorted({r["llm"] for r in ranking})
    values = np.full((len(encoders), len(llms)), np.nan)
    marks = {}
    for r in ranking:
        i, j = encoders.index(r["encoder"]), llms.index(r["llm"])
        if r["score"] is not None:
            values[i, j] = r["score"]
        marks[(i, j)] = _how(r)
    fig = _figure(2.5 + 1.25 * len(llms), 1.6 + 0.5 * len(encoders))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=_SEQ, aspect="auto")
    ax.set_xticks(range(len(llms)), [_short(m) for m in llms], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(encoders)), [_short(e) for e in encoders], fontsize=8)
    finite = values[np.isfinite(values)]
    middle = float(finite.mean()) if finite.size else 0.0
    for (i, j), mark in marks.items():
        v = values[i, j]
        text = (f"{v:.3f}\n" if np.isfinite(v) else "") + mark
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if np.isfinite(v) and v < middle else "black")
    fig.colorbar(image, ax=ax, label="score")
    ax.set_title(title, fontsize=10)
    return _save(fig, folder, name)


def _how(r: dict, rank: bool = True) -> str:
    """How a ranking row got its place: ``#1 predicted`` (``predicted`` without ``rank``),
    ``dropped inter r=0.25``, ``dropped inter (cluster)``."""
    stage = r.get("stage") or ""
    if stage.startswith("eliminated"):
        where = "inter" if stage.endswith("inter") else "intra"
        ratio = r.get("sample_ratio")
        return f"dropped {where}" + (f" r={ratio:g}" if ratio is not None else " (cluster)")
    return f"#{r['rank']} {r['measured_or_predicted']}" if rank else r["measured_or_predicted"]


def rungs_figure(rows: list[dict], baseline: float | None, folder: Path, name: str) -> str | None:
    """Score vs sample ratio (log x) per candidate, one panel per phase: kept (filled) and
    dropped (cross), error bars of one SE, the constant-answer score dashed."""
    phases = [p for p in ("inter", "intra") if any(r["phase"] == p for r in rows)]
    if not phases:
        return None
    from matplotlib import colormaps

    fig = _figure(5.2 * len(phases), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(phases), sharey=True))
    colours = colormaps[_QUAL]
    for ax, phase in zip(axes, phases):
        mine = [r for r in rows if r["phase"] == phase and r["score"] is not None]
        candidates = sorted({(r["encoder"], r["llm"]) for r in mine})
        for k, c in enumerate(candidates):
            pts = sorted((r for r in mine if (r["encoder"], r["llm"]) == c), key=lambda r: r["sample_ratio"])
            x = [r["sample_ratio"] for r in pts]
            y = [r["score"] for r in pts]
            err = [r.get("error") or 0.0 for r in pts]
            colour = colours(k % 10)
            ax.errorbar(x, y, yerr=err, color=colour, linewidth=1, capsize=2, alpha=0.85,
                        label=f"{_short(c[0])} + {_short(c[1])}")
            kept = [(a, b) for a, b, r in zip(x, y, pts) if r["kept"]]
            dropped = [(a, b) for a, b, r in zip(x, y, pts) if not r["kept"]]
            if kept:
                ax.scatter(*zip(*kept), color=colour, marker="o", s=28, zorder=3)
            if dropped:
                ax.scatter(*zip(*dropped), color=colour, marker="x", s=40, zorder=3)
        if baseline is not None:
            ax.axhline(baseline, color="0.4", linestyle=":", linewidth=1)
            ax.text(0.01, baseline, " constant answer", color="0.4", fontsize=7, va="bottom",
                    transform=ax.get_yaxis_transform())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("data-sample ratio r")
        ax.set_title(f"{phase}-cluster rungs (o kept, x dropped)", fontsize=10)
        ax.grid(alpha=0.3)
        if len(candidates) <= 12:
            ax.legend(fontsize=6, loc="lower right")
    axes[0].set_ylabel("score")
    return _save(fig, folder, name)


def _predictor(name: str):
    from harness.plugin_manager import get_components

    cls = get_components()["predictor"].get(name).load()
    return cls() if isinstance(cls, type) else cls


def fits_figure(fits: list[dict], folder: Path, name: str) -> str | None:
    """Per fitted candidate: the points, the fitted law, the prediction at r = 1 with its
    interval, and the measured score at r = 1 when the store has it."""
    if not fits:
        return None
    from harness.predictors import ScalingFit

    cols = min(3, len(fits))
    rows = math.ceil(len(fits) / cols)
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, f in zip(axes, fits):
        xs = [p["sample_ratio"] for p in f["points"]]
        ys = [p["score"] for p in f["points"]]
        ax.scatter(xs, ys, color="tab:blue", zorder=3, label="trained")
        try:
            predictor = _predictor(f["predictor"])
            law = ScalingFit(f["params"], f["r2"] if f["r2"] is not None else math.nan)
            grid = np.geomspace(min(xs), 1.0, 60)
            ax.plot(grid, [predictor.predict(law, float(r)) for r in grid], color="tab:blue",
                    linewidth=1, label=f"{f['predictor']} fit (R^2 {f['r2']:.2f})"
                    if f["r2"] is not None else f["predictor"])
        except Exception:  # a predictor plugin that is not installed: points and prediction only
            pass
        if f["predicted"] is not None:
            lo, hi = f.get("lower"), f.get("upper")
            yerr = None
            if lo is not None and hi is not None:
                yerr = [[max(f["predicted"] - lo, 0)], [max(hi - f["predicted"], 0)]]
            ax.errorbar([1.0], [f["predicted"]], yerr=yerr, color="tab:orange", marker="D",
                        capsize=3, label="predicted r=1" + (" (95%)" if yerr else ""))
        if f.get("measured") is not None:
            ax.scatter([1.0], [f["measured"]], color="black", marker="*", s=80, zorder=4,
                       label="measured r=1")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{_short(f['encoder'])} + {_short(f['llm'])}", fontsize=9)
        ax.set_xlabel("data-sample ratio r")
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in axes[len(fits):]:
        ax.set_visible(False)
    return _save(fig, folder, name)


def cost_figure(parts: list[dict], grid: dict | None, folder: Path, name: str) -> str | None:
    """Training samples and seconds charged per part of the search (computed vs reused
    stacked), against the grid-equivalent cost."""
    if not parts:
        return None
    labels = [p["part"] for p in parts] + ([grid["label"]] if grid is not None else [])
    fig = _figure(10, 1.2 + 0.42 * len(labels))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(labels))[::-1]
    for ax, unit, title in ((axes[0], "samples", "training samples"), (axes[1], "seconds", "seconds")):
        trained = np.array([p[f"trained_{unit}"] for p in parts], dtype=float)
        reused = np.array([p[f"reused_{unit}"] for p in parts], dtype=float)
        n = len(parts)
        ax.barh(y[:n], trained, color="tab:blue", label="computed by this run")
        ax.barh(y[:n], reused, left=trained, color="tab:blue", alpha=0.35, hatch="//",
                label="reused (charged at its original cost)")
        total = list(trained + reused)
        if grid is not None and grid.get(unit) is not None:
            ax.barh(y[n], grid[unit], color="0.55", label="grid-equivalent")
            total.append(grid[unit])
        for yi, t in zip(y, total):
            ax.text(t, yi, f" {t:,.0f}", va="center", fontsize=7)
        ax.set_xlabel(f"{title} (empty-store price)")
        ax.set_xlim(0, max(max(total), 1) * 1.22)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=8)
    fig.suptitle("where the compute went", fontsize=10)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper center", ncols=3, fontsize=7, frameon=False)
    return _save(fig, folder, name)


def compare_figure(search: list[dict], grid: list[dict], folder: Path, name: str) -> str | None:
    """Search rank vs grid rank over the candidates both ranked."""
    grid_rank = {(r["encoder"], r["llm"]): i + 1 for i, r in enumerate(
        sorted((r for r in grid if r["score"] is not None), key=lambda r: -r["score"]))}
    pairs = [(grid_rank[(r["encoder"], r["llm"])], r["rank"], r) for r in search
             if (r["encoder"], r["llm"]) in grid_rank]
    if not pairs:
        return None
    fig = _figure(5, 4.6)
    ax = fig.subplots()
    colour = {"measured": "tab:blue", "predicted": "tab:orange"}
    for g, s, r in pairs:
        eliminated = (r.get("stage") or "").startswith("eliminated")
        ax.scatter(g, s, color="0.6" if eliminated else colour.get(r["measured_or_predicted"], "k"),
                   marker="x" if eliminated else "o", s=30)
    n = max(max(g for g, _, _ in pairs), max(s for _, s, _ in pairs))
    ax.plot([1, n], [1, n], color="0.7", linewidth=1, linestyle="--")
    ax.set_xlabel("grid rank (1 = best)")
    ax.set_ylabel("search rank")
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_title("search vs grid (o measured/predicted survivors, x eliminated)", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, folder, name)


def history_figure(points: list[dict], folder: Path, name: str, task: str) -> str | None:
    """The best score of ``task`` per run over time, each point labelled with its pick."""
    if not points:
        return None
    fig = _figure(8, 3.8)
    ax = fig.subplots()
    x = np.arange(len(points))
    ax.plot(x, [p["score"] if p["score"] is not None else np.nan for p in points], marker="o")
    for xi, p in zip(x, points):
        ax.annotate(f"{_short(p['encoder'])} + {_short(p['llm'])}\n{p['strategy']}",
                    (xi, p["score"] if p["score"] is not None else 0), fontsize=6,
                    textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xticks(x, [p["run_id"][:15] for p in points], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("best score")
    ax.set_title(f"best candidate on {task}, run by run", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, folder, name)


# -- the page's data ------------------------------------------------------------------------


def _ranking(store, run_id: str) -> list[dict]:
    return store.query("select task, rank, encoder, llm, score, measured_or_predicted, trial_key,"
                       " sample_ratio, stage from rankings where run_id = ? order by task, rank", [run_id])


def _rungs(store, run_id: str) -> list[dict]:
    extra = ", error, note" if _has_column(store, "rungs", "error") else ", null as error, null as note"
    rows = store.query("select phase, rung, encoder, llm, task, sample_ratio, score, kept, trial_key"
                       + extra + " from rungs where run_id = ? order by phase, rung, encoder, llm", [run_id])
    for r in rows:  # rows stored before m009 have no error: the binomial one from the scores
        if r["error"] is None and r["trial_key"] and r["task"]:
            r["error"] = score_error(store, r["trial_key"], r["task"])
    return rows


def _objective_scores(store, trial_key: str, task: str) -> list[dict] | None:
    """A trial's score rows on the tasks of objective ``task``; None unless it has them all."""
    tasks = objective_tasks(task)
    rows = store.query("select task, value, n_items from scores where trial_key = ? and task in ("
                       + ", ".join("?" for _ in tasks) + ")", [trial_key, *tasks])
    return rows if len({r["task"] for r in rows}) == len(tasks) else None


def score_error(store, trial_key: str, task: str) -> float | None:
    """Standard error of a trial's score on ``task`` (a ``mean(...)`` objective: of the mean),
    binomial over each task's test items, as the search computes it."""
    rows = _objective_scores(store, trial_key, task)
    if rows is None or not all(r["n_items"] for r in rows):
        return None
    return binomial_error([(r["value"], r["n_items"]) for r in rows])


def _fits(store, run_id: str) -> list[dict]:
    interval = ", p.lower, p.upper" if _has_column(store, "predictions", "lower") else ", null as lower, null as upper"
    fits = store.query(
        "select f.encoder, f.llm, f.task, f.predictor, f.params, f.r2, p.predicted_score as predicted"
        + interval + " from scaling_fits f left join predictions p on p.run_id = f.run_id"
        " and p.encoder = f.encoder and p.llm = f.llm and p.task = f.task and p.sample_ratio = 1.0"
        " where f.run_id = ? order by p.predicted_score desc nulls last, f.encoder, f.llm", [run_id])
    for f in fits:
        if isinstance(f["params"], str):
            f["params"] = json.loads(f["params"])
        f["points"] = store.query(
            "select distinct sample_ratio, score, trial_key from scaling_points where run_id = ? and encoder = ?"
            " and llm = ? and task = ? order by sample_ratio", [run_id, f["encoder"], f["llm"], f["task"]])
        f["measured"] = _measured_full(store, f)
    return fits


def _measured_full(store, fit: dict) -> float | None:
    """The score at r = 1 of the trial that shares the fit's points' data, recipe and seed."""
    keys = [p["trial_key"] for p in fit["points"] if p["trial_key"]]
    if not keys:
        return None
    like = store.query("select dataset_fingerprint, train_config, seed from trials where trial_key = ?", [keys[0]])
    if not like:
        return None
    like = like[0]
    rows = store.query(
        "select t.trial_key from trials t where t.encoder = ? and t.llm = ? and t.sample_ratio = 1.0"
        " and t.status = 'done' and t.dataset_fingerprint = ? and t.seed = ?"
        " and t.train_config::varchar = ?::varchar",
        [fit["encoder"], fit["llm"], like["dataset_fingerprint"], like["seed"], like["train_config"]])
    if not rows:
        return None
    scores = _objective_scores(store, rows[0]["trial_key"], fit["task"])
    return None if scores is None else float(np.mean([s["value"] for s in scores]))


def _cost_parts(store, run_id: str, ground_truth: bool) -> list[dict]:
    """Training samples and seconds per part: each kind of feature phase, then the trials by
    the stage that first asked for them (inter / intra rungs, prediction points, the survivors'
    full-data trials), each split into computed by this run and reused."""
    parts: dict[str, dict] = {}

    def add(part, samples, seconds, reused):
        p = parts.setdefault(part, {"part": part, "trained_samples": 0, "reused_samples": 0,
                                    "trained_seconds": 0.0, "reused_seconds": 0.0, "trials": 0})
        which = "reused" if reused else "trained"
        p[f"{which}_samples"] += int(samples or 0)
        p[f"{which}_seconds"] += float(seconds or 0)

    for row in store.query(
            "select phase, coalesce(cost_samples, samples_seen, 0) as cost_samples, coalesce(samples_seen, 0) as new_samples,"
            " coalesce(cost_seconds, wall_seconds) as cost_seconds, wall_seconds from phase_costs where run_id = ?"
            " order by created_at", [run_id]):
        name = row["phase"].split("@", 1)[0]
        name = {"cluster-encoders": "encoder features", "cluster-llms": "LLM features + warm-ups",
                "gw-prescreen": "GW features", "conductance": "conductance"}.get(name, name)
        add(name, row["new_samples"], row["wall_seconds"], False)
        add(name, row["cost_samples"] - row["new_samples"], row["cost_seconds"] - row["wall_seconds"], True)
    stage_of = {}
    for r in store.query("select trial_key, phase from rungs where run_id = ? order by rung", [run_id]):
        stage_of.setdefault(r["trial_key"], f"{r['phase']} rungs")
    for r in store.query("select trial_key from scaling_points where run_id = ?", [run_id]):
        stage_of.setdefault(r["trial_key"], "prediction points")
    for r in store.query("select trial_key from rankings where run_id = ? and trial_key is not null", [run_id]):
        stage_of.setdefault(r["trial_key"], "grid trials" if ground_truth else "full-data survivors")
    for row in store.query(
            "select u.key, bool_and(u.reused) as reused, any_value(t.samples_seen) as samples,"
            " any_value(t.wall_seconds) as seconds from run_uses u join trials t on t.trial_key = u.key"
            " where u.run_id = ? and u.kind = 'trial' and t.status in ('done', 'failed') group by u.key", [run_id]):
        part = stage_of.get(row["key"], "other trials")
        add(part, row["samples"], row["seconds"], row["reused"])
        parts[part]["trials"] += 1
    order = ["encoder features", "LLM features + warm-ups", "GW features", "conductance", "inter rungs",
             "intra rungs", "prediction points", "full-data survivors", "grid trials", "other trials"]
    return sorted(parts.values(), key=lambda p: (order.index(p["part"]) if p["part"] in order else 99, p["part"]))


def _grid_equivalent(store, run: dict, ranking: list[dict], grid_id: str | None) -> dict | None:
    """What the grid over the run's candidates costs: the comparison grid's own trials when
    there is one, else every candidate at the samples of one full-data trial of this run."""
    from harness.report import grid_cost_over

    candidates = {(r["encoder"], r["llm"]) for r in ranking}
    if grid_id is not None:
        cost = grid_cost_over(store, grid_id, candidates)
        return {"label": f"grid of {cost.trials} (run {grid_id})", "samples": cost.samples_seen,
                "seconds": cost.total_seconds, "estimated": False}
    rows = store.query(
        "select max(t.samples_seen / t.sample_ratio) as per"
        " from run_uses u join trials t on t.trial_key = u.key"
        " where u.run_id = ? and u.kind = 'trial' and t.status = 'done' and t.sample_ratio > 0", [run["run_id"]])
    per = rows[0]["per"] if rows else None
    if not per:
        return None
    return {"label": f"grid of {len(candidates)} at r=1 (estimated)", "samples": int(round(per * len(candidates))),
            "seconds": None, "estimated": True}  # a trial's seconds do not scale with r (scoring)


# -- the page -----------------------------------------------------------------------------------


def build_report(store, run_id: str | None = None, *, out: str | Path | None = None,
                 compare_run: str | None = None) -> Path:
    """Write ``report.html`` (and its PNGs) for ``run_id`` (default: the latest run) into
    ``out`` (default: ``reports/RUN`` beside the store); returns the page's path."""
    run = resolve_run(store, run_id)
    run_id = run["run_id"]
    folder = Path(out) if out is not None else Path(store.path).parent / "reports" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    config = _config(run)
    ranking = _ranking(store, run_id)
    if compare_run is not None:
        if not resolve_run(store, compare_run).get("ground_truth"):
            raise BadInput(f"--compare {compare_run}: that run is not a grid (a ground-truth run that "
                           "measured every candidate); pass the grid run of the same zoo, data and "
                           "training config")
        grid_id = compare_run
    else:
        grid_id = find_grid(store, run)
    sections: list[Section] = []

    header = _header(store, run, config, ranking)
    sections.append(header)

    blocks = _similarity_blocks(store, run_id)
    enc = [b for b in blocks if b["level"] == "encoder"]
    llm = [b for b in blocks if b["level"] == "llm"]
    for key, title, chosen in (("encoder-similarity", "Vision encoders: similarity and clusters", enc),
                               ("llm-similarity", "Language models: similarity per encoder cluster", llm)):
        if not chosen:
            continue
        s = Section(key, title)
        for i, b in enumerate(chosen):
            fname = similarity_figure(b, folder, f"{key}-{i}.png")
            n_clusters = len(set(b["cluster"].values()))
            desc = (f"{len(b['names'])} members, {n_clusters} clusters cut at distance "
                    f"{b['threshold']:.3f} ({b['linkage']} linkage); medoids: "
                    + ", ".join(sorted(_short(m) for m in b["medoids"])))
            if b["level"] == "llm":
                desc = f"via {_short(b['context'])}: " + desc
            s.text += f"<p>{html.escape(desc)}</p>"
            if fname:
                s.figures.append((fname, f"{b['metric']} heatmap and dendrogram of {title.lower()}"))
            else:
                s.text += "<p>(not every pair's similarity is in the store; no figure)</p>"
        sections.append(s)

    if ranking:
        task = ranking[0]["task"]
        s = Section("grid", f"Candidates on {task}",
                    "<p>Each cell: the final score and how the run got it (measured at r = 1, predicted by "
                    "the scaling law, or dropped at a rung / with its cluster).</p>")
        fname = grid_figure(ranking, folder, "grid.png", f"{run['strategy']} ranking on {task}")
        s.figures.append((fname, "encoder x LLM grid coloured by score"))
        s.table = [["rank", "vision encoder", "language model", "score", "how"]] + [
            [str(r["rank"]), r["encoder"], r["llm"], "-" if r["score"] is None else f"{r['score']:.4f}",
             _how(r, rank=False)] for r in ranking]
        sections.append(s)

    rungs = _rungs(store, run_id)
    if rungs:
        targets = [type("T", (), t) for t in config.get("targets", [])]
        try:
            baseline = constant_baseline(targets, store) if targets else None
        except Exception:
            baseline = None
        s = Section("rungs", "Successive halving: rungs")
        notes = sorted({(r["phase"], r["rung"], r["sample_ratio"], r["note"]) for r in rungs if r.get("note")})
        s.text = ("<p>Score against data-sample ratio for every candidate a rung trained; error bars are one "
                  "standard error (binomial over the test items)"
                  + (f"; dotted: the constant-answer score {baseline:.3f}" if baseline is not None else "")
                  + ".</p>")
        for phase, rung, ratio, note in notes:
            s.text += f"<p>{html.escape(f'{phase} rung {rung} (r={ratio:g}): {note}')}</p>"
        s.figures.append((rungs_figure(rungs, baseline, folder, "rungs.png"), "score vs ratio per rung"))
        sections.append(s)

    fits = _fits(store, run_id)
    if fits:
        s = Section("fits", "Scaling fits",
                    "<p>Points trained at small ratios, the fitted law, the predicted full-data score with "
                    "its 95% interval (the points' standard errors carried through the fit) and, when the "
                    "store has it, the score measured at r = 1.</p>")
        s.figures.append((fits_figure(fits, folder, "fits.png"), "scaling fits per survivor"))
        s.table = [["candidate", "predictor", "points", "R^2", "predicted r=1", "95% interval", "measured r=1"]] + [
            [f"{_short(f['encoder'])} + {_short(f['llm'])}", f["predictor"], str(len(f["points"])),
             "-" if f["r2"] is None else f"{f['r2']:.3f}",
             "-" if f["predicted"] is None else f"{f['predicted']:.4f}",
             "-" if f.get("lower") is None else f"[{f['lower']:.4f}, {f['upper']:.4f}]",
             "-" if f["measured"] is None else f"{f['measured']:.4f}"] for f in fits]
        sections.append(s)

    parts = _cost_parts(store, run_id, bool(run.get("ground_truth")))
    if parts:
        grid_eq = _grid_equivalent(store, run, ranking, grid_id) if not run.get("ground_truth") else None
        s = Section("cost", "Where the compute went")
        total = sum(p["trained_samples"] + p["reused_samples"] for p in parts)
        fresh = sum(p["trained_samples"] for p in parts)
        s.text = (f"<p>Charged at the empty-store price: {total:,} training samples "
                  f"({fresh:,} computed by this run, {total - fresh:,} reused from the store)"
                  + (f"; the {html.escape(grid_eq['label'])} costs {grid_eq['samples']:,}: "
                     f"{grid_eq['samples'] / max(total, 1):.1f}x more" if grid_eq else "") + ".</p>")
        s.figures.append((cost_figure(parts, grid_eq, folder, "cost.png"), "training samples per part of the run"))
        s.table = [["part", "trials", "samples computed", "samples reused", "seconds computed", "seconds reused"]] + [
            [p["part"], str(p["trials"]) if p["trials"] else "-", f"{p['trained_samples']:,}",
             f"{p['reused_samples']:,}", f"{p['trained_seconds']:.1f}", f"{p['reused_seconds']:.1f}"] for p in parts]
        sections.append(s)

    if grid_id is not None and ranking:
        from harness.report import compare

        try:
            rows = compare(store, run_id, grid_id)
        except BadInput as exc:
            rows, why = [], str(exc)
        else:
            why = ""
        s = Section("compare", f"Search vs grid run {grid_id}")
        if rows:
            r = rows[0]
            s.text = (f"<p>top-1: <b>{'hit' if r['top1'] else 'miss'}</b> (grid best "
                      f"{html.escape(' + '.join(_short(x) for x in r['grid_best']))}); weighted Kendall tau (top 10) "
                      f"{r['weighted_tau_top10']:.3f}; Kendall tau (top 10) {r['kendall_tau_top10']:.3f}; "
                      f"NDCG@5 {r['ndcg_at_5']:.3f}; speedup {r['speedup_samples']}x in samples, "
                      f"{r['speedup']}x in seconds, over {r['grid_candidates']} candidates.</p>")
            fname = compare_figure(ranking, _ranking(store, grid_id), folder, "compare.png")
            if fname:
                s.figures.append((fname, "search rank against grid rank"))
        else:
            s.text = f"<p>{html.escape(why)}</p>"
        sections.append(s)

    page = folder / "report.html"
    page.write_text(_html(f"harness report: {run['suite_name']} / {run_id}", sections, folder), encoding="utf-8")
    return page


def _header(store, run: dict, config: dict, ranking: list[dict]) -> Section:
    seeds = sorted({run["seed"]} | {r["seed"] for r in store.query(
        "select distinct t.seed from run_uses u join trials t on t.trial_key = u.key"
        " where u.run_id = ? and u.kind = 'trial'", [run["run_id"]]) if r["seed"] is not None})
    plugins = store.query(
        "select distinct plugin, plugin_version from (select plugin, plugin_version from rankings where run_id = ?"
        " union all select t.plugin, t.plugin_version from run_uses u join trials t on t.trial_key = u.key"
        " where u.run_id = ? and u.kind = 'trial') order by 1, 2", [run["run_id"]] * 2)
    rows = [
        ["suite", f"{run['suite_name']} (hash {str(run['suite_hash'])[:12]})"],
        ["run", f"{run['run_id']}: {run['strategy']}, {run['status']}"
         + (f" ({run['error']})" if run.get("error") else "")],
        ["store", str(store.path)],
        ["started / finished", f"{run['started_at']} / {run['finished_at']}"],
        ["versions", f"harness {run['harness_version']} ran it, {__version__} drew this; "
         + ", ".join(f"{p['plugin']} {p['plugin_version']}" for p in plugins)],
        ["seeds", ", ".join(str(s) for s in seeds)],
        ["zoo", f"{len(config.get('zoo', {}).get('vision_encoders', []))} encoders x "
         f"{len(config.get('zoo', {}).get('language_models', []))} LLMs"],
        ["targets", ", ".join(f"{t.get('task')}" + (f" (limit {t['limit']})" if t.get("limit") else "")
                              for t in config.get("targets", []))],
    ]
    if ranking:
        best = ranking[0]
        rows.append(["pick", f"{best['encoder']} + {best['llm']}: "
                     + ("no score" if best["score"] is None else f"{best['score']:.4f}")
                     + f" ({best['measured_or_predicted']})"])
        if len(ranking) > 1:
            second = ranking[1]
            rows.append(["runner-up", f"{second['encoder']} + {second['llm']}: "
                         + ("no score" if second["score"] is None else f"{second['score']:.4f}")
                         + f" ({_how(second, rank=False)})"])
    return Section("header", "Run", table=[["", ""]] + rows)


def _html(title: str, sections: list[Section], folder: Path) -> str:
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:left}img{max-width:100%;display:block;margin:.6em 0}"
             "section{margin-bottom:2em}h2{border-bottom:1px solid #ddd}</style>",
             "</head><body>", f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<section id=\"{s.key}\"><h2>{html.escape(s.title)}</h2>{s.text}")
        for fname, alt in s.figures:
            if not fname:
                continue
            data = base64.b64encode((folder / fname).read_bytes()).decode("ascii")
            parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(alt)}\""
                         f" data-file=\"{html.escape(fname)}\"></figure>")
        if s.table:
            head, *body = s.table
            parts.append("<table>" + ("" if not any(head) else
                                      "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
                         + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                                   for row in body) + "</table>")
        parts.append("</section>")
    parts.append(f"<footer><small>harness {html.escape(__version__)}; figures drawn with matplotlib from the "
                 "store, nothing loaded from the network.</small></footer></body></html>")
    return "\n".join(parts)


# -- history --------------------------------------------------------------------------------


def build_history(store, *, out: str | Path | None = None, task: str | None = None) -> Path:
    """``report.html`` of the store's history: per task the latest leaderboard, and how the
    task's best candidate changed run by run (which runs added which components)."""
    folder = Path(out) if out is not None else Path(store.path).parent / "reports" / "history"
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [r["task"] for r in store.query("select distinct task from rankings order by task")]
    if task is not None:
        if task not in tasks:
            raise BadInput(f"no run ranked task {task!r}; tasks in the store: {', '.join(tasks) or 'none'}")
        tasks = [task]
    if not tasks:
        raise BadInput(f"the store {store.path} has no rankings yet; run a suite first")
    sections = [Section("header", "Store", table=[["", ""], ["store", str(store.path)],
                                                   ["runs", str(store.query("select count(*) as n from runs")[0]["n"])],
                                                   ["tasks", ", ".join(tasks)]])]
    for i, t in enumerate(tasks):
        board = store.query("select vision_encoder, language_model, score, measured_or_predicted, run_id"
                            " from leaderboard where task = ? limit 10", [t])
        points = store.query(
            "select k.run_id, r.strategy, r.started_at, k.encoder, k.llm, k.score,"
            " (select count(distinct x.encoder) from rankings x where x.run_id = k.run_id) as encoders,"
            " (select count(distinct x.llm) from rankings x where x.run_id = k.run_id) as llms"
            " from rankings k join runs r using (run_id) where k.task = ? and k.rank = 1 and r.status = 'done'"
            " order by r.started_at, k.run_id", [t])
        s = Section(f"task-{i}", f"Task {t}")
        s.text = "<p>Latest leaderboard (top 10), then the best candidate of every finished run that ranked it.</p>"
        s.table = [["vision encoder", "language model", "score", "how", "run"]] + [
            [b["vision_encoder"], b["language_model"], "-" if b["score"] is None else f"{b['score']:.4f}",
             b["measured_or_predicted"], b["run_id"]] for b in board]
        fname = history_figure(points, folder, f"history-{i}.png", t)
        if fname:
            s.figures.append((fname, f"best candidate of {t} over runs"))
        changes, last = [], None
        for p in points:
            pick = (p["encoder"], p["llm"])
            if pick != last:
                changes.append(f"{p['run_id']} ({p['strategy']}, {p['encoders']} encoders x {p['llms']} LLMs): "
                               f"{_short(p['encoder'])} + {_short(p['llm'])}")
                last = pick
        s.text += "<p>Best changed at: " + html.escape("; ".join(changes)) + "</p>"
        sections.append(s)
    page = folder / "report.html"
    page.write_text(_html("harness history", sections, folder), encoding="utf-8")
    return page

