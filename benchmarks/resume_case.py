"""Bench case (h), time to resume: a new process restores the newest checkpoint of a run.

ckptkit's process imports ckptkit, builds a `CheckpointManager` over 4 float32 variables and
restores the newest checkpoint (verified, matched, asserted); the plain TensorFlow script
builds the same variables and runs ``tf.train.Checkpoint(...).restore(latest_checkpoint(d))
.assert_existing_objects_matched()``. Both are whole processes (interpreter and TensorFlow
start-up included), interleaved, dirty pages flushed before each; the checkpoint is read from
the page cache by both.
"""

from __future__ import annotations

import os
import subprocess
import sys

import tensorflow as tf
from timing import interleaved, report

import ckptkit

_VARIABLES = "{f'w{i}': tf.Variable(tf.zeros(({elems},))) for i in range(4)}"
_CKPTKIT = f"""
import sys, tensorflow as tf, ckptkit
state = {_VARIABLES}
with ckptkit.CheckpointManager(sys.argv[1], **state) as manager:
    assert manager.restore().restored
"""
_PLAIN = f"""
import sys, tensorflow as tf
state = {_VARIABLES}
checkpoint = tf.train.Checkpoint(**state)
checkpoint.restore(tf.train.latest_checkpoint(sys.argv[1])).assert_existing_objects_matched()
"""


def _process(code: str, directory: str) -> None:
    subprocess.run(
        [sys.executable, "-c", code, directory],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def bench_resume(reps: int, root: str, elems: int) -> dict[str, float]:
    """Time to resume from 4 float32 variables of `elems` each; returns the ratio."""
    directory = os.path.join(root, "resume")
    state = {f"w{i}": tf.Variable(tf.random.normal((elems,))) for i in range(4)}
    with ckptkit.CheckpointManager(directory, **state) as manager:
        manager.save(1)
    del state
    ours, plain = (code.replace("{elems}", str(elems)) for code in (_CKPTKIT, _PLAIN))
    print(f"(h) time to resume: a new process restores 4 x {elems * 4 / 2**20:.0f} MiB")
    medians = interleaved(
        {
            "ckptkit": lambda: _process(ours, directory),
            "plain TF script": lambda: _process(plain, directory),
        },
        reps,
    )
    return {"h_resume": report("(h) resume", medians)}
