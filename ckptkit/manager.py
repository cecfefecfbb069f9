"""`CheckpointManager`: one save / restore / inspect interface over TensorFlow checkpoints.

The facade ties the pieces together and owns no policy of its own: `schedule` says when to
save, `retention` what to keep, `storage` where files go and what is committed, the backend how
TensorFlow moves the tensors, and `status` whether a restore matches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ckptkit import storage
from ckptkit.backends.base import Backend
from ckptkit.backends.object_based import ObjectBasedBackend
from ckptkit.config import Assertion, CheckpointConfig
from ckptkit.errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    InvalidStepError,
    SaveError,
)
from ckptkit.retention import plan_deletions
from ckptkit.schedule import SaveTimer
from ckptkit.status import RestoreReport, RestoreResult, check_assertion
from ckptkit.storage import CheckpointInfo

__all__ = ["CheckpointManager"]


class CheckpointManager:
    """Saves, restores and lists the checkpoints of one directory.

    Drop it into a custom training loop::

        cfg = ckptkit.CheckpointConfig(directory="runs/exp1",
                                       schedule=ckptkit.Schedule(every_steps=100))
        mgr = ckptkit.CheckpointManager(cfg, model=model, optimizer=opt, step=step)
        mgr.restore_or_initialize()
        for batch in dataset:
            train_step(batch)
            step.assign_add(1)
            mgr.maybe_save(step)

    Checkpoints are named ``<prefix>-<step>`` and listed in TensorFlow's ``checkpoint`` state
    file, so plain `tf.train.latest_checkpoint`, `tf.train.CheckpointManager` and
    `tf.train.Checkpoint.restore` read the directory as well.

    Args:
        config: Directory, prefix, schedule, retention and restore policy.
        checkpoint: An existing `tf.train.Checkpoint` to save and restore, instead of
            `trackables`.
        clock: Monotonic seconds for time schedules; for tests. Defaults to `time.monotonic`.
        **trackables: Named objects to checkpoint: Keras models and optimizers, `tf.Variable`,
            `tf.Module`, `tf.data` iterators, any trackable. (``checkpoint`` and ``clock`` are
            taken by the arguments above.)

    Raises:
        TrackableError: An object TensorFlow cannot checkpoint.
        TypeError: Neither or both of `checkpoint` and `trackables` were given.
    """

    def __init__(
        self,
        config: CheckpointConfig,
        /,
        *,
        checkpoint: tf.train.Checkpoint | None = None,
        clock: Callable[[], float] | None = None,
        **trackables: Any,
    ) -> None:
        if (checkpoint is None) == (not trackables):
            raise TypeError(
                "CheckpointManager needs the objects to checkpoint: pass them by name "
                "(model=..., optimizer=...) or pass checkpoint=tf.train.Checkpoint(...), not both"
            )
        self._config = config
        self._directory = config.directory
        self._backend: Backend = ObjectBasedBackend(trackables, checkpoint=checkpoint)
        self._entries: list[tuple[str, float]] = []
        last_preserved = None
        if tf.io.gfile.isdir(self._directory):
            self._entries, last_preserved = storage.committed(self._directory)
        # As tf.train.CheckpointManager: a fresh directory starts its every-n-hours window now.
        self._last_preserved = time.time() - 1.0 if last_preserved is None else last_preserved
        latest_step = storage.parse_step(self._entries[-1][0]) if self._entries else None
        self._timer = SaveTimer(
            config.schedule, last_step=latest_step, clock=clock or time.monotonic
        )

    @property
    def config(self) -> CheckpointConfig:
        """The configuration this manager was built with."""
        return self._config

    @property
    def directory(self) -> str:
        """The checkpoint directory."""
        return self._directory

    @property
    def checkpoint(self) -> tf.train.Checkpoint:
        """The `tf.train.Checkpoint` that is saved and restored."""
        backend = self._backend
        assert isinstance(backend, ObjectBasedBackend)
        return backend.checkpoint

    @property
    def checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints, oldest first (files are stat'ed for sizes)."""
        return [storage.describe(path, t) for path, t in self._entries]

    @property
    def latest(self) -> CheckpointInfo | None:
        """The newest committed checkpoint, or None when there is none."""
        if not self._entries:
            return None
        return storage.describe(*self._entries[-1])

    def maybe_save(self, step: Any) -> str | None:
        """Saves when the schedule calls for it at `step`.

        Cheap on the steps that do not save, so it can be called on every step. Reading a
        `tf.Variable` step waits for the device; on an accelerator, pass a Python int you keep
        alongside it to avoid one sync per step.

        Args:
            step: The current step: an int, or a scalar `tf.Variable` / tensor.

        Returns:
            The checkpoint path when it saved, else None.
        """
        step = _as_step(step)
        if not self._timer.should_save(step):
            return None
        return self.save(step)

    def save(self, step: Any) -> str:
        """Saves a checkpoint for `step` now, commits it, then applies retention.

        The checkpoint is listed (in memory and in the state file) only after TensorFlow has
        written all of its files; old checkpoints are deleted only after that.

        Args:
            step: The step this checkpoint is for; it names the checkpoint.

        Returns:
            The checkpoint prefix, e.g. ``runs/exp1/ckpt-200``.

        Raises:
            CheckpointExistsError: A committed checkpoint for `step` exists already.
            SaveError: Writing failed; partial files were removed, earlier checkpoints kept.
        """
        step = _as_step(step)
        path = os.path.join(self._directory, f"{self._config.prefix}-{step}")
        if any(p == path for p, _ in self._entries):
            raise CheckpointExistsError(
                f"checkpoint {path} for step {step} is already committed; it is not overwritten. "
                "Save at a new step, or use a new directory to retrain from an earlier step"
            )
        try:
            tf.io.gfile.makedirs(self._directory)
            written = self._backend.write(path)
            entries = [*self._entries, (written, time.time())]
            plan = plan_deletions(
                [e for e in entries if e[1] > self._last_preserved],
                max_to_keep=self._config.retention.max_to_keep,
                keep_every_n_hours=self._config.retention.keep_every_n_hours,
                last_preserved=self._last_preserved,
            )
            doomed = set(plan.delete)
            entries = [e for e in entries if e[0] not in doomed]
            storage.write_state(self._directory, tuple(entries), plan.last_preserved)
        except (tf.errors.OpError, OSError) as e:
            storage.delete_checkpoint(path)
            raise SaveError(
                f"saving checkpoint {path} failed: {e}. Nothing was committed and the earlier "
                f"checkpoints in {self._directory} are intact"
            ) from e
        self._entries = entries
        self._last_preserved = plan.last_preserved
        for old in plan.delete:
            storage.delete_checkpoint(old)
        self._timer.record(step)
        return written

    def check_compatibility(
        self, *, step: int | None = None, path: str | None = None
    ) -> RestoreReport:
        """Compares a checkpoint with the program without loading anything (a dry run).

        Args:
            step: Compare the checkpoint of this step.
            path: Compare this checkpoint (prefix or directory) instead.

        Returns:
            Matched entries, unused checkpoint values, unrestored program variables and
            shape/dtype mismatches, each by name.
        """
        return self._backend.compare(self._select(step, path))

    def restore(
        self,
        *,
        step: int | None = None,
        path: str | None = None,
        assertion: Assertion | None = None,
    ) -> RestoreResult:
        """Restores the newest checkpoint, or the one of `step`, or the one at `path`.

        The checkpoint is matched against the program first; when the assertion fails
        nothing is loaded. Objects that do not exist yet (an unbuilt Keras model) get their
        values when they are created; check them afterwards with `RestoreResult.assert_restored`.

        Args:
            step: Restore the checkpoint of this step.
            path: Restore this checkpoint (prefix or directory), which may be elsewhere.
            assertion: Overrides the config's `RestorePolicy.assertion`.

        Returns:
            Which checkpoint was loaded, its step, and the match report.

        Raises:
            CheckpointNotFoundError: No such checkpoint (or none at all).
            ShapeMismatchError: A variable's shape or dtype differs; nothing was loaded.
            RestoreMismatchError: The assertion failed; nothing was loaded.
            CorruptCheckpointError: The checkpoint's files cannot be read.
        """
        target = self._select(step, path)
        mode = assertion or self._config.restore.assertion
        report = self._backend.compare(target)
        check_assertion(report, mode)
        status = self._backend.restore(target, expect_partial=mode != "none")
        restored_step = storage.parse_step(target)
        if restored_step is not None:
            self._timer.record(restored_step)
        return RestoreResult(
            restored=True,
            path=target,
            step=restored_step,
            report=report,
            tf_status=status,
            _recheck=lambda: self._backend.compare(target, status),
        )

    def restore_or_initialize(self, *, assertion: Assertion | None = None) -> RestoreResult:
        """Restores the newest checkpoint if there is one; otherwise leaves the program as is.

        Returns:
            ``restored=False`` for a fresh start, else as `restore`.
        """
        if not self._entries:
            return RestoreResult(restored=False)
        return self.restore(assertion=assertion)

    def _select(self, step: int | None, path: str | None) -> str:
        if step is not None and path is not None:
            raise TypeError("pass step or path, not both")
        if path is not None:
            return storage.resolve_checkpoint(os.fspath(path))
        if step is not None:
            for candidate, _ in self._entries:
                if storage.parse_step(candidate) == step:
                    return candidate
            have = [storage.parse_step(p) for p, _ in self._entries]
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in {self._directory}; steps available: {have}"
            )
        if not self._entries:
            raise CheckpointNotFoundError(
                f"no checkpoint to restore in {self._directory}; "
                "use restore_or_initialize() to start fresh when there is none"
            )
        return self._entries[-1][0]


def _as_step(step: Any) -> int:
    value = step.numpy() if hasattr(step, "numpy") else step
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        as_int = -1
    if as_int < 0 or as_int != value:
        raise InvalidStepError(f"step must be a non-negative integer (received step={step!r})")
    return as_int
