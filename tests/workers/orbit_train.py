"""An Orbit `Controller` with a `StandardTrainer`, checkpointing through ckptkit's drop-in.

Usage: orbit_train.py DIR OUT [--steps N] [--slow]

Trains a small dense model for N steps (the batch of each step is a function of the global
step, so a resumed run sees the data an uninterrupted one does), checkpointing every 4 steps
through `ckptkit.compat.CheckpointManager` given to `orbit.Controller`. Prints
``{"restored": path or null}`` first, ``{"step": n}`` after each step with `--slow`, and
writes the final weights to OUT (an .npz file). Started by tests/test_orbit.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import orbit
import tensorflow as tf

import ckptkit
import ckptkit.compat


class Trainer(orbit.StandardTrainer):  # type: ignore[misc]
    def __init__(self, step: tf.Variable, slow: bool) -> None:
        self.step = step
        self.slow = slow
        self.kernel = tf.Variable(tf.zeros((4, 1)))
        self.optimizer = tf.keras.optimizers.SGD(0.05)
        dataset = tf.data.Dataset.range(1).repeat()  # the step makes the batch, not the data
        super().__init__(
            train_dataset=dataset,
            options=orbit.StandardTrainerOptions(use_tf_function=False, use_tf_while_loop=False),
        )

    def train_step(self, iterator: object) -> None:
        next(iterator)  # type: ignore[call-overload]
        seed = tf.stack([tf.cast(self.step, tf.int32), 7])
        x = tf.random.stateless_normal((8, 4), seed=seed)
        y = tf.reduce_sum(x, axis=1, keepdims=True)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((x @ self.kernel - y) ** 2)
        grads = tape.gradient(loss, [self.kernel])
        self.optimizer.apply_gradients(zip(grads, [self.kernel], strict=True))
        self.step.assign_add(1)
        if self.slow:
            print(json.dumps({"step": int(self.step.numpy())}), flush=True)
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--slow", action="store_true")
    args = parser.parse_args()
    step = tf.Variable(0, dtype=tf.int64)
    trainer = Trainer(step, args.slow)
    trainer.optimizer.build([trainer.kernel])
    checkpoint = tf.train.Checkpoint(kernel=trainer.kernel, optimizer=trainer.optimizer, step=step)
    manager = ckptkit.compat.CheckpointManager(
        checkpoint, args.directory, max_to_keep=3, step_counter=step, checkpoint_interval=4
    )
    controller = orbit.Controller(
        trainer=trainer, global_step=step, steps_per_loop=1, checkpoint_manager=manager
    )
    # The Controller restored (or initialized) when it was built; its path is the newest.
    print(json.dumps({"restored": manager.latest_checkpoint}), flush=True)
    controller.train(steps=args.steps)
    manager.manager.close()
    np.savez(args.out, kernel=trainer.kernel.numpy())


if __name__ == "__main__":
    main()
