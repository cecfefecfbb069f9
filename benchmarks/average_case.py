"""Bench case (h): `ckptkit.average` of 5 checkpoints of the state of (a), its time and memory.

Against tensor2tensor's way (``avg_checkpoints.py``, ported to TF2 objects): every variable of
every checkpoint read through `tf.train.load_checkpoint` and summed into one float32 array per
variable, all of them in memory together, then divided and written with a
`tf.train.Checkpoint` of new variables. Each run is a fresh process, which reports its time
and its peak resident memory above what it held after importing TensorFlow (``VmHWM`` minus
the RSS before the work); dirty pages are flushed before each.

    python benchmarks/average_case.py --probe ckptkit|baseline --dir DIR --out PREFIX
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

import ckptkit

_COUNT = 5


def _memory(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _baseline(directory: str, out: str) -> None:
    paths = [c.path for c in ckptkit.list_checkpoints(directory)]
    names = [
        n
        for n, _ in tf.train.list_variables(paths[0])
        if "OBJECT_GRAPH" not in n and not n.startswith("save_counter")
    ]
    sums: dict[str, np.ndarray] = {}
    for path in paths:
        reader = tf.train.load_checkpoint(path)
        for name in names:
            value = reader.get_tensor(name)
            if name in sums:
                sums[name] += value
            else:
                sums[name] = value.astype(np.float32)
    variables = {
        name.partition("/")[0]: tf.Variable(value / len(paths)) for name, value in sums.items()
    }
    tf.train.Checkpoint(**variables).write(out)


def probe(kind: str, directory: str, out: str) -> None:
    """In a fresh process: averages `directory` one way and prints the figures as JSON."""
    before = _memory("VmRSS")
    started = time.perf_counter()
    if kind == "ckptkit":
        ckptkit.average(directory, output=out, overwrite=True)
    else:
        _baseline(directory, out)
    secs = time.perf_counter() - started
    print(json.dumps({"secs": secs, "peak": _memory("VmHWM") - before}))


def _run(kind: str, directory: str, out: str) -> dict[str, float]:
    os.sync()
    done = subprocess.run(
        [sys.executable, __file__, "--probe", kind, "--dir", directory, "--out", out],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_average(reps: int, root: str, elems: int) -> dict[str, float]:
    """Five checkpoints of 4 float32 variables of `elems` each; returns the ratios."""
    directory = os.path.join(root, "average")
    shutil.rmtree(directory, ignore_errors=True)
    variables = {f"v{i}": tf.Variable(tf.zeros((elems,))) for i in range(4)}
    with ckptkit.CheckpointManager(directory, **variables) as manager:
        for step in range(1, _COUNT + 1):
            for v in variables.values():
                v.assign(tf.random.normal((elems,)))
            manager.save(step)
    state = 4 * elems * 4
    del variables
    runs: dict[str, list[dict[str, float]]] = {"ckptkit": [], "baseline": []}
    for rep in range(reps):
        for kind in ("ckptkit", "baseline") if rep % 2 == 0 else ("baseline", "ckptkit"):
            runs[kind].append(_run(kind, directory, os.path.join(root, f"avg-{kind}")))
    medians = {
        kind: {k: statistics.median(r[k] for r in rows) for k in ("secs", "peak")}
        for kind, rows in runs.items()
    }
    gib = state / 2**30
    print(f"(h) average of {_COUNT} checkpoints of {gib:.2f} GiB, median of {reps} fresh processes")
    for kind, m in medians.items():
        print(
            f"  {kind:9s} {m['secs']:7.2f} s   peak +{m['peak'] / 2**20:7.0f} MiB "
            f"({m['peak'] / state:.2f}x the state)"
        )
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "h_average": medians["ckptkit"]["secs"] / medians["baseline"]["secs"],
        "h_average_peak": medians["ckptkit"]["peak"] / medians["baseline"]["peak"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", choices=["ckptkit", "baseline"], required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    probe(arguments.probe, arguments.dir, arguments.out)
