"""Crafted ``.index``, manifest and data files never abort the process or raise untyped errors.

TensorFlow's index reader aborts the whole process (SIGABRT) on entries it cannot parse, so the
cases run in a worker process (tests/workers/fuzz_files.py): a crash there is a failure here
that names the case. The index cases have valid block checksums, so they reach the parsing that
aborts. `CKPTKIT_FUZZ_CASES` sets the number of cases (150 by default; `nox -s faults` runs
1500).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a worker process over 150 crafted files: `nox -s slow`

WORKER = Path(__file__).with_name("workers") / "fuzz_files.py"
CASES = int(os.environ.get("CKPTKIT_FUZZ_CASES", "150"))


def test_crafted_files_give_results_or_typed_errors_and_never_abort(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), "0", str(CASES)],
        capture_output=True,
        text=True,
        timeout=60 + CASES,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=WORKER.parent,
    )
    cases = [line for line in done.stdout.splitlines() if line.startswith("case ")]
    if done.returncode < 0:
        crash = signal.Signals(-done.returncode).name
        raise AssertionError(
            f"{crash} in {cases[-1] if cases else 'setup'}; stderr: {done.stderr[-2000:]}"
        )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["untyped"] == [], summary["untyped"][:10]
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(cases) == CASES
    outcomes = summary["outcomes"]
    # Both outcomes occur, or the damage is too mild (or too wild) to test anything.
    assert outcomes["typed error"] > 0
    assert outcomes["ok"] > 0
    kinds = {line.split()[2].split("-")[0] for line in cases}
    assert kinds == {"index", "manifest", "data"}
    print(f"{CASES} fuzzed files: {outcomes}")
