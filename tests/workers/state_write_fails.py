"""Saves 40 small checkpoints, then one more under a file-size limit only the state file passes.

The state file grows with every listed checkpoint; the limit is set just below its size, so
the 41st save writes its checkpoint and manifest, marks ckpt-1 for retention to drop, then
fails writing the state file (EFBIG).
Prints one JSON line: the error, and the steps listed after it. Run by
tests/test_data_safety.py.
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
    cfg = ckptkit.CheckpointConfig(directory=directory, retention=ckptkit.Retention(max_to_keep=40))
    mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    for step in range(1, 41):
        mgr.save(step)
    state_size = os.path.getsize(os.path.join(directory, "checkpoint"))
    largest = max(
        os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory) if "ckpt" in n
    )
    # Below the state file's size by more than the new one can shrink (retention drops
    # ckpt-1's line and the new ckpt-41 line is one character longer; stamps vary a little).
    limit = state_size - 64
    assert largest < limit, "the state file must be the largest file for this test"
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    outcome: dict[str, object] = {"error": None}
    try:
        mgr.save(41)
    except ckptkit.SaveError as e:
        outcome["error"] = type(e).__name__
        outcome["message"] = str(e)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    outcome["listed"] = [c.step for c in mgr.checkpoints]
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
