"""Which checkpoints to keep: last N plus one every N hours, with no TensorFlow in sight.

The rule is `tf.train.CheckpointManager`'s, written as a pure function so it can be tested on its
own: the newest `max_to_keep` are kept; walking the older ones from oldest to newest, one is
preserved whenever at least `keep_every_n_hours` have passed since the last preserved one
(`last_preserved`, which TensorFlow stores in the `checkpoint` state file), and the rest are
deleted. Preserved checkpoints are no longer candidates for deletion.

Example:
    >>> plan = plan_deletions([("a", 0.0), ("b", 1.0), ("c", 2.0)], max_to_keep=2,
    ...                       keep_every_n_hours=None, last_preserved=0.0)
    >>> plan.delete
    ('a',)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RetentionPlan", "plan_deletions"]


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome of a retention sweep.

    Attributes:
        delete: Checkpoints to delete, oldest first.
        preserved: Checkpoints newly kept for good by the every-n-hours rule.
        last_preserved: The time the next every-n-hours window counts from.
    """

    delete: tuple[str, ...]
    preserved: tuple[str, ...]
    last_preserved: float


def plan_deletions(
    candidates: Sequence[tuple[str, float]],
    *,
    max_to_keep: int | None,
    keep_every_n_hours: float | None,
    last_preserved: float,
) -> RetentionPlan:
    """Decides which of `candidates` (path, wall time; oldest first) to delete.

    Args:
        candidates: Checkpoints still subject to retention, oldest first.
        max_to_keep: How many of the newest to keep; ``None`` keeps all.
        keep_every_n_hours: Preserve one checkpoint per this many hours, or ``None``.
        last_preserved: Wall time of the last preserved checkpoint (or of the first run).

    Returns:
        The plan; `candidates` itself is not changed.
    """
    if max_to_keep is None or len(candidates) <= max_to_keep:
        return RetentionPlan((), (), last_preserved)
    delete: list[str] = []
    preserved: list[str] = []
    for path, timestamp in candidates[: len(candidates) - max_to_keep]:
        if keep_every_n_hours is not None and (
            timestamp - keep_every_n_hours * 3600.0 >= last_preserved
        ):
            last_preserved = timestamp
            preserved.append(path)
        else:
            delete.append(path)
    return RetentionPlan(tuple(delete), tuple(preserved), last_preserved)
