"""Saves once, then again under a file-size limit smaller than the checkpoint, then again.

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
    mgr = ckptkit.CheckpointManager(ckptkit.CheckpointConfig(directory=directory), w=weights)
    mgr.save(1)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    weights.assign(tf.fill((1 << 20,), 2.0))
    outcome: dict[str, object] = {}
    try:
        mgr.save(2)
        outcome["error"] = None
    except ckptkit.SaveError as e:
        outcome["error"] = type(e).__name__
        outcome["message"] = str(e)
    outcome["listed_after_failure"] = [c.step for c in mgr.checkpoints]
    outcome["files_after_failure"] = sorted(os.listdir(directory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    mgr.save(2)  # training goes on once there is room again
    outcome["listed_at_end"] = [c.step for c in mgr.checkpoints]
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
