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
from harness.answer import answer_of, judging_grid, times
from harness.errors import BadInput
from harness.strategy import binomial_error, constant_baseline, objective_tasks

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
    """The run row for ``run_id``, or with None the latest finished run (status done) that
    ranked candidates (a run interrupted, failed or still going is never picked silently); a
    clear error if there is none."""
    if run_id is None:
        rows = store.query("select * from runs where status = 'done' and run_id in (select run_id from rankings)"
                           " order by started_at desc, run_id desc limit 1")
        if rows:
            return rows[0]
        last = store.query("select run_id, status from runs order by started_at desc, run_id desc limit 1")
        if not last:
            raise BadInput(f"the store {store.path} has no runs yet; run a suite first: "
                           "harness run suites/quickstart.yaml")
        raise BadInput(f"no finished run in the store {store.path} has ranked candidates yet (the latest "
                       f"run, {last[0]['run_id']}, is {last[0]['status']}); name a run: harness report RUN")
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


find_grid = judging_grid  # the name this module gave it before harness.answer owned it


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
        from harness.plugin_manager import get_components

        return not get_components()["similarity_metric"].get(metric).higher_is_closer  # as registered
    except Exception:  # a metric whose plugin is not installed: draw it as a similarity
        return False


# -- figures ----------------------------------------------------------------------------------


LONG_TABLE = 12  # a table with more rows than this is folded under <details>

# called as FIGURE_HOOK(fig, file name) with every figure the page draws, just before it is
# saved (tests check its layout: no legend over a title)
FIGURE_HOOK = None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, folder: Path, name: str) -> str:
    if FIGURE_HOOK is not None:
        FIGURE_HOOK(fig, name)
    fig.savefig(folder / name, format="png")
    return name


def _legend_below(fig, axes, ncols: int = 4, fontsize: float = 7) -> None:
    """One legend for the figure, outside and below its axes (constrained layout makes room),
    each label once."""
    seen = {}
    for ax in np.atleast_1d(axes).ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        _fitting_legend(fig, list(seen.values()), list(seen.keys()), ncols, fontsize)


def _fitting_legend(fig, handles, labels, ncols: int, fontsize: float) -> None:
    """A legend below the axes with as many columns as the figure's width holds."""
    renderer = fig.canvas.get_renderer()
    for n in range(min(ncols, len(labels)), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=n, fontsize=fontsize,
                            frameon=False)
        if n == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width * 0.98:
            return
        legend.remove()


def _tree(block: dict):
    """The linkage of a block's matrix (its own method), None when a pair is missing."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    from harness.plugins.strategies.clustering import distances

    values = block["values"]
    if len(block["names"]) < 2 or np.isnan(values).any():
        return None
    dist = values if block["distance"] else distances(values)
    dist = np.maximum((dist + dist.T) / 2, 0.0)
    np.fill_diagonal(dist, 0.0)
    return linkage(squareform(dist, checks=False), method=block["linkage"])


def llm_similarity_panel(blocks: list[dict], folder: Path, name: str) -> str | None:
    """Every LLM context in one figure: a small heatmap per encoder-cluster context, members in
    their dendrogram's order, medoids starred, cluster boundaries drawn, one shared colour bar."""
    from scipy.cluster.hierarchy import leaves_list

    drawn = [(b, _tree(b)) for b in blocks]
    drawn = [(b, t) for b, t in drawn if t is not None]
    if not drawn:
        return None
    n = max(len(b["names"]) for b, _ in drawn)
    cols = min(3, len(drawn))  # three across: the page shows the figure near its own size
    rows = math.ceil(len(drawn) / cols)
    side = max(2.4, 0.32 * n + 1.3)
    fig = _figure(side * cols + 1.0, (side + 0.2) * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    distance = drawn[0][0]["distance"]
    finite = np.concatenate([b["values"][np.isfinite(b["values"])] for b, _ in drawn])
    from matplotlib.colors import Normalize

    norm = Normalize(vmin=float(finite.min()), vmax=float(finite.max()) if finite.max() > finite.min()
                     else float(finite.min()) + 1.0)
    image = None
    for ax, (b, tree) in zip(axes, drawn):
        order = [b["names"][i] for i in leaves_list(tree)]
        idx = [b["names"].index(m) for m in order]
        shown = b["values"][np.ix_(idx, idx)]
        image = ax.imshow(shown, cmap=_SEQ + ("_r" if distance else ""), norm=norm, aspect="equal")
        labels = [("*" if m in b["medoids"] else "") + _short(m) for m in order]
        ax.set_xticks(range(len(order)), labels, rotation=60, ha="right", fontsize=6)
        ax.set_yticks(range(len(order)), labels, fontsize=6)
        if len(order) <= 8:
            for i in range(len(order)):
                for j in range(len(order)):
                    v = shown[i, j]
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5,
                            color="white" if (norm(v) < 0.5) != distance else "black")
        for k in range(1, len(order)):  # a line between neighbours of different clusters
            if b["cluster"][order[k]] != b["cluster"][order[k - 1]]:
                ax.axhline(k - 0.5, color="white", linewidth=1.2)
                ax.axvline(k - 0.5, color="white", linewidth=1.2)
        n_clusters = len(set(b["cluster"].values()))
        ax.set_title(f"via {_short(b['context'])}: {n_clusters} cluster{'s' if n_clusters != 1 else ''}",
                     fontsize=8)
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes[:len(drawn)].tolist(), shrink=0.8, label=drawn[0][0]["metric"] or "similarity")
    fig.suptitle(f"{drawn[0][0]['metric']} between LLMs, per encoder-cluster context "
                 "(* medoid, white lines: cluster boundaries)", fontsize=10)
    return _save(fig, folder, name)


