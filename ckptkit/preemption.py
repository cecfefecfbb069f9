"""Termination signals (SIGTERM, SIGINT...): save the step training is on, then exit.

The first signal is only noted (`SignalCatcher`); the manager saves at the next step and exits
(`PreemptionGuard`). A second one acts as it would have without ckptkit (the handler that was
there before, or the default), so an impatient Ctrl-C still stops the program. On a cluster of
several workers, TensorFlow's preemption handler picks the step every worker saves at
(`Peers.watch_preemption`), so that no worker is left waiting in a collective.
"""

from __future__ import annotations

import signal
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from ckptkit.backends.base import Peers, PreemptionWatch
from ckptkit.config import Preemption
from ckptkit.errors import SaveError, first_line
from ckptkit.warn import warn

__all__ = ["PreemptionGuard", "SignalCatcher"]

P = ParamSpec("P")
R = TypeVar("R")
SaveNow = Callable[[int, Mapping[str, Any] | None, Mapping[str, float] | None], str | None]


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


class PreemptionGuard:
    """A manager's answer to a termination signal: save the step, then exit as `policy` says.

    Args:
        policy: `CheckpointConfig.preemption`; None: signals are not caught.
        cluster: The backend's cluster, or None. On several workers, TensorFlow's handler
            decides the step.
        save_now: Saves a step synchronously, unless it is committed already; returns its
            path.
        wait: Waits for the background save in flight (raises its `SaveError`); on a cluster,
            every worker learns together whether it committed.
        close: Closes the manager before the exit.

    The guard holds `save_now`, `wait` and `close`, methods of the manager that owns it,
    weakly: a manager dropped without `close` is freed, and its lock released, as soon as it
    is unused.

    Raises:
        TypeError: Signals are to be caught outside the main thread.
    """

    def __init__(
        self,
        policy: Preemption | None,
        cluster: Peers | None,
        *,
        save_now: SaveNow,
        wait: Callable[[], object],
        close: Callable[[], None],
    ) -> None:
        self._policy = policy
        self._save_now = _weakly(save_now)
        self._wait = _weakly(wait)
        self._close = _weakly(close)
        self._signals = None if policy is None else SignalCatcher(policy.signals)
        self._watch: PreemptionWatch | None = None
        if self._signals is not None and cluster is not None and cluster.multi_worker:
            signals = self._signals
            self._watch = cluster.watch_preemption(
                lambda: signals.received is not None,
                lambda step: self._save_for_signal(step, None, None),
                self._leave,
            )

    @property
    def name(self) -> str | None:
        """The name of the termination signal received, or None."""
        return None if self._signals is None else self._signals.name

    @property
    def pending(self) -> bool:
        """Whether the next `at_step` saves for a signal (a cluster's handler decides alone)."""
        return self._received() is not None

    def at_step(
        self, step: int, metadata: Mapping[str, Any] | None, metrics: Mapping[str, float] | None
    ) -> str | None:
        """Once per step: after a signal, saves `step` and exits (or returns its path).

        Returns:
            The path saved for a signal when `Preemption.exit` is off, else None.

        Raises:
            SystemExit: With code 128 + the signal's number, after the save.
        """
        if self._watch is not None:
            self._watch.step(step)  # at the step the workers agreed on: save, then leave
            return None
        number = self._received()
        if number is None:
            return None
        path = self._save_for_signal(step, metadata, metrics)
        if self._policy is None or not self._policy.exit:
            return path
        self._close()
        raise SystemExit(128 + number)

    def _save_for_signal(
        self, step: int, metadata: Mapping[str, Any] | None, metrics: Mapping[str, float] | None
    ) -> str | None:
        """Waits for the save in flight, then saves `step`; a failure of the first only warns."""
        try:
            self._wait()
        except SaveError as e:  # the save of this step matters more now
            warn(f"a background save failed before the preemption save: {first_line(e)}")
        return self._save_now(step, metadata, metrics)

    def release(self) -> None:
        """Puts the previous signal handlers back, and stops TensorFlow's handler."""
        if self._signals is not None:
            self._signals.release()
        if self._watch is not None:
            self._watch.close()

    def _received(self) -> int | None:
        """The signal to act on now; on a cluster, TensorFlow's handler picks the step instead."""
        if self._signals is None or self._watch is not None:
            return None
        return self._signals.received

    def _leave(self) -> None:
        """After the preemption save on a cluster: exit as `Preemption.exit` says."""
        if self._policy is None or not self._policy.exit or self._signals is None:
            return
        number = self._signals.received or signal.SIGTERM.value  # the workers not signalled
        self._close()
        raise SystemExit(128 + number)


def _weakly(method: Callable[P, R]) -> Callable[P, R]:
    """Calls bound `method` without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = ref()
        if bound is None:
            raise ReferenceError("the CheckpointManager of this preemption guard is gone")
        return bound(*args, **kwargs)

    return call
