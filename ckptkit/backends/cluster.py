"""Where this process stands among the workers of a `tf.distribute` strategy.

Under `MultiWorkerMirroredStrategy` every worker runs the same program, and every worker must
take part in a save: reading a `SyncOnRead` variable for the write is an all-reduce across the
workers. Only the chief's files are the checkpoint (`strategy.extended.should_checkpoint`); the
others write to scratch directories that they remove at once, as TensorFlow's own
`failure_handling` and tf-keras's `distributed_file_utils` do.

`Cluster.agree` makes every worker take the chief's decision: a save at a time schedule, which
checkpoint a restore loads, whether a save failed. It is a collective, so every worker must
call it at the same point of the program, as it calls the training step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ckptkit.backends.cluster_preemption import ClusterPreemption

__all__ = ["Cluster"]


class Cluster:
    """This worker's role in `strategy` and agreement with the other workers.

    Args:
        strategy: The `tf.distribute.Strategy` the trackables were created under.
    """

    def __init__(self, strategy: tf.distribute.Strategy) -> None:
        self.strategy = strategy
        self.is_chief = bool(strategy.extended.should_checkpoint)
        self.num_workers, self.task, self.task_id = 1, "local", 0
        resolver = getattr(strategy, "cluster_resolver", None)
        jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
        # ParameterServerStrategy has no cluster_resolver here, and rightly counts as one
        # process: only its coordinator runs the program (and saves, after coordinator.join()).
        if resolver is not None and jobs:
            self.num_workers = sum(len(tasks) for job, tasks in jobs.items() if job != "ps")
            self.task = f"{resolver.task_type}:{resolver.task_id}"
            self.task_id = int(resolver.task_id or 0)
        self._local_replicas = len(strategy.extended.worker_devices)

    @classmethod
    def of(cls, trackables: Any) -> Cluster | None:
        """The cluster of the strategy in scope, or of the first distributed trackable found.

        Args:
            trackables: The objects to checkpoint, by name.

        Returns:
            None outside any strategy (TensorFlow's default strategy).
        """
        if tf.distribute.has_strategy():
            return cls(tf.distribute.get_strategy())
        for value in trackables.values():
            strategy = getattr(value, "distribute_strategy", None) or getattr(
                value, "_distribute_strategy", None
            )
            if strategy is not None and strategy is not tf.distribute.get_strategy():
                return cls(strategy)
        return None

    @property
    def multi_worker(self) -> bool:
        """Whether several processes take part (`MultiWorkerMirroredStrategy` on a cluster)."""
        return self.num_workers > 1

    def watch_preemption(
        self, noticed: Callable[[], bool], save: Callable[[int], object], leave: Callable[[], None]
    ) -> ClusterPreemption:
        """TensorFlow's preemption handler for this cluster (see `ClusterPreemption`)."""
        return ClusterPreemption(self.strategy, noticed, save, leave)

    def agree(self, value: int) -> int:
        """The chief's `value`, returned on every worker (one all-reduce; no-op on one worker)."""
        return self._sum(value if self.is_chief else 0) if self.multi_worker else value

    def count(self, flag: bool) -> int:
        """How many workers passed True (one all-reduce; no-op on one worker)."""
        return self._sum(int(flag)) if self.multi_worker else int(flag)

    def _sum(self, mine: int) -> int:
        """The sum over workers of each one's `mine`."""
        local = self._local_replicas

        def contribution(context: Any) -> tf.Tensor:
            # One replica of each worker contributes, whatever its number of devices.
            first = context.replica_id_in_sync_group % local == 0
            return tf.constant(mine if first else 0, tf.int64)

        values = self.strategy.experimental_distribute_values_from_function(contribution)
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)
        return int(total.numpy())
