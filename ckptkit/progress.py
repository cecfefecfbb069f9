"""Progress of long reads and writes, drawn on stderr only where someone is watching.

Library code reports its work through `task`; that costs nothing and draws nothing unless the
caller turned drawing on with `shown` (the ``ckptkit`` command does, on a terminal or with
``--progress``, never with ``--json``). Even then a bar appears only once a task has run for
`DELAY` seconds, so quick commands print exactly what they printed before.

Example:
    >>> with task("reading", total=3, unit="tensors") as advance:
    ...     for _ in range(3):
    ...         advance(1)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Literal

__all__ = ["DELAY", "shown", "task"]

DELAY = 2.0  # seconds a task runs before its bar is drawn (0: at once)

_SHOWN: ContextVar[bool] = ContextVar("ckptkit_progress_shown", default=False)


@contextlib.contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Within this block, tasks that run longer than `DELAY` draw a bar on stderr."""
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


@contextlib.contextmanager
def task(
    description: str, total: int, *, unit: Literal["bytes", "tensors"] = "tensors"
) -> Iterator[Callable[[int], None]]:
    """A unit of long work; yields ``advance(n)``, to call as each part is done.

    Args:
        description: What is being done, e.g. ``"verifying ckpt-3"``.
        total: How many `unit` the whole task is.
        unit: What is counted; bytes are shown as sizes and a rate.
    """
    if not _SHOWN.get():
        yield _ignore
        return
    bar = _Bar(description, total, unit)
    timer = threading.Timer(DELAY, bar.draw)
    timer.daemon = True
    if DELAY > 0:
        timer.start()
    else:
        bar.draw()
    try:
        yield bar.advance
    finally:
        timer.cancel()
        bar.close()


def _ignore(n: int) -> None:
    """`advance` when nothing is drawn."""


class _Bar:
    """A rich progress bar on stderr, drawn from `DELAY` seconds on (by the caller's timer)."""

    def __init__(self, description: str, total: int, unit: str) -> None:
        self._description, self._total, self._unit = description, total, unit
        self._done = 0
        self._progress: Any = None
        self._closed = False
        self._lock = threading.Lock()

    def draw(self) -> None:
        from rich import progress
        from rich.console import Console

        counted = (
            [progress.DownloadColumn(), progress.TransferSpeedColumn()]
            if self._unit == "bytes"
            else [progress.MofNCompleteColumn(), progress.TextColumn(self._unit)]
        )
        console = Console(stderr=True)
        with self._lock:
            if self._progress is not None or self._closed:
                return
            self._progress = progress.Progress(
                progress.TextColumn("{task.description}"),
                progress.BarColumn(),
                *counted,
                progress.TimeElapsedColumn(),
                progress.TimeRemainingColumn(),
                console=console,
                # On a terminal the bar goes when done; elsewhere it is printed once, at the end.
                transient=console.is_terminal,
            )
            self._progress.add_task(self._description, total=self._total, completed=self._done)
            self._progress.start()

    def advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            if self._progress is not None:
                self._progress.update(0, completed=self._done)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._progress is not None:
                self._progress.stop()
