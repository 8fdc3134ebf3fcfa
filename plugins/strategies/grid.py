"""Grid search: every candidate trained at r = 1 and ranked by measured score (ground truth)."""

from __future__ import annotations

from harness.strategy import RankedCandidate, SearchStrategy, best_first


class GridSearch(SearchStrategy):
    name = "grid"
    exhaustive = True

    def search(self) -> list[RankedCandidate]:
        candidates = list(self.plan.candidates)
        self.phase("grid", total=len(candidates))
        self.prefetch([(c, 1.0) for c in candidates])  # all at once where the executor runs batches
        scored = []
        for candidate in candidates:
            score = self.evaluate(candidate, 1.0)
            scored.append(RankedCandidate(candidate, score, "measured",
                                          self._outcomes[(candidate, 1.0)].key))
        return sorted(scored, key=lambda r: best_first(r.score, r.candidate))