def similarity_figure(block: dict, folder: Path, name: str) -> str | None:
    """Dendrogram over the heatmap it orders, the cut drawn on the tree, medoids starred."""
    from scipy.cluster.hierarchy import dendrogram

    values, names = block["values"], block["names"]
    tree = _tree(block)
    if tree is None:
        return None
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


# how a ranked score was obtained: (legend label, marker, marker colour)
_BASIS = {
    "measured": ("measured at r=1", "o", "black"),
    "predicted": ("predicted for r=1 (scaling law)", "D", "tab:orange"),
    "lower": ("measured at a lower ratio, then eliminated", "v", "crimson"),
    "untrained": ("not trained (eliminated with its cluster)", None, None),
}


def _basis(r: dict) -> str:
    """Which of ``_BASIS`` a ranking row's score is."""
    if r.get("score") is None or (isinstance(r["score"], float) and math.isnan(r["score"])):
        return "untrained"
    if r.get("measured_or_predicted") == "predicted":
        return "predicted"
    ratio = r.get("sample_ratio")
    return "lower" if ratio is not None and ratio < 1.0 else "measured"


def grid_figure(ranking: list[dict], folder: Path, name: str, title: str) -> str | None:
    """Encoders x LLMs coloured by the ranked score (the scale's top is the highest score, so
    rank 1 is its top whenever rank 1 holds the highest score), each cell labelled with its
    rank, the rank-1 cell outlined, a corner marker saying how the score was obtained."""
    if not ranking:
        return None
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    encoders = sorted({r["encoder"] for r in ranking})
    llms = sorted({r["llm"] for r in ranking})
    values = np.full((len(encoders), len(llms)), np.nan)
    cells = {}
    for r in ranking:
        i, j = encoders.index(r["encoder"]), llms.index(r["llm"])
        if _basis(r) != "untrained":
            values[i, j] = float(r["score"])
        cells[(i, j)] = r
    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if finite.size else 1.0
    lo = float(finite.min()) if finite.size else 0.0
    tied = hi - lo < 1e-12
    if tied:  # every score tied: all of them at the top of the scale
        lo = hi - max(abs(hi), 1.0) * 0.1
    norm = Normalize(vmin=lo, vmax=hi)
    fig = _figure(2.6 + 1.15 * len(llms), 2.3 + 0.48 * len(encoders))
    ax = fig.subplots()
    ax.set_facecolor("0.93")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=_SEQ, norm=norm, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(llms)), [_short(m) for m in llms], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(encoders)), [_short(e) for e in encoders], fontsize=8)
    ax.set_xlim(-0.5, len(llms) - 0.5)
    ax.set_ylim(len(encoders) - 0.5, -0.5)
    for (i, j), r in cells.items():
        basis = _basis(r)
        v = values[i, j]
        if basis == "untrained":
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="none", edgecolor="0.7",
                                   hatch="///", linewidth=0))
            ax.text(j, i, f"#{r['rank']}", ha="center", va="center", fontsize=7, color="0.35")
            continue
        dark = norm(v) < 0.55
        ax.text(j, i, f"#{r['rank']}\n{v:.3f}", ha="center", va="center", fontsize=7,
                fontweight="bold" if r["rank"] == 1 else "normal", color="white" if dark else "black")
        _, marker, colour = _BASIS[basis]
        ax.scatter([j - 0.36], [i - 0.28], marker=marker, s=18, color=colour,
                   edgecolors="white", linewidths=0.6, zorder=3)
        if r["rank"] == 1:
            ax.add_patch(Rectangle((j - 0.47, i - 0.47), 0.94, 0.94, facecolor="none",
                                   edgecolor="crimson", linewidth=2.2, zorder=4))
    bar = fig.colorbar(image, ax=ax, label="ranked score" + (" (all tied)" if tied else ""))
    if tied:
        bar.set_ticks([hi])
    ax.set_title(title, fontsize=10)
    handles = [Patch(facecolor="none", edgecolor="crimson", linewidth=2, label="#1 (the pick)")]
    for key in ("measured", "predicted", "lower", "untrained"):
        label, marker, colour = _BASIS[key]
        if not any(_basis(r) == key for r in ranking):
            continue
        handles.append(Patch(facecolor="0.93", edgecolor="0.6", hatch="///", label=label) if marker is None
                       else Line2D([], [], linestyle="none", marker=marker, color=colour, label=label))
    _fitting_legend(fig, handles, [h.get_label() for h in handles], 3, 7)
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


