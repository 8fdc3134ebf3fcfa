"""What a search shows while it runs: a progress bar per phase and status lines on stderr.

Owned by :class:`harness.strategy.SearchStrategy` (``strategy.progress``); strategies call
``say``, ``phase`` and ``advance`` and never touch the bar themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class SearchProgress:
    """Progress bars (rich) and status lines of one search.

    :param console: a rich Console (stderr in a run), or None to show nothing.
    :param prefix: what each ``always`` line is prefixed with: the task it is about.
    """

    def __init__(self, console, prefix: Callable[[], str]):
        self.console = console
        self.prefix = prefix
        self.show = True  # a progress bar on the console (a replay per task shows none)
        self._bar = None
        self._task = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The bar's lifetime: a search shows it while it runs and removes it after."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                      transient=True, disable=self.console is None or not self.show) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def say(self, message: str, always: bool = False) -> None:
        """A status line: the progress bar's description, and with ``always`` a line on the
        run's console (stderr), prefixed with the task it is about and flushed at once, so a
        user whose output is not a terminal sees the run move."""
        if self._bar is not None and self._task is not None:
            # (before the first phase there is no bar to describe)
            self._bar.update(self._task, description=message)
        if always and self.console is not None:
            from rich.markup import escape

            self.console.print(f"{escape(f'[{self.prefix()}]')} {message}", highlight=False,
                               soft_wrap=True)
            with contextlib.suppress(Exception):
                self.console.file.flush()

    def phase(self, name: str, total: int | None) -> None:
        """Start a progress phase with ``total`` planned steps (rich shows the ETA)."""
        if self._bar is not None:
            self._task = self._bar.add_task(name, total=total)

    def advance(self) -> None:
        """One step of the current phase done."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)
