"""After training: average the last checkpoints, fine-tune into a new head, export for serving.

1. Pre-train a 3-class classifier with `model.fit`, keeping its checkpoints.
2. Average its last three checkpoints (`ckptkit.average`) and check the mean against numpy's.
3. Fine-tune a 5-class model (a new head) starting from the averaged weights:
   `CheckpointCallback(init_from=..., skip_mismatch=True)` loads the body and leaves the head.
4. Export the fine-tuned run's best checkpoint as a SavedModel (`export_best_to=`) and check
   that the served outputs are the checkpoint's.

    python examples/finetune_and_export.py --dir runs/after
"""

from __future__ import annotations

import argparse
import os
import shutil

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import ckptkit
from ckptkit.keras import CheckpointCallback


def classifier(classes: int) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", name="body"),
            keras.layers.Dense(classes, name="head"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/after", help="where the runs go (replaced)")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    pretrain, finetune = f"{args.dir}/pretrain", f"{args.dir}/finetune"
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    labels = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")

    # 1. Pre-train, keeping a checkpoint per epoch.
    base = classifier(3)
    keep = CheckpointCallback(pretrain, keep_checkpoints=True)
    base.fit(x, labels, epochs=5, batch_size=64, verbose=0, callbacks=[keep])
    print("pre-trained:", [c.step for c in ckptkit.list_checkpoints(pretrain)])

    # 2. The mean of the last three checkpoints, as a checkpoint of its own.
    averaged = ckptkit.average(pretrain, last=3, output=f"{args.dir}/averaged/ckpt-avg")
    key = averaged.averaged[0]
    mean = np.mean([ckptkit.read_tensor(p, key) for p in averaged.sources], axis=0)
    assert np.allclose(ckptkit.read_tensor(averaged.path, key), mean, atol=1e-6)
    print(f"averaged {len(averaged.averaged)} float values of", averaged.sources)

    # 3. Fine-tune a 5-class model from the averaged weights: the body loads, the head stays.
    new = classifier(5)
    served_to = f"{args.dir}/serving"
    callback = CheckpointCallback(
        finetune,
        init_from=averaged.path,
        skip_mismatch=True,
        keep_checkpoints=True,
        monitor="val_loss",
        export_best_to=served_to,
    )
    five = np.where(x[:, 2] > 1, 3 + (x[:, 3] > 0), labels).astype("int32")  # 2 new classes
    new.fit(
        x, five, epochs=3, batch_size=64, verbose=0, validation_split=0.25, callbacks=[callback]
    )
    started = callback.initialized
    assert started is not None
    assert started.report is not None
    print("fine-tuned from", started.path, "left out:")
    for line in started.report.left_out:
        print("  ", line.split(": ")[0])

    # 4. The best fine-tuned checkpoint, served.
    assert callback.exported is not None
    served = tf.saved_model.load(served_to)
    check = classifier(5)
    ckptkit.CheckpointManager(finetune, model=check).restore(
        path=callback.exported.path, assertion="partial"
    )
    same = np.allclose(served.serve(x).numpy(), check.predict(x, verbose=0), atol=1e-5)
    print(f"exported {callback.exported.path} to {served_to}; served outputs match: {same}")
    assert same


if __name__ == "__main__":
    main()
