"""How the workers of a `tf.distribute` cluster act as one: the chief acts, the others follow.

Every worker runs the same program and calls the manager at the same points. For a decision
only one of them may take (to save now under a time schedule, which checkpoint to restore,
whether a save failed), the chief takes it and `Peers.agree` hands it to every worker. A step
the chief fails, every worker fails with the same kind of error, so no worker trains on while
another has stopped (which would leave it blocked in the next collective).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ckptkit.backends.base import Peers
from ckptkit.errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    CkptkitError,
    CorruptCheckpointError,
    DirectoryLockedError,
    DiskFullError,
    InvalidMetadataError,
    SaveError,
)

__all__ = ["on_chief"]

T = TypeVar("T")

# An error's class travels between workers as its index here plus one (0: no error). Subclasses
# come before their bases, so the first match is the most precise.
_KINDS: tuple[type[CkptkitError], ...] = (
    DiskFullError,
    SaveError,
    DirectoryLockedError,
    CheckpointExistsError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InvalidMetadataError,
    CkptkitError,  # the rest (a restore's mismatch errors carry a report, which cannot travel)
)


def on_chief(
    peers: Peers, chief: Callable[[], tuple[T, int]], others: Callable[[], T], *, doing: str
) -> tuple[T, int]:
    """Runs `chief` on the chief and `others` elsewhere, then shares the chief's outcome.

    Args:
        peers: This worker's cluster.
        chief: The chief's part; returns its result and a value (>= 0) to share.
        others: The other workers' part, run before they learn the chief's outcome.
        doing: What the step does, for the error the other workers raise when the chief
            failed ("save ckpt-200").

    Returns:
        This worker's result and the chief's value.

    Raises:
        CkptkitError: The chief failed: on the other workers, an error of the same class
            (`CkptkitError` itself for a class not listed here); the chief raises its own.
        WorkerLostError: A worker stopped answering (on every worker that still runs).
    """
    with peers.answering(doing):
        if peers.is_chief:
            try:
                result, value = chief()
            except BaseException as e:
                peers.agree(-_kind(e))  # a lost worker's abort fails this too, at once
                raise
            peers.agree(value)
            return result, value
        try:
            mine = others()
        finally:
            value = peers.agree(0)  # also after this worker's own failure: the chief waits here
    if value < 0:
        kind = _KINDS[-value - 1]
        raise kind(
            f"the chief could not {doing}, so this worker ({peers.task}) stops too: it raised "
            f"{kind.__name__}; the chief's output says why"
        )
    return mine, value


def _kind(error: BaseException) -> int:
    for index, kind in enumerate(_KINDS):
        if isinstance(error, kind):
            return index + 1
    return len(_KINDS)
