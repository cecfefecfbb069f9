"""The TensorFlow guide's custom training loop, checkpointed with ckptkit.

Run it twice: the second run resumes where the first stopped (model, optimizer, step and the
position in the dataset), because `restore_or_initialize` finds the newest checkpoint.

    python examples/custom_training_loop.py --dir runs/loop --steps 50
    python examples/custom_training_loop.py --dir runs/loop --steps 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf

import ckptkit


class Net(keras.Model):
    """A simple linear model."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = keras.layers.Dense(5)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.l1(x)


def toy_dataset() -> tf.data.Dataset:
    inputs = tf.range(10.0)[:, None]
    labels = inputs * 5.0 + tf.range(5.0)[None, :]
    return tf.data.Dataset.from_tensor_slices({"x": inputs, "y": labels}).repeat().batch(2)


@tf.function
def train_step(net: Net, example: dict[str, tf.Tensor], optimizer: keras.Optimizer) -> tf.Tensor:
    with tf.GradientTape() as tape:
        output = net(example["x"])
        loss = tf.reduce_mean(tf.abs(output - example["y"]))
    gradients = tape.gradient(loss, net.trainable_variables)
    optimizer.apply_gradients(zip(gradients, net.trainable_variables, strict=True))
    return loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/custom_loop", help="checkpoint directory")
    parser.add_argument("--steps", type=int, default=50, help="train until this step")
    parser.add_argument("--every", type=int, default=10, help="save every N steps")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to wait per step")
    parser.add_argument("--fresh", action="store_true", help="delete --dir first")
    parser.add_argument("--expect-resume", action="store_true", help="fail unless it resumes")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(args.dir, ignore_errors=True)

    keras.utils.set_random_seed(0)
    net = Net()
    optimizer = keras.optimizers.Adam(0.1)
    step = tf.Variable(0, dtype=tf.int64)
    iterator = iter(toy_dataset())
    config = ckptkit.CheckpointConfig(
        directory=args.dir,
        schedule=ckptkit.Schedule(every_steps=args.every),
        retention=ckptkit.Retention(max_to_keep=3),
    )
    manager = ckptkit.CheckpointManager(
        config, net=net, optimizer=optimizer, step=step, iterator=iterator
    )

    # Build the model before restoring: with Keras 3, a deferred restore into an unbuilt
    # subclassed model loses the Dense kernel (TF 2.21 / Keras 3.15), which the check below
    # would catch. The optimizer creates its variables on the first step; their values wait in
    # TensorFlow's deferred restore, so `existing_objects_matched` checks what exists now.
    net(tf.zeros((1, 1)))
    result = manager.restore_or_initialize(assertion="existing_objects_matched")
    if result.restored:
        print(f"resumed from {result.path} at step {int(step.numpy())}", flush=True)
    else:
        print("no checkpoint found: starting from scratch", flush=True)
    if args.expect_resume and not result.restored:
        print("expected to resume from a checkpoint, but none was found", file=sys.stderr)
        return 1

    while int(step.numpy()) < args.steps:
        loss = train_step(net, next(iterator), optimizer)
        step.assign_add(1)
        if result.restored and int(step.numpy()) == result.step + 1:
            # Now every variable exists and has been filled in from the checkpoint.
            result.assert_restored("consumed")
        saved = manager.maybe_save(step)
        suffix = f"  saved {saved}" if saved else ""
        print(f"step {int(step.numpy())}  loss {float(loss):.2f}{suffix}", flush=True)
        time.sleep(args.sleep)
    print(f"done at step {int(step.numpy())}; checkpoints: {[c.step for c in manager.checkpoints]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
