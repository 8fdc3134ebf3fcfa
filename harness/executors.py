"""Trial executors, the engine's side: how a strategy sees whatever executor the suite names.

The contract is :class:`harness.contracts.TrialExecutor`: ``run(spec, progress=None) ->
TrialOutcome``, and optionally ``run_many(specs)`` (trials in parallel), ``submit(specs)``
(start trials without waiting; a later ``run`` of one waits for it alone), ``close()`` (cancel
what was submitted and never asked for) and ``missing_embedding(what)`` (called before a
strategy computes features the executor says should exist: a replay stops there). The built-ins
(``local``, ``processes``, ``ray``) live in :mod:`harness.plugins.executors`.
Strategies see every executor through :class:`Executor`, so none of them asks which kind it has.
"""

from __future__ import annotations

from harness._moved import names_moved_from
from harness.contracts import TrialExecutor


class Executor:
    """Any registered executor, with the optional parts of the contract filled in: ``batches``
    (whether handing it several trials at once runs them in parallel), ``run_many`` (one by one
    when it has none) and ``missing_embedding`` (nothing, for an executor that computes)."""

    def __init__(self, inner):
        self.inner = inner
        if isinstance(inner, TrialExecutor):  # the contract's capability flags
            self.batches, self.streams = bool(inner.batches), bool(inner.streams)
        else:  # an executor that does not subclass it: the optional methods it has
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


__getattr__ = names_moved_from(__name__)  # LocalExecutor, by its name before it moved
