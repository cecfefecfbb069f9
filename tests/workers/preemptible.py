"""A training loop with preemption handling; no periodic saves, so only a signal makes one.

Usage: preemptible.py DIR [--no-exit]. Prints "resumed N" / "fresh", then "step N" before each
`maybe_save`. Run and signalled by tests/test_preemption.py.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def main() -> None:
    weights = tf.Variable(tf.zeros((32,)))
    step = tf.Variable(0, dtype=tf.int64)
    config = ckptkit.CheckpointConfig(
        directory=sys.argv[1],
        schedule=ckptkit.Schedule(every_steps=None, every_secs=None),
        preemption=ckptkit.Preemption(exit="--no-exit" not in sys.argv),
    )
    mgr = ckptkit.CheckpointManager(config, w=weights, step=step)
    result = mgr.restore_or_initialize()
    print(f"resumed {result.step}" if result.restored else "fresh", flush=True)
    while True:
        step.assign_add(1)
        weights.assign(tf.fill((32,), float(step.numpy())))
        time.sleep(0.01)
        print(f"step {int(step.numpy())}", flush=True)
        if mgr.maybe_save(int(step.numpy())) and mgr.preempted:
            print(f"saved after {mgr.preempted}", flush=True)
            return


if __name__ == "__main__":
    main()
