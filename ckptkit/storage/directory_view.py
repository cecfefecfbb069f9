"""What a manager knows of its directory, in one object.

The committed checkpoints (oldest first, each with its time), the monitored metric of each
(for `Retention.best_k`), the keep-every-n-hours mark, and the checkpoints a restore found
damaged. `refresh` re-reads it from the directory; the save pipeline changes it once the
state file on disk says the same.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ckptkit.errors import CorruptCheckpointError
from ckptkit.retention import best_k
from ckptkit.storage import fs, layout
from ckptkit.storage.manifest import read_manifest
from ckptkit.warn import warn

__all__ = ["DirectoryView"]


@dataclass
class DirectoryView:
    """A manager's view of the committed checkpoints of its directory.

    Attributes:
        directory: The checkpoint directory.
        allow_outside: Whether the state file may list checkpoints in other directories.
        monitor: The metric whose values `scores` holds (`Retention.monitor`), or None.
        entries: ``(path, time)`` of each committed checkpoint, oldest first.
        scores: `Retention.monitor`'s value by checkpoint path (None: not recorded).
        last_preserved: The keep-every-n-hours mark. As in `tf.train.CheckpointManager`,
            without a state file the window starts when the manager is created (a second
            back, against racing re-creations).
        future_mark: A mark found ahead of the clock, already warned about.
        damaged: Committed checkpoints a restore found damaged (a save of the step replaces
            them).
        state_tag: The version of the state file read last, or written by this manager (S3's
            ETag; `fs.ABSENT` when there was none; None where the store has no versions):
            the next commit goes through only if the file is still that version.
    """

    directory: str
    allow_outside: bool = False
    monitor: str | None = None
    entries: list[tuple[str, float]] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    last_preserved: float = field(default_factory=lambda: time.time() - 1.0)
    future_mark: float | None = None
    damaged: set[str] = field(default_factory=set)
    state_tag: str | None = None

    def refresh(self) -> None:
        """Reads the committed checkpoints of `directory` (nothing when it does not exist).

        The keep-every-n-hours mark is the state file's, as in `tf.train.CheckpointManager`:
        without one the window started when the view was created; one in the future (the
        clock went back) restarts the window now, with a warning, and no checkpoint counts as
        newer than now.
        """
        directory = self.directory
        if not fs.isdir(directory):
            return
        # Entries whose files are gone stay, so that restore() reports them as skipped.
        state, self.state_tag = layout.read_state_tagged(
            directory, allow_outside=self.allow_outside
        )
        entries, last_preserved = layout.listing(directory, state, include_missing=True)
        now = time.time()
        if last_preserved is None or last_preserved == self.future_mark:
            pass  # the window opened at creation, or was restarted at an earlier read
        elif last_preserved > now:
            self.future_mark = last_preserved
            self.last_preserved = now
            warn(
                f"time.time() returned a value {last_preserved - now:.0f} seconds behind the "
                f"last preserved checkpoint timestamp in {directory}; the "
                "keep_every_n_hours window restarts now, as tf.train.CheckpointManager does"
            )
        else:
            self.last_preserved = last_preserved
        # A stamp ahead of the clock counts as written when the window restarted (never as
        # newer), at every read: clamped to a later "now", it would rise above the window
        # start and retention would delete what tf.train.CheckpointManager keeps.
        restart = self.last_preserved if self.future_mark is not None else now
        self.entries = [(p, min(t, restart) if t > now else t) for p, t in entries]
        monitor = self.monitor
        if monitor is not None:
            self.scores = {p: _score(p, monitor) for p, _ in self.entries}

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


def _score(path: str, monitor: str) -> float | None:
    try:
        manifest = read_manifest(path)
    except CorruptCheckpointError:
        return None
    return None if manifest is None else manifest.metrics.get(monitor)
