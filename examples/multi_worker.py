"""Two workers training with MultiWorkerMirroredStrategy on this machine; one is killed.

1. Trains a small model on a 2-worker cluster (two processes on 127.0.0.1 ports) for --steps
   steps without interruption; keeps the chief's final weights.
2. Trains the same job in a new directory and SIGKILLs worker 1 once the chief has committed a
   few checkpoints; the other worker is then stopped too, as a cluster manager would.
3. Restarts the cluster: every worker restores the chief's newest committed checkpoint and
   trains to the end.
4. Shows the checkpoints, and exits 1 unless both workers of the resumed run end with the
   weights of the uninterrupted run, bit for bit.

Every worker calls `maybe_save`: the chief writes the checkpoint and commits it, worker 1
writes a throwaway copy (the strategy's reads are collectives) and removes it.

    python examples/multi_worker.py [--dir runs/multi_worker] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import quiet_tf  # noqa: F401  (TensorFlow without its C++ start-up lines)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import ckptkit


def train(directory: str, steps: int) -> None:
    """One worker's job (TF_CONFIG says which): deterministic, a checkpoint every 5 steps."""
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16), keras.layers.Dense(1)])
        optimizer = keras.optimizers.Adam(0.01)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")
    config = ckptkit.CheckpointConfig(
        directory=directory,
        schedule=ckptkit.Schedule(every_steps=5),
        retention=ckptkit.Retention(max_to_keep=3),
    )
    manager = ckptkit.CheckpointManager(config, model=model, optimizer=optimizer, step=step)
    result = manager.restore_or_initialize()
    worker = strategy.cluster_resolver.task_id
    print(json.dumps({"worker": worker, "resumed": result.step}), flush=True)

    def shard(context: tf.distribute.InputContext) -> tuple[tf.Tensor, tf.Tensor]:
        # Each replica takes its half of the step's batch of 16.
        at = (int(step.numpy()) * 16 + context.replica_id_in_sync_group * 8) % len(x)
        return tf.constant(x[at : at + 8]), tf.constant(y[at : at + 8])

    @tf.function
    def replica_step(batch_x: tf.Tensor, batch_y: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(batch_x) - batch_y)) / 2  # 2 replicas
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    while int(step.numpy()) < steps:
        batch = strategy.experimental_distribute_values_from_function(shard)
        strategy.run(replica_step, args=batch)
        step.assign_add(1)
        saved = manager.maybe_save(int(step.numpy()))
        print(
            json.dumps({"worker": worker, "step": int(step.numpy()), "saved": bool(saved)}),
            flush=True,
        )
    manager.close()
    weights = [w.tolist() for w in model.get_weights()]
    print(json.dumps({"worker": worker, "done": steps, "weights": weights}), flush=True)


def start_cluster(directory: str, steps: int) -> list[subprocess.Popen[str]]:
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    command = [sys.executable, __file__, "--worker", "--dir", directory, "--steps", str(steps)]
    return [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
        )
        for i in range(2)
    ]


def finish(workers: list[subprocess.Popen[str]]) -> list[dict]:
    """Waits for both workers; returns each one's last line."""
    last = []
    for process in workers:
        out, _ = process.communicate(timeout=300)
        if process.returncode != 0:
            raise SystemExit(f"worker exited with {process.returncode}")
        last.append(json.loads(out.strip().splitlines()[-1]))
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/multi_worker", help="working directory")
    parser.add_argument("--steps", type=int, default=60, help="training steps")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train(args.dir, args.steps)
        return
    shutil.rmtree(args.dir, ignore_errors=True)
    reference_dir, run_dir = os.path.join(args.dir, "reference"), os.path.join(args.dir, "run")

    print(f"1. an uninterrupted 2-worker run of {args.steps} steps")
    reference = finish(start_cluster(reference_dir, args.steps))[0]["weights"]

    print("2. the same job; worker 1 is SIGKILLed after the chief's third checkpoint")
    workers = start_cluster(run_dir, args.steps)
    assert workers[0].stdout is not None
    saves = 0
    for line in workers[0].stdout:
        saves += json.loads(line).get("saved", False)
        if saves == 3:
            workers[1].send_signal(signal.SIGKILL)
            break
    for process in workers:  # the chief waits for its peer forever: stop it, as a scheduler would
        process.kill()
        process.communicate()
    listed = [c.step for c in ckptkit.list_checkpoints(run_dir)]
    print(f"   committed when the cluster went down: steps {listed}")

    print("3. the cluster restarted")
    workers = start_cluster(run_dir, args.steps)
    resumed = [json.loads(str(process.stdout and process.stdout.readline())) for process in workers]
    print(
        f"   worker 0 resumed at step {resumed[0]['resumed']}, worker 1 at {resumed[1]['resumed']}"
    )
    finals = finish(workers)

    print("4. the checkpoints (ckptkit ls):")
    subprocess.run([sys.executable, "-m", "ckptkit", "ls", run_dir], check=True)
    same = all(final["weights"] == reference for final in finals)
    print(f"   both workers' weights equal the uninterrupted run's, bit for bit: {same}")
    leftovers = [n for n in os.listdir(run_dir) if n.startswith(".workertemp")]
    print(f"   worker scratch folders left: {leftovers or 'none'}")
    if not same or leftovers or {r["resumed"] for r in resumed} != {listed[-1]}:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
