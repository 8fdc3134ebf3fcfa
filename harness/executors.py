"""Trial executors: where a trial runs. ``local`` runs it in this process, one at a time."""

from __future__ import annotations


class LocalExecutor:
    """Runs each trial in this process (the store stays open; one writer)."""

    def __init__(self, store, run_id: str, **options):
        self.store = store
        self.run_id = run_id
        self.options = options

    def run(self, spec, progress=None):
        from harness.trial import run_trial

        return run_trial(spec, self.store, self.run_id, progress=progress)
