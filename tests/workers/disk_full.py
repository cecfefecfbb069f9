"""Saves once, then again under a file-size limit smaller than the checkpoint, then again.

Usage: disk_full.py DIR sync|async|fit (async: saves in the background, and `wait` raises;
fit: a two-epoch `model.fit` whose callback saves in the background, the second epoch's save
under the limit, so that only `on_train_end` can tell).

Prints one JSON line describing what happened; run by tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

import ckptkit


def limit_file_sizes(limit: int) -> None:
    """Writes past `limit` bytes fail with EFBIG, as on a full disk."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))


def fit(directory: str) -> None:
    import keras

    from ckptkit.keras import CheckpointCallback

    class FillTheDisk(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            if epoch == 1:
                assert callback.manager is not None
                callback.manager.wait()  # the first epoch's save is whole
                limit_file_sizes(1 << 20)

    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(1024)])  # 2 MiB
    model.compile(optimizer="sgd", loss="mse")
    data = tf.zeros((8, 512)), tf.zeros((8, 1024))
    callback = CheckpointCallback(directory, async_save=True)
    outcome: dict[str, object] = {"error": None}
    try:
        model.fit(*data, epochs=2, verbose=0, callbacks=[FillTheDisk(), callback])
    except ckptkit.SaveError as e:
        outcome["error"] = type(e).__name__
        outcome["message"] = str(e)
    limit_file_sizes(resource.RLIM_INFINITY)
    outcome["listed_after_failure"] = [c.step for c in ckptkit.list_checkpoints(directory)]
    print(json.dumps(outcome))


def main() -> None:
    directory = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    if sys.argv[2] == "fit":
        fit(directory)
        return
    weights = tf.Variable(tf.fill((1 << 20,), 1.0))  # 4 MiB of data per checkpoint
    background = sys.argv[2] == "async"
    config = ckptkit.CheckpointConfig(directory=directory, async_save=background)
    mgr = ckptkit.CheckpointManager(config, w=weights)
    mgr.save(1)
    mgr.wait()
    limit_file_sizes(1 << 20)
    weights.assign(tf.fill((1 << 20,), 2.0))
    outcome: dict[str, object] = {}
    outcome["raised_by"] = "save"
    try:
        mgr.save(2)
        outcome["raised_by"] = "wait"
        mgr.wait()
        outcome["error"] = None
    except ckptkit.SaveError as e:
        outcome["error"] = type(e).__name__
        outcome["message"] = str(e)
    outcome["listed_after_failure"] = [c.step for c in mgr.checkpoints]
    outcome["files_after_failure"] = sorted(os.listdir(directory))
    limit_file_sizes(resource.RLIM_INFINITY)
    mgr.save(2)  # training goes on once there is room again
    mgr.wait()
    outcome["listed_at_end"] = [c.step for c in mgr.checkpoints]
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