def _how_where(r: dict) -> str:
    """``_how`` without the rank, with the ratio a measured score was taken at when not 1."""
    how = _how(r, rank=False)
    ratio = r.get("sample_ratio")
    if "r=" in how or ratio is None or ratio >= 1.0 or r.get("measured_or_predicted") == "predicted":
        return how
    return f"{how} at r={ratio:g}"


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
    everyone = sorted({(r["encoder"], r["llm"]) for r in rows})  # one colour per candidate in every panel
    for ax, phase in zip(axes, phases):
        mine = [r for r in rows if r["phase"] == phase and r["score"] is not None]
        candidates = sorted({(r["encoder"], r["llm"]) for r in mine})
        for c in candidates:
            pts = sorted((r for r in mine if (r["encoder"], r["llm"]) == c), key=lambda r: r["sample_ratio"])
            x = [r["sample_ratio"] for r in pts]
            y = [r["score"] for r in pts]
            err = [r.get("error") or 0.0 for r in pts]
            colour = colours(everyone.index(c) % 10)
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
    axes[0].set_ylabel("score")
    if len({(r["encoder"], r["llm"]) for r in rows}) <= 12:
        _legend_below(fig, axes, ncols=4, fontsize=6)
    return _save(fig, folder, name)


def _predictor(name: str):
    from harness.plugin_manager import get_components

    cls = get_components()["predictor"].get(name).load()
    return cls() if isinstance(cls, type) else cls


