"""Trial executors: where a trial runs. ``local`` runs it in this process, one at a time.

The contract (``register_executors``): ``run(spec, progress=None) -> TrialOutcome``, and
optionally ``run_many(specs)`` (trials in parallel), ``submit(specs)`` (start trials without
waiting; a later ``run`` of one waits for it alone), ``close()`` (cancel what was submitted and
never asked for) and ``missing_embedding(what)`` (called before a strategy computes features
the executor says should exist: a replay stops there).
Strategies see every executor through :class:`Executor`, so none of them asks which kind it has.
"""

from __future__ import annotations


class Executor:
    """Any registered executor, with the optional parts of the contract filled in: ``batches``
    (whether handing it several trials at once runs them in parallel), ``run_many`` (one by one
    when it has none) and ``missing_embedding`` (nothing, for an executor that computes)."""

    def __init__(self, inner):
        self.inner = inner
        self.batches = callable(getattr(inner, "run_many", None))
        self.streams = callable(getattr(inner, "submit", None))

    def run(self, spec, progress=None):
        return self.inner.run(spec, progress=progress)

    def run_many(self, specs: list) -> list:
        if self.batches:
            return self.inner.run_many(specs)
        return [self.inner.run(spec) for spec in specs]

    def submit(self, specs: list) -> None:
        """Start ``specs`` without waiting where the executor can (else nothing: ``run`` trains)."""
        if self.streams:
            self.inner.submit(specs)

    def close(self) -> None:
        hook = getattr(self.inner, "close", None)
        if callable(hook):
            hook()

    def missing_embedding(self, what: str) -> None:
        hook = getattr(self.inner, "missing_embedding", None)
        if callable(hook):
            hook(what)

    def __getattr__(self, name):  # the executor's own attributes (nodes, workers, ...)
        return getattr(self.inner, name)


class LocalExecutor:
    """Runs each trial in this process (the store stays open; one writer)."""

    def __init__(self, store, run_id: str, **options):
        self.store = store
        self.run_id = run_id
        self.options = options

    def run(self, spec, progress=None):
        from harness.trial import run_trial

        return run_guarded(run_trial, spec, self.store, self.run_id, progress=progress)


def run_guarded(run_trial, spec, *args, **kwargs):
    """``run_trial(spec, ...)``, with a fault of the machine (a full disk, a read-only store or
    checkpoint folder) raised as :class:`harness.errors.EnvironmentFault`, which stops the run,
    wherever it struck (writing the store before or after the trial, not only its checkpoint)."""
    from harness.errors import environment_fault

    try:
        return run_trial(spec, *args, **kwargs)
    except Exception as exc:
        fault = environment_fault(exc, f"trial {spec.encoder} + {spec.llm} r={spec.ratio:g}")
        if fault is None or fault is exc:
            raise
        raise fault from exc
