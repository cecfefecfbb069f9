"""Resume after a crash and end bitwise equal to a run that never crashed.

1. Trains a small model for --steps steps without interruption; keeps its final weights.
2. Trains the same job in a child process, SIGKILLs it at random steps (--kills times), and
   restarts it each time; ckptkit restores model, optimizer, step and the tf.data iterator.
3. Compares the final weights of both runs bit for bit, and exits 1 if they differ.

    python examples/resume_after_crash.py [--dir runs/resume] [--kills 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import ckptkit


def train(directory: str, steps: int) -> None:
    """The training job: deterministic, checkpointing every 5 steps, resuming if it can."""
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = keras.Sequential([keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model(tf.zeros((1, 4)))  # build before restoring
    optimizer = keras.optimizers.Adam(0.01)
    x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512, seed=1).repeat().batch(32)
    iterator = iter(data)
    step = tf.Variable(0, dtype=tf.int64)
    config = ckptkit.CheckpointConfig(
        directory=directory,
        schedule=ckptkit.Schedule(every_steps=5),
        retention=ckptkit.Retention(max_to_keep=2),
    )
    manager = ckptkit.CheckpointManager(
        config, model=model, optimizer=optimizer, step=step, iterator=iterator
    )
    manager.restore_or_initialize()

    @tf.function
    def train_step(batch_x: tf.Tensor, batch_y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(batch_x) - batch_y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    while int(step.numpy()) < steps:
        train_step(*next(iterator))
        step.assign_add(1)
        manager.maybe_save(step)
        print(f"step {int(step.numpy())}", flush=True)
    np.savez(os.path.join(directory, "final.npz"), *[w.numpy() for w in model.weights])


def final_weights(directory: str) -> list[np.ndarray]:
    with np.load(os.path.join(directory, "final.npz")) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/resume", help="working directory (emptied first)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill moments")
    parser.add_argument("--train", metavar="DIR", help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args()
    if args.train:
        train(args.train, args.steps)
        return 0

    shutil.rmtree(args.dir, ignore_errors=True)
    reference, crashed = os.path.join(args.dir, "reference"), os.path.join(args.dir, "crashed")
    child = [sys.executable, __file__, "--steps", str(args.steps), "--train"]
    print(f"uninterrupted run of {args.steps} steps ...", flush=True)
    subprocess.run([*child, reference], check=True, stdout=subprocess.DEVNULL)

    rng = random.Random(args.seed)
    for kill in range(args.kills):
        at = rng.randint(1, args.steps - 1)
        with subprocess.Popen([*child, crashed], stdout=subprocess.PIPE, text=True) as job:
            assert job.stdout is not None
            for line in job.stdout:
                if int(line.split()[1]) >= at:
                    job.send_signal(signal.SIGKILL)
                    break
        print(f"kill {kill + 1}: SIGKILL after step {at} (exit {job.returncode})", flush=True)
    subprocess.run([*child, crashed], check=True, stdout=subprocess.DEVNULL)

    pairs = list(zip(final_weights(reference), final_weights(crashed), strict=True))
    same = all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in pairs)
    print("final weights bitwise equal:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
