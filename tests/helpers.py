"""Helpers shared by test modules (import them from here, not from conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
