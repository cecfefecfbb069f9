"""A ParameterServerStrategy cluster's process: a server (worker or ps), or the coordinator.

Usage: ps_cluster.py server | ps_cluster.py coordinator DIR. TF_CONFIG names the cluster and
the task. The coordinator (with `Preemption()`) builds a variable on the parameter server,
restores the newest checkpoint of DIR, runs 5 steps on the worker through a
`ClusterCoordinator`, saves after `coordinator.join()`, and prints one JSON line:
``{"restored": step or null, "value": v at restore, "saved": step, "final": v}``. Started by
tests/test_distributed.py.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def main() -> None:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if sys.argv[1] == "server":
        tf.distribute.Server(
            resolver.cluster_spec(),
            job_name=resolver.task_type,
            task_index=resolver.task_id,
            protocol="grpc",
            start=True,
        ).join()
        return
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        value = tf.Variable(0.0)
        step = tf.Variable(0, dtype=tf.int64)
    # With Preemption: TensorFlow's multi-worker handler refuses parameter servers; the
    # coordinator, the one process that saves, takes signals as a single process does.
    config = ckptkit.CheckpointConfig(directory=sys.argv[2], preemption=ckptkit.Preemption())
    manager = ckptkit.CheckpointManager(config, value=value, step=step)
    result = manager.restore_or_initialize()
    restored = float(value.numpy())

    @tf.function
    def train() -> None:
        value.assign_add(1.0)

    for _ in range(5):
        coordinator.schedule(train)
    coordinator.join()  # the workers' steps are done: now the coordinator saves
    step.assign_add(5)
    manager.save(int(step.numpy()))
    manager.close()
    print(
        json.dumps(
            {
                "restored": result.step,
                "value": restored,
                "saved": int(step.numpy()),
                "final": float(value.numpy()),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
