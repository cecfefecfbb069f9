"""Saves once, then again under a file-size limit smaller than the checkpoint, then again.

Usage: disk_full.py DIR sync|async (async: saves in the background, and `wait` raises).

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


def main() -> None:
    directory = sys.argv[1]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    weights = tf.Variable(tf.fill((1 << 20,), 1.0))  # 4 MiB of data per checkpoint
    background = sys.argv[2] == "async"
    config = ckptkit.CheckpointConfig(directory=directory, async_save=background)
    mgr = ckptkit.CheckpointManager(config, w=weights)
    mgr.save(1)
    mgr.wait()
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
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
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    mgr.save(2)  # training goes on once there is room again
    mgr.wait()
    outcome["listed_at_end"] = [c.step for c in mgr.checkpoints]
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
