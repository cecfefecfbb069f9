"""The contract between `CheckpointManager` and the TensorFlow API that does the I/O."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ckptkit.status import RestoreReport

__all__ = ["Backend", "Peers", "PreemptionWatch"]


class Backend(Protocol):
    """Writes, compares and restores checkpoints through one TensorFlow API.

    The manager owns naming, scheduling, retention and the state file; a backend only moves
    tensors between the program and a checkpoint prefix.

    Attributes:
        tensorflow_version: The TensorFlow release that writes, for the manifests.
    """

    tensorflow_version: str

    @property
    def cluster(self) -> Peers | None:
        """The `tf.distribute` cluster the program runs on, None outside a strategy."""
        ...

    def read_step(self, step: Any) -> Any:
        """The value of a step the program passed (a graph-mode tensor is run, for one)."""
        ...

    def write(self, prefix: str) -> str:
        """Writes the program's state to `prefix`; returns the prefix written.

        Raises:
            SaveError: TensorFlow failed to write (`DiskFullError` when out of space).
            OSError: The filesystem refused otherwise.
        """
        ...

    def snapshot(self) -> Callable[[str], str]:
        """Takes the program's state now, for a write later from any thread (an async save).

        Returns:
            A function that writes the state as it was at this call to a prefix, as `write`.

        Raises:
            TrackableError: The state cannot be taken ahead of writing (graph mode, objects
                TensorFlow saves through registered savers).
        """
        ...

    def compare(self, path: str, status: Any = None) -> RestoreReport:
        """Matches the checkpoint `path` against the program without loading anything.

        `status`, the result of an earlier `restore` of `path`, lets the backend also check
        that the values went where the program looks for them now.
        """
        ...

    def restore(
        self, path: str, *, expect_partial: bool, leave_out: frozenset[int] = frozenset()
    ) -> Any:
        """Loads `path` into the program, but not the object-graph nodes `leave_out`.

        Returns:
            TensorFlow's load status.
        """
        ...


class Peers(Protocol):
    """This worker's view of the others in a cluster (`ckptkit.backends.cluster.Cluster`)."""

    is_chief: bool
    task: str
    task_id: int

    @property
    def multi_worker(self) -> bool:
        """Whether several processes take part."""
        ...

    def agree(self, value: int) -> int:
        """The chief's `value`, on every worker; every worker must call it at the same point."""
        ...

    def count(self, flag: bool) -> int:
        """How many workers passed True; every worker must call it at the same point."""
        ...

    def answering(self, doing: str) -> AbstractContextManager[None]:
        """Raises `WorkerLostError` (naming it) where a collective failed for a lost worker."""
        ...

    def watch_preemption(
        self, noticed: Callable[[], bool], save: Callable[[int], object], leave: Callable[[], None]
    ) -> PreemptionWatch:
        """Saves on every worker at one step after any worker `noticed` a signal, then leaves."""
        ...


class PreemptionWatch(Protocol):
    """What `Peers.watch_preemption` returns."""

    def step(self, step: int) -> None:
        """Called once per training step on every worker."""
        ...

    def close(self) -> None:
        """Releases what it holds."""
        ...
