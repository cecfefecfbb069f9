"""A `tf.train.CheckpointManager` backed by ckptkit, for the code and frameworks that take one.

Orbit's `Controller`, Model Garden's `RecoveryAction` and TensorFlow's
`PreemptionCheckpointHandler` take a `tf.train.CheckpointManager` (the handler checks
`isinstance`). `CheckpointManager` here is a subclass with the same constructor and the same
behaviour from the caller's side, while every save goes through ckptkit's commit pipeline
(manifest, state file, retention, writer lock or lease, async when configured) and
`restore_or_initialize` is ckptkit's checked restore (assertion, walk-back past damage)::

    manager = ckptkit.compat.CheckpointManager(checkpoint, "runs/exp1", max_to_keep=5)
    # or, from a ckptkit manager: mgr.as_tf_manager()

What TensorFlow's class does and this one refuses, each with an error naming it: saving a
checkpoint number that is already committed (TensorFlow replaces it; ckptkit never deletes a
committed checkpoint to write another in its place: `CheckpointExistsError`);
`CheckpointOptions` other than the default and ``experimental_enable_async_checkpoint`` (which
makes that save an async ckptkit save): `NotImplementedError`; and a second writer of the
same directory while the first is open, in this process or another (TensorFlow lets two
managers interleave their files): `DirectoryLockedError` at the first save or restore.
`manager.close()` (on `.manager`) releases the directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ckptkit.config import CheckpointConfig, Retention, Schedule
from ckptkit.manager import CheckpointManager as _Manager

__all__ = ["CheckpointManager"]


class CheckpointManager(tf.train.CheckpointManager):  # type: ignore[misc]
    """A `tf.train.CheckpointManager` whose saves and restores are ckptkit's.

    Args:
        checkpoint: The `tf.train.Checkpoint` to save and restore.
        directory: Where checkpoints go (any storage ckptkit writes).
        max_to_keep: How many of the newest checkpoints to keep; None keeps all.
        keep_checkpoint_every_n_hours: Also keep one checkpoint per this many hours.
        checkpoint_name: The prefix of checkpoint names (``ckpt`` -> ``ckpt-100``).
        step_counter: With `checkpoint_interval`: the step variable or tensor it reads.
        checkpoint_interval: `save` writes only when this many steps have passed since the
            last save (unless ``check_interval=False``).
        init_fn: Called by `restore_or_initialize` when there is nothing to restore.
        last_checkpoint_step: Where `checkpoint_interval` counts from.
        config: A `CheckpointConfig` for everything else (its directory, prefix and
            retention are replaced by the arguments above); None: ckptkit's defaults.

    Raises:
        ValueError: `max_to_keep` not positive, or `checkpoint_interval` without
            `step_counter`, as TensorFlow's class.
    """

    def __init__(
        self,
        checkpoint: tf.train.Checkpoint,
        directory: str | os.PathLike[str],
        max_to_keep: int | None,
        keep_checkpoint_every_n_hours: float | None = None,
        checkpoint_name: str = "ckpt",
        step_counter: Any = None,
        checkpoint_interval: int | None = None,
        init_fn: Callable[[], object] | None = None,
        last_checkpoint_step: int | None = None,
        *,
        config: CheckpointConfig | None = None,
        manager: _Manager | None = None,
    ) -> None:
        # TensorFlow's own __init__ is not called: this class keeps no state of its own in
        # TensorFlow's attributes, and overrides every public member.
        if max_to_keep is not None and max_to_keep <= 0:
            raise ValueError(
                f"Expected a positive integer or `None` for `max_to_keep`, got {max_to_keep}."
            )
        if checkpoint_interval is not None and step_counter is None:
            raise ValueError(
                "`step_counter` should be passed if `checkpoint_interval` is not None."
            )
        if manager is None:
            base = config or CheckpointConfig(directory=os.fspath(directory))
            config = base.model_copy(
                update={
                    "directory": os.fspath(directory),
                    "prefix": checkpoint_name,
                    "schedule": Schedule(every_steps=None, every_secs=None),
                    "retention": Retention(
                        max_to_keep=max_to_keep, keep_every_n_hours=keep_checkpoint_every_n_hours
                    ),
                }
            )
            manager = _Manager(config, checkpoint=checkpoint)
        self._manager = manager
        self._checkpoint = checkpoint
        self._directory = manager.directory
        self._checkpoint_interval = checkpoint_interval
        self._step_counter = step_counter
        self._last_checkpoint_step = last_checkpoint_step
        self._init_fn = init_fn

    @property
    def manager(self) -> _Manager:
        """The ckptkit manager behind this one (listing, verification, `wait`, `close`)."""
        return self._manager

    @property
    def directory(self) -> str:
        """The checkpoint directory."""
        return self._directory

    @property
    def checkpoint(self) -> tf.train.Checkpoint:
        """The `tf.train.Checkpoint` saved and restored."""
        return self._checkpoint

    @property
    def checkpoint_interval(self) -> int | None:
        """The steps between saves that `save(check_interval=True)` enforces, or None."""
        return self._checkpoint_interval

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest committed checkpoint's prefix, or None."""
        latest = self._manager.latest
        return None if latest is None else latest.path

    @property
    def checkpoints(self) -> list[str]:
        """The committed checkpoints retention manages, oldest first.

        As TensorFlow's: not those kept for good by `keep_checkpoint_every_n_hours`.
        """
        return self._manager.managed_by_retention()

    def save(
        self,
        checkpoint_number: Any = None,
        check_interval: bool = True,
        options: tf.train.CheckpointOptions | None = None,
    ) -> str | None:
        """Writes and commits a checkpoint (numbered by `save_counter` unless given).

        Returns:
            Its prefix, or None when `checkpoint_interval` says it is not due.

        Raises:
            CheckpointExistsError: A committed checkpoint of that number exists.
            NotImplementedError: `options` ask for something ckptkit does not do.
        """
        background = _background(options)
        if self._checkpoint_interval is not None:
            current = int(_value(self._step_counter))
            if self._last_checkpoint_step is not None:
                if current == self._last_checkpoint_step:
                    return None
                if check_interval and current < (
                    self._last_checkpoint_step + self._checkpoint_interval
                ):
                    return None
            self._last_checkpoint_step = current
        if checkpoint_number is None:
            number = int(self._checkpoint.save_counter.numpy()) + 1  # the write increments it
        else:
            number = int(_value(checkpoint_number))
            # TensorFlow increments save_counter even when the number is given; so does the
            # write, and numbering by it stays as TensorFlow's.
        return self._manager.save(number, async_save=background or None)

    def restore_or_initialize(self) -> str | None:
        """Restores the newest intact checkpoint (ckptkit's checks); else calls `init_fn`.

        Returns:
            The restored checkpoint's prefix, or None after `init_fn` (a fresh start).
        """
        result = self._manager.restore_or_initialize()
        if result.restored:
            if self._checkpoint_interval is not None:
                self._last_checkpoint_step = int(_value(self._step_counter))
            return result.path
        if self._init_fn is not None:
            self._init_fn()
        return None

    def sync(self) -> None:
        """Waits for a background save to commit (its error, if any, is raised here)."""
        self._manager.wait()


def _value(value: Any) -> Any:
    """A Python number from a number, a variable or an eager tensor."""
    return value.numpy() if hasattr(value, "numpy") else value


def _background(options: tf.train.CheckpointOptions | None) -> bool:
    """Whether `options` ask for an async save; refuses what ckptkit does not do."""
    if options is None:
        return False
    asked = {
        name: getattr(options, name)
        for name in (
            "experimental_io_device",
            "experimental_skip_slot_variables",
            "experimental_sharding_callback",
            "experimental_write_callbacks",
        )
        if getattr(options, name, None)
    }
    if asked:
        raise NotImplementedError(
            f"ckptkit's CheckpointManager does not take CheckpointOptions {sorted(asked)}: it "
            "writes through its own pipeline; drop them, or save with tf.train.Checkpoint"
        )
    return bool(getattr(options, "experimental_enable_async_checkpoint", False))
