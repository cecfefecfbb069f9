"""A deterministic `model.fit` checkpointed by `CheckpointCallback`, for kill-and-resume tests.

Usage: keras_fit.py DIR OUT.npz [--slow] [--async]. Prints "resumed STEP" (or "fresh") when training
starts and "trained STEP" after each batch; writes the final weights to OUT.npz. 3 epochs of
10 batches, a checkpoint every 3 batches, with Dropout so the RNG state matters. Run and
SIGKILLed by tests/test_keras.py; `--async` saves in the background.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from ckptkit.keras import CheckpointCallback

EPOCHS, BATCHES, BATCH_SIZE = 3, 10, 8


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    x = rng.rand(BATCHES * BATCH_SIZE, 6).astype("float32")
    return x, (x @ rng.rand(6, 1)).astype("float32")


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    net = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(1),
        ]
    )
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return net


class Report(keras.callbacks.Callback):
    def __init__(self, checkpoints: CheckpointCallback, slow: bool) -> None:
        super().__init__()
        self.checkpoints, self.slow = checkpoints, slow

    def on_train_begin(self, logs=None) -> None:
        restored = self.checkpoints.restored
        print("fresh" if restored is None else f"resumed {restored.step}", flush=True)

    def on_train_batch_end(self, batch, logs=None) -> None:
        print(f"trained {int(self.model.optimizer.iterations)}", flush=True)
        if self.slow:
            time.sleep(0.15)


def main() -> None:
    directory, out = sys.argv[1], sys.argv[2]
    net = model()
    checkpoints = CheckpointCallback(directory, save_freq=3, async_save="--async" in sys.argv)
    x, y = data()
    net.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        shuffle=False,
        verbose=0,
        callbacks=[checkpoints, Report(checkpoints, slow="--slow" in sys.argv)],
    )
    np.savez(out, *net.get_weights())


if __name__ == "__main__":
    main()