def fits_figure(fits: list[dict], folder: Path, name: str) -> str | None:
    """Per fitted candidate: the points the fit used (filled) and its other measured scores in
    the run (hollow, e.g. a rung above the fit's range), the fitted law, the prediction at r = 1
    with its interval, and the measured score at r = 1 when the store has it."""
    if not fits:
        return None
    from harness.predictors import ScalingFit

    cols = min(3, len(fits))
    rows = math.ceil(len(fits) / cols)
    fig = _figure(4.2 * cols, 3.2 * rows + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, f in zip(axes, fits):
        pts = [p for p in f["points"] if p["score"] is not None]
        xs = [p["sample_ratio"] for p in pts]
        ax.errorbar(xs, [p["score"] for p in pts], yerr=[p.get("error") or 0.0 for p in pts],
                    color="tab:blue", marker="o", linestyle="none", capsize=2, zorder=3,
                    label="measured, used by the fit")
        others = f.get("others") or []
        if others:
            ax.errorbar([p["sample_ratio"] for p in others], [p["score"] for p in others],
                        yerr=[p.get("error") or 0.0 for p in others], color="tab:blue", marker="s",
                        markerfacecolor="white", linestyle="none", capsize=2, zorder=3,
                        label="measured, not used by the fit")
        try:
            predictor = _predictor(f["predictor"])
            law = ScalingFit(f["params"], f["r2"] if f["r2"] is not None else math.nan)
            grid = np.geomspace(min(xs), 1.0, 60)
            ax.plot(grid, [predictor.predict(law, float(r)) for r in grid], color="tab:blue",
                    linewidth=1, label="fitted law")
        except Exception:  # a predictor plugin that is not installed: points and prediction only
            pass
        if f["predicted"] is not None:
            lo, hi = f.get("lower"), f.get("upper")
            yerr = None
            if lo is not None and hi is not None:
                yerr = [[max(f["predicted"] - lo, 0)], [max(hi - f["predicted"], 0)]]
            ax.errorbar([1.0], [f["predicted"]], yerr=yerr, color="tab:orange", marker="D",
                        capsize=3, label="predicted r=1 (95% interval)")
        if f.get("measured") is not None:
            ax.scatter([1.0], [f["measured"]], color="black", marker="*", s=80, zorder=4,
                       label="measured r=1")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{_short(f['encoder'])} + {_short(f['llm'])}: {f['predictor']}"
                     + (f", R^2 {f['r2']:.2f}" if f["r2"] is not None else ""), fontsize=9)
        ax.set_xlabel("data-sample ratio r")
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
    for ax in axes[len(fits):]:
        ax.set_visible(False)
    _legend_below(fig, axes[:len(fits)], ncols=3)
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
    _legend_below(fig, axes, ncols=3)
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
        for p in f["points"]:
            p["error"] = score_error(store, p["trial_key"], f["task"]) if p["trial_key"] else None
        f["others"] = _other_points(store, run_id, f)
    return fits


