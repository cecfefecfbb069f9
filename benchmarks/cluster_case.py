"""Bench case (f): saves on a 2-worker MultiWorkerMirroredStrategy cluster on this machine.

Each worker holds the same state (mirrored variables and one SyncOnRead variable, whose read
for a save is an all-reduce) and saves it, interleaved, through:

- ckptkit: `CheckpointManager.save` on every worker; the chief writes and commits, worker 1
  writes a throwaway copy and removes it;
- plain TensorFlow, the pattern of its docs: `tf.train.CheckpointManager.save` into the
  directory on the chief and into a ``workertemp_1`` directory on worker 1, removed after;
- ckptkit async: `save(async_save=True)` on every worker; the time it blocks training (the
  workers take the values together, the chief writes and commits in the background). Each
  such save starts after `wait()` has settled the one before, outside the timed part.

Each save starts after a barrier (an all-reduce), so that both workers start it together; its
time is the longer of the two workers' times in the call (what it blocked the slower worker),
gathered after it; dirty pages are flushed before each. The time of the collectives that
follow an async save, while the chief writes, is not in it: case (e) measures what background
writes cost a training loop. The chief prints the medians as one JSON line.

    python benchmarks/cluster_case.py   # as a worker: TF_CONFIG names the cluster and the task
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def bench_cluster(reps: int, root: str, mib: int) -> dict[str, float]:
    """Runs the case on two worker processes; prints and returns the ratios by goal name."""
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    command = [sys.executable, __file__, os.path.join(root, "f"), str(reps), str(mib)]
    workers = [
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
    outs = [worker.communicate(timeout=1200)[0] for worker in workers]
    if any(worker.returncode for worker in workers):
        raise RuntimeError(f"a cluster worker failed: {[w.returncode for w in workers]}")
    medians = json.loads(outs[0].strip().splitlines()[-1])
    ratios = {
        "f_cluster": medians["ckptkit"] / medians["plain"],
        "f_async_blocked": medians["async"] / medians["ckptkit"],
    }
    print(
        f"(f) 2 workers, {mib} MiB each: ckptkit {medians['ckptkit'] * 1e3:8.1f} ms | "
        f"tf.train.CheckpointManager + workertemp {medians['plain'] * 1e3:8.1f} ms "
        f"(ratio {ratios['f_cluster']:.3f})\n"
        f"(f) async: save() blocks {medians['async'] * 1e3:8.1f} ms | ckptkit sync "
        f"{medians['ckptkit'] * 1e3:8.1f} ms (ratio {ratios['f_async_blocked']:.3f})",
        flush=True,
    )
    return ratios


def worker(directory: str, reps: int, mib: int) -> None:
    """One worker's side of the case (TF_CONFIG says which)."""
    import tensorflow as tf

    import ckptkit

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = strategy.cluster_resolver.task_id
    elems = mib << 16  # 4 variables of float32: `mib` MiB in all
    with strategy.scope():
        state = {f"w{i}": tf.Variable(tf.random.normal((elems,), seed=i)) for i in range(4)}
        state["stat"] = tf.Variable(
            tf.zeros((1024,)),
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
        )
    counter = iter(range(1, 10**6))
    ours = ckptkit.CheckpointManager(
        ckptkit.CheckpointConfig(
            directory=os.path.join(directory, "ckptkit"), retention=ckptkit.Retention(max_to_keep=2)
        ),
        **state,
    )
    background = ckptkit.CheckpointManager(
        ckptkit.CheckpointConfig(
            directory=os.path.join(directory, "async"),
            retention=ckptkit.Retention(max_to_keep=2),
            async_save=True,
        ),
        **state,
    )
    plain_dir = os.path.join(directory, "tf")
    if task != 0:
        plain_dir = os.path.join(plain_dir, f"workertemp_{task}")
    plain = tf.train.CheckpointManager(tf.train.Checkpoint(**state), plain_dir, max_to_keep=2)

    def plain_save() -> None:
        plain.save(checkpoint_number=next(counter))
        if task != 0:
            shutil.rmtree(plain_dir, ignore_errors=True)

    def slowest(seconds: float) -> float:
        """The largest of the workers' `seconds` (an all-reduce: also a barrier)."""
        values = strategy.experimental_distribute_values_from_function(  # one slot each
            lambda _: tf.one_hot(task, 2) * seconds
        )
        return float(tf.reduce_max(strategy.reduce("SUM", values, axis=None)))

    def timed(save: Callable[[], object]) -> float:
        background.wait()  # the async save before commits (on every worker), untimed
        os.sync()
        slowest(0.0)
        start = time.perf_counter()
        save()
        return slowest(time.perf_counter() - start)

    runs: dict[str, Callable[[], object]] = {
        "ckptkit": lambda: ours.save(next(counter)),
        "plain": plain_save,
        "async": lambda: background.save(next(counter)),
    }
    for _ in range(3):  # warm-up: the first saves of a process run several times slower
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(reps):
        for name in names[rep % 3 :] + names[: rep % 3]:
            times[name].append(timed(runs[name]))
    ours.close()
    background.close()
    if task == 0:
        print(json.dumps({name: statistics.median(values) for name, values in times.items()}))


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
