"""Orbit's `Controller` on ckptkit's drop-in: SIGKILLed mid-run, restarted, same final weights.

Orbit comes with ``tf-models-official``, installed without its dependencies by the `slow`
session (`noxfile.py`): `import orbit` needs only TensorFlow, tf-keras and absl.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from forked import ForkedWorker

import ckptkit

pytestmark = pytest.mark.slow


def train(directory: str, out: str, *args: str, kill_at: int | None = None) -> list[dict]:
    """Runs workers/orbit_train.py; SIGKILLs it once it reports step `kill_at`."""
    with ForkedWorker("orbit_train.py", directory, out, *args) as worker:
        said = []
        for line in worker.stdout:
            if line.startswith("{"):
                said.append(json.loads(line))
                if kill_at is not None and said[-1].get("step") == kill_at:
                    worker.send_signal(signal.SIGKILL)
                    break
        worker.stdout.read()
    assert worker.returncode == (-signal.SIGKILL if kill_at is not None else 0)
    return said


def test_an_orbit_run_killed_and_restarted_ends_with_an_uninterrupted_runs_weights(
    tmp_path,
) -> None:
    whole = tmp_path / "whole.npz"
    assert train(str(tmp_path / "uninterrupted"), str(whole))[0] == {"restored": None}

    run = str(tmp_path / "run")
    train(run, str(tmp_path / "killed.npz"), "--slow", kill_at=22)
    committed = [c.step for c in ckptkit.list_checkpoints(run)]
    assert committed
    assert committed[-1] <= 22
    assert committed == sorted(committed)[-3:]  # max_to_keep=3, through ckptkit's retention

    said = train(run, str(tmp_path / "resumed.npz"))
    assert os.path.basename(said[0]["restored"]) == f"ckpt-{committed[-1]}"
    with np.load(whole) as a, np.load(tmp_path / "resumed.npz") as b:
        np.testing.assert_array_equal(a["kernel"], b["kernel"])
    assert ckptkit.verify(run).ok
    listed = ckptkit.list_checkpoints(run)
    assert listed[-1].step == 40
    assert all(os.path.exists(f"{c.path}.manifest.json") for c in listed)