def _other_points(store, run_id: str, fit: dict) -> list[dict]:
    """The fitted candidate's other measured scores in this run (its trials the run used, its
    rung scores) at ratios the fit did not use, e.g. a rung at r = 1/2 above a fit on 1/8 and
    1/4; r = 1 is left to ``measured``."""
    used = {p["trial_key"] for p in fit["points"] if p["trial_key"]}
    fitted = {(p["sample_ratio"], round(float(p["score"]), 9)) for p in fit["points"] if p["score"] is not None}
    found: dict[str, dict] = {}
    for t in store.query(
            "select distinct t.trial_key, t.sample_ratio from run_uses u join trials t on t.trial_key = u.key"
            " where u.run_id = ? and u.kind = 'trial' and t.encoder = ? and t.llm = ? and t.status = 'done'"
            " and t.sample_ratio is not null", [run_id, fit["encoder"], fit["llm"]]):
        scores = _objective_scores(store, t["trial_key"], fit["task"])
        if scores is not None:
            found[t["trial_key"]] = {"sample_ratio": float(t["sample_ratio"]), "trial_key": t["trial_key"],
                                     "score": float(np.mean([x["value"] for x in scores]))}
    for r in store.query("select trial_key, sample_ratio, score from rungs where run_id = ? and encoder = ?"
                         " and llm = ? and score is not null", [run_id, fit["encoder"], fit["llm"]]):
        key = r["trial_key"] or f"rung@{r['sample_ratio']}"
        found.setdefault(key, {"sample_ratio": float(r["sample_ratio"]), "trial_key": r["trial_key"],
                               "score": float(r["score"])})
    out = []
    for key, p in found.items():
        if key in used or (p["sample_ratio"], round(p["score"], 9)) in fitted:
            continue
        if p["sample_ratio"] >= 1.0 and fit["measured"] is not None:
            continue
        p["error"] = score_error(store, p["trial_key"], fit["task"]) if p["trial_key"] else None
        out.append(p)
    return sorted(out, key=lambda p: p["sample_ratio"])


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
        grid_id = None  # the answer finds the judging grid (harness.answer.judging_grid)
    answer = answer_of(store, run_id, grid_run=grid_id)
    if compare_run is None and answer.grid is not None:
        grid_id = answer.grid.get("run_id")
    elif compare_run is None and not run.get("ground_truth"):
        grid_id = judging_grid(store, run)
    tasks = list(dict.fromkeys(r["task"] for r in ranking))
    first = [r for r in ranking if r["task"] == answer.task] if answer.task else ranking
    sections: list[Section] = [_answer_section(run, answer), _header(store, run, config)]

    if ranking:
        s = Section("grid", f"Candidates on {', '.join(tasks)}",
                    "<p>Each cell: the candidate's rank and its ranked score, coloured on one scale (the "
                    "scale's top is the highest score; the pick is outlined), with a corner mark saying how "
                    "the score was obtained: measured at r = 1, predicted for r = 1 by the scaling law, "
                    "measured at a lower ratio before the candidate was eliminated, or not trained at all "
                    "(eliminated with its cluster, hatched).</p>")
        for k, task in enumerate(tasks):
            rows = [r for r in ranking if r["task"] == task]
            fname = grid_figure(rows, folder, "grid.png" if k == 0 else f"grid-{k}.png",
                                f"{run['strategy']} ranking on {task}")
            s.figures.append((fname, f"encoder x LLM grid of {task} coloured by ranked score"))
        several = len(tasks) > 1
        s.table = [(["task"] if several else []) + ["rank", "vision encoder", "language model", "score", "how"]] + [
            ([r["task"]] if several else [])
            + [str(r["rank"]), r["encoder"], r["llm"], "-" if r["score"] is None else f"{r['score']:.4f}",
               _how_where(r)]
            for r in ranking]
        sections.append(s)

    sections += _prior_sections(store, run_id)

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
                    "<p>Points trained at small ratios (filled: used by the fit; hollow: the candidate's other "
                    "scores measured in this run, e.g. a rung above the fit's range), the fitted law, the "
                    "predicted full-data score with its 95% interval (the points' standard errors carried "
                    "through the fit) and, when the store has it, the score measured at r = 1.</p>")
        s.figures.append((fits_figure(fits, folder, "fits.png"), "scaling fits per survivor"))
        s.table = [["candidate", "predictor", "fit on r", "other measured r", "R^2", "predicted r=1",
                    "95% interval", "measured r=1"]] + [
            [f"{_short(f['encoder'])} + {_short(f['llm'])}", f["predictor"],
             ", ".join(f"{p['sample_ratio']:g}" for p in f["points"]) or "-",
             ", ".join(f"{p['sample_ratio']:g}" for p in f["others"]) or "-",
             "-" if f["r2"] is None else f"{f['r2']:.3f}",
             "-" if f["predicted"] is None else f"{f['predicted']:.4f}",
             "-" if f.get("lower") is None else f"[{f['lower']:.4f}, {f['upper']:.4f}]",
             "-" if f["measured"] is None else f"{f['measured']:.4f}"] for f in fits]
        sections.append(s)

    parts = _cost_parts(store, run_id, bool(run.get("ground_truth")))
    if parts:
        grid_eq = answer.grid
        s = Section("cost", "Where the compute went")
        total = sum(p["trained_samples"] + p["reused_samples"] for p in parts)
        fresh = sum(p["trained_samples"] for p in parts)
        s.text = (f"<p>Charged at the empty-store price: {total:,} training samples "
                  f"({fresh:,} computed by this run, {total - fresh:,} reused from the store)"
                  + (f"; the {html.escape(grid_eq['label'])} costs {grid_eq['samples']:,}: "
                     + _times(grid_eq["samples"], total) if grid_eq else "") + ".</p>")
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
            fname = compare_figure(first, [g for g in _ranking(store, grid_id) if g["task"] == answer.task],
                                   folder, "compare.png")
            if fname:
                s.figures.append((fname, "search rank against grid rank"))
        else:
            s.text = f"<p>{html.escape(why)}</p>"
        sections.append(s)

    sections += _similarity_sections(store, run_id, folder)

    page = folder / "report.html"
    page.write_text(_html(f"harness report: {run['suite_name']} / {run_id}", sections, folder), encoding="utf-8")
    return page


def _times(grid: float, spent: float) -> str:
    """What the run spent against the grid: ``the run spent 4.4x fewer``, or ``1.3x more``."""
    return f"the run spent {times(grid, spent)}"


