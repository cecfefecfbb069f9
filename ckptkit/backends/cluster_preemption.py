"""Preemption across the workers of a cluster, through TensorFlow's `PreemptionCheckpointHandler`.

When one worker of a `MultiWorkerMirroredStrategy` cluster is told to stop, every worker must
save at the same step, or their saves' collectives would not pair up. TensorFlow's handler
settles that step through the cluster's coordination service: the worker that noticed the
signal publishes "the next run", every worker saves when it gets there, then leaves.

ckptkit drives the handler with its own parts: its `SignalCatcher` tells the handler of a signal
(`termination_watcher_fn`, polled by the handler about once a second), so the configured signals
count and no second handler replaces ckptkit's; the save is ckptkit's (`save_fn`), committed by
the chief; and leaving is the manager's (`exit_fn`). The handler's own run counter lives in a
checkpoint of its own, so the user's checkpoints do not change.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable

import tensorflow as tf

__all__ = ["ClusterPreemption"]


class ClusterPreemption:
    """Saves on every worker at the run the workers agree on after a signal, then leaves.

    Args:
        strategy: The cluster's `MultiWorkerMirroredStrategy`.
        noticed: Whether this worker has received a termination signal.
        save: Saves the step passed to `step` (on every worker).
        leave: Called after that save, on every worker.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        noticed: Callable[[], bool],
        save: Callable[[int], object],
        leave: Callable[[], None],
    ) -> None:
        # The handler restores its run counter from this folder at creation; it stays empty.
        self._scratch = tempfile.mkdtemp(prefix="ckptkit-preemption-")
        self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver,
            tf.train.Checkpoint(),
            checkpoint_dir=self._scratch,
            termination_config=tf.distribute.experimental.TerminationConfig(
                termination_watcher_fn=noticed, exit_fn=leave, grace_period=0, save_fn=save
            ),
        )

    def step(self, step: int) -> None:
        """Called once per training step on every worker: saves and leaves at the agreed one."""
        self._handler.save_checkpoint_if_preempted(step)

    def close(self) -> None:
        """Removes the handler's empty folder."""
        shutil.rmtree(self._scratch, ignore_errors=True)
