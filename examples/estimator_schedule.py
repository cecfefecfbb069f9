"""An Estimator's RunConfig drives a graph-mode loop; the checkpoint then moves to Keras 3.

Part 1: the checkpoint fields of a `tf.estimator.RunConfig` (here a dict, as a launcher's
config file would hold them) become a `CheckpointConfig` with the Estimator's defaults and
rules: a checkpoint at the start, every `save_checkpoints_steps`, and at the end, named
``model.ckpt-<step>``, `keep_checkpoint_max` kept. A `DNNClassifier`-shaped graph
(``dnn/hiddenlayer_0/kernel`` ... ``dnn/logits/bias``, Adagrad) trains under
`MonitoredTrainingSession` with `ckptkit.CheckpointHook`, which also resumes a second run.

Part 2: the resulting name-based checkpoint is migrated into an equivalent Keras 3 model with a
key map, the report shows what went where, and the Keras model predicts what the graph did.
`ckptkit.convert` then writes it as an object-based checkpoint that plain
`tf.train.Checkpoint` loads.

    python examples/estimator_schedule.py --dir runs/estimator
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

v1 = tf.compat.v1
tf.get_logger().setLevel("ERROR")  # tf.compat.v1's deprecation notices
HIDDEN = (8, 4)
CLASSES = 3
RUN_CONFIG = {"save_checkpoints_steps": 25, "keep_checkpoint_max": 3}
KEY_MAP = [
    (r"dnn/(hiddenlayer_\d+|logits)/(kernel|bias)", r"\1/\2"),  # a unique ending of the name
    (r"global_step|dnn/.*/Adagrad", None),  # optimizer state and step: left out on purpose
]


def dnn_logits(features: tf.Tensor) -> tf.Tensor:
    """The DNNClassifier's network: ReLU hidden layers, then linear logits."""
    net = features
    layers = [*(f"hiddenlayer_{i}" for i in range(len(HIDDEN))), "logits"]
    for name, units in zip(layers, [*HIDDEN, CLASSES], strict=True):
        with v1.variable_scope(f"dnn/{name}"):
            kernel = v1.get_variable("kernel", (net.shape[-1], units))
            bias = v1.get_variable("bias", (units,), initializer=v1.zeros_initializer())
        net = tf.matmul(net, kernel) + bias
        if name != "logits":
            net = tf.nn.relu(net)
    return net


def train(
    config: ckptkit.CheckpointConfig, last_step: int, data: tuple[np.ndarray, ...]
) -> tuple[ckptkit.CheckpointHook, np.ndarray]:
    """Trains to `last_step` with the hook; returns the hook and the graph's logits on probe."""
    x, y, probe = data
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        global_step = v1.train.get_or_create_global_step()
        features = v1.placeholder(tf.float32, (None, 4), name="features")
        labels = v1.placeholder(tf.int32, (None,), name="labels")
        logits = dnn_logits(features)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )
        train_op = v1.train.AdagradOptimizer(0.05).minimize(loss, global_step=global_step)
        hook = ckptkit.CheckpointHook(config)
        stop = v1.train.StopAtStepHook(last_step=last_step)
        with v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
            while not session.should_stop():
                batch = session.run(global_step) % 8 * 8
                session.run(
                    train_op, {features: x[batch : batch + 8], labels: y[batch : batch + 8]}
                )
        # A plain session on the newest checkpoint, for the reference predictions.
        with v1.Session() as session:
            v1.train.Saver().restore(session, tf.train.latest_checkpoint(config.directory))
            predicted = session.run(logits, {features: probe})
    return hook, predicted


def keras_dnn() -> keras.Model:
    """The same network in Keras 3."""
    return keras.Sequential(
        [
            keras.Input((4,)),
            *(
                keras.layers.Dense(u, activation="relu", name=f"hiddenlayer_{i}")
                for i, u in enumerate(HIDDEN)
            ),
            keras.layers.Dense(CLASSES, name="logits"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/estimator_schedule")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    model_dir = os.path.join(args.dir, "model_dir")
    rng = np.random.default_rng(0)
    data = (
        rng.normal(size=(64, 4)).astype(np.float32),
        rng.integers(0, CLASSES, size=64).astype(np.int32),
        rng.normal(size=(5, 4)).astype(np.float32),
    )

    print("== Part 1: RunConfig", RUN_CONFIG)
    config = ckptkit.CheckpointConfig.from_run_config({"model_dir": model_dir, **RUN_CONFIG})
    print(f"   -> schedule {config.schedule}, retention {config.retention}")
    hook, _ = train(config, 60, data)
    print("   first run, steps 0..60, kept:", [c.step for c in hook.manager.checkpoints])
    hook, graph_logits = train(config, 110, data)
    print(
        f"   second run resumed from {hook.restored.path}; kept:",
        [c.step for c in hook.manager.checkpoints],
    )
    assert [c.step for c in hook.manager.checkpoints] == [75, 100, 110]

    print("== Part 2: migrate model.ckpt-110 into Keras 3")
    model = keras_dnn()
    result = ckptkit.migrate(model_dir, key_map=KEY_MAP, model=model, assertion="consumed")
    print(result.report.format(verbose=True))
    keras_logits = model.predict(data[2], verbose=0)
    gap = float(np.max(np.abs(keras_logits - graph_logits)))
    print(f"   largest difference between graph and Keras logits: {gap:.2e}")
    assert gap < 1e-5, gap

    converted = os.path.join(args.dir, "converted")
    ckptkit.convert(model_dir, converted, key_map=KEY_MAP, model=keras_dnn())
    fresh = keras_dnn()
    tf.train.Checkpoint(model=fresh).restore(
        tf.train.latest_checkpoint(converted)
    ).assert_consumed()
    assert np.allclose(fresh.predict(data[2], verbose=0), graph_logits, atol=1e-5)
    print(f"   converted to {converted}; plain tf.train.Checkpoint(model=...) loads it")


if __name__ == "__main__":
    main()
