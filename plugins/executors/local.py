"""The ``local`` executor: each trial in this process, one after another (the store stays open;
one writer)."""

from __future__ import annotations

from harness.contracts import TrialExecutor
from harness.executors import run_guarded


class LocalExecutor(TrialExecutor):
    """Runs each trial in this process (the store stays open; one writer)."""

    def run(self, spec, progress=None):
        from harness.trial import run_trial

        return run_guarded(run_trial, spec, self.store, self.run_id, progress=progress)
