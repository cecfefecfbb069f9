"""Helpers shared by test modules (import them from here, not from conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tensorflow as tf

WORKERS = Path(__file__).with_name("workers")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def worker_outcome(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Runs ``tests/workers/<script>`` to completion; returns the JSON object it printed last."""
    done = subprocess.run(
        [sys.executable, str(WORKERS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=True,
    )
    outcome: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def state() -> dict[str, tf.Variable]:
    """Two small variables to checkpoint."""
    return {"a": tf.Variable(tf.zeros((64,))), "b": tf.Variable(tf.zeros((8, 8)))}


def fill(variables: dict[str, tf.Variable], step: int) -> None:
    """Sets every element of every variable to `step`."""
    for v in variables.values():
        v.assign(tf.fill(v.shape, float(step)))


def equal_to(variables: dict[str, tf.Variable], step: int) -> bool:
    """Whether every element of every variable is `step` (one step's values, not a mix)."""
    return all(bool(tf.reduce_all(v == float(step))) for v in variables.values())
