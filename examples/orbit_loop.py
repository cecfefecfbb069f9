"""An Orbit training loop checkpointed by ckptkit: the one-line change, and a resume.

Orbit's `Controller` (TF Model Garden's loop library, from ``pip install --no-deps
tf-models-official tf-keras``) takes a `tf.train.CheckpointManager`; pass
`ckptkit.compat.CheckpointManager` instead, with the same arguments. The first run trains 30
steps; the second, in the same directory, resumes from the newest checkpoint and trains to 60.
Both lists show the checkpoints, with the manifests ckptkit wrote.

    python examples/orbit_loop.py --dir runs/orbit
"""

from __future__ import annotations

import argparse
import os
import shutil

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import orbit
import tensorflow as tf
from absl import logging

import ckptkit
import ckptkit.compat


class Trainer(orbit.StandardTrainer):  # type: ignore[misc]
    """Fits y = sum(x) with one dense kernel; each step's batch comes from the step."""

    def __init__(self, step: tf.Variable) -> None:
        self.step = step
        self.kernel = tf.Variable(tf.zeros((4, 1)))
        self.optimizer = tf.keras.optimizers.SGD(0.05)
        self.optimizer.build([self.kernel])
        self.loss = tf.keras.metrics.Mean()
        super().__init__(train_dataset=tf.data.Dataset.range(1).repeat())

    def train_loop_begin(self) -> None:
        self.loss.reset_state()

    def train_step(self, iterator: object) -> None:
        next(iterator)  # type: ignore[call-overload]
        seed = tf.stack([tf.cast(self.step, tf.int32), 0])
        x = tf.random.stateless_normal((16, 4), seed=seed)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((x @ self.kernel - tf.reduce_sum(x, 1, keepdims=True)) ** 2)
        grads = tape.gradient(loss, [self.kernel])
        self.optimizer.apply_gradients(zip(grads, [self.kernel], strict=True))
        self.loss.update_state(loss)
        self.step.assign_add(1)

    def train_loop_end(self) -> dict[str, tf.Tensor]:
        return {"loss": self.loss.result()}


def run(directory: str, steps: int) -> None:
    step = tf.Variable(0, dtype=tf.int64)
    trainer = Trainer(step)
    checkpoint = tf.train.Checkpoint(kernel=trainer.kernel, optimizer=trainer.optimizer, step=step)
    # The one-line change: ckptkit.compat.CheckpointManager for tf.train.CheckpointManager.
    manager = ckptkit.compat.CheckpointManager(
        checkpoint, directory, max_to_keep=3, step_counter=step, checkpoint_interval=10
    )
    controller = orbit.Controller(
        trainer=trainer, global_step=step, steps_per_loop=10, checkpoint_manager=manager
    )
    start = int(step.numpy())
    controller.train(steps=steps)
    manager.manager.close()
    listed = [c.step for c in ckptkit.list_checkpoints(directory)]
    print(f"trained steps {start}..{int(step.numpy())}; checkpoints {listed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/orbit", help="checkpoint directory (replaced)")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)  # Orbit logs every loop at INFO
    shutil.rmtree(args.dir, ignore_errors=True)
    run(args.dir, 30)
    run(args.dir, 60)  # a second process would do the same: it resumes from step 30
    assert ckptkit.verify(args.dir).ok


if __name__ == "__main__":
    main()
