"""A training loop with preemption handling; no periodic saves, so only a signal makes one.

Usage: preemptible.py DIR [--no-exit] [--async]. Prints "resumed N" / "fresh", then "step N"
before each `maybe_save`. With `--async`, it saves every step in the background instead (16 MiB,
so that a save is in flight when the signal comes). Run and signalled by tests/test_preemption.py.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def main() -> None:
    background = "--async" in sys.argv
    weights = tf.Variable(tf.zeros((1 << 22 if background else 32,)))
    step = tf.Variable(0, dtype=tf.int64)
    config = ckptkit.CheckpointConfig(
        directory=sys.argv[1],
        schedule=ckptkit.Schedule(every_steps=1 if background else None, every_secs=None),
        preemption=ckptkit.Preemption(exit="--no-exit" not in sys.argv),
        async_save=background,
        retention=ckptkit.Retention(max_to_keep=None),
    )
    mgr = ckptkit.CheckpointManager(config, w=weights, step=step)
    result = mgr.restore_or_initialize()
    print(f"resumed {result.step}" if result.restored else "fresh", flush=True)
    while True:
        step.assign_add(1)
        weights.assign(tf.fill(weights.shape, float(step.numpy())))
        time.sleep(0.01)
        print(f"step {int(step.numpy())}", flush=True)
        if mgr.maybe_save(int(step.numpy())) and mgr.preempted and not config.preemption.exit:
            print(f"saved after {mgr.preempted}", flush=True)
            return


if __name__ == "__main__":
    main()
