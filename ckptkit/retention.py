"""Which checkpoints to keep: last N, one every N hours, best k by a metric; no TensorFlow.

The base rule is `tf.train.CheckpointManager`'s, written as a pure function so it can be tested
on its own: the newest `max_to_keep` are kept; walking the older ones from oldest to newest, one
is preserved whenever at least `keep_every_n_hours` have passed since the last preserved one
(`last_preserved`, which TensorFlow stores in the `checkpoint` state file), and the rest are
deleted. Preserved checkpoints are no longer candidates for deletion.

On top of it, `best_k` names the k best checkpoints by a monitored metric (`direction` infers
whether lower or higher is better, as Keras does); `plan_deletions(best=...)` keeps those too.
The newest checkpoint, the one a resumed run needs, is always among the newest `max_to_keep`.

Example:
    >>> plan = plan_deletions([("a", 0.0), ("b", 1.0), ("c", 2.0)], max_to_keep=2,
    ...                       keep_every_n_hours=None, last_preserved=0.0)
    >>> plan.delete
    ('a',)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Mode", "RetentionPlan", "best_k", "direction", "is_better", "plan_deletions"]

Mode = Literal["auto", "min", "max"]

# Keras infers "min" for losses and asks each metric object for its direction; without the
# metric objects (a config written before the model exists) the name is all there is.
_LOWER_IS_BETTER = (
    "loss",
    "error",
    "mse",
    "mae",
    "mape",
    "msle",
    "crossentropy",
    "hinge",
    "poisson",
    "divergence",
    "logcosh",
    "perplexity",
)
_HIGHER_IS_BETTER = (
    "acc",
    "auc",
    "precision",
    "recall",
    "f1",
    "fbeta",
    "iou",
    "r2",
    "true_positives",
    "true_negatives",
    "score",
)


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
    best: Collection[str] = (),
    milestones: Collection[str] = (),
) -> RetentionPlan:
    """Decides which of `candidates` (path, wall time; oldest first) to delete.

    Args:
        candidates: Checkpoints still subject to retention, oldest first.
        max_to_keep: How many of the newest to keep; ``None`` keeps all.
        keep_every_n_hours: Preserve one checkpoint per this many hours, or ``None``.
        last_preserved: Wall time of the last preserved checkpoint (or of the first run).
        best: Checkpoints to keep for now as the best by a metric (see `best_k`); they stay
            candidates and are deleted once better ones push them out.
        milestones: Checkpoints kept for good (`Retention.keep_every_steps`).

    Returns:
        The plan; `candidates` itself is not changed.
    """
    if max_to_keep is None or len(candidates) <= max_to_keep:
        return RetentionPlan((), (), last_preserved)
    delete: list[str] = []
    preserved: list[str] = []
    for path, timestamp in candidates[: len(candidates) - max_to_keep]:
        if path in best or path in milestones:
            continue
        if keep_every_n_hours is not None and (
            timestamp - keep_every_n_hours * 3600.0 >= last_preserved
        ):
            last_preserved = timestamp
            preserved.append(path)
        else:
            delete.append(path)
    return RetentionPlan(tuple(delete), tuple(preserved), last_preserved)


def direction(monitor: str, mode: Mode = "auto") -> Literal["min", "max"] | None:
    """Whether lower (``"min"``) or higher (``"max"``) values of `monitor` are better.

    Args:
        monitor: A metric name as Keras logs it, e.g. ``val_loss`` or ``val_accuracy``.
        mode: ``"min"`` or ``"max"`` is returned as is; ``"auto"`` infers it from the name.

    Returns:
        The direction, or None when ``"auto"`` cannot tell from the name.
    """
    if mode != "auto":
        return mode
    name = monitor.lower().removeprefix("val_")
    if any(word in name for word in _LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in _HIGHER_IS_BETTER):
        return "max"
    return None


def is_better(value: float, reference: float | None, mode: Literal["min", "max"]) -> bool:
    """Whether `value` strictly improves on `reference` (None: anything does)."""
    if reference is None:
        return True
    return value < reference if mode == "min" else value > reference


def best_k(
    scored: Sequence[tuple[str, float | None]], k: int, mode: Literal["min", "max"]
) -> tuple[str, ...]:
    """The `k` best of `scored` (path, metric value; oldest first), best first.

    Checkpoints without a value (saved mid-epoch before validation, say) are not ranked. On a
    tie the older checkpoint wins, as it would under Keras's ``save_best_only``.
    """
    ranked = [(value, i, path) for i, (path, value) in enumerate(scored) if value is not None]
    sign = 1.0 if mode == "min" else -1.0
    ranked.sort(key=lambda r: (sign * r[0], r[1]))
    return tuple(path for _, _, path in ranked[:k])
