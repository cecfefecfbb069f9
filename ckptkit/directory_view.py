"""What a manager knows of its directory, in one object.

The committed checkpoints (oldest first, each with its time), the monitored metric of each
(for `Retention.best_k`), the keep-every-n-hours mark, and the checkpoints a restore found
damaged. The manager refreshes it when it re-reads the directory, and changes it once the
state file on disk says the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ckptkit.retention import best_k

__all__ = ["DirectoryView"]


@dataclass
class DirectoryView:
    """A manager's view of the committed checkpoints of its directory.

    Attributes:
        entries: ``(path, time)`` of each committed checkpoint, oldest first.
        scores: `Retention.monitor`'s value by checkpoint path (None: not recorded).
        last_preserved: The keep-every-n-hours mark. As in `tf.train.CheckpointManager`,
            without a state file the window starts when the manager is created (a second
            back, against racing re-creations).
        future_mark: A mark found ahead of the clock, already warned about.
        damaged: Committed checkpoints a restore found damaged (a save of the step replaces
            them).
    """

    entries: list[tuple[str, float]] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    last_preserved: float = field(default_factory=lambda: time.time() - 1.0)
    future_mark: float | None = None
    damaged: set[str] = field(default_factory=set)

    def listed(self, path: str) -> bool:
        """Whether `path` is a committed checkpoint."""
        return any(p == path for p, _ in self.entries)

    @property
    def newest(self) -> str | None:
        """The newest committed checkpoint, or None."""
        return self.entries[-1][0] if self.entries else None

    def ranked(
        self,
        direction: Literal["min", "max"],
        entries: Sequence[tuple[str, float]] | None = None,
        scores: Mapping[str, float | None] | None = None,
    ) -> tuple[str, ...]:
        """The checkpoints of `entries` (default: all) that have a score, best first.

        Args:
            direction: Whether a lower (``"min"``) or higher score is better.
            entries: The ``(path, time)`` pairs to rank; default `entries`.
            scores: Scores by path; default `scores`.
        """
        scores = self.scores if scores is None else scores
        scored = [(p, scores.get(p)) for p, _ in (self.entries if entries is None else entries)]
        return best_k(scored, len(scored), direction)

    def drop(self, path: str) -> None:
        """Forgets `path` (after the state file stopped listing it)."""
        self.entries = [e for e in self.entries if e[0] != path]
        self.scores.pop(path, None)
        self.damaged.discard(path)
