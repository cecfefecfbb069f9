"""`CheckpointHook`: the `CheckpointSaverHook` of `MonitoredTrainingSession`, through ckptkit.

Thin: it makes a `CheckpointManager.for_session` when the graph is built and delegates to it.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from ckptkit.backends.saver_v1 import SaverBackend
from ckptkit.config import CheckpointConfig
from ckptkit.manager import CheckpointManager
from ckptkit.status import RestoreResult

__all__ = ["CheckpointHook"]


class CheckpointHook(tf.compat.v1.train.SessionRunHook):  # type: ignore[misc]
    """Restores when a session starts and saves on the config's schedule and at the end.

    What `MonitoredTrainingSession(checkpoint_dir=...)` did with its Saver and
    `CheckpointSaverHook`, on ckptkit's manager (atomic commits, retention, restore checks,
    walking back past a damaged checkpoint)::

        cfg = ckptkit.CheckpointConfig.from_run_config(
            {"model_dir": "runs/m", "save_checkpoints_steps": 100}
        )
        hook = ckptkit.CheckpointHook(cfg)
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook]) as sess:
            while not sess.should_stop():
                sess.run(train_op)

    Leave `MonitoredTrainingSession`'s own `checkpoint_dir` unset, so that only this hook
    saves. On session creation the newest intact checkpoint is restored (after the
    scaffold's initializers ran); with `Schedule.save_first_step` a fresh run is saved at
    once; after each step the schedule is asked; at the end, with `Schedule.save_last_step`,
    the last step is saved. `CheckpointConfig.from_run_config` sets both, as the Estimator did.

    Args:
        config: Directory, prefix, schedule, retention and restore policy.
        global_step: The step tensor; defaults to the graph's global step.
        var_list: The variables to save; None: all saveable variables.
        meta_graph: Write a ``.meta`` graph beside each checkpoint.

    Attributes:
        manager: The `CheckpointManager`, from `begin()` on.
        restored: What the restore at session creation did.
    """

    def __init__(
        self,
        config: CheckpointConfig,
        *,
        global_step: Any = None,
        var_list: Any = None,
        meta_graph: bool = True,
    ) -> None:
        self.config = config
        self._given_step = global_step
        self._global_step: Any = None  # of the graph of the latest begin()
        self._var_list = var_list
        self._meta_graph = meta_graph
        self.manager: CheckpointManager | None = None
        self.restored: RestoreResult | None = None

    def begin(self) -> None:
        """Finds the global step and builds the Saver, before the graph is finalized."""
        if self.manager is not None:
            self.manager.close()  # a run that raised never reached end(): free its lock
        graph = tf.compat.v1.get_default_graph()
        self._global_step = self._given_step
        if self._global_step is None:  # looked up in each new graph the hook is used with
            self._global_step = tf.compat.v1.train.get_global_step(graph)
        if self._global_step is None:
            raise TypeError(
                "CheckpointHook needs a global step: create one with "
                "tf.compat.v1.train.get_or_create_global_step(), or pass global_step="
            )
        self.manager = CheckpointManager.for_session(
            self.config, graph=graph, var_list=self._var_list, meta_graph=self._meta_graph
        )

    def _manager(self) -> CheckpointManager:
        if self.manager is None:
            raise TypeError("the session did not call begin() on CheckpointHook")
        return self.manager

    def after_create_session(self, session: Any, coord: Any) -> None:
        """Restores the newest intact checkpoint; saves the first step on a fresh start."""
        manager = self._manager()
        backend = manager.backend
        assert isinstance(backend, SaverBackend)  # made by for_session in begin()
        backend.bind(session)
        self.restored = manager.restore_or_initialize()
        manager.maybe_save(self._global_step)

    def before_run(self, run_context: Any) -> Any:
        """Asks for the global step along with the training op."""
        return tf.compat.v1.train.SessionRunArgs(self._global_step)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        """Saves when the schedule calls for it at the step just reached."""
        manager = self._manager()
        # The step fetched with the train op may be read before its increment; as the
        # Estimator's hook does, read it again only when a save may be due.
        if manager.due(int(run_values.results) + 1):
            manager.maybe_save(run_context.session.run(self._global_step))

    def end(self, session: Any) -> None:
        """Saves the last step (`Schedule.save_last_step`), then releases the directory."""
        manager = self._manager()
        try:
            manager.finish(session.run(self._global_step))
        finally:
            manager.close()
