"""TensorFlow's `PreemptionCheckpointHandler` given ckptkit's drop-in manager, on one worker.

Usage: tf_preemption_handler.py DIR [--steps N]

Prints ``{"start": step}`` once the handler has restored (or initialized), then
``{"step": n}`` after each step run through `handler.run`. A SIGTERM makes the handler save
through the manager and exit (status 42, TensorFlow's default off Google Cloud). Started by
tests/test_compat.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit.compat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    step = tf.Variable(0, dtype=tf.int64)
    value = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(value=value, step=step)
    manager = ckptkit.compat.CheckpointManager(checkpoint, args.directory, max_to_keep=2)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(resolver, manager)
    print(json.dumps({"start": int(step.numpy()), "value": float(value.numpy())}), flush=True)

    def train_step() -> None:
        value.assign_add(1.0)
        step.assign_add(1)

    while int(step.numpy()) < args.steps:
        handler.run(train_step)
        print(json.dumps({"step": int(step.numpy())}), flush=True)
        time.sleep(0.005)


if __name__ == "__main__":
    main()
