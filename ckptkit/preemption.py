"""Termination signals (SIGTERM, SIGINT...) noted so that training can save and then exit.

The first signal is only noted; the manager saves at the next step and exits. A second one
acts as it would have without ckptkit (the handler that was there before, or the default), so
an impatient Ctrl-C still stops the program.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["SignalCatcher"]


class SignalCatcher:
    """Catches the named signals until `release`.

    Args:
        names: Signal names, e.g. ``("SIGTERM", "SIGINT")``.

    Raises:
        TypeError: Outside the main thread (Python allows handlers only there).
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise TypeError(
                "Preemption handling installs signal handlers, which Python allows only in the "
                "main thread; create this CheckpointManager there, or set preemption=None"
            )
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        for name in names:
            number = signal.Signals[name].value
            self._previous[number] = signal.signal(number, self._on_signal)

    @property
    def name(self) -> str | None:
        """The name of the signal received, or None."""
        return None if self.received is None else signal.Signals(self.received).name

    def _on_signal(self, number: int, frame: object) -> None:
        if self.received is not None:
            # A second signal: give up the graceful path and let it act as it would have.
            signal.signal(number, self._previous.get(number, signal.SIG_DFL))
            signal.raise_signal(number)
            return
        self.received = number

    def release(self) -> None:
        """Puts the previous handlers back."""
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()
