"""How close a search's ranking is to the grid's: pure functions over score dicts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def top1_match(grid: Mapping, ranking: Sequence) -> bool:
    """Whether the search's first choice is the grid's best candidate (ties count as a match)."""
    best = max(grid.values())
    return bool(ranking) and math.isclose(grid[ranking[0]], best)


def kendall_tau(grid: Mapping, ranking: Sequence, top: int | None = 10) -> float:
    """Kendall tau-b between the grid's scores and the search's ranks over the grid's top ``top``."""
    from scipy.stats import kendalltau

    names = _grid_top(grid, top)
    pos = {c: i for i, c in enumerate(ranking)}
    tau = kendalltau([grid[c] for c in names], [-pos.get(c, len(ranking)) for c in names]).statistic
    return float(tau)


def weighted_tau(grid: Mapping, ranking: Sequence, top: int | None = 10) -> float:
    """scipy.stats.weightedtau (hyperbolic weights, top ranks matter most) over the grid's top."""
    from scipy.stats import weightedtau

    names = _grid_top(grid, top)
    pos = {c: i for i, c in enumerate(ranking)}
    return float(weightedtau([grid[c] for c in names],
                             [-pos.get(c, len(ranking)) for c in names]).statistic)


def ndcg_at(grid: Mapping, ranking: Sequence, k: int = 5) -> float:
    """NDCG@k of the search's ranking with the grid's measured scores as relevance."""
    gains = sorted(grid.values(), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    got = sum(grid.get(c, 0.0) / math.log2(i + 2) for i, c in enumerate(ranking[:k]))
    return got / ideal if ideal > 0 else 0.0


def _grid_top(grid: Mapping, top: int | None) -> list:
    names = sorted(grid, key=lambda c: (-grid[c], str(c)))
    return names[:top] if top else names
