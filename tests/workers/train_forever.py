"""A training loop that saves every step; every variable equals the step it was saved at.

Usage: train_forever.py DIR. Prints "resumed N" (or "fresh"), then "committed N" after each
save returns. Run and SIGKILLed by tests/test_faults.py.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit

SHAPES = [(256, 256), (1024,), (64, 64, 16)]  # ~1.3 MiB: a save is most of each step


def variables() -> dict[str, tf.Variable]:
    return {f"v{i}": tf.Variable(tf.zeros(shape)) for i, shape in enumerate(SHAPES)}


def config(directory: str) -> ckptkit.CheckpointConfig:
    return ckptkit.CheckpointConfig(
        directory=directory,
        schedule=ckptkit.Schedule(every_steps=1),
        retention=ckptkit.Retention(max_to_keep=3),
        restore=ckptkit.RestorePolicy(assertion="consumed"),
    )


def main() -> None:
    state = variables()
    step = tf.Variable(0, dtype=tf.int64)
    mgr = ckptkit.CheckpointManager(config(sys.argv[1]), step=step, **state)
    result = mgr.restore_or_initialize()
    print(f"resumed {result.step}" if result.restored else "fresh", flush=True)
    while True:
        step.assign_add(1)
        for v in state.values():
            v.assign(tf.fill(v.shape, float(step.numpy())))
        if mgr.maybe_save(step):
            print(f"committed {int(step.numpy())}", flush=True)


if __name__ == "__main__":
    main()