def _code(text: str) -> str:
    """HTML of a sentence with its `backticked` commands set as code."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _answer_section(run: dict, answer) -> Section:
    """The page's first section: ``harness.answer``'s sentences, the pick's first and largest."""
    s = Section("answer", "Answer")
    if answer.pick is None:
        s.text = (f"<p class=\"pick\">This run ranked no candidate (status {html.escape(str(run['status']))}"
                  + (f": {html.escape(str(run['error']))}" if run.get("error") else "") + ").</p>")
        return s
    lines = list(answer.lines)
    hint = answer.grid_hint if answer.grid_hint in lines else None
    body = [line for line in lines[1:] if line != hint]
    s.text = (f"<p class=\"pick\"><b>{_code(lines[0])}</b></p>"
              + ("<ul>" + "".join(f"<li>{_code(line)}</li>" for line in body) + "</ul>" if body else "")
              + (f"<p class=\"hint\">{_code(hint)}</p>" if hint else ""))
    rows = [["", "candidate", "score", "SE", "how"]]
    for label, r in (("pick", answer.pick), ("runner-up", answer.runner_up)):
        if r is None:
            continue
        rows.append([label, f"{r['encoder']} + {r['llm']}",
                     "-" if r["score"] is None else f"{r['score']:.4f}",
                     "-" if r.get("se") is None else f"{r['se']:.4f}",
                     _how_where(r)])
    if answer.gap is not None:
        rows.append(["gap", "pick - runner-up", f"{answer.gap:+.4f}",
                     "-" if answer.gap_se is None else f"{answer.gap_se:.4f}",
                     answer.verdict + ("" if answer.p_pick_better is None
                                       else f"; P(pick better) {answer.p_pick_better:.2f}")])
    if answer.samples and answer.grid:
        rows.append(["cost", "this run vs " + answer.grid["label"], f"{answer.samples:,}",
                     "", f"training samples, against {answer.grid['samples']:,} for the grid: "
                     + _times(answer.grid["samples"], answer.samples)])
    s.table = rows
    return s


def _runs_text(runs: list[str], shown: int = 4) -> str:
    head = ", ".join(runs[:shown]) + (f" and {len(runs) - shown} more" if len(runs) > shown else "")
    return f"run{'s' if len(runs) > 1 else ''} {head}"


def _prior_sections(store, run_id: str) -> list[Section]:
    """A model-based search's prior from history beside what the task's own data said
    (``search_prior``, ``search_history``): nothing for a run that wrote no such rows."""
    from harness.report import candidate_name, p_text, prior_vs_data

    out = []
    views = prior_vs_data(store, run_id)
    for k, v in enumerate(views):
        title = "Prior from history vs the task's own data" + (f" ({v.task})" if len(views) > 1 else "")
        s = Section("prior" if k == 0 else f"prior-{k}", title)
        s.text = f"<p class=\"lead\"><b>{html.escape(v.lead)}</b></p>"
        if v.history:
            groups: dict[tuple, list[str]] = {}  # tasks scored by the same runs, named once
            for t, runs in v.history.items():
                groups.setdefault(tuple(runs), []).append(t)
            tasks = "; ".join(f"{', '.join(ts)} ({_runs_text(list(runs))})" for runs, ts in groups.items())
            option = v.history_option if isinstance(v.history_option, str) else json.dumps(v.history_option)
            s.text += (f"<p>The prior came from {len(v.history)} history task{'s' if len(v.history) > 1 else ''} "
                       f"(search.history: {html.escape(option)}): {html.escape(tasks)}."
                       + (f" {v.unscored} of {v.candidates} candidates had no score there: their prior sits at "
                          "history's average." if v.unscored else "")
                       + (" The prior runs against the history z-scores (a negative weight on history, fitted "
                          "from the history tasks themselves: their scores ran against each other), so it "
                          "favours the candidates the history tasks scored low." if v.against_history else "")
                       + "</p>")
        else:
            s.text += ("<p>No history: " + ("search.history is none" if v.history_option == "none" else
                                            "the store held no other task trained with this suite's recipe")
                       + ", so every candidate started from the same prior.</p>")
        shown = ["the pick", "the runner-up"]
        if any("posterior's top" in r["roles"] for r in v.rows):
            shown.append("the posterior's top (the ranking sorts a score measured at r = 1 by that score)")
        if not v.flat:
            shown += ["history's pick", f"any candidate whose rank moved by {v.moved} or more"]
        s.text += ("<p>Per candidate: its standardised score on the history tasks (z), the prior (rank, and "
                   "full-data mean &plusmn; sd before any of this task's data), the task's own score at the "
                   "highest ratio the search measured it, and the posterior after every measurement (mean "
                   "&plusmn; sd, rank, P(best)). Shown: " + ", ".join(shown) + f"; all {v.candidates} are in " + _code(f"`harness sql \"select * from search_prior where "
                                                          f"run_id = '{run_id}'\"`") + ".</p>")
        s.table = [["", "candidate", "history z", "prior rank", "prior mean ± sd", "own score",
                    "posterior mean ± sd", "posterior rank", "P(best)"]] + [
            [", ".join(r["roles"]), candidate_name(r),
             "-" if r["history_z"] is None else f"{r['history_z']:+.3f}",
             "-" if v.flat else str(r["prior_rank"]),
             f"{r['prior_mean']:.4f} ± {r['prior_sd']:.4f}",
             "not measured" if r["own_score"] is None else f"{r['own_score']:.4f} at r={r['own_ratio']:g}",
             f"{r['posterior_mean']:.4f} ± {r['posterior_sd']:.4f}", str(r["posterior_rank"]),
             p_text(float(r["p_best"]))] for r in v.rows]
        out.append(s)
    return out


