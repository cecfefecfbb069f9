"""Graph-mode (tf.compat.v1) training checkpointed by ckptkit, restored into a new session.

The same `CheckpointManager` API as in TF2 code, over a v1 `Saver`: checkpoints
``model.ckpt-<global_step>`` with their ``.meta`` graphs and a ``checkpoint`` state file that
`tf.compat.v1.train.get_checkpoint_state` reads. The second half restores the newest one into
an empty graph, from the ``.meta`` file alone, and runs the imported graph.

    python examples/legacy_saver.py --dir runs/legacy
"""

from __future__ import annotations

import argparse
import os
import shutil

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

import ckptkit

v1 = tf.compat.v1


def train(config: ckptkit.CheckpointConfig, steps: int) -> float:
    """Fits y = 3x + 1 in graph mode, saving on the config's schedule; returns the loss."""
    graph = tf.Graph()
    with graph.as_default():
        global_step = v1.train.get_or_create_global_step()
        x = v1.placeholder(tf.float32, (None, 1), name="x")
        y = v1.placeholder(tf.float32, (None, 1), name="y")
        w = v1.get_variable("linear/kernel", (1, 1), initializer=v1.zeros_initializer())
        b = v1.get_variable("linear/bias", (1,), initializer=v1.zeros_initializer())
        prediction = tf.identity(tf.matmul(x, w) + b, name="prediction")
        loss = tf.reduce_mean(tf.square(prediction - y), name="loss")
        train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=global_step)
        init = v1.global_variables_initializer()
    xs = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
    feed = {x: xs, y: 3 * xs + 1}
    with v1.Session(graph=graph) as session:
        session.run(init)
        with ckptkit.CheckpointManager.for_session(config, session) as manager:
            result = manager.restore_or_initialize()
            print(f"restored: {result.path or 'nothing, a fresh start'}")
            for _ in range(steps):
                session.run(train_op, feed)
                saved = manager.maybe_save(global_step)  # run in the session when due
                if saved:
                    print(f"  saved {saved}")
        return float(session.run(loss, feed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/legacy_saver")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    config = ckptkit.CheckpointConfig(
        directory=args.dir,
        prefix="model.ckpt",
        schedule=ckptkit.Schedule(every_steps=10),
        retention=ckptkit.Retention(max_to_keep=3),
    )
    loss = train(config, args.steps)
    print(f"trained {args.steps} steps, loss {loss:.5f}")

    state = v1.train.get_checkpoint_state(args.dir)
    print("get_checkpoint_state:", [os.path.basename(p) for p in state.all_model_checkpoint_paths])
    print("files:", sorted(os.listdir(args.dir)))

    # A new program without the code above: the graph comes from the newest .meta file.
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        manager = ckptkit.CheckpointManager.for_session(config, session)
        result = manager.restore(assertion="consumed")
        print(f"restored {result.path} into an empty graph: {result.report.format()}")
        xs = np.array([[0.0], [1.0]], np.float32)
        got = session.run("prediction:0", {"x:0": xs})
        print(f"imported graph predicts {[f'{v:.3f}' for v in got.ravel()]} for x=[0, 1]")
        expected_step = args.steps // 10 * 10
        assert result.step == expected_step, (result.step, expected_step)
        assert np.allclose(got.ravel(), [1, 4], atol=0.1), got

    # Run it again: the next run resumes at the newest step and saves on.
    loss = train(config, 20)
    print(f"resumed and trained 20 more steps, loss {loss:.5f}")
    assert ckptkit.list_checkpoints(args.dir)[-1].step == (args.steps + 20) // 10 * 10


if __name__ == "__main__":
    main()
