"""`model.fit` with ckptkit's Keras callback: killed mid-epoch, rerun, resumed mid-epoch.

1. Fits a small classifier for 4 epochs without interruption; keeps its final weights.
2. Fits the same job in a child process with `CheckpointCallback` (a checkpoint every 5 batches,
   the best 2 by val_loss plus the newest 2 kept, the best model exported to best.keras),
   SIGKILLs it in the middle of epoch 3, and runs it again: fit resumes in epoch 3 at the batch
   after the last checkpoint.
3. Lists the checkpoints (with their metrics) as they were before the rerun, loads best.keras
   with plain Keras, and compares the final weights of both runs bit for bit (exit 1 if they
   differ).

    python examples/keras_fit.py [--dir runs/keras_fit]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import ckptkit
from ckptkit.keras import CheckpointCallback

EPOCHS, BATCH_SIZE, SAMPLES = 4, 16, 320  # 256 to train on: 16 batches an epoch


def train(directory: str) -> None:
    """The job: deterministic data order and seeds, so a resumed run can match bit for bit."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int32")
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(2),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    checkpoints = CheckpointCallback(
        os.path.join(directory, "ckpts"),
        os.path.join(directory, "best.keras"),  # Keras-native export of the best model
        save_best_only=True,  # ModelCheckpoint's meaning: export only when val_loss improves
        schedule=ckptkit.Schedule(every_steps=5),
        retention=ckptkit.Retention(max_to_keep=2, best_k=2, monitor="val_loss"),
        keep_checkpoints=True,  # keep them after fit, to show them
    )

    class Report(keras.callbacks.Callback):
        def on_train_begin(self, logs: object = None) -> None:
            restored = checkpoints.restored
            where = "fresh start" if restored is None else f"resumed from {restored.path}"
            print(where, flush=True)

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            print(f"step {int(self.model.optimizer.iterations)}", flush=True)

    model.fit(
        x[:256],
        y[:256],
        validation_data=(x[256:], y[256:]),
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=False,  # the data order a resumed epoch must see again
        verbose=0,
        callbacks=[checkpoints, Report()],
    )
    np.savez(os.path.join(directory, "final.npz"), *model.get_weights())


def final_weights(directory: str) -> list[np.ndarray]:
    with np.load(os.path.join(directory, "final.npz")) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/keras_fit", help="working directory (emptied)")
    parser.add_argument("--train", metavar="DIR", help=argparse.SUPPRESS)  # the child's role
    args = parser.parse_args()
    if args.train:
        train(args.train)
        return 0

    shutil.rmtree(args.dir, ignore_errors=True)
    reference, crashed = os.path.join(args.dir, "reference"), os.path.join(args.dir, "crashed")
    child = [sys.executable, __file__, "--train"]
    print("uninterrupted fit ...", flush=True)
    subprocess.run([*child, reference], check=True, stdout=subprocess.DEVNULL)

    kill_at = 2 * 16 + 7  # epoch 3 of 4, batch 7 of 16: 4 batches after the checkpoint at 35
    with subprocess.Popen([*child, crashed], stdout=subprocess.PIPE, text=True) as job:
        assert job.stdout is not None
        for line in job.stdout:
            if line.strip() == f"step {kill_at}":
                job.send_signal(signal.SIGKILL)
                break
    print(f"SIGKILL after step {kill_at} (exit {job.returncode}); checkpoints left:", flush=True)
    ckpts = os.path.join(crashed, "ckpts")
    subprocess.run([sys.executable, "-m", "ckptkit", "ls", ckpts], check=True)

    resumed = subprocess.run([*child, crashed], check=True, capture_output=True, text=True)
    print("rerun:", resumed.stdout.splitlines()[0])
    subprocess.run([sys.executable, "-m", "ckptkit", "ls", ckpts], check=True)

    best = keras.models.load_model(os.path.join(crashed, "best.keras"))
    print(f"best.keras loads with plain Keras: {len(best.get_weights())} weight arrays")
    pairs = list(zip(final_weights(reference), final_weights(crashed), strict=True))
    same = all(np.array_equal(a, b) for a, b in pairs)
    print("final weights bitwise equal to the uninterrupted fit:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