def _similarity_sections(store, run_id: str, folder: Path) -> list[Section]:
    """The clustering's evidence, last on the page: the encoders' heatmap under its dendrogram,
    then every LLM context in one compact panel, with a table of the cuts."""
    blocks = _similarity_blocks(store, run_id)
    out = []
    enc = [b for b in blocks if b["level"] == "encoder"]
    llm = [b for b in blocks if b["level"] == "llm"]
    if enc:
        s = Section("encoder-similarity", "Vision encoders: similarity and clusters")
        for i, b in enumerate(enc):
            s.text += f"<p>{html.escape(_cut_text(b))}</p>"
            fname = similarity_figure(b, folder, f"encoder-similarity-{i}.png")
            if fname:
                s.figures.append((fname, f"{b['metric']} heatmap and dendrogram of the vision encoders"))
            else:
                s.text += "<p>(not every pair's similarity is in the store; no figure)</p>"
        out.append(s)
    if llm:
        s = Section("llm-similarity", "Language models: similarity per encoder cluster",
                    f"<p>One heatmap per encoder-cluster context ({len(llm)}): the LLMs' representations "
                    "compared through that context's encoder and warmed projector.</p>")
        fname = llm_similarity_panel(llm, folder, "llm-similarity.png")
        if fname:
            s.figures.append((fname, f"{llm[0]['metric']} heatmaps of the language models, one per context"))
        missing = [b for b in llm if _tree(b) is None]
        if missing:
            s.text += ("<p>(not every pair's similarity is in the store for "
                       + html.escape(", ".join(_short(b["context"]) for b in missing)) + "; not drawn)</p>")
        s.table = [["context", "members", "clusters", "cut (distance)", "linkage", "medoids"]] + [
            [_short(b["context"]), str(len(b["names"])), str(len(set(b["cluster"].values()))),
             "-" if b["threshold"] is None else f"{b['threshold']:.3f}", str(b["linkage"]),
             ", ".join(sorted(_short(m) for m in b["medoids"]))] for b in llm]
        out.append(s)
    return out


def _cut_text(b: dict) -> str:
    n_clusters = len(set(b["cluster"].values()))
    return (f"{len(b['names'])} members, {n_clusters} clusters cut at distance "
            + ("-" if b["threshold"] is None else f"{b['threshold']:.3f}")
            + f" ({b['linkage']} linkage); medoids: " + ", ".join(sorted(_short(m) for m in b["medoids"])))


def _header(store, run: dict, config: dict) -> Section:
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
            table = ("<table>" + ("" if not any(head) else
                                  "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
                     + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                               for row in body) + "</table>")
            if len(body) > LONG_TABLE:  # a long table folds away (no script: HTML's own <details>)
                table = f"<details><summary>the table ({len(body)} rows)</summary>{table}</details>"
            parts.append(table)
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

